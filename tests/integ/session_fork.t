#!/usr/bin/env python3
"""Forking a session over HTTP: the child's transcript is the parent's up to the fork offset (a Durable
Streams fork: nothing copied) and then its own; its workspace is a copy the two sides change
independently; bad offsets and unknown sessions get JSON errors; a fork survives a restart."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402


def main(tap):
    srv = Server()
    srv.start()

    def api(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        return r.status, (json.loads(r.body) if r.body else None), r

    def events(sid, want_runtime):
        # events become readable once durable: follow briefly
        deadline = time.monotonic() + 2.0
        while True:
            evs, _ = srv.read_json(f"/v1/stream/sessions/{sid}/transcript")
            if sum(1 for e in evs if e.get("type") == "runtime") >= want_runtime or time.monotonic() > deadline:
                return evs
            time.sleep(0.02)

    def run(sid, code):
        return api("POST", f"/v1/sessions/{sid}/runtimes/bash/exec", {"code": code})[1]

    st, parent, _ = api("POST", "/v1/sessions", {"agent": "none", "env": {"WHO": "parent"}, "tags": ["f"]})
    tap.is_(st, 201, "parent created")
    pid = parent["id"]
    run(pid, "echo v1 > notes.txt; echo one")
    events(pid, 1)
    r = srv.request("GET", f"/v1/stream/sessions/{pid}/transcript?offset=-1")
    at = r.header("stream-next-offset")
    run(pid, "echo two")
    events(pid, 2)

    st, child, _ = api("POST", f"/v1/sessions/{pid}/fork", {"at": at})
    tap.is_(st, 201, "fork created")
    cid = child["id"]
    tap.ok(cid != pid and child["workspace"] != parent["workspace"], "the fork is a new session with its own workspace")
    tap.is_(child["tags"], ["f"], "the fork keeps the parent's tags")

    out = run(cid, "cat notes.txt; echo $WHO; echo v2 > notes.txt")
    tap.is_(out["stdout"], "v1\nparent\n", "the fork sees the parent's files and environment")
    tap.is_(run(pid, "cat notes.txt")["stdout"], "v1\n", "the parent's workspace is untouched by the fork")
    run(pid, "echo v3 > notes.txt")
    tap.is_(run(cid, "cat notes.txt")["stdout"], "v2\n", "the fork's workspace is untouched by the parent")

    ev = events(cid, 2)
    codes = [e.get("code") for e in ev if e.get("type") == "runtime"]
    tap.is_(codes[0], "echo v1 > notes.txt; echo one", "the fork's transcript starts with the parent's history")
    tap.ok("echo two" not in codes, "history after the fork offset is not in the fork")
    forked = [e for e in ev if e.get("type") == "session" and e.get("action") == "forked"]
    tap.ok(len(forked) == 1 and forked[0].get("from") == pid and forked[0].get("at") == at,
           "a forked event names the parent and the offset", forked)
    pev = events(pid, 4)
    tap.ok(not any(e.get("action") == "forked" for e in pev), "the parent's transcript does not see the fork")

    st, doc, _ = api("POST", f"/v1/sessions/{pid}/fork", {"at": "not-an-offset"})
    tap.ok(st == 400 and doc["error"]["code"] == "bad_request", "a bad offset is a 400 JSON error", doc)
    st, doc, _ = api("POST", "/v1/sessions/nosuchsession/fork", {})
    tap.ok(st == 404 and "error" in doc, "forking an unknown session is a 404 JSON error", doc)
    st, doc, _ = api("POST", f"/v1/sessions/{pid}/fork", None)
    tap.is_(st, 201, "a fork without an offset forks at the tail")

    srv.stop()
    srv.start()
    st, doc, _ = api("GET", f"/v1/sessions/{cid}")
    tap.ok(st == 200 and doc["id"] == cid, "the fork survives a restart")
    tap.is_(run(cid, "cat notes.txt")["stdout"], "v2\n", "its workspace too")
    tap.check_clean_exit(srv)


run_test(main)
