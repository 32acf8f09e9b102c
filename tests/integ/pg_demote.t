#!/usr/bin/env python3
# A node that lost the write lease leaves nothing running (two agentd nodes on one PostgreSQL the
# test starts itself, tests/integ/cluster.py):
#   - node A holds the lease and runs two jsonl-agent sessions, each run sleeping in a tool child:
#     one in the agent's process group, one setsid()ed into a session of its own;
#   - A is paused (SIGSTOP) past its lease: B takes over (its /v1/nodes says so), loads the sessions
#     and closes their runs node_lost;
#   - A resumed (SIGCONT) learns it lost the lease: within 2 s no process of its sessions is alive
#     (agents and tool children, by pid from /proc), and A has exited with status 75 saying why
#     ("lost the write lease to B at epoch N: exiting so that a restart makes this node a follower");
#   - restarted, A is a follower: a request to it is served by B (Agentd-Node).
import json
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, procs, run_test, session_transcript, wait_for  # noqa: E402
from cluster import ONE_HOLDER, test_cluster  # noqa: E402

LEASE_MS = 1000
EXIT_LEASE_LOST = 75
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")


def node_of(r):
    return r.header("Agentd-Node")


def alive(pids):
    """The pids of `pids` that name a live process (a zombie is dead)."""
    return sorted(p for p, state, *_ in procs() if p in pids and state not in "ZX")


def start_run(tap, srv, work, text):
    """A jsonl session on srv running `text`; returns (session id, run id, {agent pid, child pid})
    once the agent said which child it sleeps in."""
    body = {"agent": "jsonl", "command": ["python3", AGENT, "--state", os.path.join(work, "agent-state")]}
    r = srv.request("POST", "/v1/sessions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    sid = json.loads(r.body)["id"] if r.status == 201 else None
    r = srv.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": text}).encode(),
                    {"Content-Type": "application/json"})
    run = json.loads(r.body).get("run") if r.status == 202 else None
    said = wait_for(lambda: [e for e in session_transcript(srv, sid)
                             if e.get("type") == "log" and "sleep pid=" in (e.get("text") or "")], 20)
    m = re.search(r"sleep pid=(\d+) pgid=(\d+)", said[0]["text"]) if said else None
    child = int(m.group(1)) if m else None
    # The agent is the child's parent.
    agent = next((ppid for p, _, ppid, *_ in procs() if p == child), None)
    tap.ok(sid and run and child and agent, f"a jsonl run on A sleeps in a tool child ({text!r})",
           f"{sid} {run} {said}")
    return sid, run, {agent, child} - {None}


def main(tap):
    # A runs the sessions and B takes them over: A, started first, holds every shard.
    with test_cluster(tap, "a node that lost the lease", nodes=2, lease_ms=LEASE_MS, args=ONE_HOLDER) as c:
        if c is None:
            return
        c.start()
        a, b = c.nodes
        work = a.root
        tap.ok(c.owner(b) is a, "A holds the write lease, B follows")
        s1, run1, p1 = start_run(tap, a, work, "sleep 60")
        s2, run2, p2 = start_run(tap, a, work, "sleep 60 setsid")
        pids = p1 | p2
        tap.is_(alive(pids), sorted(pids), "the agents and their children run")

        a.proc.send_signal(signal.SIGSTOP)
        took = wait_for(lambda: c.owner(b) is b, LEASE_MS / 1000 + 10, 0.1)
        tap.ok(took, "B takes over while A is paused")
        closed = wait_for(lambda: all(any(e.get("type") == "run_completed" and e.get("run") == run and
                                          "node_lost" in (e.get("code"), e.get("status"), e.get("reason"))
                                          for e in session_transcript(b, sid)) for sid, run in ((s1, run1), (s2, run2))), 10)
        tap.ok(closed, "B closes both runs node_lost")

        a.proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        gone = wait_for(lambda: not alive(pids), 2)
        tap.ok(gone, f"within 2 s of A's resumption no process of its sessions is alive "
               f"({time.monotonic() - resumed:.2f} s)", f"alive: {alive(pids)}")
        try:
            rc = a.proc.wait(5)
        except Exception:
            rc = None
        tap.is_(rc, EXIT_LEASE_LOST, f"A exits with status {EXIT_LEASE_LOST}")
        want = f"lost the write lease to {b.url} at epoch "
        tap.ok(want in a.stderr_tail(200) and "a restart makes this node a follower" in a.stderr_tail(200),
               "and says why", a.stderr_tail(10))
        tap.ok(not a.sanitizer_report(), "no sanitizer report", a.sanitizer_report())

        a.start(30)
        r = a.request("GET", f"/v1/sessions/{s1}")
        tap.ok(r.status == 200 and node_of(r) == b.url, "restarted, A is a follower: B answers through it",
               f"{r!r} {node_of(r)}")
        r = a.request("POST", f"/v1/sessions/{s1}/messages", json.dumps({"text": "echo again"}).encode(),
                      {"Content-Type": "application/json"})
        tap.ok(r.status == 202 and node_of(r) == b.url, "and the session takes its next message on B",
               f"{r!r} {node_of(r)}")
        for n in (a, b):
            tap.check_clean_exit(n, f"node {n.url} stops cleanly")


run_test(main)
