#!/usr/bin/env python3
# The `sessions` feed repaired by the next holder of a shard (session_shard.c, the repair at each
# load) when a node dies between its registry commit and the relay of that record to the feed.
# Four nodes with --shard-policy balance; A does not hold shard 0 (the feed), B does.
#   - X is created on A and listed; B is paused (SIGSTOP), so A's relays to the feed wait in B's
#     socket;
#   - X is deleted and Y created on A: both registry records commit (seen in the database), their
#     relays wait on B; A and B are killed with -9 then (the relays go with B);
#   - C and D take A's and B's shards (one of them the feed: the other repairs through it): the feed
#     and GET /v1/sessions on C and D list Y (inserted once) and not X. Before: X stayed listed for
#     good (no adoption republishes a deleted session), and Y was listed by an update, never inserted.
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import signal
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import balance_nodes, psql, shard_of  # noqa: E402
from sessions_nodes import feed, held_live as held, live_on  # noqa: E402

LEASE_MS = 1000
SHARDS = 64


def registry_has(pg, sid, op):
    """Does shard(sid)'s registry hold a committed record of op for sid?"""
    sql = ("SELECT count(*) FROM agentd_records r JOIN agentd_streams s ON s.id = r.stream "
           f"WHERE s.path = '__agentd/sessions/{shard_of(sid)}' "
           f"AND position('{sid}' in convert_from(r.data, 'UTF8')) > 0 "
           f"AND position('\"operation\":\"{op}\"' in convert_from(r.data, 'UTF8')) > 0")
    rc, out = psql(pg, sql)
    return rc == 0 and out.strip() not in ("", "0")


def session_ids(pg):
    rc, out = psql(pg, "SELECT path FROM agentd_streams WHERE path LIKE 'sessions/%/state' AND deleted = 0")
    return {p.split("/")[1] for p in out.split()} if rc == 0 else set()


def listed(srv):
    r = srv.request("GET", "/v1/sessions?limit=100")
    return sorted(s["id"] for s in json.loads(r.body)["sessions"]) if r.status == 200 else None


def create_on(srv, node):
    body = json.dumps({"agent": "none", "node": node}).encode()
    return srv.request("POST", "/v1/sessions", body, {"Content-Type": "application/json"}, timeout=60)


def main(tap):
    with balance_nodes(tap, "the sessions feed repaired", nodes=4, lease_ms=LEASE_MS) as (pg, nodes):
        if nodes:
            repaired(tap, pg, nodes)


def repaired(tap, pg, nodes):
    tap.ok(wait_for(lambda: sum(len(held(pg, n.url)) for n in nodes) == SHARDS
                    and all(held(pg, n.url) for n in nodes), 15), "they hold the 64 shards between them")
    b = next(n for n in nodes if 0 in held(pg, n.url))
    a, c, d = [n for n in nodes if n is not b]
    tap.ok(wait_for(lambda: all(live_on(n, a.url) for n in nodes), 10), "every node lists A live")
    r = create_on(a, a.url)
    x = json.loads(r.body)["id"] if r.status == 201 else None
    if not tap.ok(x and r.header("Agentd-Node") == a.url, "X created on A", repr(r)):
        return
    tap.ok(wait_for(lambda: x in feed(c)[0], 5), "the feed lists X")

    before = session_ids(pg)
    b.proc.send_signal(signal.SIGSTOP)
    answers = {}

    def ask(name, call):
        try:
            answers[name] = call()
        except OSError:  # A killed before it answered: the expected end
            pass

    ts = [threading.Thread(target=ask, args=("delete", lambda: a.request("DELETE", f"/v1/sessions/{x}",
                                                                         timeout=60)), daemon=True),
          threading.Thread(target=ask, args=("create", lambda: create_on(a, a.url)), daemon=True)]
    for t in ts:
        t.start()
    y = []
    committed = wait_for(lambda: registry_has(pg, x, "delete") and (y or y.extend(session_ids(pg) - before))
                         and registry_has(pg, y[0], "insert"), 1.0, 0.02)
    a.kill9()
    b.kill9()
    if not tap.ok(committed and y, "with B paused, X's delete and Y's record commit on A; A and B are killed -9",
                  f"delete {registry_has(pg, x, 'delete')}, new {y}"):
        return
    y = y[0]
    tap.ok(not answers, "neither was answered (their relays waited for B)", repr(answers))
    tap.ok(wait_for(lambda: len(held(pg, c.url)) + len(held(pg, d.url)) == SHARDS, 20),
           "C and D take A's and B's shards", f"{len(held(pg, c.url))}+{len(held(pg, d.url))}")
    tap.ok(wait_for(lambda: x not in feed(c)[0] and y in feed(c)[0], 15),
           "the feed no longer lists X, and lists Y", repr(sorted(feed(c)[0])))
    tap.is_(feed(c)[1].get(y), 1, "Y is inserted once in the feed")
    for n in (c, d):  # which repaired, and through which way (the feed here or through its holder)
        tap.diag(f"{n.url}: " + " ".join(ln for ln in n.stderr_tail().splitlines() if "was behind" in ln))
    tap.ok(wait_for(lambda: listed(c) == [y] and listed(d) == [y], 10),
           "GET /v1/sessions on C and D lists Y, not X", repr([listed(c), listed(d)]))
    ids = lambda n, sid: json.loads(n.request("GET", f"/v1/sessions?shard={shard_of(sid)}").body).get("ids")  # noqa: E731
    tap.ok(all(y in ids(n, y) and x not in ids(n, x) for n in (c, d)),
           "GET /v1/sessions?shard=k (what the repair asks the feed's holder) through C and D: Y's shard lists "
           "Y, X's does not list X", repr([(ids(n, y), ids(n, x)) for n in (c, d)]))
    tap.is_(c.request("GET", f"/v1/sessions/{x}").status, 404, "X is gone")
    tap.is_(c.request("GET", f"/v1/sessions/{y}").status, 200, "Y answers")
    for n in (c, d):
        tap.check_clean_exit(n, f"{n.url} stops cleanly")


run_test(main)
