#!/usr/bin/env python3
# Subscriptions when the streams are spread over nodes (doc/SHARDING-PLAN.md §2.4): three nodes on one
# PostgreSQL with --shard-policy balance. The subscription service runs on shard 0's holder (H); the
# other nodes relay their commits to it (POST /v1/internal/observe, serve_observe_http.c).
#   - a glob webhook subscription created through a node that is not H (forwarded there);
#   - streams whose shards the two other nodes hold, created and appended through those nodes, are
#     linked and delivered, each webhook naming the stream's tail as the node that holds it says it;
#   - the receiver's "done" acknowledges them (an ack at a tail H only knows from the relay);
#   - shard 0's holder paused past its lease: an append on B meanwhile (its relay lost) is delivered
#     by the node that takes shard 0 over, which reads the streams' tails from the database;
#   - a pull-wake subscription (made through A) whose wake stream B holds: its wake event reaches
#     the wake stream (H appends it through B: POST /v1/internal/stream-append);
#   - the time from an append through B (a stream B holds) to the webhook H sends for it, p50/p99,
#     against the same on one node (SQLite), said in the diagnostics.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test, wait_for  # noqa: E402
from cluster import balance_nodes, held, resume_status, shard_of  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
SUBS = "/v1/stream/__ds/subscriptions/"
LAG_SAMPLES = 100


class Receiver:
    """A webhook receiver on loopback: every delivery kept as (arrival time, body); answers done."""

    def __init__(self):
        self.got, self.cv = [], threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.cv:
                    outer.got.append((time.monotonic(), json.loads(body)))
                    outer.cv.notify_all()
                reply = b'{"done":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def tails(self):
        """{path: the highest tail_offset any delivery named}"""
        out = {}
        with self.cv:
            for _, d in self.got:
                for s in d.get("streams", []):
                    out[s["path"]] = max(out.get(s["path"], ""), s.get("tail_offset", ""))
        return out

    def wait_tail(self, path, tail, since, timeout=10.0):
        """The arrival time of the first delivery after `since` naming path at tail or beyond."""
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, d in self.got:
                    if t >= since and any(s["path"] == path and s.get("tail_offset", "") >= tail
                                          for s in d.get("streams", [])):
                        return t
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)


def tail_of(srv, path):
    r = srv.request("HEAD", "/v1/stream/" + path)
    return r.header("Stream-Next-Offset") if r.status == 200 else None


def subscribe(tap, via, recv, name, pattern):
    r = via.request("PUT", SUBS + name, {"type": "webhook", "pattern": pattern, "webhook": {"url": recv.url}})
    return tap.is_(r.status, 201, f"glob subscription {name} ({pattern}) created through {via.url}")


def lag(tap, srv, recv, path, what):
    """Sequential appends to path through srv, each timed to its webhook: [seconds]."""
    out = []
    for i in range(LAG_SAMPLES):
        t0 = time.monotonic()
        r = srv.append("/v1/stream/" + path, f"m{i};".encode(), "text/plain")
        if r.status not in (200, 204):
            tap.diag(f"{what}: append {i} answered {r.status}")
            break
        got = recv.wait_tail(path, r.header("Stream-Next-Offset"), t0)
        if got is None:
            tap.diag(f"{what}: no webhook for append {i}")
            break
        out.append(got - t0)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1000 if xs else float("nan")


def single_node_lag(tap):
    srv = Server()
    srv.start()
    recv = Receiver()
    try:
        subscribe(tap, srv, recv, "one", "one/*")
        srv.create("/v1/stream/one/s", "text/plain")
        out = lag(tap, srv, recv, "one/s", "single node")
        tap.check_clean_exit(srv, "the single node stops cleanly on SIGTERM")
        return out
    finally:
        recv.httpd.shutdown()
        srv.stop()


def cluster_round(tap, pg, nodes):
    owner = next((n for n in nodes if 0 in held(pg, n.url)), None)
    if not tap.ok(owner is not None, "a node holds shard 0 (it runs the subscriptions)"):
        return None
    others = [n for n in nodes if n is not owner]
    recv = Receiver()
    via = others[0]
    subscribe(tap, via, recv, "spread", "spread/*")
    # Streams in shards each other node holds, created and appended through that node.
    mine = {n.url: held(pg, n.url) for n in others}
    paths = {}
    for n in others:
        ps = [p for p in (f"spread/s{i}" for i in range(2000)) if shard_of(p) in mine[n.url]][:5]
        paths[n.url] = ps
        for p in ps:
            tap.is_(n.create("/v1/stream/" + p, "text/plain").status, 201, f"{p} created through its holder")
            r = n.append("/v1/stream/" + p, b"hello;", "text/plain")
            tap.ok(r.status in (200, 204) and r.header("Agentd-Node") == n.url,
                   f"{p} appended on {n.url}, which holds its shard (not shard 0's holder)", repr(r))
    want = {p: tail_of(n, p) for n in others for p in paths[n.url]}
    tap.ok(wait_for(lambda: all(recv.tails().get(p, "") >= t for p, t in want.items()), 10),
           "every stream another node holds is linked and delivered at its tail by shard 0's holder",
           repr({p: (t, recv.tails().get(p)) for p, t in want.items()}))
    st = via.request("GET", SUBS + "spread")
    linked = {s["path"] for s in st.json().get("streams", [])} if st.status == 200 else set()
    tap.ok(set(want) <= linked, "the subscription lists them as glob links", repr(sorted(linked)))
    # the webhook's done acknowledged the tails H knows only from the relay: nothing pending after
    time.sleep(0.5)
    n0 = len(recv.got)
    time.sleep(1.0)
    tap.is_(len(recv.got), n0, "acknowledged (done), they are not delivered again")
    b = others[1]
    pull_wake_round(tap, pg, owner, via, b)
    lags = lag(tap, b, recv, paths[b.url][0], "cluster")
    tap.is_(len(lags), LAG_SAMPLES, f"{LAG_SAMPLES} appends on B each reach the webhook H sends")
    failover_round(tap, pg, owner, others, recv, paths)
    recv.httpd.shutdown()
    for n in others:  # the new holder stops with its scans and relays received (ASan: no leak)
        tap.check_clean_exit(n, f"{n.url} stops cleanly on SIGTERM")
    return lags


def pull_wake_round(tap, pg, owner, via, b):
    """A pull-wake subscription made through `via` whose wake stream and source b holds: the
    subscriptions' node (owner) appends the wake event on b."""
    mine = held(pg, b.url)
    src, wake = (next(p for p in (f"{kind}/s{i}" for i in range(2000)) if shard_of(p) in mine)
                 for kind in ("pwsrc", "pwwake"))
    tap.is_(b.create("/v1/stream/" + wake, "application/json").status, 201, f"wake stream {wake} on {b.url}")
    tap.is_(b.create("/v1/stream/" + src, "text/plain").status, 201, f"source {src} on {b.url}")
    r = via.request("PUT", SUBS + "pw", {"type": "pull-wake", "streams": [src], "wake_stream": wake})
    tap.ok(r.status in (200, 201), "pull-wake subscription created through a node that is not shard 0's "
           "holder", repr(r))
    tap.ok(b is not owner and 0 not in mine and shard_of(wake) in mine,
           "the wake stream's holder is not the subscriptions' node")
    r = b.append("/v1/stream/" + src, b"work;", "text/plain")
    tap.ok(r.status in (200, 204), f"an append to {src} on {b.url}", repr(r))

    def events():
        got = b.request("GET", "/v1/stream/" + wake + "?offset=-1")
        return got.json() if got.status == 200 and got.body else []
    tap.ok(wait_for(lambda: any(e.get("type") == "wake" and e.get("subscription_id") == "pw"
                                and e.get("stream") == src for e in events()), 10),
           "the wake event reaches the wake stream another node holds", repr(events()))


def failover_round(tap, pg, owner, others, recv, paths):
    """H paused: an append on each other node meanwhile is relayed to nobody who hears it (H is
    stopped, then gone). Whichever node takes shard 0 over, the other's stream was appended out of
    its sight: it reads the streams' tails from the database (the repair's baseline) and delivers it."""
    owner.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    tails = {}
    for n in others:
        p = paths[n.url][1]
        r = n.append("/v1/stream/" + p, b"while H is paused;", "text/plain")
        tap.ok(r.status in (200, 204), f"an append on {n.url} while shard 0's holder is paused", repr(r))
        tails[n.url] = (p, r.header("Stream-Next-Offset"))
    tap.ok(wait_for(lambda: any(0 in held(pg, n.url) for n in others), 15),
           "another node takes shard 0 (and the subscriptions) over")
    new = next((n for n in others if 0 in held(pg, n.url)), others[0])
    path, tail = next(v for u, v in tails.items() if u != new.url)
    got = recv.wait_tail(path, tail, t0, timeout=15)
    tap.ok(got is not None, "the new holder delivers the append of the other node whose relay was lost "
           "(read from the database)", f"{path} at {tail}: {recv.tails().get(path)}")
    if got is not None:
        tap.diag(f"paused -> delivered by the new holder in {got - t0:.2f} s")
    tap.is_(resume_status(owner), 75, "resumed, the old holder exits 75")


def main(tap):
    lags = None
    with balance_nodes(tap, "subscriptions over --shard-policy balance", lease_ms=LEASE_MS) as (pg, nodes):
        if nodes is None:
            return
        spread = lambda: [len(held(pg, n.url)) for n in nodes]  # noqa: E731
        if tap.ok(wait_for(lambda: sum(spread()) == SHARDS and min(spread()) > 0, 20),
                  "the shards are spread over the three nodes", repr(spread())):
            lags = cluster_round(tap, pg, nodes)
    one = single_node_lag(tap)
    tap.is_(len(one), LAG_SAMPLES, f"{LAG_SAMPLES} appends on one node each reach its webhook")
    if lags and one:
        tap.diag(f"append -> webhook, p50/p99 ms: three nodes (append on B, webhook from H) "
                 f"{pct(lags, 50):.1f}/{pct(lags, 99):.1f}; one node {pct(one, 50):.1f}/{pct(one, 99):.1f}")


run_test(main)
