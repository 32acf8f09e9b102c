#!/usr/bin/env python3
# A node's start forgets the nodes not heard of for a week (agentd_nodes.seen_ms, each node's own
# wall clock). A live node whose clock is more than that behind the starting node's looks forgotten
# too: its row must not be lost for good, least of all the lease holder's, whose --node-url and
# token hash every follower reads from it to forward.
#   - A holds the lease; paused (so that no beat of its own comes between), its row is made to say
#     what a clock eight days behind would write. B starts: A's row stays (A holds the lease), and
#     B forwards to A once A is resumed;
#   - B, paused, is made to look the same, and C starts: B's row is deleted; B resumed, its next
#     beat writes it back (C lists B again within a few seconds).
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 40000
WEEK_AND_A_DAY_MS = 8 * 24 * 3600 * 1000


def psql(pg, sql):
    r = subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", pg.url, "-c", sql],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.stdout.decode().strip()


def node(pg, port):
    # The holder keeps its row, a follower (holding nothing) loses it: A, started first, holds every shard.
    return Server(args=["--store", pg.url, "--lease-ms", str(LEASE_MS), "--node-url", f"http://127.0.0.1:{port}",
                        *ONE_HOLDER], listen=f"127.0.0.1:{port}")


def nodes_of(srv):
    r = srv.request("GET", "/v1/nodes")
    return {n["node"]: n for n in r.json()["nodes"]} if r.status == 200 else {}


def main(tap):
    if REF:
        tap.skip("PostgreSQL nodes", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb, pc = free_port(), free_port(), free_port()
    a, b, c = node(pg, pa), node(pg, pb), node(pg, pc)
    try:
        a.start()
        tap.is_(a.create("/v1/stream/forget/s", "text/plain", b"x;").status, 201, "a stream created on A, the owner")
        a.proc.send_signal(signal.SIGSTOP)
        psql(pg, f"UPDATE agentd_nodes SET seen_ms = seen_ms - {WEEK_AND_A_DAY_MS}")
        b.start(timeout=60)
        a.proc.send_signal(signal.SIGCONT)
        rows = psql(pg, "SELECT count(*) FROM agentd_nodes n WHERE n.node IN (SELECT node FROM agentd_shards)")
        tap.is_(rows, "1", "a node's start keeps the shards' holder's row, however old it says it is")
        r = b.append("/v1/stream/forget/s", b"y;", "text/plain")
        tap.ok(200 <= r.status < 300, "the follower B forwards an append to A", f"{r.status} {r.body[:200]!r}")

        b.proc.send_signal(signal.SIGSTOP)
        psql(pg, f"UPDATE agentd_nodes SET seen_ms = seen_ms - {WEEK_AND_A_DAY_MS} WHERE node = 'http://127.0.0.1:{pb}'")
        c.start(timeout=60)
        gone = psql(pg, f"SELECT count(*) FROM agentd_nodes WHERE node = 'http://127.0.0.1:{pb}'")
        b.proc.send_signal(signal.SIGCONT)
        tap.is_(gone, "0", "a follower's row that says it was not heard of for a week is deleted at a node's start")
        t0 = time.monotonic()
        back = wait_for(lambda: f"http://127.0.0.1:{pb}" in nodes_of(c), 5)
        tap.ok(back, f"a live follower's row deleted at another node's start is written back by its next beat "
               f"({time.monotonic() - t0:.1f} s)", repr(sorted(nodes_of(c))))
        tap.check_clean_exit(c, "C stops cleanly")
        tap.check_clean_exit(b, "B stops cleanly")
        tap.check_clean_exit(a, "A stops cleanly")
    finally:
        for s in (c, b, a):
            s.stop()
        pg.cleanup()


if __name__ == "__main__":
    run_test(main)
