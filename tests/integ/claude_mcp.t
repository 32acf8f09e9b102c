#!/usr/bin/env python3
# End to end: the real Claude Code CLI (pinned in tests/agents, installed by scripts/deps.sh test), run
# offline against the fake Anthropic API in tests/agents/fake_anthropic.mjs, calls agentd's MCP
# `runtime` tool twice in one run — `export AGENTD_E2E=42`, then `echo $AGENTD_E2E` — and the value
# set by the first call comes back from the second. Once over streamable HTTP
# (/v1/sessions/<id>/mcp), once over stdio (`agentd mcp --session ID --server URL`).
#
# Checked: the CLI exits 0 with a successful result line; the fake received a tool_result holding 42
# for the second call; the session's transcript holds exactly those two runtime exec events, in
# order; nothing of the CLI's process group outlives the run.
import json
import os
import select
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "agents"))
from harness import FakeModel, claude_bin, claude_env, run_agent, tool_results  # noqa: E402

CODE1 = "export AGENTD_E2E=42"
CODE2 = "echo $AGENTD_E2E"
TOOL = "mcp__rt__runtime"
PROMPT = "Use the runtime tool to set AGENTD_E2E to 42, then read it back."
RUN_TIMEOUT = 120.0

SCRIPT = [
    {"text": "I will set the variable.",
     "tool_use": {"id": "toolu_e2e_set", "name": TOOL, "input": {"action": "exec", "code": CODE1}}},
    {"tool_use": {"id": "toolu_e2e_get", "name": TOOL, "input": {"action": "exec", "code": CODE2}}},
    {"text": "AGENTD_E2E is {{tool_result}}"},
]


def code_of(ev):
    c = ev.get("code")
    if isinstance(c, dict):
        c = c.get("text")
    return c


def transcript(srv, sid):
    r = srv.request("GET", f"/v1/stream/sessions/{sid}/transcript?offset=-1")
    if r.status != 200:
        return None, r
    return r.json(), r


def stdio_mcp_available(binary, sid, url):
    """True if `agentd mcp --session ID --server URL` answers an initialize request on stdio."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "claude_mcp.t", "version": "0"}}}
    try:
        p = subprocess.Popen([binary, "mcp", "--session", sid, "--server", url], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        return False, str(e)
    try:
        p.stdin.write((json.dumps(init) + "\n").encode())
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 10.0)
        if not ready:
            return False, "no answer to initialize within 10 s"
        line = p.stdout.readline()
        try:
            doc = json.loads(line)
        except ValueError:
            err = p.stderr.read1(2000) if p.poll() is not None else b""
            first = (err.decode(errors="replace").strip().splitlines() or [""])[0]
            return False, f"no JSON-RPC answer ({first or repr(line[:200])})"
        return ("result" in doc), json.dumps(doc)[:300]
    except (BrokenPipeError, OSError) as e:
        return False, str(e)
    finally:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait()


def flow(tap, srv, claude, label, mcp_server):
    """One Claude run against a fresh session and a fresh fake; mcp_server(session_id) gives the
    mcpServers entry."""
    r = srv.request("POST", "/v1/sessions", {"agent": "none"}, {"Content-Type": "application/json"})
    if not tap.is_(r.status, 201, f"{label}: runtime-only session created"):
        tap.diag(repr(r))
        return
    sess = r.json()
    sid = sess["id"]
    work = tempfile.mkdtemp(prefix="claude-mcp-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    cwd = sess.get("workspace") if sess.get("workspace") and os.path.isdir(sess["workspace"]) else work
    cfg = os.path.join(work, "mcp.json")
    with open(cfg, "w") as f:
        json.dump({"mcpServers": {"rt": mcp_server(sid)}}, f)

    fake = FakeModel("anthropic", SCRIPT)
    try:
        fake.start()
        # --allowedTools is variadic: the = form keeps it from swallowing the prompt.
        cmd = [claude, "-p", "--output-format", "stream-json", "--verbose", "--mcp-config", cfg,
               "--strict-mcp-config", f"--allowedTools={TOOL}", PROMPT]
        run = run_agent(cmd, env=claude_env(home, fake.url), cwd=cwd, timeout=RUN_TIMEOUT)
        tap.diag(f"{label}: claude ran {run.elapsed:.2f}s, rc={run.rc}, {len(run.events)} events")

        ok = tap.ok(run.rc == 0 and not run.timed_out, f"{label}: claude exits 0", run.describe())
        res = run.result or {}
        tap.ok(res.get("subtype") == "success" and res.get("is_error") is False,
               f"{label}: result line reports success", run.describe() if ok else json.dumps(res)[:2000])
        init = next((e for e in run.events if e.get("type") == "system" and e.get("subtype") == "init"), {})
        servers = {s.get("name"): s.get("status") for s in init.get("mcp_servers") or []}
        tap.ok(servers.get("rt") == "connected" and TOOL in (init.get("tools") or []),
               f"{label}: claude connected to agentd's MCP server and sees {TOOL}",
               f"mcp_servers={init.get('mcp_servers')!r} tools={init.get('tools')!r}")
        tap.ok(not run.leftover, f"{label}: nothing of claude's process group is left")

        main = fake.requests(kind="main")
        tap.ok(len(main) == 3 and not any(r.get("exhausted") for r in main),
               f"{label}: the fake served the three scripted turns",
               f"main requests: {[(r['seq'], r['turn'], r['exhausted']) for r in main]}\n{fake.stderr()}")
        results = {}
        for req in main:
            for tid, text, is_err in tool_results(req):
                results[tid] = (text, is_err)
        set_res = results.get("toolu_e2e_set")
        get_res = results.get("toolu_e2e_get")
        tap.ok(set_res is not None and not set_res[1], f"{label}: first call's tool_result is not an error",
               f"tool results: {results!r}")
        tap.ok(get_res is not None and not get_res[1] and "42" in get_res[0],
               f"{label}: second call's tool_result carries 42 (state kept between calls)",
               f"tool results: {results!r}")
        tap.ok("42" in str(res.get("result")), f"{label}: final answer echoes the value",
               f"result: {res.get('result')!r}")

        doc, resp = transcript(srv, sid)
        if not tap.ok(isinstance(doc, list), f"{label}: transcript readable", repr(resp)):
            return
        rt = [e for e in doc if isinstance(e, dict) and e.get("type") == "runtime"]
        got = [(e.get("action"), code_of(e)) for e in rt]
        tap.is_(got, [("exec", CODE1), ("exec", CODE2)],
                f"{label}: transcript holds the two runtime calls in order")
        if len(rt) == 2:
            tap.ok("42" in str(rt[1].get("stdout")) and rt[1].get("status") == 0,
                   f"{label}: the second runtime event shows 42 and status 0", json.dumps(rt[1])[:1000])
    finally:
        fake.cleanup()


def main(tap):
    claude = claude_bin()
    if not claude:
        tap.skip("claude code end to end",
                 "tests/agents/node_modules has no claude binary (run scripts/deps.sh test, which runs npm ci there)")
        return
    v = subprocess.run([claude, "--version"], capture_output=True, timeout=60,
                       env=claude_env(tempfile.mkdtemp(prefix="claude-v-"), "http://127.0.0.1:9"))
    if v.returncode != 0:
        tap.skip("claude code end to end", f"{claude} --version failed: {v.stderr.decode(errors='replace')[:200]}")
        return
    tap.diag(f"claude {v.stdout.decode().strip()}")

    srv = Server()
    srv.start()

    # The features this needs are being built; skip (not fail) while a route is missing entirely.
    probe = srv.request("POST", "/v1/sessions", {"agent": "none"}, {"Content-Type": "application/json"})
    if probe.status == 404:
        tap.skip("claude code end to end", "agentd has no /v1/sessions route yet")
        return
    sid = probe.json().get("id") if probe.status == 201 else None
    mcp = srv.request("POST", f"/v1/sessions/{sid}/mcp",
                      {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                      {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    if mcp.status == 404 and sid:
        tap.skip("claude code end to end over HTTP", "agentd has no /v1/sessions/<id>/mcp endpoint yet")
    else:
        flow(tap, srv, claude, "http", lambda s: {"type": "http", "url": f"{srv.url}/v1/sessions/{s}/mcp"})

    binary = os.path.abspath(os.environ["AGENTD_BIN"])
    have, why = stdio_mcp_available(binary, sid or "x", srv.url)
    if not have:
        tap.skip("claude code end to end over stdio", f"`agentd mcp` does not answer initialize: {why}")
    else:
        flow(tap, srv, claude, "stdio",
             lambda s: {"type": "stdio", "command": binary, "args": ["mcp", "--session", s, "--server", srv.url]})

    tap.check_clean_exit(srv)


if __name__ == "__main__":
    run_test(main)
