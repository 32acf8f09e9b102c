#!/usr/bin/env python3
# An upgrade to the default --shard-policy balance of a PostgreSQL database written with `all` (the
# default until f15c8c4): there every session is in one registry, __agentd/sessions, in shard 0,
# which only a node holding shard 0 reads. A balance node without shard 0 must still serve the
# sessions of its shards and must not take their directories for orphans (session_shard.c,
# sessions_load_shard; streams_load_side reads the single registry with the shard's load).
#   - A (--shard-policy all) makes 8 sessions, stops;
#   - in B's and C's data, a workspace and a home named by each (as if each node had run them once);
#   - B and C start (the default: balance) and share the 64 shards, C without shard 0;
#   - every session answers 200 through either node, each node's directories of them stay, and
#     GET /v1/sessions lists them all through either node;
#   - one deleted through C stays deleted when B and C start again (the per-shard registry's delete
#     is read after the single registry's record, which balance keeps).
# Before: the sessions of C's shards answered 404 and C's sweep removed their directories.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import no_pg_reason, pg_node, shard_of, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402
from sessions_nodes import held_live as held  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
KINDS = ("workspaces", "homes")


def main(tap):
    why = no_pg_reason()
    if why:
        tap.skip("an upgrade from the single registry", why)
        return
    pg = Postgres()
    pg.start()
    nodes = []
    try:
        upgrade(tap, pg, nodes)
    finally:
        stop_nodes(tap, pg, nodes)


def start_both(nodes):
    threads = [threading.Thread(target=n.start, args=(30,), daemon=True) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)


def listed(n):
    r = n.request("GET", "/v1/sessions")
    return {s["id"] for s in json.loads(r.body)["sessions"]} if r.status == 200 else set()


def upgrade(tap, pg, nodes):
    a = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "all"])
    nodes.append(a)
    a.start(30)
    ids = []
    for _ in range(8):
        r = a.request("POST", "/v1/sessions", json.dumps({"agent": "none"}).encode(),
                      {"Content-Type": "application/json"})
        if r.status == 201:
            ids.append(json.loads(r.body)["id"])
    tap.is_(len(ids), 8, "A (--shard-policy all) makes 8 sessions")
    tap.ok(all(os.path.isdir(os.path.join(a.data_dir, "workspaces", i)) for i in ids), "with workspaces")
    tap.is_(a.stop(), 0, "A stops")

    b = pg_node(pg, LEASE_MS, free_port())
    c = pg_node(pg, LEASE_MS, free_port())
    nodes += [b, c]
    for n in (b, c):
        for i in ids:
            for kind in KINDS:
                os.makedirs(os.path.join(n.data_dir, kind, i))
    start_both([b, c])
    tap.ok(b.url and c.url, "B and C start (the default policy)")
    if not (b.url and c.url):
        return
    shared = lambda: len(held(pg, b.url)) + len(held(pg, c.url)) == SHARDS  # noqa: E731
    tap.ok(wait_for(lambda: shared() and held(pg, b.url) and held(pg, c.url), 30), "they share the 64 shards")
    # loaded: each node answers for the shards it holds (the others' are forwarded)
    status = lambda n: {i: n.request("GET", f"/v1/sessions/{i}").status for i in ids}  # noqa: E731
    ok = wait_for(lambda: all(v == 200 for v in status(b).values()), 20)
    c0 = 0 in held(pg, c.url)
    tap.ok(ok, "every session answers 200 through B",
           f"{status(b)} by shard {[shard_of(i) for i in ids]}; C holds shard 0: {c0}")
    tap.ok(all(v == 200 for v in status(c).values()), "and through C", repr(status(c)))
    for n, name in ((b, "B"), (c, "C")):
        left = [i for i in ids if not all(os.path.isdir(os.path.join(n.data_dir, k, i)) for k in KINDS)]
        tap.ok(not left, f"{name}'s directories of them stay (no orphans)", f"removed: {left}")
    tap.ok(all(os.path.isdir(os.path.join(a.data_dir, "workspaces", i)) for i in ids),
           "their workspaces in A's data stay")
    for n, name in ((b, "B"), (c, "C")):
        tap.ok(wait_for(lambda: set(ids) <= listed(n), 15), f"GET /v1/sessions through {name} lists all 8",
               f"missing: {set(ids) - listed(n)}")

    gone = ids[0]
    tap.is_(c.request("DELETE", f"/v1/sessions/{gone}").status, 204, "one deleted through C")
    tap.is_(b.stop(), 0, "B stops")
    tap.is_(c.stop(), 0, "C stops")
    start_both([b, c])
    tap.ok(b.url and c.url and wait_for(shared, 30), "B and C start again and share the shards")
    tap.ok(wait_for(lambda: all(v == 200 for i, v in status(b).items() if i != gone), 20),
           "the 7 others answer 200", repr(status(b)))
    tap.is_(b.request("GET", f"/v1/sessions/{gone}").status, 404, "the deleted one stays deleted (B)")
    tap.is_(c.request("GET", f"/v1/sessions/{gone}").status, 404, "and through C")
    tap.ok(gone not in listed(b) and gone not in listed(c), "and is not listed")
    for n in (b, c):
        tap.check_clean_exit(n, f"{n.url} stops cleanly")


run_test(main)
