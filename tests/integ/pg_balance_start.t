#!/usr/bin/env python3
# A lone node with --shard-policy balance answers its first requests: it takes every free shard its
# share allows in one beat, so a request for a shard it holds no row of yet is held a beat, not
# refused with 503 owner_unavailable when the hold (1 s with no live holder) ends while the node
# still takes 4 shards a beat (1.6 s for 64).
#   - just started (its /v1/health answers), with no request, it holds all 64 within 1 s (4 a beat:
#     1.8 s); then it creates a stream in each of the 64 shards, all at once: every one 201, and an
#     append to each, all at once: every one 204;
#   - killed with -9, a new node (another node id) holds all 64 within lease + 1 s of answering (the
#     dead node's rows expire after the lease; 4 a beat took lease + 1.6 s);
#   - killed with -9 again, the next node's first appends, sent to every shard at once as soon as it
#     answers, are all acknowledged: each is held until the node has taken and loaded its shard.
# Skipped only when PostgreSQL's binaries are missing.
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import pg_main, pg_node, psql, shard_of  # noqa: E402
from pg import free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64


def path_per_shard():
    """A stream path in each of the 64 shards."""
    out = {}
    i = 0
    while len(out) < SHARDS:
        out.setdefault(shard_of(f"start/s{i}"), f"/v1/stream/start/s{i}")  # the key: the stream path
        i += 1
    return list(out.values())


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


def holds_all(pg, url):
    rc, out = psql(pg, f"SELECT count(*) FROM agentd_shards WHERE node = '{url}' AND expires_at > clock_timestamp()")
    return rc == 0 and out == str(SHARDS)


def main(tap):
    with pg_main(tap, "--shard-policy balance") as (pg, nodes):
        if not pg:
            return
        a = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        nodes.append(a)
        paths = path_per_shard()
        a.start(30)
        # No request first: a want wakes the heartbeat, which hides the ramp.
        t0 = time.monotonic()
        tap.ok(wait_for(lambda: holds_all(pg, a.url), 1), f"a lone node just started holds all {SHARDS} shards "
               f"within 1 s of answering (4 a beat took 1.8 s)", f"{time.monotonic() - t0:.2f} s")
        made = all_at_once(lambda p: a.create(p, "text/plain"), paths)
        tap.ok(all(v == 201 for v in made.values()), f"it creates a stream in each of the {SHARDS} shards, all at "
               "once: 201", repr({p: v for p, v in made.items() if v != 201}))
        sent = all_at_once(lambda p: a.append(p, b"x", "text/plain"), paths)
        tap.ok(all(v in (200, 204) for v in sent.values()), "and appends to each, all at once: acknowledged",
               repr({p: v for p, v in sent.items() if v not in (200, 204)}))
        a.kill9()
        a = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])  # another node id
        nodes.append(a)
        a.start(30)
        t0 = time.monotonic()
        tap.ok(wait_for(lambda: holds_all(pg, a.url), LEASE_MS / 1000 + 1),
               f"killed -9, a new node holds all {SHARDS} within lease + 1 s of answering (4 a beat: lease + 1.6 s)",
               f"{time.monotonic() - t0:.2f} s")
        # Requests sent as soon as a new node answers, before its heartbeat has read the shard rows
        # (no holder known yet), are held until it has taken and loaded their shards (the dead
        # node's lease left + 1 s), not for the 1 s a view with no holder gave them (9-32 of 64 503).
        a.kill9()
        a = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        nodes.append(a)
        a.start(30)
        t0 = time.monotonic()
        sent = all_at_once(lambda p: a.append(p, b"y", "text/plain"), paths)
        tap.ok(all(v in (200, 204) for v in sent.values()), f"killed -9 again, a new node's first appends to the "
               f"{SHARDS} streams, all at once as it starts, are acknowledged ({time.monotonic() - t0:.2f} s)",
               repr({p: v for p, v in sent.items() if v not in (200, 204)}))
        tap.check_clean_exit(a, "the node stops cleanly")


run_test(main)
