#!/usr/bin/env python3
# Sessions on several nodes (doc/SHARDING-PLAN.md §3, §7 increment 5): three nodes on one PostgreSQL
# with --shard-policy balance, each holding its share of the shards and running the sessions of
# those itself.
#   - POST /v1/sessions through any node goes where the body's "node" says (a name or URL): 6 jsonl
#     sessions spread 2/2/2, each created by the node named (Agentd-Node); an unknown node is 400;
#   - GET /v1/sessions on every node lists all 6 (shard 0's holder answers from the feed), and the
#     `sessions` feed, materialized by key, lists them, each inserted once;
#   - a session owned by node A (one that does not hold shard 0: its records reach the feed through
#     the relay over HTTP) is followed live through B; with a run on B too, GET /v1/nodes through C
#     shows the live agents of A and B; A is killed with -9: its shards are taken by
#     B and C, the run in flight ends node_lost, the next message (through B) is answered; a session
#     placed on the dead node is 503; the feed still lists the 6, each inserted once;
#   - D joins B and C (which hold all 64): a session placed on D before it holds a shard waits for
#     the hand-off's first and is created by D, in a shard D holds (before: 503 at once).
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import sys
import time
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, run_test, wait_for  # noqa: E402
from cluster import SSEFollower, balance_nodes, held, pg_node, shard_of  # noqa: E402
from sessions_nodes import feed  # noqa: E402
from pg import free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")


def node_state(srv, url):
    r = srv.request("GET", "/v1/nodes")
    return next((n.get("state") for n in json.loads(r.body)["nodes"] if n["node"] == url), None) \
        if r.status == 200 else None


def shards_by_node(srv):
    r = srv.request("GET", "/v1/nodes")
    return {n["node"]: n.get("shards") or 0 for n in json.loads(r.body)["nodes"] if n.get("state") == "live"} \
        if r.status == 200 else {}


def agents_by_node(srv):
    r = srv.request("GET", "/v1/nodes")
    return {n["node"]: n.get("agents") for n in json.loads(r.body)["nodes"]} if r.status == 200 else {}


def listed(srv):
    r = srv.request("GET", "/v1/sessions?limit=100")
    return sorted(s["id"] for s in json.loads(r.body)["sessions"]) if r.status == 200 else r


def create(via, work, node):
    body = {"agent": "jsonl", "command": ["python3", AGENT, "--state", os.path.join(work, "agent-state")]}
    if node is not None:
        body["node"] = node
    return via.request("POST", "/v1/sessions", json.dumps(body).encode(), {"Content-Type": "application/json"})


def message(srv, sid, text):
    r = srv.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": text}).encode(),
                    {"Content-Type": "application/json"})
    return r, (json.loads(r.body).get("run") if r.status == 202 else None)


def main(tap):
    with balance_nodes(tap, "sessions on several nodes", lease_ms=LEASE_MS) as (pg, nodes):
        if not pg:
            return
        work = tempfile.mkdtemp(prefix="agentd-placement-")
        spread = lambda: [len(held(pg, n.url)) for n in nodes]  # noqa: E731
        tap.ok(wait_for(lambda: sum(spread()) == SHARDS and max(spread()) - min(spread()) <= 2, 15),
               "the shards spread about 21/21/22", repr(spread()))
        by_url = {n.url: n for n in nodes}
        # Placement reads the nodes' list (the heartbeat's copy, about once a second)
        tap.ok(wait_for(lambda: all(sum(shards_by_node(n).values()) == SHARDS for n in nodes), 10),
               "each node's GET /v1/nodes shows the 64 shards held", repr([shards_by_node(n) for n in nodes]))

        # Placement: "node" names where each goes; asked through another node each time.
        sids, owner = [], {}
        for i in range(6):
            target = nodes[i % 3]
            r = create(nodes[(i + 1) % 3], work, target.url)
            sid = json.loads(r.body)["id"] if r.status == 201 else None
            tap.ok(sid and r.header("Agentd-Node") == target.url,
                   f"session {i + 1} asked through another node is created by the node named", repr(r))
            if sid:
                sids.append(sid)
                owner[sid] = target
                tap.ok(shard_of(sid) in held(pg, target.url), "  in a shard that node holds",
                       f"{sid} shard {shard_of(sid)}")
        tap.is_(sorted(sum(1 for s in sids if owner[s] is n) for n in nodes), [2, 2, 2], "6 sessions spread 2/2/2")
        r = create(nodes[0], work, "http://127.0.0.1:1")
        tap.is_(r.status, 400, "a node nobody knows is 400")
        r = create(nodes[1], work, None)
        extra = json.loads(r.body)["id"] if r.status == 201 else None
        tap.ok(extra and r.header("Agentd-Node") in by_url, "without \"node\", a live node takes it", repr(r))
        if extra:
            sids.append(extra)
            owner[extra] = by_url[r.header("Agentd-Node")]
        want = sorted(sids)
        tap.ok(all(listed(n) == want for n in nodes), f"GET /v1/sessions on each node lists all {len(want)}",
               repr([listed(n) for n in nodes]))
        f, inserts = feed(nodes[2])
        tap.ok(sorted(f) == want and all(inserts.get(s) == 1 for s in want),
               "the feed, materialized by key, lists them, each inserted once", f"{sorted(f)} {inserts}")

        # A: a node that does not hold shard 0 (its sessions' records reach the feed by the relay).
        a = next(n for n in nodes if 0 not in held(pg, n.url))
        b, c = [n for n in nodes if n is not a]
        sid = next(s for s in sids if owner[s] is a)
        fol = SSEFollower(b, f"/v1/stream/sessions/{sid}/transcript")
        fol.start()
        r, run = message(b, sid, "count 3 50; sleep 20")
        tap.ok(run and wait_for(lambda: sum(1 for e in fol.events if e.get("run") == run and e.get("type") == "message") >= 3, 15),
               "a session of A, followed live through B, shows its run (three messages)", f"{r!r} {len(fol.events)}")
        tap.is_(r.header("Agentd-Node"), a.url, "A runs it (Agentd-Node)")
        # Every node's live agents, asked of the third: GET /v1/nodes (each node's heartbeat records its
        # count). GET /v1/agents is the catalogue of agents a session can be created with, the same on
        # every node running this binary: not fanned out.
        sb = next(s for s in sids if owner[s] is b)
        rb, runb = message(c, sb, "count 1 50; sleep 4")
        tap.ok(runb and rb.header("Agentd-Node") == b.url, "a run on a session of B, asked through C", repr(rb))
        tap.ok(wait_for(lambda: (agents_by_node(c).get(a.url) or 0) >= 1 and (agents_by_node(c).get(b.url) or 0) >= 1, 10),
               "GET /v1/nodes through C shows the live agents of A and of B", repr(agents_by_node(c)))
        lost = held(pg, a.url)
        a.kill9()
        r = create(b, work, a.url)  # before the heartbeats say A is gone
        tap.ok(r.status == 503, "at once after the kill, a session placed on A is 503, not created elsewhere",
               f"{r!r} by {r.header('Agentd-Node')}; A {a.url}, B {b.url}, shard 0 {held(pg, b.url)[:1]}")
        if r.status == 201:
            want = sorted(want + [json.loads(r.body)["id"]])
        tap.ok(wait_for(lambda: not held(pg, a.url) and len(held(pg, b.url)) + len(held(pg, c.url)) == SHARDS, 15),
               f"A killed with -9: its {len(lost)} shards are taken by B and C",
               f"{len(held(pg, b.url))}+{len(held(pg, c.url))}")
        tap.ok(any(k in held(pg, b.url) for k in lost) and any(k in held(pg, c.url) for k in lost),
               "both B and C took some of them", repr(lost))
        ev = wait_for(lambda: fol.completion(run), 20)
        tap.ok(ev and "node_lost" in (ev.get("code"), ev.get("status"), ev.get("reason")),
               "the run in flight ends node_lost, seen through B", f"{ev!r} {fol.events[-3:]!r}")
        r2, run2 = message(b, sid, "echo after the kill")
        ev2 = wait_for(lambda: fol.completion(run2), 20) if run2 else None
        tap.ok(ev2 and ev2.get("status") == "success", "the next message, through B, is answered", f"{r2!r} {ev2!r}")
        tap.ok(r2.header("Agentd-Node") in (b.url, c.url), "by the node that took its shard", repr(r2))
        fol.stop_event.set()
        tap.ok(wait_for(lambda: node_state(b, a.url) == "unreachable", 15), "B sees A unreachable (GET /v1/nodes)")
        r = create(b, work, a.url)
        tap.is_(r.status, 503, "a session placed on the dead node is 503")
        if r.status == 201:
            want = sorted(want + [json.loads(r.body)["id"]])

        # D joins B and C, which hold all 64: it holds none until the hand-off gives it some. A session
        # placed on it meanwhile waits for its first shard and is created there (before: 503 at once).
        d = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        nodes.append(d)
        d.start(30)
        tap.ok(wait_for(lambda: node_state(b, d.url) == "live", 10), "D joins: B lists it live")
        none_yet = held(pg, d.url) == []
        t0 = time.monotonic()
        r = create(b, work, d.url)
        took = time.monotonic() - t0
        sid = json.loads(r.body)["id"] if r.status == 201 else None
        tap.ok(none_yet, "D held no shard when the session was placed on it", repr(held(pg, d.url)))
        tap.ok(sid and r.header("Agentd-Node") == d.url,
               f"a session placed on D before it holds a shard is created by D ({took:.1f} s)",
               f"{r!r} by {r.header('Agentd-Node')}")
        if sid:
            want = sorted(want + [sid])
            tap.ok(shard_of(sid) in held(pg, d.url), "  in a shard D holds", f"{sid} shard {shard_of(sid)}")
            tap.is_(d.request("GET", f"/v1/sessions/{sid}").status, 200, "  and D answers for it")
        tap.ok(wait_for(lambda: listed(b) == want and listed(c) == want, 10),
               f"GET /v1/sessions on B and C still lists all {len(want)}", repr([listed(b), listed(c)]))
        f, inserts = feed(c)
        tap.ok(sorted(f) == want and all(inserts.get(s) == 1 for s in want),
               "the feed still lists them, each inserted once (the adopted ones updated)", f"{sorted(f)} {inserts}")
        tap.ok(all(b.request("GET", f"/v1/sessions/{s}").status == 200 for s in want),
               "every session answers through B, A's too")
        for n in (b, c, d):
            tap.check_clean_exit(n, f"{n.url} stops cleanly")


run_test(main)
