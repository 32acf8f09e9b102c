#!/usr/bin/env python3
"""Child sessions: POST /v1/sessions/<id>/children creates a session linked to its parent and starts
it; when a run of the child completes, a `child` event with its result lands in the parent's
transcript and inbox and a parent with an agent is woken (a run whose input carries the result);
this also holds when agentd is killed -9 between the spawn and the completion."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402

AGENT = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agents", "jsonl_agent.py")]


def main(tap):
    srv = Server()
    srv.start()

    def api(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        return r.status, (json.loads(r.body) if r.body else None)

    def events(sid, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            evs, _ = srv.read_json(f"/v1/stream/sessions/{sid}/transcript")
            if pred(evs) or time.monotonic() > deadline:
                return evs
            time.sleep(0.05)

    st, parent = api("POST", "/v1/sessions", {"agent": "jsonl", "command": AGENT})
    tap.is_(st, 201, "parent created")
    pid = parent["id"]
    st, child = api("POST", f"/v1/sessions/{pid}/children", {"agent": "jsonl", "command": AGENT, "text": "echo forty-two"})
    tap.is_(st, 201, "child spawned")
    cid = child["id"]
    tap.ok(child.get("parent") == pid and child.get("run"), "the child names its parent and its first run", child)

    def woken(evs):
        return any(e["type"] == "run_completed" for e in evs)

    pev = events(pid, woken)
    kinds = [(e["type"], e.get("action")) for e in pev if e["type"] == "child"]
    tap.is_(kinds, [("child", "spawned"), ("child", "completed")], "the parent's transcript records the spawn and the completion")
    done = [e for e in pev if e["type"] == "child" and e.get("action") == "completed"]
    tap.ok(done and done[0]["child"] == cid and done[0]["status"] == "success" and done[0]["result"] == "forty-two",
           "the completion carries the child's status and result", done)
    starts = [e for e in pev if e["type"] == "run_start"]
    tap.ok(len(starts) == 1 and cid in starts[0]["input"] and "forty-two" in starts[0]["input"],
           "the parent was woken with a run whose input carries the child's result", starts)
    inbox, _ = srv.read_json(f"/v1/stream/sessions/{pid}/inbox")
    tap.ok(any(m.get("type") == "child" and m.get("child") == cid for m in inbox), "the parent's inbox holds the child's news")
    st, lst = api("GET", f"/v1/sessions/{pid}/children")
    tap.ok(st == 200 and [c["id"] for c in lst["children"]] == [cid], "GET .../children lists the child", lst)

    # Across a restart: spawn a child that sleeps, kill -9 agentd, restart: the child's run is closed
    # as server_restart and the parent hears of it.
    st, rt_parent = api("POST", "/v1/sessions", {"agent": "none"})
    rpid = rt_parent["id"]
    st, slow = api("POST", f"/v1/sessions/{rpid}/children", {"agent": "jsonl", "command": AGENT, "text": "sleep 30"})
    tap.is_(st, 201, "a slow child spawned")
    events(slow["id"], lambda evs: any(e["type"] == "log" and "sleep pid=" in (e.get("text") or "") for e in evs))
    srv.kill9()
    srv.start()
    rev = events(rpid, lambda evs: any(e["type"] == "child" and e.get("action") == "completed" for e in evs))
    done = [e for e in rev if e["type"] == "child" and e.get("action") == "completed"]
    tap.ok(done and done[0]["child"] == slow["id"] and done[0]["status"] == "error",
           "after kill -9 and restart, the parent hears that its child's run ended (server_restart)", done)
    cev = events(slow["id"], lambda evs: True)
    tap.ok(any(e["type"] == "run_completed" and e.get("code") == "server_restart" for e in cev),
           "the child's run was closed with server_restart")
    st, doc = api("POST", "/v1/sessions/nosuchsession/children", {"agent": "none"})
    tap.ok(st == 404 and "error" in doc, "spawning under an unknown session is a 404 JSON error", doc)
    tap.check_clean_exit(srv)


run_test(main)
