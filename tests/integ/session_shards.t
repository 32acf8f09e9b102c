#!/usr/bin/env python3
"""Sessions by shard (doc/SHARDING-PLAN.md §3), on SQLite with the test-only --shards 8: new
sessions spread over the shards (a session's shard is the hash of its id); a child and a fork land
in their parent's shard; a restart brings every session back; the public `sessions` feed,
materialized by key, lists every session exactly once. And the upgrade: a data dir written with one
shard (today's format: one registry, __agentd/sessions) opened with 8 keeps every session, its
transcript and its runs, across a second restart too (the old registry was copied into the shards'
registries, then deleted)."""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test, wait_for  # noqa: E402

AGENT = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agents", "jsonl_agent.py")]
N = 8


def shard_of(sid, n=N):
    """store_shard_of("sessions/<id>/...", n): FNV-1a 64 of the id, mod n."""
    h = 0xcbf29ce484222325
    for b in sid.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % n


def main(tap):
    def api(srv, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        return r.status, (json.loads(r.body) if r.body else None)

    def listed(srv):
        st, doc = api(srv, "GET", "/v1/sessions")
        return {s["id"]: s for s in doc["sessions"]} if st == 200 else None

    def feed(srv):
        """The `sessions` feed materialized by key: {id: last value} for the keys not deleted, and
        how many keys it names in all."""
        msgs, _ = srv.read_json("/v1/stream/sessions")
        state = {}
        for m in msgs:
            if m["headers"]["operation"] == "delete":
                state.pop(m["key"], None)
            else:
                state[m["key"]] = m["value"]
        return state

    def transcript(srv, sid):
        return srv.read_json(f"/v1/stream/sessions/{sid}/transcript")[0]

    # ---- spread, children and forks ----
    srv = Server(args=["--shards", str(N)])
    srv.start()
    ids = []
    for i in range(2 * N):
        st, doc = api(srv, "POST", "/v1/sessions", {"agent": "none", "tags": [f"s{i}"]})
        if st != 201:
            tap.bail(f"create {i}: {st} {doc}")
        ids.append(doc["id"])
    per = [0] * N
    for sid in ids:
        per[shard_of(sid)] += 1
    tap.is_(per, [2] * N, "16 sessions land 2 in each of the 8 shards (each goes to the emptiest)")

    parent = ids[3]
    st, child = api(srv, "POST", f"/v1/sessions/{parent}/children", {"agent": "none"})
    tap.is_(st, 201, "a child created")
    tap.is_(shard_of(child["id"]), shard_of(parent), "the child's id is in its parent's shard")
    st, jp = api(srv, "POST", "/v1/sessions", {"agent": "jsonl", "command": AGENT})
    st, run = api(srv, "POST", f"/v1/sessions/{jp['id']}/messages", {"text": "echo hello"})
    tap.ok(wait_for(lambda: any(e["type"] == "run_completed" for e in transcript(srv, jp["id"])), 10),
           "a jsonl session ran a message")
    st, fork = api(srv, "POST", f"/v1/sessions/{jp['id']}/fork", {})
    tap.is_(st, 201, "its fork created")
    tap.is_(shard_of(fork["id"]), shard_of(jp["id"]), "the fork's id is in its parent's shard")
    ftr = transcript(srv, fork["id"])
    tap.ok(any(e["type"] == "run_completed" for e in ftr), "the fork reads its parent's history")
    st, gone = api(srv, "DELETE", f"/v1/sessions/{ids[5]}")
    tap.ok(st in (200, 204), f"a session deleted ({st})")

    before = listed(srv)
    tap.is_(len(before), 2 * N + 2, "GET /v1/sessions lists the 18 sessions left")
    f = feed(srv)
    tap.is_(sorted(f), sorted(before), "the feed, materialized by key, lists exactly the sessions GET lists")
    msgs, _ = srv.read_json("/v1/stream/sessions")
    inserts = {}
    for m in msgs:
        if m["headers"]["operation"] == "insert":
            inserts[m["key"]] = inserts.get(m["key"], 0) + 1
    tap.ok(all(v == 1 for v in inserts.values()) and len(inserts) == 2 * N + 3,
           "each session was inserted into the feed once", inserts)

    # ---- restart ----
    srv.stop()
    srv.start()
    after = listed(srv)
    tap.is_(sorted(after), sorted(before), "after a restart every session is back, and only those")
    tap.ok(all(after[k]["tags"] == before[k]["tags"] and after[k]["parent"] == before[k]["parent"] for k in after),
           "with their tags and parents")
    tap.is_(sorted(feed(srv)), sorted(before), "the feed still lists each of them once")
    st, doc = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    tap.is_(st, 201, "a session created after the restart")
    tap.is_(sorted(feed(srv)), sorted(list(before) + [doc["id"]]),
            "the feed takes it (the shards' relay continues its sequence after a restart)")
    st, run = api(srv, "POST", f"/v1/sessions/{jp['id']}/messages", {"text": "echo again"})
    tap.ok(wait_for(lambda: sum(e["type"] == "run_completed" for e in transcript(srv, jp["id"])) >= 2, 10),
           "the jsonl session runs again after the restart")
    tap.check_clean_exit(srv)

    # ---- upgrade: one shard (today's data dir) to eight ----
    # AGENTD_OLD_BIN: write the data dir with another binary (today's main, say); the default is this
    # one with its default single shard, whose registry is the format main writes.
    old = Server()
    if os.environ.get("AGENTD_OLD_BIN"):
        old.command = lambda: [os.environ["AGENTD_OLD_BIN"], "serve", "--listen", old.listen, "--data",
                               old.data_dir, "--long-poll-timeout", str(old.long_poll_timeout)]
    old.start()
    up = []
    for i in range(6):
        st, doc = api(old, "POST", "/v1/sessions", {"agent": "none", "tags": [f"u{i}"]})
        up.append(doc["id"])
    st, uj = api(old, "POST", "/v1/sessions", {"agent": "jsonl", "command": AGENT})
    api(old, "POST", f"/v1/sessions/{uj['id']}/messages", {"text": "echo before"})
    wait_for(lambda: any(e["type"] == "run_completed" for e in transcript(old, uj["id"])), 10)
    st, _ = api(old, "DELETE", f"/v1/sessions/{up[0]}")
    st, uc = api(old, "POST", f"/v1/sessions/{up[1]}/children", {"agent": "none"})
    want = listed(old)
    old_tr = transcript(old, uj["id"])
    old.stop()

    new = Server(args=["--shards", str(N)], data_dir=old.data_dir)
    new.start()
    got = listed(new)
    tap.is_(sorted(got), sorted(want), "a data dir written with one shard, opened with 8: every session is there")
    tap.ok(up[0] not in got, "and a session deleted before the upgrade stays deleted")
    tap.is_(transcript(new, uj["id"])[:len(old_tr)], old_tr, "a session's transcript is intact")
    tap.is_(got[uj["id"]]["status"], "idle", "its run ended as before")
    tap.ok(got[uc["id"]]["parent"] == up[1], "a child keeps its parent")
    st, nd = api(new, "POST", "/v1/sessions", {"agent": "none"})
    tap.is_(st, 201, "a session created after the upgrade")
    st, _ = api(new, "DELETE", f"/v1/sessions/{up[3]}")
    api(new, "POST", f"/v1/sessions/{uj['id']}/messages", {"text": "echo after"})
    tap.ok(wait_for(lambda: sum(e["type"] == "run_completed" for e in transcript(new, uj["id"])) >= 2, 10),
           "an upgraded jsonl session runs a message")
    new.stop()
    db = sqlite3.connect(f"file:{os.path.join(new.data_dir, 'agentd.db')}?mode=ro", uri=True)
    regs = sorted(r[0] for r in db.execute("SELECT path FROM streams WHERE deleted = 0 AND path LIKE '__agentd/sessions%'"))
    db.close()
    tap.ok("__agentd/sessions" not in regs and {f"__agentd/sessions/{shard_of(k)}" for k in want} <= set(regs),
           "the old single registry was deleted once copied; each shard with sessions has its own", regs)
    new.start()
    again = listed(new)
    expect = sorted([k for k in want if k != up[3]] + [nd["id"]])
    tap.is_(sorted(again), expect,
            "after a second restart: the upgraded sessions (copied into the shards' registries), the new one, "
            "without the one deleted since")
    tap.is_(sorted(feed(new)), expect, "the feed lists the same sessions")
    tap.check_clean_exit(new)


run_test(main)
