#!/usr/bin/env python3
# A node answers a request another node forwarded to it for a shard it does not hold with 503 and
# Agentd-Not-Owner: <shard>, before doing anything with it; the node that forwarded it takes that
# answer as it takes a refused connect: it holds the request and routes it again once the shard's
# holder changes, and the client never sees the Not-Owner answer (doc/SHARDING-PLAN.md §2.1).
# Node A holds every shard, but its --node-url names node C's address (a stale view would do the
# same: the node forwarded to does not hold the shard). C, asked directly with a forwarded mark,
# refuses at once, naming the shard, and creates nothing. B forwards to A's --node-url, which is C:
# it holds the request (the answer comes after the lease's time left plus a second, a 503 of B's own,
# not C's), and when A stops, B's held request is served by the next holder: created once, 201.
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402
from cluster import ONE_HOLDER, pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 2000
SHARDS = 64


def shard_of(path):
    """store_shard_of for a plain path: FNV-1a 64 of the path, mod the shards."""
    h = 0xcbf29ce484222325
    for c in path.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % SHARDS


def main(tap):
    if REF:
        tap.skip("a request forwarded to a node that does not hold its shard", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb, pc = free_port(), free_port(), free_port()
    # A's --node-url leads to C's address, under a name of its own (a node's name is its --node-url)
    # A holds every shard (under balance B, started right after, could take the held path's shard)
    a = Server(args=["--store", pg.url, "--lease-ms", str(LEASE_MS), "--node-url", f"http://127.0.0.1:{pc}/a",
                     *ONE_HOLDER], listen=f"127.0.0.1:{pa}")
    b = pg_node(pg, LEASE_MS, pb, args=ONE_HOLDER)
    c = pg_node(pg, LEASE_MS, pc, args=ONE_HOLDER)
    try:
        a.start()
        b.start()
        c.start()
        forged = "not-owner/forged"
        r = c.request("PUT", f"/v1/stream/{forged}", None,
                      {"Content-Type": "text/plain", "Agentd-Forwarded-By": "http://elsewhere.test"})
        tap.is_((r.status, (r.error_body() or {}).get("code"), r.header("Agentd-Not-Owner")),
                (503, "owner_unavailable", str(shard_of(forged))),
                "a forwarded request to a node that does not hold its shard: 503, Agentd-Not-Owner names the shard")
        tap.is_(a.request("HEAD", f"/v1/stream/{forged}").status, 404, "... and nothing was done with it")

        # B forwards to C (A's --node-url): C answers Not-Owner, B holds the request.
        path = "/v1/stream/not-owner/held"
        t0 = time.monotonic()
        r = b.request("PUT", path, None, {"Content-Type": "text/plain"}, timeout=20)
        took = time.monotonic() - t0
        tap.is_((r.status, (r.error_body() or {}).get("code")), (503, "owner_unavailable"),
                "no node that holds the shard at the address forwarded to: 503 owner_unavailable")
        tap.ok(r.header("Agentd-Not-Owner") is None and r.header("Agentd-Node") == b.url,
               "answered by B itself: C's Not-Owner answer never reaches the client",
               f"{r.header('Agentd-Node')} {r.header('Agentd-Not-Owner')}")
        tap.ok(0.5 < took < LEASE_MS / 1000 + 2.5,
               f"after B held it for the lease's time left and a second ({took:.1f} s), not at once")
        tap.is_(a.request("HEAD", path).status, 404, "nothing was created meanwhile")

        # Held again, and A stops meanwhile: the next holder serves it.
        got = {}

        def put():
            got["r"] = b.request("PUT", path, None, {"Content-Type": "text/plain"}, timeout=20)
        th = threading.Thread(target=put)
        th.start()
        time.sleep(0.5)
        tap.ok(th.is_alive(), "B holds the request while C refuses it")
        tap.check_clean_exit(a, "A stops cleanly")
        th.join(20)
        r = got.get("r")
        tap.is_(r and r.status, 201, "A stops: the held request is created by the next holder, once")
        tap.is_(b.request("HEAD", path).status, 200, "and the stream is there")
        tap.check_clean_exit(b, "B stops cleanly (under ASan: no report of the answers it set aside)")
        tap.check_clean_exit(c, "C stops cleanly")
    finally:
        stop_nodes(tap, pg, [a, b, c])


run_test(main)
