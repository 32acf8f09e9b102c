#!/usr/bin/env python3
"""A session reads as idle only once its run's end can be read: a client that polls GET
/v1/sessions/<id> until it says idle, then reads the transcript at once, finds the run's
run_completed (and the run's record in the state stream) every time; likewise a client that follows
the sessions feed and reads the transcript as soon as the feed says idle. TAP output for prove.
"""
import http.client
import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test  # noqa: E402

AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
RUNS = 25


def read_json_stream(srv, path, conn):
    """Every message of a JSON stream, by catch-up reads on conn."""
    items, offset = [], "-1"
    while True:
        r = srv.request("GET", f"{path}?offset={offset}", conn=conn)
        if r.status != 200:
            return items
        items.extend(json.loads(r.body))
        if r.header("Stream-Up-To-Date") == "true":
            return items
        offset = r.header("Stream-Next-Offset")


def poll_then_read(tap, srv, sid):
    """Sends RUNS messages one after the other; after each, polls GET until idle and reads at once."""
    conn = srv.connection()
    missed = []
    for i in range(RUNS):
        r = srv.request("POST", f"/v1/sessions/{sid}/messages", {"text": f"echo run {i}"}, conn=conn)
        run = r.json()["run"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            doc = srv.request("GET", f"/v1/sessions/{sid}", conn=conn).json()
            if doc["status"] == "idle":
                break
        evs = read_json_stream(srv, f"/v1/stream/sessions/{sid}/transcript", conn)
        state = read_json_stream(srv, f"/v1/stream/sessions/{sid}/state", conn)
        done = any(e.get("type") == "run_completed" and e.get("run") == run for e in evs)
        recorded = any(m.get("key") == run and m.get("value", {}).get("status") == "success" for m in state)
        if not (done and recorded):
            missed.append((i, run, done, recorded, evs[-1].get("type") if evs else None))
    conn.close()
    tap.ok(not missed, f"{RUNS} runs: as soon as GET says idle, the transcript has run_completed and "
           "the state stream the run's final record", repr(missed))


def feed_then_read(tap, srv, sid):
    """Follows the sessions feed (SSE); each time it says sid is idle, reads the transcript at once."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("GET", "/v1/stream/sessions?offset=now&live=sse")
    resp = conn.getresponse()
    seen, missed, stop = [], [], threading.Event()
    reader = srv.connection()
    runs = []

    def follow():
        buf = b""
        while not stop.is_set():
            line = resp.fp.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                buf += line[5:].strip()
            elif line.strip() == b"" and buf:
                data, buf = buf, b""
                try:
                    items = json.loads(data)
                except ValueError:
                    continue  # a control event
                for it in items if isinstance(items, list) else []:
                    v = it.get("value") or {}
                    if it.get("key") == sid and v.get("status") == "idle" and v.get("last_run"):
                        run = v["last_run"]["id"]
                        evs = read_json_stream(srv, f"/v1/stream/sessions/{sid}/transcript", reader)
                        ok = any(e.get("type") == "run_completed" and e.get("run") == run for e in evs)
                        seen.append(run)
                        if not ok:
                            missed.append(run)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    for i in range(10):
        r = srv.request("POST", f"/v1/sessions/{sid}/messages", {"text": f"echo fed {i}"})
        runs.append(r.json()["run"])
        deadline = time.monotonic() + 20
        while runs[-1] not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
    stop.set()
    conn.close()
    tap.ok(set(runs) <= set(seen), "the feed said idle after each of 10 runs", repr((runs, seen)))
    tap.ok(not missed, "and each time the transcript read at once had the run's run_completed", repr(missed))


def main(tap):
    srv = Server()
    srv.start()
    sid = srv.request("POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT]}).json()["id"]
    poll_then_read(tap, srv, sid)
    feed_then_read(tap, srv, sid)
    tap.check_clean_exit(srv)


run_test(main)
