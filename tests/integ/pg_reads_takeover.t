#!/usr/bin/env python3
# A follower's catch-up reads in flight when it takes the write lease over (doc/ARCHITECTURE.md
# "Followers answer catch-up reads"). A psql session locks agentd_records, the follower takes two
# reads (a plain stream, and one with a TTL, whose read it hands to the owner from the read's
# completion), the owner is killed (-9) and the follower takes the lease over while both wait (its
# loading waits for the lock too). Once the lock goes, both answer at once, from the new owner: the
# plain one from the read's snapshot, the TTL one from the node's own routes. Before, the TTL one was
# held like a request arriving while no node holds the lease, until the lease's time left plus a
# second (here about 3 s; 6 s with the default --lease-ms). Then the new owner takes an append and
# reads it back (its reads share the reader connections the follower's used), and stops cleanly.
# Skipped only when PostgreSQL's binaries are missing.
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER, held, shard_of, test_cluster  # noqa: E402
from pg import Locker  # noqa: E402

LEASE_MS = 2000


def owner_paths(c, owner):
    """A TTL stream's path and a plain one's in shards the owner holds: every shard under
    --shard-policy all (ONE_HOLDER); under balance (a wrapper that adds it after) its share once the
    nodes have split them (a stream in the follower's shards would be the follower's own to serve)."""
    def split():
        mine = held(c.pg, owner.url)
        return mine and (len(mine) == 64 or held(c.pg, c.nodes[1].url))
    if not wait_for(lambda: len(held(c.pg, owner.url)) == 64, 0.2):
        wait_for(split, 10)
        time.sleep(0.5)  # the follower's view of the rows (it reads them every 100 ms) catches up
    shards = set(held(c.pg, owner.url))
    ttl = next(p for p in (f"/v1/stream/takeover/ttl{i}" for i in range(5000)) if shard_of(p[11:]) in shards)
    bin_ = next(p for p in (f"/v1/stream/takeover/bin{i}" for i in range(5000)) if shard_of(p[11:]) in shards)
    return ttl, bin_


def timed(srv, path):
    r = srv.request("GET", path + "?offset=-1", timeout=30)
    return r.status, r.body, r.header("Agentd-Node"), time.monotonic()


def main(tap):
    # The follower takes over every shard of the owner: the first node holds them all.
    with test_cluster(tap, "a follower's reads across its takeover", nodes=2, lease_ms=LEASE_MS,
                      args=ONE_HOLDER) as c:
        if c is None:
            return
        c.start()
        owner, follower = c.nodes
        TTL, BIN = owner_paths(c, owner)
        owner.request("PUT", TTL, b"ttl;", {"Content-Type": "text/plain", "Stream-TTL": "3600"})
        owner.create(BIN, "text/plain", b"bin;")
        lock = Locker(c.pg)
        pool = ThreadPoolExecutor(2)
        try:
            reads = [pool.submit(timed, follower, p) for p in (TTL, BIN)]
            time.sleep(0.5)
            waiting = not any(f.done() for f in reads)
            owner.proc.kill()
            owner.proc.wait()

            def took_over():  # --shard-policy all: the lease; balance: the dead owner's shards, all 64 then
                with open(follower.stderr_path, errors="replace") as f:
                    text = f.read()
                return "took over the write lease" in text or "it holds 64, its share 64" in text
            over = wait_for(took_over, 10)
            time.sleep(0.3)  # its loading is waiting for the lock now
            tap.ok(waiting and over and not any(f.done() for f in reads),
                   "the follower took the lease over while its two reads waited", follower.stderr_tail())
        finally:
            lock.release()
        released = time.monotonic()
        (ts, tb, tn, tt), (bs, bb, bn, bt) = [f.result(30) for f in reads]
        pool.shutdown()
        tap.ok((bs, bb, bn) == (200, b"bin;", follower.url) and bt - released < 3.0,
               f"the plain stream's read answers from its snapshot ({bt - released:.2f} s after the lock went)",
               repr((bs, bb, bn)))
        tap.ok((ts, tb, tn) == (200, b"ttl;", follower.url) and tt - bt < 1.0,
               f"the TTL stream's read, handed over from its completion, is served by the new owner at once "
               f"({tt - bt:.2f} s after the other)", repr((ts, tb, tn)))
        r = follower.append(BIN, b"more;", "text/plain")
        g = follower.request("GET", BIN + "?offset=-1")
        tap.ok(r.status == 204 and g.status == 200 and g.body == b"bin;more;",
               "the new owner takes an append and reads it back", repr((r, g.body)))
        tap.check_clean_exit(follower, "the new owner stops cleanly")


run_test(main)
