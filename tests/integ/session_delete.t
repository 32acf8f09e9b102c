#!/usr/bin/env python3
"""Deleting a session removes what agentd made for it (issue 8, defect 3), and nothing else.

A session whose workspace agentd created (DATA/workspaces/<id>) loses it on DELETE, with its agent
home (DATA/homes/<id>), once its processes are gone: a background loop of its runtime that keeps
writing into the workspace does not bring it back. A symlink inside pointing out of the workspace
is removed, never followed. A workspace the client named stays, with its files. A fork owns its
copy: deleting the parent leaves it, deleting the fork removes it. Directories of sessions that are
no more (a crash between the deletion and the removal, or sessions deleted before agentd removed
anything) go at the next start; live sessions keep theirs. A stop right after a deletion waits
for the removal.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test, session_run, wait_for  # noqa: E402

AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")


def main(tap):
    srv = Server()
    srv.start()
    outside = tempfile.mkdtemp(prefix="agentd-delete-outside-")
    named = tempfile.mkdtemp(prefix="agentd-delete-named-")
    try:
        scenario(tap, srv, outside, named)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(named, ignore_errors=True)


def api(srv, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {}, timeout=30)
    try:
        return r.status, (json.loads(r.body) if r.body else None)
    except ValueError:
        return r.status, None


def exec_(srv, sid, code):
    return api(srv, "POST", f"/v1/sessions/{sid}/runtimes/bash/exec", {"code": code})


def scenario(tap, srv, outside, named):
    with open(os.path.join(outside, "canary"), "w") as f:
        f.write("keep me")
    with open(os.path.join(named, "mine"), "w") as f:
        f.write("the client's")

    st, a = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    A, ws_a = a["id"], a["workspace"]
    tap.ok(ws_a == os.path.join(os.path.realpath(srv.data_dir), "workspaces", A) and os.path.isdir(ws_a),
           "agentd created A's workspace under DATA/workspaces", ws_a)
    st, doc = exec_(srv, A, f"mkdir -p sub/deep; echo data > sub/deep/file; ln -s {outside} sub/out\n"
                            "(while true; do echo x >> busy; sleep 0.01; done) >/dev/null 2>&1 &\necho started")
    tap.ok(st == 200 and os.path.exists(os.path.join(ws_a, "sub", "deep", "file")),
           "A's runtime fills its workspace, with a symlink out of it and a background writer", doc)
    st, f = api(srv, "POST", f"/v1/sessions/{A}/fork")
    tap.is_(st, 201, "A is forked")
    F, ws_f = f["id"], f["workspace"]
    st, n = api(srv, "POST", "/v1/sessions", {"agent": "none", "workspace": named})
    N = n["id"]
    exec_(srv, N, "echo made > by-runtime")
    st, j = api(srv, "POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT]})
    J, ws_j = j["id"], j["workspace"]
    run, done, _, _ = session_run(srv, J, "echo hi", 30)
    home_j = os.path.join(srv.data_dir, "homes", J)
    tap.ok(done and done.get("status") == "success" and os.path.isdir(home_j), "J ran its agent, with a home",
           done)

    for sid in (A, N, J):
        st, _ = api(srv, "DELETE", f"/v1/sessions/{sid}")
        tap.is_(st, 204, f"session {sid[:6]} deleted")
    gone = wait_for(lambda: not os.path.exists(ws_a), 10)
    tap.ok(gone, "A's workspace, which agentd created, is removed", os.listdir(os.path.dirname(ws_a)))
    time.sleep(0.5)
    tap.ok(not os.path.exists(ws_a), "and stays removed: its background writer was stopped first")
    tap.ok(os.path.exists(os.path.join(outside, "canary")), "the directory its symlink pointed to is intact")
    tap.ok(wait_for(lambda: not os.path.exists(ws_j) and not os.path.exists(home_j), 10),
           "J's workspace and its agent home are removed")
    tap.ok(os.path.exists(os.path.join(named, "mine")) and os.path.exists(os.path.join(named, "by-runtime")),
           "the workspace the client named stays, with its files", os.listdir(named))
    tap.ok(os.path.exists(os.path.join(ws_f, "sub", "deep", "file")), "the fork keeps its own copy")
    st, _ = api(srv, "DELETE", f"/v1/sessions/{F}")
    tap.ok(wait_for(lambda: not os.path.exists(ws_f), 10), "deleting the fork removes its copy")

    # ---- at the next start ----
    st, k = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    K, ws_k = k["id"], k["workspace"]
    exec_(srv, K, "echo kept > kept")
    srv.stop()
    orphan = "0123456789abcdef01234567"
    for kind in ("workspaces", "homes"):
        os.makedirs(os.path.join(srv.data_dir, kind, orphan, "x"), exist_ok=True)
    os.makedirs(os.path.join(srv.data_dir, "workspaces", "not-a-session"), exist_ok=True)
    srv.start()
    tap.ok(wait_for(lambda: not any(os.path.exists(os.path.join(srv.data_dir, kind, orphan))
                                    for kind in ("workspaces", "homes")), 10),
           "at start, the directories of a session that is no more are removed")
    tap.ok(os.path.exists(os.path.join(ws_k, "kept")), "a live session keeps its workspace across the restart")
    tap.ok(os.path.isdir(os.path.join(srv.data_dir, "workspaces", "not-a-session")),
           "a directory that is not named like a session is left alone")

    # ---- a stop right after a deletion ----
    # The removal runs in the thread pool; the stop waits for it. (It did not: the server exited
    # under it, leaving the workspace half removed, and the worker's completion touched a loop
    # that was gone: a crash at exit under ASan in 4 runs of 6.)
    st, b = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    B, ws_b = b["id"], b["workspace"]
    for d in range(40):
        os.makedirs(os.path.join(ws_b, f"d{d}"))
        for i in range(500):
            open(os.path.join(ws_b, f"d{d}", f"f{i}"), "w").close()
    st, _ = api(srv, "DELETE", f"/v1/sessions/{B}")
    tap.ok(st in (200, 202, 204), "a session with 20,000 files in its workspace is deleted", st)
    tap.check_clean_exit(srv, "and a stop at once exits cleanly")
    tap.ok(not os.path.exists(ws_b), "having removed the whole workspace first",
           sum(len(f) for _, _, f in os.walk(ws_b)) if os.path.exists(ws_b) else "")


run_test(main)
