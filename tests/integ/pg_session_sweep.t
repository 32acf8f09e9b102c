#!/usr/bin/env python3
# The orphan-directory sweep with --shard-policy balance (session_shard.c, sessions_load_shard): a
# node removes DATA/workspaces/<id> and DATA/homes/<id> of ids no session has, but only of the
# shards it loads (it knows every session of those: one owner per shard), never of another's.
#   - A and B on one PostgreSQL; session S placed on A (its workspace in A's data);
#   - B stopped; in B's data: one orphan id per shard (workspace and home), and a workspace named
#     like S's (a session another node owns, as after a hand-off moved it);
#   - B started again: the orphans of the shards B holds are removed, those of A's shards stay,
#     S's directory in B's data stays, S's workspace in A's data stays and S answers.
# Before: the sweep ran only once one process had loaded every shard, never under balance.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import secrets
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import balance_nodes, shard_of  # noqa: E402
from sessions_nodes import held_live as held, live_on  # noqa: E402

LEASE_MS = 1000
SHARDS = 64


def orphan_ids():
    """One 24-hex id per shard."""
    out = {}
    while len(out) < SHARDS:
        i = secrets.token_hex(12)
        out.setdefault(shard_of(i), i)  # a session's shard is its id's
    return out


def main(tap):
    with balance_nodes(tap, "the orphan sweep with balance", nodes=2, lease_ms=LEASE_MS) as (pg, nodes):
        if nodes:
            swept(tap, pg, nodes)


def swept(tap, pg, nodes):
    a, b = nodes
    tap.ok(wait_for(lambda: len(held(pg, a.url)) + len(held(pg, b.url)) == SHARDS and held(pg, b.url), 15),
           "they hold the 64 shards between them")
    # Placement reads the nodes' list (the heartbeat's copy, about once a second)
    tap.ok(wait_for(lambda: live_on(b, a.url), 10), "B lists A live")
    r = b.request("POST", "/v1/sessions", json.dumps({"agent": "none", "node": a.url}).encode(),
                  {"Content-Type": "application/json"})
    sid = json.loads(r.body)["id"] if r.status == 201 else None
    if not tap.ok(sid and r.header("Agentd-Node") == a.url, "session S placed on A", repr(r)):
        return
    ws_a = os.path.join(a.data_dir, "workspaces", sid)
    tap.ok(os.path.isdir(ws_a), "its workspace is in A's data")

    tap.is_(b.stop(), 0, "B stops")
    orphans = orphan_ids()
    for k, i in orphans.items():
        for kind in ("workspaces", "homes"):
            os.makedirs(os.path.join(b.data_dir, kind, i))
    foreign = os.path.join(b.data_dir, "workspaces", sid)
    os.makedirs(foreign)
    with open(os.path.join(foreign, "keep"), "w") as f:
        f.write("S's, owned by A\n")
    b.start(30)
    gone = lambda i: not any(os.path.exists(os.path.join(b.data_dir, kind, i))  # noqa: E731
                             for kind in ("workspaces", "homes"))
    # B holds shards again (free ones, or the hand-off's); each it loads is swept.
    tap.ok(wait_for(lambda: held(pg, b.url) and all(gone(orphans[k]) for k in held(pg, b.url)), 30),
           "B holds shards again, and the orphans of each of them are removed (workspace and home)",
           f"B holds {sorted(held(pg, b.url))}; left: "
           f"{[k for k in held(pg, b.url) if not gone(orphans[k])]}")
    before = held(pg, a.url)
    kept = [k for k in before if os.path.isdir(os.path.join(b.data_dir, "workspaces", orphans[k]))
            and os.path.isdir(os.path.join(b.data_dir, "homes", orphans[k]))]
    both = before & held(pg, a.url)  # A's throughout the look
    tap.ok(both and all(k in kept for k in both),
           f"those of the {len(both)} shards A holds stay in B's data (B does not know their sessions)",
           f"A {sorted(both)}, kept {sorted(kept)}")
    tap.ok(os.path.isfile(os.path.join(foreign, "keep")),
           "a workspace in B's data named by A's session S stays")
    tap.ok(os.path.isdir(ws_a), "S's workspace in A's data stays")
    tap.is_(b.request("GET", f"/v1/sessions/{sid}").status, 200, "S answers through B")
    for n in nodes:
        tap.check_clean_exit(n, f"{n.url} stops cleanly")


run_test(main)
