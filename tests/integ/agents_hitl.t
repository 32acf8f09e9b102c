#!/usr/bin/env python3
"""A person in the loop with the real agent CLIs (pinned in tests/agents), offline against the fakes
in tests/agents, through agentd's HTTP API only (issue 11's tests): Claude Code (its control
protocol), Codex (codex app-server, JSON-RPC) and OpenCode (opencode serve: HTTP and its event
stream).

Checked for each, with "permissions": {"mode": "ask"}: a shell call raises a permission_request
(Claude Code's can_use_tool, Codex's item/commandExecution/requestApproval, OpenCode's
permission.asked); deny -> the fake sees the denial as the tool's result (Claude and OpenCode: the
message given; Codex: "rejected by user") and the run
completes; allow -> the tool runs and its output is in the transcript; an allow rule lets a matching
command through without asking; a timeout denies; remember adds a rule that decides the same call
next time. The agent stays warm: one process answers message after message. Steering during a tool
call reaches the model within that turn (the fake's next request in the turn carries it). An
interrupt during `sleep 30` in a tool ends the run interrupted within 200 ms, and the same process
answers the next message with the conversation intact (the fake sees the history), and a message
queued behind an interrupted run (it starts the moment that run ends) gets its own answer; Claude Code and
OpenCode kill the sleep, Codex leaves it running (said in a diagnostic; agentd kills it with the
process group when the process goes). The second message's latency with the warm process is
measured against a fresh process per message ("warm": false). A CLI that is not installed is a TAP
skip with the reason.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, message_texts, procs, run_test, session_transcript, wait_for  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "agents"))
from harness import FakeModel, claude_bin, codex_bin, opencode_bin, tool_results  # noqa: E402

T = 120.0
TAP = None
SRV = None


def codex_results(request):
    """[(call_id, output, None)] for every function_call_output in a recorded /v1/responses request."""
    out = []
    for it in (request.get("body") or {}).get("input") or []:
        if isinstance(it, dict) and it.get("type") == "function_call_output":
            o = it.get("output")
            out.append((it.get("call_id"), o if isinstance(o, str) else json.dumps(o), None))
    return out


def chat_results(request):
    """[(tool_call_id, content, None)] for every role "tool" message of a recorded /v1/chat/completions
    request."""
    out = []
    for m in (request.get("body") or {}).get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "tool":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            out.append((m.get("tool_call_id"), c if isinstance(c, str) else json.dumps(c), None))
    return out


AGENTS = {
    # the fake, the shell tool's call, the name agentd's policy sees, what the model reads on a deny
    "claude-code": {"fake": "anthropic", "call": lambda i, c: {"id": i, "name": "Bash", "input": {"command": c}},
                    "tool": "Bash", "results": tool_results, "denied": lambda msg: msg, "opts": {},
                    "kills_sleep": True},
    "codex": {"fake": "responses", "call": lambda i, c: {"id": i, "name": "exec_command", "input": {"cmd": c}},
              "tool": "command_execution", "results": codex_results, "denied": lambda msg: "rejected by user",
              "opts": {"model": "fake-model"}, "kills_sleep": False},
    "opencode": {"fake": "chat",
                 "call": lambda i, c: {"id": i, "name": "bash", "input": {"command": c, "description": "run it"}},
                 "tool": "bash", "results": chat_results, "denied": lambda msg: msg,
                 "opts": {"model": "fake-model"}, "kills_sleep": True},
}


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


def ask_and_answer(label, cfg, fake, sid, command, answer, then="after: {{tool_result}}"):
    """A message whose model calls the shell with command; answer (a body, or None: leave it) the
    request it raises. Returns (run_completed, transcript, fake requests of the run)."""
    fake.set_script([{"text": "I will run it.", "tool_use": cfg["call"]("call_1", command)}, {"text": then}])
    n = len(fake.requests("main"))
    run = send(sid, f"please run {command}")["run"]
    if answer is not None:
        reqs = pending(sid)
        if reqs:
            api("POST", f"/v1/sessions/{sid}/permissions/{reqs[0]['request']}", answer)
    ev, evs = completed(sid, run)
    return run, ev, evs, fake.requests("main")[n:]


def test_approvals(label, cfg, fake, sid, ws):
    tool = cfg["tool"]
    fake.set_script([{"text": "I will run it.", "tool_use": cfg["call"]("call_deny", "touch denied.txt")},
                     {"text": "after deny: {{tool_result}}"}])
    n = len(fake.requests("main"))
    run = send(sid, "please make the file")["run"]
    reqs = pending(sid)
    if not TAP.ok(reqs and reqs[0].get("tool") == tool and reqs[0]["input"].get("command") == "touch denied.txt",
                  f"{label} ask: the shell call waits as a permission_request", reqs):
        return
    api("POST", f"/v1/sessions/{sid}/permissions/{reqs[0]['request']}", {"decision": "deny", "message": "denied by the reviewer"})
    ev, evs = completed(sid, run)
    TAP.ok(ev and ev.get("status") == "success", f"{label} deny: the run completes", ev)
    seen = [r for q in fake.requests("main")[n:] for r in cfg["results"](q) if r[0] == "call_deny"]
    want = cfg["denied"]("denied by the reviewer")
    TAP.ok(seen and want in seen[0][1], f"{label} deny: the fake sees the denial as the tool's result ({want!r})",
           seen)
    TAP.ok(not os.path.exists(os.path.join(ws, "denied.txt")), f"{label} deny: the command did not run")

    run, ev, evs, _ = ask_and_answer(label, cfg, fake, sid, "touch allowed.txt && echo made-it", {"decision": "allow"})
    post = of_type(evs, "post_tool", run)
    TAP.ok(ev and ev.get("status") == "success" and post and "made-it" in post[-1].get("output", "") and
           os.path.exists(os.path.join(ws, "allowed.txt")), f"{label} allow: the tool ran, its output is in the transcript",
           post)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"allow": [f"{tool}(touch rule*)"]}})
    run, ev, evs, _ = ask_and_answer(label, cfg, fake, sid, "touch rule-says-yes.txt", None)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(ev and resp and resp[0].get("by") == "policy" and resp[0].get("rule") == f"{tool}(touch rule*)" and
           os.path.exists(os.path.join(ws, "rule-says-yes.txt")), f"{label} rule: a matching command runs without asking",
           resp)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"timeout_ms": 500}})
    run, ev, evs, _ = ask_and_answer(label, cfg, fake, sid, "touch late.txt", None)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(ev and ev.get("status") == "success" and resp and resp[0].get("by") == "timeout" and
           not os.path.exists(os.path.join(ws, "late.txt")), f"{label} timeout: the request is denied, the run completes",
           resp)

    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"timeout_ms": None}})
    run, ev, evs, _ = ask_and_answer(label, cfg, fake, sid, "touch remembered.txt", {"decision": "allow", "remember": "session"})
    rule = f"{tool}(touch remembered.txt)"
    os.unlink(os.path.join(ws, "remembered.txt"))
    run, ev, evs, _ = ask_and_answer(label, cfg, fake, sid, "touch remembered.txt", None)
    resp = of_type(evs, "permission_response", run)
    TAP.ok(resp and resp[0].get("by") == "policy" and resp[0].get("rule") == rule and
           os.path.exists(os.path.join(ws, "remembered.txt")),
           f"{label} remember: the rule it added lets the same call through next time", resp)
    api("PATCH", f"/v1/sessions/{sid}", {"permissions": {"mode": "allow", "allow": [], "deny": []}})


def test_steer_interrupt(label, cfg, fake, sid):
    fake.set_script([{"text": "Working.", "tool_use": cfg["call"]("call_slow", "sleep 3; echo slept")},
                     {"text": "done: {{tool_result}}"}])
    n = len(fake.requests("main"))
    run = send(sid, "a slow job")["run"]
    wait_for(lambda: of_type(events(sid), "pre_tool", run), T, 0.05)
    time.sleep(0.3)
    doc = send(sid, "STEERED: and mention bananas", mode="steer")
    ev, evs = completed(sid, run)
    after = [q for q in fake.requests("main")[n:] if any(r[0] == "call_slow" for r in cfg["results"](q))]
    TAP.ok(doc.get("steered") is True and ev and ev.get("status") == "success" and after and
           "STEERED: and mention bananas" in all_text(after[0]),
           f"{label} steer: the fake's next request in the turn carries the steered text",
           (doc, [all_text(q)[-600:] for q in after[:1]]))
    TAP.ok(len(fake.requests("main")[n:]) == 2, f"{label} steer: no extra turn was started for it",
           len(fake.requests("main")[n:]))
    pid = agent_pid(sid)  # Claude Code's process restarts once the policy went back to allow

    fake.set_script([{"text": "Sleeping.", "tool_use": cfg["call"]("call_30", "sleep 30; echo slept")},
                     {"when": "after the interrupt", "text": "second: {{prompt}}"}])
    run = send(sid, "sleep for a while")["run"]
    pid = wait_for(lambda: agent_pid(sid), T) or pid
    wait_for(lambda: [p for p in descendants(pid) if p[5] == "sleep"], T, 0.05)
    time.sleep(0.5)
    sleeps = [p[0] for p in descendants(pid) if p[5] == "sleep"]
    st, doc = api("POST", f"/v1/sessions/{sid}/runs/{run}/interrupt")
    ev, evs = completed(sid, run, 10)
    intr = of_type(evs, "interrupt", run)
    ms = ev["ts"] - intr[0]["ts"] if ev and intr else None
    TAP.ok(st == 200 and ev and ev.get("status") == "interrupted", f"{label} interrupt: the run ends interrupted", ev)
    load = os.getloadavg()[0]  # 200 ms with a core free; on a loaded machine the order of magnitude
    bound = 200 if load < 2 else 1000
    TAP.ok(ms is not None and ms <= bound,
           f"{label} interrupt: within {bound} ms of the interrupt ({ms} ms, load average {load:.1f})")
    time.sleep(0.3)
    left = [p for p in procs() if p[0] in sleeps and p[1] != "Z"]
    if cfg["kills_sleep"]:
        TAP.ok(sleeps and not left, f"{label} interrupt: the tool's sleep is gone", (sleeps, left))
    else:
        TAP.diag(f"{label} interrupt: the tool's sleep {'is still running' if left else 'is gone'} "
                 f"(the CLI leaves it to its process group)")
    n = len(fake.requests("main"))
    run2 = send(sid, "after the interrupt: what now?")["run"]
    ev2, evs = completed(sid, run2)
    reqs = fake.requests("main")[n:]
    TAP.ok(ev2 and ev2.get("status") == "success" and agent_pid(sid) == pid,
           f"{label} interrupt: the same process answers the next message", (ev2, pid, agent_pid(sid)))
    TAP.ok(reqs and "sleep for a while" in all_text(reqs[0]) and "call_30" in all_text(reqs[0]) and
           "a slow job" in all_text(reqs[0]), f"{label} interrupt: the conversation is intact (the fake sees the history)",
           all_text(reqs[0])[-1500:] if reqs else None)

    # A message queued behind the interrupted run starts the moment that run ends, while the agent
    # may still be winding the aborted turn down (OpenCode reports idle a second time, or not at all,
    # and the aborted tool's post_tool comes late): the new run must still get its own answer
    # (Claude Code puts "[Request interrupted by user for tool use]" before the prompt it sends).
    fake.set_script([{"text": "Sleeping again.", "tool_use": cfg["call"]("call_30b", "sleep 30; echo slept")},
                     {"when": "queued behind", "text": "third: {{prompt}}"}])
    run = send(sid, "sleep once more")["run"]
    wait_for(lambda: [p for p in descendants(agent_pid(sid) or pid) if p[5] == "sleep"], T, 0.05)
    time.sleep(0.3)
    run3 = send(sid, "queued behind the interrupt: and now?")["run"]
    api("POST", f"/v1/sessions/{sid}/runs/{run}/interrupt")
    ev, _ = completed(sid, run, 10)
    ev3, evs = completed(sid, run3)
    said = json.dumps(of_type(evs, "message", run3))
    TAP.ok(ev and ev.get("status") == "interrupted" and ev3 and ev3.get("status") == "success" and
           "third: " in said and "queued behind the interrupt" in said, f"{label} interrupt: a message queued behind it gets its own answer",
           (ev, ev3, said[:1000], [e.get("type") for e in evs if e.get("run") == run3]))


def first_event_ms(sid, run):
    """Milliseconds from the run's start to the first event the agent wrote for it."""
    evs = events(sid)
    start = next((e["ts"] for e in evs if e.get("type") == "run_start" and e.get("run") == run), None)
    first = next((e["ts"] for e in evs if e.get("run") == run and "native" in e), None)
    return first - start if start is not None and first is not None else None


def test_latency(label, cfg, fake, program):
    out = {}
    for warm in (True, False):
        st, doc = api("POST", "/v1/sessions", {"agent": label, "program": program, "base_url": fake.url,
                                               "api_key": "sk-fake", "mcp": False, "warm": warm, **cfg["opts"]})
        sid = doc["id"]
        times = []
        for i in range(3):
            fake.set_script([{"text": f"answer {i}"}])
            run = send(sid, f"message {i}")["run"]
            completed(sid, run)
            times.append(first_event_ms(sid, run))
        out[warm] = times
        api("DELETE", f"/v1/sessions/{sid}")
    TAP.diag(f"{label} message -> first agent event (ms): warm process {out[True]}, a fresh process per message "
             f"{out[False]}")
    warm2, cold2 = out[True][1:], out[False][1:]
    # Twice as fast, not three times: under ASan on a loaded machine (CI, 2 cores) the warm process's
    # answers took 10-13 ms against 37-38 for a fresh process, a ratio of 2.9; without a warm process
    # the two are the same.
    TAP.ok(all(w is not None for w in warm2 + cold2) and max(warm2) * 2 < min(cold2),
           f"{label} latency: the warm process answers later messages much sooner ({warm2} vs {cold2} ms)")


def flow(label, cfg, program):
    fake = FakeModel(cfg["fake"], [])
    try:
        fake.start()
        st, doc = api("POST", "/v1/sessions", {"agent": label, "program": program, "base_url": fake.url,
                                               "api_key": "sk-fake", "mcp": False, "permissions": {"mode": "ask"},
                                               **cfg["opts"]})
        if not TAP.ok(st == 201, f"{label}: session created", f"{st} {doc!r}"):
            return
        sid, ws = doc["id"], doc["workspace"]
        for t in (lambda: test_approvals(label, cfg, fake, sid, ws), lambda: test_steer_interrupt(label, cfg, fake, sid),
                  lambda: test_latency(label, cfg, fake, program)):
            try:
                t()
            except Exception:  # noqa: BLE001 — one part's failure must not hide the others'
                import traceback
                TAP.ok(False, f"{label}: raised", traceback.format_exc())
        pid = agent_pid(sid)
        api("DELETE", f"/v1/sessions/{sid}")
        wait_for(lambda: not any(p[0] == pid and p[1] != "Z" for p in procs()), 10)
        TAP.ok(pid and not any(p[0] == pid and p[1] != "Z" for p in procs()),
               f"{label}: the warm process goes with its session")
    finally:
        fake.cleanup()


def main(tap):
    global TAP, SRV
    TAP = tap
    SRV = Server(args=["--agent-idle", "120000"])
    SRV.start()
    st, doc = api("GET", "/v1/agents")
    caps = {a["name"]: a.get("capabilities") for a in (doc or {}).get("agents", [])}
    tap.is_(caps.get("opencode"), {"approvals": True, "steer": True, "interrupt": True, "warm": True},
            "agents: opencode (opencode serve) can be asked, steered, interrupted and kept warm")
    found = {"claude-code": claude_bin(), "codex": codex_bin(), "opencode": opencode_bin()}
    for label, cfg in AGENTS.items():
        if not found[label]:
            tap.skip(f"{label} end to end", f"no {label} binary in tests/agents (scripts/deps.sh test)")
            continue
        flow(label, cfg, found[label])
    tap.check_clean_exit(SRV)


if __name__ == "__main__":
    run_test(main)
