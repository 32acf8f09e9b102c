#!/usr/bin/env python3
# A lone node with --shard-policy balance answers its first requests: it takes every free shard its
# share allows in one beat, so requests for shards it holds no row of yet are held a beat, not
# refused with 503 owner_unavailable after the hold (lease left + 1 s) while it takes 4 a beat.
#   - just started (its /v1/health answers), it creates 32 streams in 32 shards, all at once: 201;
#   - killed with -9 (holding all 64) and a new node (another --node-url, so another node id)
#     started on the same database: once it has read the rows, its first appends to the 32
#     streams, all at once, are 200/204 (held until the dead node's rows expire, then served), none
#     503;
#   - each node holds all 64 shards within a second of its start.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test, wait_for  # noqa: E402
from cluster import pg_node, psql, shard_of, stop_nodes  # noqa: E402
from pg import Postgres, bin_dir, free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
STREAMS = 32


def paths_in_distinct_shards():
    """32 stream paths, each in a shard of its own."""
    out, seen, i = [], set(), 0
    while len(out) < STREAMS:
        p = f"/v1/stream/start/s{i}"
        if shard_of(p) not in seen:
            seen.add(shard_of(p))
            out.append(p)
        i += 1
    return out


def all_at_once(fn, paths):
    """fn(path) for every path, each in a thread of its own, started together: {path: status}."""
    got = {}

    def one(p):
        try:
            got[p] = fn(p).status
        except OSError as e:
            got[p] = repr(e)

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return got


def dead_holds(srv, url):
    """GET /v1/nodes on srv lists node url with all 64 shards."""
    try:
        r = srv.request("GET", "/v1/nodes", timeout=3)
        listed = json.loads(r.body)["nodes"] if r.status == 200 else []
    except (OSError, ValueError):
        return False
    return any(n["node"] == url and n.get("shards") == SHARDS for n in listed)


def holds_all(pg, url):
    rc, out = psql(pg, f"SELECT count(*) FROM agentd_shards WHERE node = '{url}' AND expires_at > clock_timestamp()")
    return rc == 0 and out == str(SHARDS)


def main(tap):
    why = "the reference server has no --store" if REF else None
    try:
        bin_dir()
    except RuntimeError as e:
        why = why or str(e)
    if why:
        tap.skip("--shard-policy balance", why)
        return
    pg = Postgres()
    pg.start()
    nodes = [pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"]) for _ in range(2)]
    try:
        paths = paths_in_distinct_shards()
        a = nodes[0]
        a.start(30)
        t0 = time.monotonic()
        made = all_at_once(lambda p: a.create(p, "text/plain"), paths)
        tap.ok(all(v == 201 for v in made.values()), f"a lone node just started creates {STREAMS} streams in "
               f"{STREAMS} shards, all at once: 201", repr({p: v for p, v in made.items() if v != 201}))
        tap.ok(wait_for(lambda: holds_all(pg, a.url), 1 - (time.monotonic() - t0)),
               f"it holds all {SHARDS} shards within 1 s of answering")
        wait_for(lambda: holds_all(pg, a.url), 5)  # the next round needs a predecessor holding all 64
        a.kill9()
        b = nodes[1]
        b.start(30)
        # Once the new node has read the rows (its /v1/nodes lists the dead node's 64): a request
        # that comes before that is held only 1 s, as no live holder is known yet (the router's
        # hold, not the take policy; see the report).
        tap.ok(wait_for(lambda: dead_holds(b, a.url), 2), "the new node sees the dead node's rows")
        t0 = time.monotonic()
        sent = all_at_once(lambda p: b.append(p, b"x", "text/plain"), paths)
        took = time.monotonic() - t0
        tap.ok(all(v in (200, 204) for v in sent.values()), f"killed -9 and a new node started: its first appends "
               f"to the {STREAMS} streams, all at once, are acknowledged ({took:.2f} s)",
               repr({p: v for p, v in sent.items() if v not in (200, 204)}))
        tap.ok(wait_for(lambda: holds_all(pg, b.url), 1), f"the new node holds all {SHARDS} shards a second later")
        tap.check_clean_exit(b, "the new node stops cleanly")
    finally:
        stop_nodes(tap, pg, nodes)


run_test(main)
