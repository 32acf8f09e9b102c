#!/usr/bin/env python3
"""bench/sessions — a person in the loop and warm agents (issue 11), through agentd's HTTP API
(python3 standard library only; run by run.sh against a fresh agentd).

    hitlbench.py --url URL [--messages 20] [--asks 500]

  (d) message -> first agent event, Claude Code against tests/agents/fake_anthropic.mjs: two
      sessions, one warm (one process answers every message) and one "warm": false (a fresh
      `claude` per message); --messages messages each, one after the other, each answered by one
      text turn of the fake. Measured from writing POST .../messages to reading, on a live
      long-poll of the transcript, the run's first event that came from the agent's output (the
      first with a `native` field). p50, p99 of each and the ratio fresh/warm of the p50s (target:
      warm >= 10x faster). The first message of each session is left out (both start a process).
      Skipped, with the reason, when tests/agents has no Claude Code or node is missing.
  (e) permission request -> answer, with bench/sessions/permagent.py (a jsonl agent that asks
      before each pretend tool call and times the answer with CLOCK_MONOTONIC):
      - by policy: a session whose policy is "ask" with an allow rule matching the calls: each
        request is decided by agentd at once (its permission_request and permission_response are
        written to the transcript); the agent's figure, from writing its request to reading the
        answer (the moment its tool would start), is agentd's whole overhead plus two pipe hops;
        --asks requests. Target: p50 <= 1 ms.
      - by a person: mode "ask", no rule; the client follows the transcript (long-poll), and answers
        each request it sees at once: request written -> the client has it; the client's POST
        written -> the agent has the answer (the answer's records committed first); the POST's own
        round trip. --asks / 5 requests.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from sessbench import Client, fail, follow, pct  # noqa: E402

AGENTS = os.path.join(ROOT, "tests", "agents")


def first_agent_event_ms(c, sid, text):
    """Sends text; returns ms from writing the POST to reading its run's first agent event, and
    waits for the run's end."""
    st, h, _ = c.request("HEAD", f"/v1/stream/sessions/{sid}/transcript")
    offset = h.get("Stream-Next-Offset")
    t0 = time.monotonic()
    st, doc = c.json("POST", f"/v1/sessions/{sid}/messages", {"text": text})
    if st != 202:
        fail(f"POST messages: {st} {doc!r}")
    run = doc["run"]
    seen = {}

    def want(ev, now):
        if ev.get("run") == run and "native" in ev and "first" not in seen:
            seen["first"] = now
        if ev.get("type") == "run_completed" and ev.get("run") == run:
            seen["status"] = ev.get("status")
            return True
        return False

    follow(c, sid, offset, want, timeout=120.0)
    if seen.get("status") != "success" or "first" not in seen:
        fail(f"{sid}: run {run} ended {seen.get('status')!r} without an agent event")
    return (seen["first"] - t0) * 1e3


def claude_program():
    for p in (os.path.join(AGENTS, "node_modules", ".bin", "claude"),):
        if os.path.isfile(p) and os.path.getsize(os.path.realpath(p)) > 1 << 20:
            return p
    return None


def phase_warm(c, messages):
    program = claude_program()
    if program is None or shutil.which("node") is None:
        print("(d) skipped: no Claude Code in tests/agents/node_modules (scripts/deps.sh test) or no node")
        return True
    sys.path.insert(0, AGENTS)
    from harness import FakeModel
    fake = FakeModel("anthropic", [{"text": f"answer {i}"} for i in range(4 * messages + 8)])
    fake.start()
    figures = {}
    try:
        for warm in (True, False):
            st, doc = c.json("POST", "/v1/sessions", {"agent": "claude-code", "program": program,
                                                      "base_url": fake.url, "api_key": "sk-fake", "mcp": False,
                                                      "warm": warm, "tags": ["hitlbench"]})
            if st != 201:
                fail(f"create claude-code session: {st} {doc!r}")
            ms = [first_agent_event_ms(c, doc["id"], f"message {i}") for i in range(messages + 1)]
            figures[warm] = ms[1:]
            c.json("DELETE", f"/v1/sessions/{doc['id']}")
    finally:
        fake.cleanup()
    w50, c50 = pct(figures[True], 50), pct(figures[False], 50)
    print(f"(d) message -> first agent event, Claude Code (ms)          p50       p99   ({messages} messages each)")
    print(f"    warm process                                       {w50:9.2f} {pct(figures[True], 99):9.2f}")
    print(f"    a fresh process per message                        {c50:9.2f} {pct(figures[False], 99):9.2f}")
    ratio = c50 / w50 if w50 > 0 else float("inf")
    print(f"    ratio (fresh / warm, p50)                          {ratio:9.1f}x   target >= 10x: "
          f"{'PASS' if ratio >= 10 else 'FAIL'}")
    return ratio >= 10


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def phase_policy(c, asks, outdir):
    out = os.path.join(outdir, "policy.jsonl")
    st, doc = c.json("POST", "/v1/sessions", {
        "agent": "jsonl", "command": [sys.executable, os.path.join(HERE, "permagent.py")], "mcp": False,
        "env": {"PERMAGENT_OUT": out}, "permissions": {"mode": "ask", "allow": ["Bash(echo bench-*)"]}})
    if st != 201:
        fail(f"create: {st} {doc!r}")
    sid = doc["id"]
    first_agent_event_ms(c, sid, "ask 20")  # warm-up: the process, the environment
    first_agent_event_ms(c, sid, f"ask {asks}")
    recs = read_log(out)[20:]
    if len(recs) != asks or any(r["decision"] != "allow" for r in recs):
        fail(f"policy: {len(recs)} answers for {asks} requests, or one was not allow")
    rtt = [(r["answered_ns"] - r["written_ns"]) / 1e6 for r in recs]
    p50 = pct(rtt, 50)
    print(f"(e) permission request -> answer (ms)                        p50       p99")
    print(f"    by policy (an allow rule), as the agent sees it    {p50:9.3f} {pct(rtt, 99):9.3f}   "
          f"({asks} requests; target p50 <= 1 ms: {'PASS' if p50 <= 1.0 else 'FAIL'})")
    c.json("DELETE", f"/v1/sessions/{sid}")
    return p50 <= 1.0


def phase_person(c, url, asks, outdir):
    out = os.path.join(outdir, "person.jsonl")
    st, doc = c.json("POST", "/v1/sessions", {
        "agent": "jsonl", "command": [sys.executable, os.path.join(HERE, "permagent.py")], "mcp": False,
        "env": {"PERMAGENT_OUT": out}, "permissions": {"mode": "ask"}})
    sid = doc["id"]
    c2 = Client(url)  # answers on a connection of its own while c long-polls
    st, h, _ = c.request("HEAD", f"/v1/stream/sessions/{sid}/transcript")
    offset = h.get("Stream-Next-Offset")
    st, doc = c.json("POST", f"/v1/sessions/{sid}/messages", {"text": f"ask {asks}"})
    run = doc["run"]
    seen_ns, post_ns, post_ms = {}, {}, []
    done = {}

    def want(ev, now):
        if ev.get("type") == "permission_request" and ev.get("run") == run:
            rid = ev["request"]
            seen_ns[rid] = time.monotonic_ns()
            post_ns[rid] = time.monotonic_ns()
            st2, _ = c2.json("POST", f"/v1/sessions/{sid}/permissions/{rid}", {"decision": "allow"})
            post_ms.append((time.monotonic_ns() - post_ns[rid]) / 1e6)
            if st2 != 200:
                fail(f"answer {rid}: {st2}")
        if ev.get("type") == "run_completed" and ev.get("run") == run:
            done["status"] = ev.get("status")
            return True
        return False

    follow(c, sid, offset, want, timeout=120.0)
    recs = read_log(out)
    if len(recs) != asks or len(seen_ns) != asks:
        fail(f"person: {len(recs)} answers, {len(seen_ns)} requests seen, for {asks}")
    order = sorted(seen_ns, key=lambda k: seen_ns[k])
    seen = [(seen_ns[k] - r["written_ns"]) / 1e6 for k, r in zip(order, recs)]
    told = [(r["answered_ns"] - post_ns[k]) / 1e6 for k, r in zip(order, recs)]
    print(f"    by a person: request written -> the client has it  {pct(seen, 50):9.3f} {pct(seen, 99):9.3f}   "
          f"({asks} requests, transcript long-poll)")
    print(f"    by a person: answer POSTed -> the agent has it     {pct(told, 50):9.3f} {pct(told, 99):9.3f}   "
          f"(its records committed first)")
    print(f"    by a person: the answer's POST round trip          {pct(post_ms, 50):9.3f} {pct(post_ms, 99):9.3f}")
    c.json("DELETE", f"/v1/sessions/{sid}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--asks", type=int, default=500)
    ap.add_argument("--only", choices=["warm", "permissions"], default=None)
    a = ap.parse_args()
    c = Client(a.url)
    ok = True
    tmp = tempfile.mkdtemp(prefix="hitlbench-")
    try:
        if a.only in (None, "warm"):
            ok &= phase_warm(c, a.messages)
        if a.only in (None, "permissions"):
            ok &= phase_policy(c, a.asks, tmp)
            phase_person(c, a.url, max(1, a.asks // 5), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if os.environ.get("BENCH_STRICT") == "1" and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
