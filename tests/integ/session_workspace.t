#!/usr/bin/env python3
"""A session whose workspace is gone when agentd loads it gets a fresh one, and says so.

On a takeover by another node (doc/ARCHITECTURE.md, "Several nodes on one database") the new owner
may not see the old owner's workspaces; on a single node the directory may have been removed by
hand. Either way, at load: the session gets a fresh, empty workspace under DATA/workspaces/<id>,
its record names it (GET /v1/sessions/<id>), its runtimes run there, and its transcript holds a
`log` event at level warn that names the old and the new directory. A session whose workspace is
there is left alone.
"""
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test, wait_for  # noqa: E402


def api(srv, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {}, timeout=30)
    return r.status, (json.loads(r.body) if r.body else None)


def warns(srv, sid):
    evs, _ = srv.read_json(f"/v1/stream/sessions/{sid}/transcript")
    return [e for e in evs or [] if e.get("type") == "log" and e.get("level") == "warn"]


def main(tap):
    srv = Server()
    srv.start()
    st, a = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    st2, b = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    tap.ok(st == 201 and st2 == 201 and os.path.isdir(a["workspace"]), "two sessions with workspaces")
    srv.stop()
    shutil.rmtree(a["workspace"])
    srv.restart()

    st, a2 = api(srv, "GET", f"/v1/sessions/{a['id']}")
    tap.ok(st == 200 and os.path.isdir(a2["workspace"]) and os.listdir(a2["workspace"]) == [],
           "the session whose workspace was removed has a fresh, empty one", repr(a2))
    # The warn event is appended at load like any other write: it may commit just after the GET.
    w = wait_for(lambda: warns(srv, a["id"]), 5)
    tap.ok(len(w) == 1 and a["workspace"] in w[0].get("text", "") and a2["workspace"] in w[0].get("text", ""),
           "its transcript says so: one log event at level warn naming both directories", repr(w))
    st, out = api(srv, "POST", f"/v1/sessions/{a['id']}/runtimes/bash/exec", {"code": "pwd"})
    tap.ok(st == 200 and out["stdout"].strip() == os.path.realpath(a2["workspace"]),
           "its runtime runs in the fresh workspace", repr(out))
    tap.ok(warns(srv, b["id"]) == [] and api(srv, "GET", f"/v1/sessions/{b['id']}")[1]["workspace"] == b["workspace"],
           "the other session is left alone")
    srv.restart()
    tap.ok(len(warns(srv, a["id"])) == 1, "a restart with the workspace there says nothing more")
    tap.check_clean_exit(srv, "the server stops cleanly")


run_test(main)
