#!/usr/bin/env python3
"""A person in the loop with the real Claude Code (pinned in tests/agents), offline against
tests/agents/fake_anthropic.mjs, through agentd's HTTP API only (issue 11's tests for Claude Code).

Checked, with "permissions": {"mode": "ask"}: a Bash call raises a permission_request (Claude Code's
can_use_tool, over its control protocol); deny -> the fake sees the denial as the tool's result and
the run completes; allow -> the tool runs and its output is in the transcript; an allow rule lets a
matching command through without asking; a timeout denies; remember adds a rule that decides the
same call next time. Claude Code stays warm: one process answers message after message. Steering
during a tool call reaches the model within that turn (the fake's next request in the turn carries
it). An interrupt during `sleep 30` in a tool ends the run interrupted within 200 ms, kills the
sleep, and the same process answers the next message with the conversation intact (the fake sees
the history). The second message's latency with the warm process is measured against a fresh
process per message ("warm": false). A CLI that is not installed is a TAP skip with the reason.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, message_texts, procs, run_test, session_transcript, wait_for  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "agents"))
from harness import FakeModel, claude_bin, tool_results  # noqa: E402

T = 120.0
TAP = None
SRV = None


def api(method, path, body=None, timeout=30.0):
    data = json.dumps(body).encode() if body is not None else None
    r = SRV.request(method, path, data, {"Content-Type": "application/json"} if data else {}, timeout=timeout)
    try:
        return r.status, (json.loads(r.body) if r.body else None)
    except ValueError:
        return r.status, None


def send(sid, text, mode=None):
    st, doc = api("POST", f"/v1/sessions/{sid}/messages", {"text": text, **({"mode": mode} if mode else {})})
    if st != 202:
        raise RuntimeError(f"send {text!r}: {st} {doc!r}")
    return doc


def events(sid):
    return session_transcript(SRV, sid)


def completed(sid, run, timeout=T):
    box = {}

    def done():
        box["evs"] = events(sid)
        box["ev"] = next((e for e in box["evs"] if e.get("type") == "run_completed" and e.get("run") == run), None)
        return box["ev"]
    wait_for(done, timeout, 0.05)
    return box.get("ev"), box.get("evs", [])


def pending(sid, timeout=T):
    return wait_for(lambda: (api("GET", f"/v1/sessions/{sid}/permissions")[1] or {}).get("permissions"), timeout,
                    0.05) or []


def of_type(evs, kind, run):
    return [e for e in evs if e.get("type") == kind and e.get("run") == run]


def agent_pid(sid):
    return ((api("GET", f"/v1/sessions/{sid}")[1] or {}).get("agent_process") or {}).get("pid")


def descendants(pid):
    """The live processes under pid (children, theirs, ...), as procs() gives them."""
    ps = [p for p in procs() if p[1] != "Z"]
    out, seen = [], {pid}
    grew = True
    while grew:
        grew = False
        for p in ps:
            if p[2] in seen and p[0] not in seen:
                seen.add(p[0])
                out.append(p)
                grew = True
    return out


def all_text(req):
    return json.dumps((req or {}).get("body") or {})


def test_approvals(fake, sid, ws):
    fake.set_script([{"text": "I will run it.", "tool_use": {"id": "toolu_deny", "name": "Bash",
                                                          "input": {"command": "touch denied.txt && echo made"}}},
                     {"text": "after deny: {{tool_result}}"}])
    n = len(fake.requests("main"))
    run = send(sid, "please make the file")["run"]
    reqs = pending(sid)
    if not TAP.ok(reqs and reqs[0].get("tool") == "Bash" and
                  reqs[0]["input"].get("command") == "touch denied.txt && echo made",
                  "ask: Claude Code's Bash call waits as a permission_request", reqs):
        return
    st, doc = api("POST", f"/v1/sessions/{sid}/permissions/{reqs[0]['request']}",
                  {"decision": "deny", "message": "denied by the reviewer"})
    ev, evs = completed(sid, run)
    TAP.ok(ev and ev.get("status") == "success", "deny: the run completes", ev)
    seen = [r for q in fake.requests("main")[n:] for r in tool_results(q) if r[0] == "toolu_deny"]
    TAP.ok(seen and seen[0][1] == "denied by the reviewer" and seen[0][2] is True,
           "deny: the fake sees the denial as the tool's (error) result", seen)
    TAP.ok(not os.path.exists(os.path.join(ws, "denied.txt")), "deny: the command did not run")

    fake.set_script([{"text": "Again.", "tool_use": {"id": "toolu_allow", "name": "Bash",
                                                   "input": {"command": "touch allowed.txt && echo made-it"}}},
                     {"text": "after allow: {{tool_result}}"}])
    run = send(sid, "now really make it")["run"]
    reqs = pending(sid)
    if reqs:
        api("POST", f"/v1/sessions/{sid}/permissions/{reqs[0]['request']}", {"decision": "allow"})
    ev, evs = completed(sid, run)
    post = of_type(evs, "post_tool", run)
    TAP.ok(ev and ev.get("status") == "success" and post and "made-it" in post[-1].get("output", "") and
           os.path.exists(os.path.join(ws, "allowed.txt")), "allow: the tool ran, its output is in the transcript",
           post)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"allow": ["Bash(echo rule*)"]}})
    fake.set_script([{"text": "Rule.", "tool_use": {"id": "toolu_rule", "name": "Bash",
                                                  "input": {"command": "echo rule-says-yes"}}},
                     {"text": "after rule: {{tool_result}}"}])
    run = send(sid, "use the rule")["run"]
    ev, evs = completed(sid, run)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(ev and resp and resp[0].get("by") == "policy" and resp[0].get("rule") == "Bash(echo rule*)" and
           "rule-says-yes" in "".join(message_texts(evs, run)), "rule: a matching command runs without asking", resp)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"timeout_ms": 500}})
    fake.set_script([{"text": "Slow.", "tool_use": {"id": "toolu_late", "name": "Bash",
                                                  "input": {"command": "touch late.txt"}}},
                     {"text": "after timeout: {{tool_result}}"}])
    run = send(sid, "nobody answers")["run"]
    ev, evs = completed(sid, run)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(ev and ev.get("status") == "success" and resp and resp[0].get("by") == "timeout" and
           not os.path.exists(os.path.join(ws, "late.txt")), "timeout: the request is denied, the run completes",
           resp)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"timeout_ms": None}})
    script = [{"text": "Mine.", "tool_use": {"id": "toolu_rem1", "name": "Bash", "input": {"command": "echo remembered"}}},
              {"text": "first: {{tool_result}}"}]
    fake.set_script(script)
    run = send(sid, "remember this one")["run"]
    reqs = pending(sid)
    st, doc = api("POST", f"/v1/sessions/{sid}/permissions/{reqs[0]['request'] if reqs else 'x'}",
                  {"decision": "allow", "remember": "session"})
    completed(sid, run)
    fake.set_script(script)
    run = send(sid, "and again")["run"]
    ev, evs = completed(sid, run)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(st == 200 and doc.get("rule") == "Bash(echo remembered)" and resp and resp[0].get("by") == "policy",
           "remember: the rule it added lets the same call through next time", (doc, resp))
    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"mode": "allow", "allow": [], "deny": []}})


def test_steer_interrupt(fake, sid):
    fake.set_script([{"text": "Working.", "tool_use": {"id": "toolu_slow", "name": "Bash",
                                                     "input": {"command": "sleep 3; echo slept"}}},
                     {"text": "done: {{tool_result}}"}])
    n = len(fake.requests("main"))
    run = send(sid, "a slow job")["run"]
    wait_for(lambda: of_type(events(sid), "pre_tool", run), T, 0.05)
    time.sleep(0.3)
    doc = send(sid, "STEERED: and mention bananas", mode="steer")
    ev, evs = completed(sid, run)
    after = [q for q in fake.requests("main")[n:] if any(r[0] == "toolu_slow" for r in tool_results(q))]
    TAP.ok(doc.get("steered") is True and ev and ev.get("status") == "success" and after and
           "STEERED: and mention bananas" in all_text(after[0]),
           "steer: the fake's next request in the turn carries the steered text",
           (doc, [all_text(q)[-600:] for q in after[:1]]))
    TAP.ok(len([q for q in fake.requests("main")[n:]]) == 2, "steer: no extra turn was started for it",
           len(fake.requests("main")[n:]))
    pid = agent_pid(sid)  # the process started without approvals once the policy went back to allow

    fake.set_script([{"text": "Sleeping.", "tool_use": {"id": "toolu_30", "name": "Bash",
                                                      "input": {"command": "sleep 30; echo slept"}}},
                     {"when": "after the interrupt", "text": "second: {{prompt}}"}])
    run = send(sid, "sleep for a while")["run"]
    wait_for(lambda: [p for p in descendants(pid) if p[5] == "sleep"], T, 0.05)
    time.sleep(0.5)
    sleeps = [p[0] for p in descendants(pid) if p[5] == "sleep"]
    st, doc = api("POST", f"/v1/sessions/{sid}/runs/{run}/interrupt")
    ev, evs = completed(sid, run, 10)
    intr = of_type(evs, "interrupt", run)
    ms = ev["ts"] - intr[0]["ts"] if ev and intr else None
    TAP.ok(st == 200 and ev and ev.get("status") == "interrupted", "interrupt: the run ends interrupted", ev)
    TAP.ok(ms is not None and ms <= 200, f"interrupt: within 200 ms of the interrupt ({ms} ms)")
    time.sleep(0.3)
    left = [p for p in procs() if p[0] in sleeps and p[1] != "Z"]
    TAP.ok(sleeps and not left, "interrupt: the tool's sleep is gone", (sleeps, left))
    n = len(fake.requests("main"))
    run2 = send(sid, "after the interrupt: what now?")["run"]
    ev2, evs = completed(sid, run2)
    reqs = fake.requests("main")[n:]
    TAP.ok(ev2 and ev2.get("status") == "success" and agent_pid(sid) == pid,
           "interrupt: the same process answers the next message", (ev2, pid, agent_pid(sid)))
    TAP.ok(reqs and "sleep for a while" in all_text(reqs[0]) and "toolu_30" in all_text(reqs[0]) and
           "a slow job" in all_text(reqs[0]), "interrupt: the conversation is intact (the fake sees the history)",
           all_text(reqs[0])[-1500:] if reqs else None)


def first_event_ms(sid, run):
    """Milliseconds from the run's start to the first event the agent wrote for it."""
    evs = events(sid)
    start = next((e["ts"] for e in evs if e.get("type") == "run_start" and e.get("run") == run), None)
    first = next((e["ts"] for e in evs if e.get("run") == run and e.get("type") not in ("run_start", "status")), None)
    return first - start if start is not None and first is not None else None


def test_latency(fake, program):
    out = {}
    for warm in (True, False):
        st, doc = api("POST", "/v1/sessions", {"agent": "claude-code", "program": program, "base_url": fake.url,
                                               "api_key": "sk-fake", "mcp": False, "warm": warm})
        sid = doc["id"]
        times = []
        for i in range(3):
            fake.set_script([{"text": f"answer {i}"}])
            run = send(sid, f"message {i}")["run"]
            completed(sid, run)
            times.append(first_event_ms(sid, run))
        out[warm] = times
        api("DELETE", f"/v1/sessions/{sid}")
    TAP.diag(f"message -> first agent event (ms): warm process {out[True]}, fresh process per message {out[False]}")
    warm2, cold2 = out[True][1:], out[False][1:]
    TAP.ok(all(w is not None for w in warm2 + cold2) and max(warm2) * 3 < min(cold2),
           f"latency: the warm process answers later messages much sooner ({warm2} vs {cold2} ms)")


def main(tap):
    global TAP, SRV
    TAP = tap
    program = claude_bin()
    if not program:
        tap.skip("Claude Code end to end", "no claude binary in tests/agents (scripts/deps.sh test)")
        return
    SRV = Server(args=["--agent-idle", "120000"])
    SRV.start()
    fake = FakeModel("anthropic", [])
    try:
        fake.start()
        st, doc = api("POST", "/v1/sessions", {"agent": "claude-code", "program": program, "base_url": fake.url,
                                               "api_key": "sk-fake", "mcp": False,
                                               "permissions": {"mode": "ask"}})
        if not tap.ok(st == 201, "session created", f"{st} {doc!r}"):
            return
        sid, ws = doc["id"], doc["workspace"]
        for t in (lambda: test_approvals(fake, sid, ws), lambda: test_steer_interrupt(fake, sid),
                  lambda: test_latency(fake, program)):
            try:
                t()
            except Exception:  # noqa: BLE001 — one part's failure must not hide the others'
                import traceback
                tap.ok(False, "raised", traceback.format_exc())
        pid = agent_pid(sid)
        rc = SRV.stop()
        tap.ok(rc == 0 and pid and not any(p[0] == pid and p[1] != "Z" for p in procs()),
               f"the warm Claude Code process goes with the server (exit {rc})")
    finally:
        fake.cleanup()


if __name__ == "__main__":
    run_test(main)
