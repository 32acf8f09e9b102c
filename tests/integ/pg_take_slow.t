#!/usr/bin/env python3
# A request held for a shard its balance node has taken and still loads waits for the load, however
# long (up to --io-timeout), not for its own lease's time left (doc/ARCHITECTURE.md "Several nodes
# on one database", serve_hold): A and B share the shards; agentd_records is locked (the load of a
# stream's row reads its tail there) and B killed -9; A takes B's shards, whose load waits for the
# lock. An append to a stream of B's shards sent to A is still held 4 s later (before: answered 503
# "this node is taking over the write lease" after about 2 s, the lease left plus a second), and is
# acknowledged once the lock goes.
# Skipped only when PostgreSQL's binaries are missing.
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import balance_nodes, held, shard_of  # noqa: E402
from pg import Locker  # noqa: E402

LEASE_MS = 1000
SHARDS = 64


def main(tap):
    with balance_nodes(tap, "a request held through a slow load", nodes=2, lease_ms=LEASE_MS) as (pg, ns):
        if ns is None:
            return
        a, b = ns
        tap.ok(wait_for(lambda: len(held(pg, a.url)) + len(held(pg, b.url)) == SHARDS and held(pg, b.url), 10),
               "A and B share the shards")
        theirs = set(held(pg, b.url))
        path = next(p for p in (f"/v1/stream/slow/s{i}" for i in range(10000)) if shard_of(p[11:]) in theirs)
        tap.ok(a.create(path, "text/plain", b"b;").status == 201, "a stream in B's shards")
        out = {}

        def append():
            t0 = time.monotonic()
            try:
                out["r"] = a.request("POST", path, b"more;", {"Content-Type": "text/plain"}, timeout=30)
            except Exception as e:  # noqa: BLE001 — reported below
                out["r"] = e
            out["t"] = round(time.monotonic() - t0, 2)

        lock = Locker(pg)
        try:
            b.proc.kill()
            b.proc.wait()
            tap.ok(wait_for(lambda: len(held(pg, a.url)) == SHARDS, 10), "A takes B's shards")
            time.sleep(0.3)  # their load waits for the lock
            t = threading.Thread(target=append, daemon=True)
            t.start()
            time.sleep(4)
            tap.ok("r" not in out, "an append to B's stream sent to A is still held 4 s later", repr(out))
        finally:
            lock.release()
        t.join(30)
        r = out.get("r")
        tap.ok(getattr(r, "status", None) == 204, "once the lock goes it is acknowledged", repr(out))
        data, _ = a.read_bytes(path)
        tap.is_(data, b"b;more;", "A serves B's stream whole")


run_test(main)
