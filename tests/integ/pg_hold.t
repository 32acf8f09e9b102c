#!/usr/bin/env python3
# A follower holds a request through a failover (serve_hold_http.c), but not one whose client went
# away meanwhile, and not more bytes of bodies than --max-held. The owner is killed (-9) inside its
# lease; appends reach the follower: one client waits, another gives up after 0.3 s and closes its
# connection. Once the follower takes the lease over, the waiting append is served there (204), and
# the abandoned one is not done at all: its client saw no answer and would retry it, so doing it too
# would store it twice. Before, HTTP/1 did not notice the closed connection while the request
# waited (h2o does not read a connection whose request it is answering), and the takeover replayed
# it. The follower holds at most MAX_HELD bytes of bodies: a 6,000-byte append is held, a second
# one is answered 503 owner_unavailable at once (before, it was held too: up to 4,096 requests of
# --max-body each could be), and a small one that still fits is held and served.
import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test  # noqa: E402
from cluster import pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 3000
MAX_HELD = 10000
PATH = "/v1/stream/hold/s"


def give_up(srv, body, after):
    """Sends an append, waits `after` seconds for its answer, then closes the connection."""
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        PATH.encode(), len(body), body))
    s.settimeout(after)
    try:
        answer = s.recv(4096)
    except socket.timeout:
        answer = b""
    s.close()
    return answer


def main(tap):
    if REF:
        tap.skip("a held request whose client went away", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb = free_port(), free_port()
    a = pg_node(pg, LEASE_MS, pa)
    b = pg_node(pg, LEASE_MS, pb, args=["--max-held", str(MAX_HELD)])
    try:
        a.start()
        b.start()
        tap.is_(a.create(PATH, "text/plain", b"first;").status, 201, "a stream created on the owner")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        killed = time.monotonic()
        kept = {}

        def held(name, body):
            t = threading.Thread(target=lambda: kept.update({name: b.append(PATH, body, "text/plain")}))
            t.start()
            return t

        waiting = [held("kept", b"kept;")]
        tap.is_(give_up(b, b"gone;", 0.3), b"", "the follower holds an append while the lease lives on")
        big, small = b"A" * 6000, b"small;"
        waiting.append(held("big", big))
        time.sleep(0.3)  # held: its connect was refused (a loop turn), and the next try is 100s of ms away
        sent = time.monotonic()
        r = b.append(PATH, b"B" * 6000, "text/plain")
        took = time.monotonic() - sent
        tap.is_((r.status, (r.error_body() or {}).get("code"), r.header("Retry-After")),
                (503, "owner_unavailable", "1"),
                f"an append past --max-held {MAX_HELD} ({5 + 5 + 6000} bytes held) is not held: 503")
        tap.ok(took < 1.0, "at once, not at the takeover", f"{took:.2f} s")
        waiting.append(held("small", small))
        for t in waiting:
            t.join(LEASE_MS / 1000 + 15)
        after = time.monotonic() - killed
        for name in ("kept", "big", "small"):
            r = kept.get(name)
            tap.is_((r.status, r.header("Agentd-Node")) if r else None, (204, b.url),
                    f"the waiting append '{name}' is served by the follower once it took over "
                    f"({after:.1f} s after the kill)")
        r = b.request("GET", PATH + "?offset=-1")
        parts = (b"kept;", big, small)
        tap.ok(r.status == 200 and r.body.startswith(b"first;") and all(p in r.body for p in parts)
               and len(r.body) == len(b"first;") + sum(map(len, parts)),
               "the held appends are stored, the one whose client went away is not (its client would "
               "retry it), nor the one answered 503", f"{r.status} {len(r.body)} bytes {r.body[:40]!r}")
        tap.check_clean_exit(b, "the new owner stops cleanly")
    finally:
        stop_nodes(tap, pg, (a, b))


run_test(main)
