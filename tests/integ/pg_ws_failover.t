#!/usr/bin/env python3
# A session's WebSocket opened through a follower is tunnelled to the owner (h2o's proxy). When the
# owner is paused (SIGSTOP: no FIN, no RST) past its lease and the follower takes the lease over,
# the tunnel to the paused node ends at once, as forwarded requests do (http_upstream_drop), so the
# client reconnects and reaches the new owner. Before, the tunnel had no request left for the drop
# to find: it stayed open and silent until its timeout (the longest long-poll or SSE period plus
# --io-timeout: 90 s by default).
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import OP_TEXT, REF, TIMEOUT, WS, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER, pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 1000
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")


def main(tap):
    if REF:
        tap.skip("a WebSocket through a follower across a takeover", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb = free_port(), free_port()
    # The WebSocket through the follower B reaches the owner A: A, started first, holds every shard.
    a, b = pg_node(pg, LEASE_MS, pa, args=ONE_HOLDER), pg_node(pg, LEASE_MS, pb, args=ONE_HOLDER)
    try:
        a.start()
        b.start()
        r = b.request("POST", "/v1/sessions", json.dumps({"agent": "none"}).encode(),
                      {"Content-Type": "application/json"})
        tap.is_(r.status, 201, "a session created through the follower")
        sid = json.loads(r.body)["id"]
        ws = WS(b.host, b.port, f"/v1/sessions/{sid}/ws")
        tap.is_((ws.status, ws.headers.get("agentd-node")), (101, a.url),
                "its WebSocket through the follower is the owner's")
        first = ws.recv(10)
        tap.ok(first not in (None, TIMEOUT) and first[0] == OP_TEXT, "and sends the transcript", repr(first))
        a.proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        took = wait_for(lambda: (b.request("GET", "/v1/nodes", timeout=2).status == 200 and any(
            n.get("self") and n.get("owner") for n in json.loads(b.request("GET", "/v1/nodes").body)["nodes"])), 10)
        took_s = time.monotonic() - paused
        tap.ok(took, f"the follower takes the lease over from the paused owner ({took_s:.1f} s)")
        ended, waited = "open", time.monotonic()
        while ended == "open" and time.monotonic() - waited < 5:
            m = ws.recv(max(0.1, 5 - (time.monotonic() - waited)))
            if m is None:  # messages the owner sent before its pause may still come first
                ended = "ended"
        gone = time.monotonic() - paused
        tap.ok(ended == "ended", f"the tunnel to the paused owner ends at the takeover ({gone:.1f} s after the "
               f"pause, {time.monotonic() - waited:.1f} s after the takeover)", ended)
        ws.shut()
        ws2 = WS(b.host, b.port, f"/v1/sessions/{sid}/ws")
        tap.is_((ws2.status, ws2.headers.get("agentd-node")), (101, b.url),
                "reconnected, the WebSocket is the new owner's")
        ws2.shut()
        a.proc.send_signal(signal.SIGCONT)
        tap.is_(a.proc.wait(15), 75, "the resumed old owner exits 75 (lost the lease)")
        tap.check_clean_exit(b, "the new owner stops cleanly")
    finally:
        stop_nodes(tap, pg, (a, b))


run_test(main)
