#!/usr/bin/env python3
# Three agentd nodes on one PostgreSQL (tests/integ/cluster.py; a PostgreSQL the test starts itself):
# the lease holder ("owner") serves, the other nodes forward every request to it.
#   (d) every node serves at once; GET /v1/nodes (answered by each node itself) lists the three, one
#       of them the owner; a write through any node, or through the round-robin proxy, is served
#       by the owner: its answer carries Agentd-Node: <owner's node URL>; a catch-up read (GET
#       without live, HEAD) is answered by the node it reached (tests/integ/pg_reads.t);
#   (a) 32 writers append (idempotent producers: Producer-Id/Epoch/Seq, retried until acknowledged)
#       to 8 streams, each request to the next node in turn; the owner is killed with -9 mid-load:
#       a stream is writable again through another node within lease-ms + 1 s, no acknowledged
#       append is lost, and every stream holds, for each writer, a contiguous prefix of what it sent
#       with nothing twice;
#   (c) at the same time, a jsonl-agent session runs on the owner and is followed live (SSE) through
#       a follower: the follower's stream shows the run's events as they come; once the owner is
#       killed the run ends with run_completed node_lost, and the session answers its next message
#       through the follower, run by the new owner;
#   (b) the new owner is paused (SIGSTOP) past its lease while writers append through it; the third
#       node takes over; once resumed (SIGCONT) the old owner stores nothing: every append it answers
#       is refused (503) or served by the new owner (Agentd-Node), a refused append is in no stream,
#       and no stream holds two histories; it exits with status 75 (lost the lease; a restart makes
#       it a follower: tests/integ/pg_demote.t).
#   README: the commands of its section "Three nodes on one PostgreSQL" run as written (but for the
#       addresses, the database URL, the binary and a data dir per node) and print what it says.
# Skipped only when PostgreSQL's binaries are missing.
import http.client
import importlib.machinery
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER, SSEFollower, shard_of, test_cluster  # noqa: E402
from pg import free_port  # noqa: E402

LEASE_MS = 1000
WRITERS = 32
STREAMS = 8
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
# Sanitizer builds start and fail over slower; the bound stays the contract's, with a margin there.
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")
WRITABLE_WITHIN = LEASE_MS / 1000 + 1 + (2 if SLOW else 0)


def node_of(r):
    return r.header("Agentd-Node")


def message(w, n):
    return f"{w}:{n};".encode()


def parse(data):
    """{writer: [n, ...]} of a stream's bytes, or None if it is not made of whole messages."""
    out = {}
    if data and not data.endswith(b";"):
        return None
    for part in data.split(b";")[:-1]:
        w, _, n = part.partition(b":")
        if not w.isdigit() or not n.isdigit():
            if part in (b"probe", b"mark"):
                continue
            return None
        out.setdefault(int(w), []).append(int(n))
    return out


class Writer(threading.Thread):
    """Appends message(w, n) for n = 0, 1, ... to one stream with an idempotent producer; each
    request goes to the next live node in turn. retry: a failed append (connection error, 503) is
    sent again, same sequence number, until acknowledged; otherwise the writer stops at it."""

    def __init__(self, nodes, w, path, stop, retry=True):
        super().__init__(daemon=True)
        self.nodes, self.w, self.path, self.stop_event, self.retry = nodes, w, path, stop, retry
        self.acked = 0
        self.sent = 0
        self.refused = []  # (n, status, code, Agentd-Node) of answers other than 2xx
        self.served_by = {}  # Agentd-Node -> acknowledged appends
        self.ended_by = None

    def run(self):
        conns = {}
        k = self.w
        while not self.stop_event.is_set():
            srv = self.nodes[k % len(self.nodes)]
            k += 1
            n = self.acked
            self.sent = max(self.sent, n + 1)
            headers = {"Content-Type": "text/plain", "Producer-Id": f"w{self.w}", "Producer-Epoch": "0",
                       "Producer-Seq": str(n)}
            try:
                conn = conns.get(srv.port) or srv.connection(timeout=15)
                conns[srv.port] = conn
                conn.request("POST", self.path, body=message(self.w, n), headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                conns.pop(srv.port).close() if srv.port in conns else None
                if not self.retry:
                    self.ended_by = f"message {n}: connection lost"
                    return
                time.sleep(0.01)
                continue
            if 200 <= resp.status < 300:
                self.acked = n + 1
                by = resp.getheader("Agentd-Node")
                self.served_by[by] = self.served_by.get(by, 0) + 1
                continue
            try:
                code = json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = body[:60]
            self.refused.append((n, resp.status, code, resp.getheader("Agentd-Node")))
            if not self.retry or resp.status != 503:
                self.ended_by = f"message {n}: {resp.status} {code}"
                return
            time.sleep(0.02)
        for c in conns.values():
            c.close()


def check_streams(c, srv, writers, paths):
    """Reads every stream through srv: for each writer, a contiguous prefix 0..m-1 of what it sent
    holding everything acknowledged. Returns the list of what is wrong."""
    bad = []
    for p in paths:
        data, r = srv.read_bytes(p)
        got = parse(data) if r.status == 200 else None
        if got is None:
            bad.append(f"{p}: {r.status}, not whole messages: {data[-80:]!r}")
            continue
        for wr in (wr for wr in writers if wr.path == p):
            ns = got.get(wr.w, [])
            if ns != list(range(len(ns))):
                bad.append(f"{p}: writer {wr.w}: not a contiguous prefix without repeats: {ns[:8]}...{ns[-8:]}")
            elif not wr.acked <= len(ns) <= wr.sent:
                bad.append(f"{p}: writer {wr.w}: {len(ns)} messages, {wr.acked} acknowledged, {wr.sent} sent")
    return bad


def start_cluster(tap, c):
    """Starts the owner, then the two others, which serve at once as followers. False (and a failed
    test) when they do not."""
    c.nodes[0].start(30)
    started = []

    def start(srv):
        try:
            srv.start(8)
            started.append(srv)
        except RuntimeError as e:
            tap.diag(f"{srv.listen}: {str(e).splitlines()[0]}")
    threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in c.nodes[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    if not tap.ok(len(started) == 2, "two more nodes serve at once beside the lease holder"):
        return False
    c.start_proxy([n.url for n in c.nodes])
    return True


def round_headers(tap, c):
    """(d): /v1/nodes on each node, Agentd-Node on answers through followers and the proxy."""
    owner = c.nodes[0]
    # Each node lists from its heartbeat's read of the nodes, about once a second: a node started
    # just now shows up on the others within that.
    want = sorted(n.url for n in c.nodes)
    wait_for(lambda: all(sorted(c.node_list(n)) == want for n in c.nodes), 3)
    lists = [c.node_list(n) for n in c.nodes]
    tap.ok(all(sorted(ls) == want for ls in lists),
           "GET /v1/nodes on each node lists the three nodes (within a heartbeat's read)", repr(lists))
    tap.ok(all([u for u, e in ls.items() if e.get("owner")] == [owner.url] for ls in lists),
           "each names the first node the owner", repr(lists))
    tap.ok(all(ls.get(n.url, {}).get("self") for n, ls in zip(c.nodes, lists)),
           "each answers /v1/nodes itself (its own entry is self)", repr(lists))

    path = "/v1/stream/cluster/headers"
    r = c.nodes[1].create(path, "text/plain")
    tap.ok(r.status == 201 and node_of(r) == owner.url, "PUT through a follower: created by the owner",
           f"{r!r} Agentd-Node {node_of(r)}")
    seen = []
    for n in c.nodes:
        for method, body in (("POST", b"x;"), ("GET", None), ("HEAD", None)):
            hdrs = {"Content-Type": "text/plain"} if body else {}
            r = n.request(method, path + ("?offset=-1" if method == "GET" else ""), body, hdrs)
            seen.append((n.url, method, r.status, node_of(r)))
    # Writes go to the owner; catch-up reads (GET without live, HEAD) are each node's own.
    tap.ok(all(200 <= s < 300 and by == (owner.url if m == "POST" else u) for u, m, s, by in seen),
           "POST through every node carries Agentd-Node of the owner, GET and HEAD the node's own", repr(seen))
    proxy = http.client.HTTPConnection("127.0.0.1", int(c.proxy_url.rsplit(":", 1)[1]), timeout=10)
    ups, nodes, readers = set(), set(), set()
    for method, body in (("POST", b"y;"), ("GET", None)) * 3:
        proxy.request(method, path + ("?offset=-1" if method == "GET" else ""), body,
                      {"Content-Type": "text/plain"} if body else {})
        resp = proxy.getresponse()
        resp.read()
        ups.add(resp.getheader("X-Rrproxy-Upstream"))
        (nodes if method == "POST" else readers).add(resp.getheader("Agentd-Node"))
    proxy.close()
    tap.ok(len(ups) == 3 and nodes == {owner.url} and len(readers) == 3,
           "through the round-robin proxy: three upstreams, appends by the owner, reads by each node",
           f"{ups} {nodes} {readers}")


def start_session(tap, owner, follower, work):
    """A jsonl session created on the owner, followed live through the follower, with a run that
    sleeps. Returns (session id, run id, SSE follower)."""
    body = {"agent": "jsonl", "command": ["python3", AGENT, "--state", os.path.join(work, "agent-state")]}
    r = owner.request("POST", "/v1/sessions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    sid = json.loads(r.body)["id"] if r.status == 201 else None
    tap.ok(sid, "a jsonl session is created on the owner", repr(r))
    fol = SSEFollower(follower, f"/v1/stream/sessions/{sid}/transcript")
    fol.start()
    r = owner.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": "count 3 50; sleep 20"}).encode(),
                      {"Content-Type": "application/json"})
    run = json.loads(r.body).get("run") if r.status == 202 else None
    got = wait_for(lambda: sum(1 for e in fol.events if e.get("run") == run and e.get("type") == "message") >= 3, 15)
    tap.ok(run and got, "the follower's SSE stream shows the owner's run live (its three messages)",
           f"{r!r} {len(fol.events)} events")
    return sid, run, fol


def round_kill(tap, c, work):
    """(a) and (c): the owner killed with -9 under 32 writers and a running session."""
    owner, f1, f2 = c.nodes
    paths = [f"/v1/stream/cluster/w{s}" for s in range(STREAMS)]
    tap.ok(all(f1.create(p, "text/plain").status == 201 for p in paths + ["/v1/stream/cluster/probe"]),
           f"create {STREAMS} streams through a follower")
    sid, run, fol = start_session(tap, owner, f1, work)
    stop = threading.Event()
    writers = [Writer(c.nodes, w, paths[w % STREAMS], stop) for w in range(WRITERS)]
    for wr in writers:
        wr.start()
    tap.ok(wait_for(lambda: all(wr.acked >= 3 for wr in writers), 30),
           f"{WRITERS} writers are acknowledged through the three nodes",
           repr([(wr.acked, wr.refused[-1:]) for wr in writers]))

    owner.kill9()
    killed = time.monotonic()
    n503 = lambda: sum(1 for wr in writers for r in list(wr.refused) if r[1] == 503)  # noqa: E731
    refused_before = n503()
    writable = {}

    def probe(srv):
        while time.monotonic() - killed < 20:
            try:
                r = srv.append("/v1/stream/cluster/probe", b"probe;", "text/plain")
                if 200 <= r.status < 300:
                    writable[srv.url] = (time.monotonic() - killed, node_of(r))
                    return
            except OSError:
                pass
            time.sleep(0.05)
    probes = [threading.Thread(target=probe, args=(n,), daemon=True) for n in (f1, f2)]
    for t in probes:
        t.start()
    for t in probes:
        t.join(25)
    took = max((v[0] for v in writable.values()), default=None)
    tap.ok(len(writable) == 2 and took < WRITABLE_WITHIN,
           f"writable again through both other nodes {took if took is None else round(took, 2)} s after the "
           f"owner's kill -9 (lease {LEASE_MS} ms; bound {WRITABLE_WITHIN:.1f} s)", repr(writable))
    new_owner = c.owner(f1)
    tap.ok(new_owner in (f1, f2) and all(v[1] == new_owner.url for v in writable.values()),
           "one of them owns the lease now and serves both", f"{writable!r} owner {new_owner and new_owner.url}")

    base = [wr.acked for wr in writers]
    tap.ok(wait_for(lambda: all(wr.acked >= b + 3 for wr, b in zip(writers, base)), 30),
           "every writer is acknowledged again after the takeover")
    # A follower holds what it cannot forward while the owner is dead (it refuses connections) and
    # forwards it to the new owner: a 503 is left only for an append that was on its way to the owner
    # as it died (one per writer at most), and, on a slow machine, for one held past its time.
    after = n503() - refused_before
    tap.ok(after <= WRITERS * (2 if SLOW else 1), f"the followers held requests through the takeover: {after} "
           f"503s after the kill (before they were held: several hundred)")
    stop.set()
    for wr in writers:
        wr.join(20)
    bad = check_streams(c, f2, writers, paths)
    tap.ok(not bad, f"no acknowledged append lost, each writer's messages a contiguous prefix, none twice "
           f"({sum(wr.acked for wr in writers)} acknowledged)", "\n".join(bad))
    ok = []
    for p in paths:
        r = (f1 if p.endswith(("0", "2", "4", "6")) else f2).append(p, b"mark;", "text/plain")
        ok.append(200 <= r.status < 300)
    tap.ok(all(ok), "every stream takes an append through either surviving node", repr(ok))

    ev = wait_for(lambda: fol.completion(run), 15)
    said = ev and "node_lost" in (ev.get("code"), ev.get("status"), ev.get("reason"))
    tap.ok(said, "the run on the killed node ends with run_completed node_lost, seen through the follower",
           f"{ev!r}; {fol.events[-3:]!r}; {fol.connects} connects")
    tap.ok(fol.connects >= 2, "the follower's SSE reader reconnected from its offset after the owner's death",
           f"{fol.connects} connects")
    r = f1.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": "echo after the takeover"}).encode(),
                   {"Content-Type": "application/json"})
    run2 = json.loads(r.body).get("run") if r.status == 202 else None
    ev2 = wait_for(lambda: fol.completion(run2), 20) if run2 else None
    texts = [e.get("text") or json.dumps(e.get("content")) for e in fol.events
             if e.get("run") == run2 and e.get("type") == "message"]
    tap.ok(ev2 and ev2.get("status") == "success" and any("after the takeover" in (t or "") for t in texts),
           "the session answers its next message, sent through the follower", f"{r!r} {ev2!r} {texts!r}")
    tap.is_(node_of(r), new_owner.url if new_owner else None, "and the new owner runs it (Agentd-Node)")
    full, _ = f2.read_json(f"/v1/stream/sessions/{sid}/transcript")
    wait_for(lambda: len(fol.events) >= len(full), 5)
    fol.stop_event.set()
    tap.ok(fol.events == full, f"the follower saw each of the transcript's {len(full)} events once, in order, "
           "across the reconnect", f"{len(fol.events)} seen")
    return new_owner


def round_pause(tap, c, owner):
    """(b): the owner paused past its lease, the third node takes over, the old owner resumed."""
    other = next(n for n in c.nodes if n.alive() and n is not owner)
    paths = [f"/v1/stream/cluster/p{s}" for s in range(4)]
    tap.ok(all(owner.create(p, "text/plain").status == 201 for p in paths), "create 4 streams on the owner")
    stop = threading.Event()
    writers = [Writer([owner], w, paths[w % 4], stop, retry=False) for w in range(8)]
    for wr in writers:
        wr.start()
    tap.ok(wait_for(lambda: all(wr.acked >= 3 for wr in writers), 20), "8 writers are acknowledged by the owner")
    owner.proc.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    took = wait_for(lambda: c.owner(other) is other and time.monotonic() - paused, LEASE_MS / 1000 + 10, 0.1)
    tap.ok(took, f"the third node takes over while the owner is paused ({took or 0:.1f} s)")
    r = other.append(paths[0], b"mark;", "text/plain")
    tap.ok(200 <= r.status < 300 and node_of(r) == other.url, "and appends", repr(r))
    time.sleep(0.3)
    owner.proc.send_signal(signal.SIGCONT)
    # Resumed, the old owner either refuses its writers (they stop) or forwards them to the new one.
    tap.ok(wait_for(lambda: all(wr.ended_by or other.url in wr.served_by for wr in writers), 15),
           "the resumed node stores nothing itself: its writers are refused or served by the new owner",
           repr([(wr.ended_by, wr.served_by) for wr in writers]))
    stop.set()
    try:
        r = owner.append(paths[1], b"late;", "text/plain")
        code = (r.error_body() or {}).get("code")
    except OSError as e:  # it has exited, having lost the lease
        r, code = e, None
    tap.ok(isinstance(r, OSError) or (r.status == 503 and code in ("node_fenced", "owner_unavailable")) or
           (200 <= r.status < 300 and node_of(r) == other.url),
           "an append through the resumed node is refused (503 or no connection) or served by the new owner",
           f"{r!r} {node_of(r) if not isinstance(r, OSError) else ''}")
    try:
        rc = owner.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    tap.is_(rc, 75, "the resumed node, having lost the lease, exits with status 75")
    for wr in writers:
        wr.join(15)
    served = {by for wr in writers for by in wr.served_by}
    tap.ok(served <= {owner.url, other.url}, "every acknowledged append was stored by one of the two owners",
           repr(served))
    refused = {(wr.path, wr.w, n): (s, code, by) for wr in writers for (n, s, code, by) in wr.refused}
    bad = check_streams(c, other, writers, paths)
    for p in paths:
        data, _ = other.read_bytes(p)
        got = parse(data) or {}
        for w, ns in got.items():
            for n in ns:
                if (p, w, n) in refused:
                    bad.append(f"{p}: writer {w}'s message {n} was refused {refused[(p, w, n)]} yet is stored")
        if b"late;" in data:
            bad.append(f"{p}: the late append is stored")
    tap.ok(not bad, "one history per stream: each writer's acknowledged prefix, nothing refused stored",
           "\n".join(bad))


def readme_module():
    """tests/integ/readme.t as a module: how README examples are found and what they say they print."""
    path = os.path.join(ROOT, "tests", "integ", "readme.t")
    loader = importlib.machinery.SourceFileLoader("readme_t", path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("readme_t", loader))
    loader.exec_module(mod)
    return mod


def round_readme(tap, pg):
    """The README's commands, as written but for what a reader has and the test has not: three hosts
    (10.0.0.N:4437 become loopback ports), the database (postgres://db/agentd becomes the test's
    PostgreSQL; createdb is run against it), the binary ($AGENTD_BIN) and a data dir per node (--data,
    as each host has its own). A serve line is started and waited for (health), in order."""
    section = "Three nodes on one PostgreSQL"
    readme = readme_module()
    with open(readme.README) as f:
        found = [lines for sec, lines in readme.blocks(f.read()) if sec == section]
    if not tap.ok(found, f"README has the section {section!r} with examples"):
        return
    hosts = {f"10.0.0.{i}:4437": f"127.0.0.1:{free_port()}" for i in (1, 2, 3)}
    db_url = pg.url.rsplit("/", 1)[0] + "/agentd"

    def local(text):
        for a, b in hosts.items():
            text = text.replace(a, b)
        return text.replace("postgres://db/agentd", db_url)
    nodes = []
    try:
        for code, comments in readme.commands(found[0]):
            shown, code = code, local(code)
            words = shlex.split(code)
            if words[0] == "createdb":
                r = pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "agentd", *words[1:],
                            check=False)
                tap.ok(r.returncode == 0, f"README: {shown}", r.stdout.decode(errors="replace"))
                continue
            if words[:2] == ["agentd", "serve"]:
                args, listen, token = [], None, None
                it = iter(words[2:])
                for w in it:
                    if w == "--listen":
                        listen = next(it)
                    elif w == "--token":
                        token = next(it)
                    else:
                        args.append(w)
                srv = Server(args=args, listen=listen, token=token)
                nodes.append(srv)
                try:
                    srv.start(15)
                except RuntimeError as e:
                    tap.ok(False, f"README: {shown}", str(e))
                    return
                tap.ok(True, f"README: {shown}")
                continue
            r = subprocess.run(["bash", "-o", "pipefail", "-c", code], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
            out = r.stdout.decode(errors="replace").strip()
            tap.ok(r.returncode == 0 and '{"error":' not in out, f"README: {shown}",
                   f"exit {r.returncode}\n{out[-800:]}\n{r.stderr.decode(errors='replace')[-800:]}")
            for kind, text in readme.expectations(comments):
                tap.ok(out.startswith(text), f"README: `{shown}` prints {text!r} ...", out[-800:])
            for c in comments:
                if c.lower().startswith("agentd-node:"):
                    # The node that answers is the holder of the stream's shard: the first node under
                    # --shard-policy all, any of them under balance (the README says which it means).
                    path = code.split("/v1/stream/", 1)[1].split()[0]
                    holder = pg._run("psql", "-X", "-At", "-c", f"SELECT node FROM agentd_shards WHERE shard = "
                                     f"{shard_of(path)}", db_url, check=False).stdout.decode().strip()
                    want = local(c).split(" (")[0] if "or another" not in c else f"Agentd-Node: {holder}"
                    tap.ok(out.lower() == want.lower() == f"agentd-node: {holder}".lower(),
                           f"README: `{shown}` prints {c!r}", f"got {out!r}, the shard's holder {holder!r}")
        for srv in reversed(nodes):
            tap.check_clean_exit(srv, f"README: the node at {srv.listen} stops cleanly")
    finally:
        for srv in nodes:
            srv.kill9()


def main(tap):
    # One owner and its followers: the first node holds every shard (the checks name it).
    with test_cluster(tap, "three nodes on one PostgreSQL", nodes=3, lease_ms=LEASE_MS, args=ONE_HOLDER) as c:
        if c is None or not start_cluster(tap, c):
            return
        round_headers(tap, c)
        new_owner = round_kill(tap, c, c.nodes[0].root)
        if new_owner:
            round_pause(tap, c, new_owner)
        for n in c.nodes:
            if n.alive():
                n.proc.send_signal(signal.SIGCONT)
                tap.check_clean_exit(n, f"node {n.url} stops cleanly")
        round_readme(tap, c.pg)


run_test(main)
