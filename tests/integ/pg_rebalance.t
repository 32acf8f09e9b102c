#!/usr/bin/env python3
# The voluntary hand-off (doc/SHARDING-PLAN.md §5, §7 increment 6), --shard-policy balance: a node
# that holds more than its share, ceil(64 / live nodes), for two leases running gives up one idle
# shard per lease (drained first: its requests are held meanwhile, not refused), and the nodes
# below their share take it.
#   - one node alone holds all 64 shards; 240 streams, 8 writers appending (idempotent producers,
#     retried until acknowledged) and a JSON stream in shard 62 (the first given up: 63's session is
#     busy) followed live over SSE through the first node while a writer appends numbered items to it;
#   - two more nodes start: within (3 + 42) leases + 5 s the split is about 22/21/21 (the hysteresis,
#     two leases and what the store's 1 s live window for a node with no rows passes a lease by,
#     then the first node's 42 extra shards given up one per lease; 5 s for the new nodes to start
#     and be seen live; twice that under ASan);
#   - no acknowledged append is lost, every stream holds a contiguous prefix per writer; the 503s the
#     writers retried are counted (ideally none: requests are held, not refused), nothing else but 2xx;
#     none is the one a node answers to a request it forwarded to itself (its view named it the holder
#     of the shard it had just given up: 0-3 a run before the store's view said nobody holds it);
#   - the SSE reader whose stream's shard moved resumes from its offset: every item once, in order;
#   - a session with a turn running (a jsonl agent's sleep) in shard 63 is never moved: its node keeps
#     the shard and the turn completes there (not node_lost). 64 sessions are made first, since a node
#     places each in its emptiest shard, lowest first: the last one lands in shard 63.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, run_test, wait_for  # noqa: E402
from cluster import SSEFollower, Writer, check_streams, held, pg_main, pg_node, shard_of, shards_by_node  # noqa: E402
from pg import free_port  # noqa: E402

LEASE_MS = 500
WRITERS = 8
STREAMS = 240
SHARDS = 64
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")
HYSTERESIS = 2 - (-(max(LEASE_MS, 1000) - LEASE_MS) // LEASE_MS)  # leases: serve_handoff.c's
SPLIT_WITHIN = ((HYSTERESIS + (SHARDS - -(-SHARDS // 3))) * LEASE_MS / 1000 + 5) * (2 if SLOW else 1)


def main(tap):
    with pg_main(tap, "--shard-policy balance hand-off") as (pg, nodes):
        if not pg:
            return
        nodes += [pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"]) for _ in range(3)]
        a = nodes[0]
        a.start(30)
        tap.ok(wait_for(lambda: shards_by_node(a, [a.url]).get(a.url) == SHARDS, 20),
               "one balance node alone holds all 64 shards", repr(shards_by_node(a, [a.url])))
        paths = [f"/v1/stream/reb/s{i}" for i in range(STREAMS)]
        made = [a.create(p, "text/plain").status for p in paths]
        tap.ok(made.count(201) == STREAMS, f"{STREAMS} streams created")
        live = next(f"/v1/stream/reb/live{i}" for i in range(100000) if shard_of(f"reb/live{i}") == SHARDS - 2)
        tap.ok(a.create(live, "application/json").status == 201, f"a JSON stream in shard {SHARDS - 2}")
        follower = SSEFollower(a, live)
        follower.start()
        up = [a]
        stop = threading.Event()
        writers = [Writer(up, w, paths[w::WRITERS], stop, pause=0.002) for w in range(WRITERS)]
        writers.append(Writer(up, WRITERS, [live], stop, lambda w, n: json.dumps({"n": n}).encode(),
                              "application/json", pause=0.002))
        for wr in writers:
            wr.start()
        tap.ok(wait_for(lambda: sum(sum(wr.acked.values()) for wr in writers) >= 500, 30), "the writers append")
        work = tempfile.mkdtemp(prefix="agentd-rebalance-")
        body = json.dumps({"agent": "jsonl", "command": ["python3", AGENT, "--state", os.path.join(work, "st")]})
        sids = []
        for _ in range(SHARDS):
            r = a.request("POST", "/v1/sessions", body.encode(), {"Content-Type": "application/json"})
            sids.append(json.loads(r.body).get("id") if r.status == 201 else None)
        busy = next((s for s in sids if s and shard_of(s) == SHARDS - 1), None)
        tap.ok(all(sids) and busy, f"{SHARDS} sessions, one in shard {SHARDS - 1}", repr(sids[-3:]))
        turn = SSEFollower(a, f"/v1/stream/sessions/{busy}/transcript")
        turn.start()
        r = a.request("POST", f"/v1/sessions/{busy}/messages",
                      json.dumps({"text": f"sleep {SPLIT_WITHIN + 5:.0f}"}).encode(),
                      {"Content-Type": "application/json"})
        run = json.loads(r.body).get("run") if r.status == 202 else None
        tap.ok(run, "a turn runs in it", repr(r))

        t0 = time.monotonic()
        for t in [threading.Thread(target=n.start, args=(30,), daemon=True) for n in nodes[1:]]:
            t.start()
            t.join(40)
        tap.ok(all(n.url for n in nodes), "two more balance nodes start")
        up.extend(nodes[1:])  # the writers now go through all three
        urls = [n.url for n in nodes]

        def split():
            v = shards_by_node(a, urls)
            return len(v) == 3 and sum(v.values()) == SHARDS and max(v.values()) - min(v.values()) <= 2
        ok = wait_for(split, SPLIT_WITHIN + 10)
        took = time.monotonic() - t0
        tap.ok(ok and took <= SPLIT_WITHIN,
               f"the split is about 22/21/21 {took:.1f} s after the two nodes started (lease {LEASE_MS} ms; "
               f"bound {SPLIT_WITHIN:.0f} s)", repr(shards_by_node(a, urls)))
        tap.ok(SHARDS - 1 in held(pg, a.url), f"the first node still holds shard {SHARDS - 1}, whose session's "
               "turn runs (never moved)", repr(held(pg, a.url)))
        exited = [(n.url, n.proc.poll()) for n in nodes if n.proc.poll() is not None]
        tap.ok(not exited, "no node exits (a hand-off is not a loss)", repr(exited))
        base = sum(sum(wr.acked.values()) for wr in writers)
        tap.ok(wait_for(lambda: sum(sum(wr.acked.values()) for wr in writers) >= base + 300, 30),
               "the writers go on through the three nodes")
        stop.set()
        for wr in writers:
            wr.join(20)
        bad = check_streams(a, writers[:-1])
        tap.ok(not bad, "no acknowledged append lost; every stream a contiguous prefix", "\n".join(bad[:10]))
        retried = sum(wr.retried for wr in writers)
        other = [o for wr in writers for o in wr.other]
        tap.ok(not other, f"no answer but 2xx or a retried 503 (503s retried: {retried})", repr(other[:5]))
        to_self = sum(wr.to_self for wr in writers)
        tap.ok(to_self == 0, "no request for a shard just given up is forwarded by its node to itself and refused",
               f"{to_self} such 503s")
        tap.diag(f"503s retried by the writers during the hand-offs: {retried}; "
                 f"appends acknowledged: {sum(sum(wr.acked.values()) for wr in writers)}; "
                 f"{[w for wr in writers for w in wr.retried_why][:3]}")
        n_live = writers[-1].acked[live]
        tap.ok(wait_for(lambda: len(follower.events) >= n_live, 15),
               "the SSE reader of the moved shard's stream has every acknowledged item",
               f"{len(follower.events)} of {n_live}")
        follower.stop_event.set()
        ns = [e.get("n") for e in follower.events]
        tap.ok(ns == list(range(len(ns))) and follower.connects >= 2,
               f"... each once, in order, across {follower.connects} connections (it resumed from its offset)",
               repr(ns[:10]) + "..." + repr(ns[-10:]))
        ev = wait_for(lambda: turn.completion(run), SPLIT_WITHIN + 30)
        tap.ok(ev and ev.get("status") == "success", "the turn completes where it ran", repr(ev))
        turn.stop_event.set()
        tap.check_clean_exit(a, "the first node stops cleanly")


run_test(main)
