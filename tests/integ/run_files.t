#!/usr/bin/env python3
"""A file an agent writes during a run is reported as a `file` event of that run, before its
run_completed: read as soon as the run has ended, the transcript already says so. Workspace changes
are batched (one `file` event per half second at most while a run goes on), and the end of a run
flushes the batch. The demo agent appends to demo-notes.md in every run; a jsonl agent's tool writes
a file just before it exits. TAP output for prove.
"""
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, of_run, run_test, session_run  # noqa: E402

AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
RUNS = 6


def check_runs(tap, srv, sid, texts, path, what):
    bad = []
    for text in texts:
        run, done, evs, _ = session_run(srv, sid, text, 60)
        mine = of_run(evs, run)
        kinds = [e["type"] for e in mine]
        files = [e for e in mine if e["type"] == "file"
                 and any(c.get("path") == path for c in e.get("changes", []))]
        if done is None or not files or kinds.index("file") > kinds.index("run_completed"):
            bad.append((text, kinds[-6:]))
    tap.ok(not bad, f"{what}: each run's {path} change is a file event of the run, before its run_completed",
           repr(bad))


def main(tap):
    srv = Server()
    srv.start()
    demo = srv.request("POST", "/v1/sessions", {"agent": "demo", "env": {"AGENTD_DEMO_DELAY_MS": "0"}})
    tap.is_(demo.status, 201, "a demo session")
    check_runs(tap, srv, demo.json()["id"], [f"hello {i}" for i in range(RUNS)], "demo-notes.md",
               f"{RUNS} demo runs")
    js = srv.request("POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT]})
    tap.is_(js.status, 201, "a jsonl session")
    check_runs(tap, srv, js.json()["id"], [f"tool echo {i} >> out.txt" for i in range(RUNS)], "out.txt",
               f"{RUNS} jsonl runs whose last act is a write")
    tap.check_clean_exit(srv)


run_test(main)
