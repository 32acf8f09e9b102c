#!/usr/bin/env python3
"""bench/sessions — agent sessions through agentd's HTTP API (python3 standard library only).

    sessbench.py --url URL --pid PID [--sessions 200] [--events 200000] [--idle 1000]

Drives one agentd (started fresh by run.sh) with jsonl agents and prints one table:

  (c) RSS with idle sessions: VmRSS of the server before and after creating --idle sessions (jsonl
      agent, never run), and after giving each of the --sessions sessions of (a) one run, so they
      have had an execution environment; per-session bytes = growth / sessions.
  (a) session create -> environment ready, over --sessions sessions, one at a time: the time from
      writing POST /v1/sessions to reading the transcript event {"type":"status","scope":
      "environment","status":"ready"} (the environment is made with the first run, so the first
      message is part of it). The agent (bench/sessions/quick: `true`, i.e. exits at once) starts
      only after `ready`, so the figure holds no agent start-up. Also shown: the create request
      alone, create -> first message accepted, and create -> run_completed with that agent (the
      whole agent-independent turnaround of a run). The transcript is followed with
      `live=long-poll`, so every figure ends when the client has the event, not when it was written.
  (b) event ingest: one run of bench/sessions/flood_agent.py writing --events small message events
      as fast as it can; events/s = events / (message accepted -> run_completed read back from the
      transcript, which only serves what is durable). The transcript is then read whole and the
      run's message events counted: the count must equal --events.

Exit status 1 when something did not work (a request failed, a count did not match).
"""
import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))


class Client:
    """One keep-alive HTTP/1.1 connection (reopened after an error)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, timeout=30.0):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self.conn.timeout = timeout
                if self.conn.sock is not None:
                    self.conn.sock.settimeout(timeout)
                self.conn.request(method, path, data, headers)
                r = self.conn.getresponse()
                return r.status, r.headers, r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, timeout=30.0):
        st, _, raw = self.request(method, path, body, timeout)
        try:
            return st, json.loads(raw) if raw else None
        except ValueError:
            return st, raw


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def fail(msg):
    print(f"bench/sessions: {msg}", file=sys.stderr)
    sys.exit(1)


def create(c, command, tag):
    st, doc = c.json("POST", "/v1/sessions", {"agent": "jsonl", "command": command, "mcp": False, "tags": [tag]})
    if st != 201 or not isinstance(doc, dict) or "id" not in doc:
        fail(f"POST /v1/sessions: {st} {doc!r}")
    return doc["id"]


def send(c, sid, text):
    st, doc = c.json("POST", f"/v1/sessions/{sid}/messages", {"text": text})
    if st != 202 or not isinstance(doc, dict) or "run" not in doc:
        fail(f"POST /v1/sessions/{sid}/messages: {st} {doc!r}")
    return doc["run"]


def follow(c, sid, offset, want, timeout=30.0):
    """Long-polls the transcript from offset; calls want(event, now) for each event in order until it
    returns True. Returns the next offset."""
    path = f"/v1/stream/sessions/{sid}/transcript"
    deadline = time.monotonic() + timeout
    live = offset != "-1"
    while time.monotonic() < deadline:
        q = f"?offset={offset}" + ("&live=long-poll" if live else "")
        st, h, raw = c.request("GET", path + q, timeout=timeout)
        now = time.monotonic()
        if st not in (200, 204):
            fail(f"GET {path}{q}: {st} {raw[:200]!r}")
        offset = h.get("Stream-Next-Offset") or offset
        if st == 200 and raw:
            for ev in json.loads(raw):
                if want(ev, now):
                    return offset
        if h.get("Stream-Up-To-Date") == "true":
            live = True
    fail(f"{sid}: the transcript did not show what was awaited within {timeout} s")


def phase_idle(c, pid, n, quick):
    before = rss_kib(pid)
    t0 = time.monotonic()
    for i in range(n):
        create(c, quick, "idle")
    took = time.monotonic() - t0
    time.sleep(0.5)
    after = rss_kib(pid)
    return before, after, took


def phase_ready(c, n, quick):
    create_ms, send_ms, ready_ms, done_ms = [], [], [], []
    for i in range(n):
        t0 = time.monotonic()
        sid = create(c, quick, "ready")
        t1 = time.monotonic()
        run = send(c, sid, "go")
        t2 = time.monotonic()
        seen = {}

        def want(ev, now):
            if ev.get("type") == "status" and ev.get("scope") == "environment" and ev.get("status") == "ready":
                seen.setdefault("ready", now)
            if ev.get("type") == "run_completed" and ev.get("run") == run:
                seen["done"] = now
                seen["status"] = ev.get("status")
                return True
            return False

        follow(c, sid, "-1", want)
        if "ready" not in seen:
            fail(f"{sid}: run_completed without an environment `ready` before it")
        if seen["status"] != "success":
            fail(f"{sid}: the quick agent's run ended {seen['status']!r}")
        create_ms.append((t1 - t0) * 1e3)
        send_ms.append((t2 - t0) * 1e3)
        ready_ms.append((seen["ready"] - t0) * 1e3)
        done_ms.append((seen["done"] - t0) * 1e3)
    return create_ms, send_ms, ready_ms, done_ms


def phase_ingest(c, n, flood):
    sid = create(c, flood, "ingest")
    # a first run warms the environment and the python interpreter's page cache
    run = send(c, sid, "flood 10")
    follow(c, sid, "-1", lambda ev, now: ev.get("type") == "run_completed" and ev.get("run") == run, 60.0)
    st, h, _ = c.request("HEAD", f"/v1/stream/sessions/{sid}/transcript")
    offset = h.get("Stream-Next-Offset")
    t0 = time.monotonic()
    run = send(c, sid, f"flood {n}")
    # wait for the end on the session's state (cheap), then read the transcript's tail for run_completed
    while True:
        st, doc = c.json("GET", f"/v1/sessions/{sid}")
        if st != 200:
            fail(f"GET /v1/sessions/{sid}: {st} {doc!r}")
        if doc.get("status") == "idle" or time.monotonic() - t0 > 110:
            break
        time.sleep(0.02)
    done = {}

    def want(ev, now):
        if ev.get("type") == "run_completed" and ev.get("run") == run:
            done.update(t=now, status=ev.get("status"), result=ev.get("result"))
            return True
        return False

    # reads from the pre-run offset; the events are counted here too
    counts = {"message": 0, "other": 0}
    path = f"/v1/stream/sessions/{sid}/transcript"
    off = offset
    nbytes = 0
    r0 = time.monotonic()
    while True:
        st, hh, raw = c.request("GET", f"{path}?offset={off}", timeout=60)
        if st != 200:
            fail(f"GET {path}: {st}")
        nbytes += len(raw)
        for ev in json.loads(raw) if raw else []:
            if ev.get("run") != run:
                continue
            if ev.get("type") == "message":
                counts["message"] += 1
            else:
                counts["other"] += 1
            want(ev, time.monotonic())
        off = hh.get("Stream-Next-Offset") or off
        if hh.get("Stream-Up-To-Date") == "true":
            break
    read_s = time.monotonic() - r0
    if "t" not in done:
        fail(f"{sid}: no run_completed for the flood run (status {doc.get('status')!r})")
    # the completion time: when the run was over (state poll), bounded by the durable read above
    elapsed = min(done["t"], r0) - t0
    return {"events": counts["message"], "other": counts["other"], "seconds": elapsed, "status": done["status"],
            "read_s": read_s, "bytes": nbytes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--idle", type=int, default=1000)
    a = ap.parse_args()
    quick = ["/bin/true"]
    flood = [sys.executable, os.path.join(HERE, "flood_agent.py")]
    c = Client(a.url)
    ok = True

    base, idle_after, idle_s = phase_idle(c, a.pid, a.idle, quick)
    create_ms, send_ms, ready_ms, done_ms = phase_ready(c, a.sessions, quick)
    time.sleep(0.5)
    ran_after = rss_kib(a.pid)
    ing = phase_ingest(c, a.events, flood)
    hwm = rss_kib(a.pid, "VmHWM")

    print(f"{'figure':<58} {'p50':>10} {'p99':>10}")
    rows = [("(a) create -> environment ready (ms)", ready_ms),
            ("    POST /v1/sessions alone (ms)", create_ms),
            ("    create -> first message accepted (ms)", send_ms),
            ("    create -> run_completed, agent `true` (ms)", done_ms)]
    for name, xs in rows:
        print(f"{name:<58} {pct(xs, 50):>10.2f} {pct(xs, 99):>10.2f}")
    print(f"    ({len(ready_ms)} sessions, one at a time; the agent starts after `ready`)")
    rate = ing["events"] / ing["seconds"] if ing["seconds"] > 0 else float("nan")
    print(f"{'(b) event ingest, one jsonl agent flooding (events/s)':<58} {rate:>10.0f}")
    print(f"    {a.events} events sent, {ing['events']} message events in the transcript "
          f"(+{ing['other']} others of the run), run {ing['status']}, {ing['seconds']:.2f} s; "
          f"reading them back: {ing['bytes'] / 1e6:.1f} MB in {ing['read_s']:.2f} s")
    per_idle = (idle_after - base) * 1024 / a.idle if a.idle else 0
    per_ran = (ran_after - idle_after) * 1024 / a.sessions if a.sessions else 0
    print(f"{'(c) VmRSS fresh server (KiB)':<58} {base:>10}")
    print(f"{'    after %d idle sessions, never run (KiB)' % a.idle:<58} {idle_after:>10}"
          f"   {per_idle:,.0f} B/session (created in {idle_s:.2f} s)")
    print(f"{'    after %d more sessions with one run each (KiB)' % a.sessions:<58} {ran_after:>10}"
          f"   {per_ran:,.0f} B/session")
    print(f"{'    VmHWM at the end (KiB)':<58} {hwm:>10}")
    if ing["events"] != a.events:
        print(f"bench/sessions: FAIL: {ing['events']} message events recorded, {a.events} sent", file=sys.stderr)
        ok = False
    if ing["status"] != "success":
        print(f"bench/sessions: FAIL: the flood run ended {ing['status']!r}", file=sys.stderr)
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
