#!/usr/bin/env python3
"""A fork's runs are those of its transcript: a session forked at an offset of its parent's
transcript ({"at": offset}) lists (GET .../runs) and records (its `state` stream) only the runs the
parent had started before that offset, as far as they got: a run that ended before it as it ended,
a run the offset cuts as cancelled (code forked, with its run_completed in the fork's transcript),
and none of the parent's later runs. The same after a restart. TAP output for prove.
"""
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test, session_run, session_transcript  # noqa: E402

AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")


def events(srv, sid):
    """The transcript's events, oldest first, each with its own offset."""
    doc = srv.request("GET", f"/v1/sessions/{sid}/events?limit=1000").json()
    return list(reversed(doc["events"]))


def runs(srv, sid):
    return {r["id"]: r for r in srv.request("GET", f"/v1/sessions/{sid}/runs").json()["runs"]}


def state_runs(srv, sid):
    """The latest record of each run in the session's state stream."""
    items, r = srv.read_json(f"/v1/stream/sessions/{sid}/state")
    out = {}
    for m in items:
        if m.get("type") == "run":
            out[m["key"]] = m["value"]
    return out


def fork(srv, sid, at):
    body = {} if at is None else {"at": at}
    r = srv.request("POST", f"/v1/sessions/{sid}/fork", body)
    return r.json()["id"] if r.status == 201 else None


def check(tap, srv, name, child, want):
    """want: {run id: (status, code or None)} of the runs the fork must have."""
    got = {k: (v["status"], v.get("code")) for k, v in runs(srv, child).items()}
    tap.is_(got, want, f"{name}: GET runs lists exactly the runs started before the fork point")
    st = {k: (v["status"], v.get("code")) for k, v in state_runs(srv, child).items()}
    tap.is_(st, want, f"{name}: the fork's state stream records the same")


def main(tap):
    srv = Server()
    srv.start()
    sid = srv.request("POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT]}).json()["id"]
    ids = []
    for text in ("echo one", "echo two; echo two again", "echo three"):
        run, done, _, _ = session_run(srv, sid, text, 30)
        tap.ok(done and done["status"] == "success", f"parent run '{text}' succeeds")
        ids.append(run)
    a, b, c = ids
    evs = events(srv, sid)
    start_b = next(e["offset"] for e in evs if e["type"] == "run_start" and e["run"] == b)
    mid_b = next(e["offset"] for e in evs if e["type"] == "message" and e["run"] == b)
    after_b = next(e["offset"] for e in evs if e["type"] == "run_start" and e["run"] == c)
    parent_runs = runs(srv, sid)
    tap.ok(all(parent_runs[x].get("start_offset") and parent_runs[x].get("end_offset") for x in ids),
           "the parent's run records carry where each run starts and ends in the transcript",
           json.dumps(parent_runs))
    tap.is_(parent_runs[b].get("start_offset"), start_b, "a run's start_offset is its run_start's offset")

    cases = [
        ("fork at the second run's run_start", start_b, {a: ("success", None)}),
        ("fork in the middle of the second run", mid_b, {a: ("success", None), b: ("cancelled", "forked")}),
        ("fork after the second run", after_b, {a: ("success", None), b: ("success", None)}),
        ("fork at the tail", None, {a: ("success", None), b: ("success", None), c: ("success", None)}),
    ]
    children = []
    for name, at, want in cases:
        child = fork(srv, sid, at)
        tap.ok(child, f"{name}: created")
        children.append((name, child, want))
        check(tap, srv, name, child, want)
    name, cut, _ = children[1]
    tr = session_transcript(srv, cut)
    ends = [e for e in tr if e.get("type") == "run_completed" and e.get("run") == b]
    tap.ok(len(ends) == 1 and ends[0].get("status") == "cancelled" and ends[0].get("code") == "forked",
           "the cut run ends in the fork's transcript: run_completed cancelled, code forked", repr(ends))
    tap.ok(not any(e.get("run") == c for e in tr), "nothing of the parent's later run is in the fork")

    run, done, _, _ = session_run(srv, cut, "echo in the fork", 30)
    tap.ok(done and done["status"] == "success", "the fork runs a message of its own")
    tap.is_(sorted(runs(srv, cut)), sorted([a, b, run]), "its run list: the kept runs and its own")

    srv.stop()
    srv.start()
    for name, child, want in children:
        if child == cut:
            want = dict(want, **{run: ("success", None)})
        check(tap, srv, f"after a restart, {name}", child, want)
    tap.check_clean_exit(srv)


run_test(main)
