#!/usr/bin/env python3
"""Agents reach agentd's MCP `runtime` tool on a server that requires a token (--token).

For Claude Code, Codex and OpenCode (each skipped when its CLI is not installed): a session runs the
real CLI against its fake model with agentd's MCP wired in (the default). Run 1 only answers, so the
fake records the tools the CLI offers; the runtime tool must be among them. Run 2's script calls it
twice — `export AGENTD_E2E=42`, then `echo $AGENTD_E2E` — and the second result must reach the model
as 42, with both calls in the session's transcript as `runtime` events.

The agent's credential is its own: the token agentd put in the agent's MCP URL opens that session's
MCP endpoint and nothing else (another session's endpoint, the session itself, the runtime HTTP
API: 401), and a wrong one opens nothing.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test, session_run  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "agents"))
from harness import FakeModel, claude_bin, codex_bin, opencode_bin  # noqa: E402

TOKEN = "integ-server-token"
RUN_TIMEOUT = 120.0
CODE1 = "export AGENTD_E2E=42"
CODE2 = "echo $AGENTD_E2E"
AGENTS = {
    "claude-code": {"fake": "anthropic", "opts": {}, "bin": claude_bin},
    "codex": {"fake": "responses", "opts": {"model": "fake-model"}, "bin": codex_bin},
    "opencode": {"fake": "chat", "opts": {"model": "fake-model"}, "bin": opencode_bin},
}
TAP = None
SRV = None


def api(method, path, body=None, auth=True, timeout=30.0):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    r = SRV.request(method, path, data, headers, timeout=timeout, auth=auth)
    try:
        return r.status, json.loads(r.body) if r.body else None
    except ValueError:
        return r.status, None


def run_and_wait(sid, text):
    run, done, evs, _ = session_run(SRV, sid, text, RUN_TIMEOUT)
    return run, done, evs


def tool_names(req):
    """Function names offered in a recorded request: Anthropic and Responses `name`, Chat Completions
    `function.name`; a Responses `namespace` (Codex groups an MCP server's tools in one) gives
    <namespace>__<name> for each of its tools."""
    names = []
    for t in (req.get("body") or {}).get("tools") or []:
        if not isinstance(t, dict):
            continue
        if t.get("type") == "namespace":
            names += [f"{t.get('name')}__{s.get('name')}" for s in t.get("tools") or [] if isinstance(s, dict)]
        else:
            names.append(t.get("name") or (t.get("function") or {}).get("name"))
    return [n for n in names if n]


def agent_token(sid):
    """The token agentd wrote into the agent's MCP configuration under DATA/homes/<id>."""
    for d, _, files in os.walk(os.path.join(SRV.data_dir, "homes", sid)):
        for name in files:
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.path.getsize(path) < 1 << 20:
                with open(path, errors="replace") as f:
                    m = re.search(r"agent_token=([0-9a-f]{64})", f.read())
                if m:
                    return m.group(1)
    return None


def mcp_initialize(sid, query, auth=False):
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "session_mcp.t", "version": "0"}}}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    r = SRV.request("POST", f"/v1/sessions/{sid}/mcp{query}", json.dumps(body).encode(), headers, auth=auth)
    return r.status


def flow(kind, program, other_sid):
    cfg = AGENTS[kind]
    fake = FakeModel(cfg["fake"], [{"text": "hello"}])
    try:
        fake.start()
        body = {"agent": kind, "program": program, "base_url": fake.url, "api_key": "sk-fake"}
        body.update(cfg["opts"])
        st, sess = api("POST", "/v1/sessions", body)
        if not TAP.ok(st == 201, f"{kind}: session created (mcp on by default)", f"{st} {sess!r}"):
            return
        sid = sess["id"]
        run1, done, evs = run_and_wait(sid, "say hello")
        TAP.ok(done is not None and done.get("status") == "success", f"{kind}: run 1 succeeds",
               f"{done!r} {fake.stderr()[-1500:]}")
        offered = sorted({n for r in fake.requests() for n in tool_names(r) if "runtime" in n})
        if not TAP.ok(len(offered) == 1, f"{kind}: the CLI offers agentd's runtime tool to the model", offered):
            return
        tool = offered[0]
        TAP.diag(f"{kind}: the runtime tool is {tool}")

        tok = agent_token(sid)
        if kind == "opencode":
            # Its configuration travels in OPENCODE_CONFIG_CONTENT, not in a file; the checks below
            # concern agentd's authorizer, the same for every agent, and run for the other two.
            TAP.skip(f"{kind}: the token's scope", "OpenCode's MCP URL is in its environment, not in a file")
        elif TAP.ok(tok is not None, f"{kind}: the agent's MCP URL carries a token of its own"):
            TAP.is_(mcp_initialize(sid, f"?agent_token={tok}"), 200, f"{kind}: it opens the session's MCP endpoint")
            TAP.is_(mcp_initialize(other_sid, f"?agent_token={tok}"), 401, f"{kind}: not another session's")
            r = SRV.request("GET", f"/v1/sessions/{sid}?agent_token={tok}", auth=False)
            TAP.is_(r.status, 401, f"{kind}: nor the session's REST resource")
            r = SRV.request("POST", f"/v1/sessions/{sid}/runtimes/bash/exec?agent_token={tok}",
                            b'{"code":"id"}', {"Content-Type": "application/json"}, auth=False)
            TAP.is_(r.status, 401, f"{kind}: nor the runtime HTTP API")
            TAP.is_(mcp_initialize(sid, "?agent_token=" + "0" * 64), 401, f"{kind}: a wrong token opens nothing")
            TAP.is_(mcp_initialize(sid, ""), 401, f"{kind}: no token: 401")

        ids = ("call_rt_1", "call_rt_2") if kind != "claude-code" else ("toolu_rt_1", "toolu_rt_2")
        fake.set_script([
            {"text": "Setting it.", "tool_use": {"id": ids[0], "name": tool, "input": {"action": "exec", "code": CODE1}}},
            {"tool_use": {"id": ids[1], "name": tool, "input": {"action": "exec", "code": CODE2}}},
            {"text": "AGENTD_E2E is {{tool_result}}"},
        ])
        run2, done, evs = run_and_wait(sid, "set AGENTD_E2E to 42 with the runtime tool, then read it back")
        TAP.ok(done is not None and done.get("status") == "success", f"{kind}: run 2 (two runtime calls) succeeds",
               f"{done!r} {fake.stderr()[-1500:]}")
        codes = [e.get("code") if isinstance(e.get("code"), str) else (e.get("code") or {}).get("text")
                 for e in evs if e.get("type") == "runtime"]
        TAP.is_(codes[-2:], [CODE1, CODE2], f"{kind}: both calls are runtime events in the transcript")
        TAP.ok(done is not None and "42" in str(done.get("result")),
               f"{kind}: the value set by the first call comes back from the second", done)
        api("DELETE", f"/v1/sessions/{sid}")
    finally:
        fake.cleanup()


def main(tap):
    global TAP, SRV
    TAP = tap
    found = {k: v["bin"]() for k, v in AGENTS.items()}
    if not any(found.values()):
        tap.skip("agents calling agentd's MCP with a token", "no agent CLI installed (scripts/deps.sh test)")
        return
    only = os.environ.get("SESSION_MCP_ONLY")  # e.g. "codex", to look at one agent
    if only:
        found = {k: (v if k == only else None) for k, v in found.items()}
    SRV = Server(token=TOKEN)
    SRV.start()
    st, other = api("POST", "/v1/sessions", {"agent": "none"})
    tap.is_(st, 201, "a second session to aim at")
    for kind, prog in found.items():
        if not prog:
            tap.skip(f"{kind}: MCP with a token", f"no {kind} binary in tests/agents")
            continue
        try:
            flow(kind, prog, other["id"])
        except Exception:  # noqa: BLE001 — one agent's failure must not hide the others'
            import traceback
            tap.ok(False, f"{kind}: raised", traceback.format_exc())
    tap.check_clean_exit(SRV)


if __name__ == "__main__":
    run_test(main)
