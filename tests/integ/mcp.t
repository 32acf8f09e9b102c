#!/usr/bin/env python3
"""Integration tests for agentd's MCP server (src/mcp): the `runtime` tool over streamable HTTP at
/v1/sessions/<id>/mcp and over stdio through `agentd mcp --session ID`, against a runtime-only
session (agent "none"). TAP output for prove.
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, read_line_with_timeout, run_test  # noqa: E402

BIN = os.environ.get("AGENTD_BIN") or "build/release/agentd"
JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def rpc(srv, sid, msg, headers=None, timeout=30):
    hdrs = dict(JSON)
    hdrs.update(headers or {})
    body = msg if isinstance(msg, (bytes, str)) else json.dumps(msg)
    return srv.request("POST", f"/v1/sessions/{sid}/mcp", body, hdrs, timeout=timeout)


def call(srv, sid, args, rid=10):
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": "runtime", "arguments": args}})
    doc = r.json() if r.status == 200 else {}
    return r, doc.get("result") or {}


def text(result):
    content = result.get("content") or [{}]
    return content[0].get("text")


def init_msg(version="2025-06-18", rid=1):
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "mcp.t", "version": "0"}}}


def http_tests(tap, srv, sid):
    r = rpc(srv, sid, init_msg())
    tap.is_(r.status, 200, "initialize: 200")
    tap.ok((r.header("content-type") or "").startswith("application/json"), "initialize: JSON")
    res = r.json().get("result", {})
    tap.is_(res.get("protocolVersion"), "2025-06-18", "initialize: protocol version")
    tap.is_(res.get("serverInfo", {}).get("name"), "agentd", "initialize: serverInfo")
    tap.is_(res.get("capabilities"), {"tools": {}}, "initialize: capabilities")
    msid = r.header("mcp-session-id")
    tap.ok(msid and len(msid) >= 16, "initialize: Mcp-Session-Id", repr(r.headers))
    r = rpc(srv, sid, init_msg("2024-11-05"))
    tap.is_(r.json()["result"]["protocolVersion"], "2024-11-05", "initialize: older revision kept")
    r = rpc(srv, sid, init_msg("1999-01-01"))
    tap.is_(r.json()["result"]["protocolVersion"], "2025-06-18", "initialize: unknown revision gets newest")

    sess = {"Mcp-Session-Id": msid, "MCP-Protocol-Version": "2025-06-18"}
    r = rpc(srv, sid, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sess)
    tap.ok(r.status == 202 and r.body == b"", "notification: 202, empty body", repr(r))
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sess)
    tools = r.json()["result"]["tools"]
    tap.is_([t["name"] for t in tools], ["runtime", "session"], "tools/list: runtime and session")
    tap.is_(tools[0]["inputSchema"]["properties"]["action"]["enum"],
            ["exec", "eval", "state", "reset", "history"], "tools/list: action enum")
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 3, "method": "ping"})
    tap.is_(r.json(), {"jsonrpc": "2.0", "id": 3, "result": {}}, "ping without the session header")

    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 90, "method": "tools/call",
                       "params": {"name": "session", "arguments": {"action": "children"}}}, sess)
    res = r.json()["result"]
    tap.ok(res.get("structuredContent") == {"children": []} and not res.get("isError"),
           "session tool: no children yet", res)
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 91, "method": "tools/call",
                       "params": {"name": "session", "arguments": {"action": "spawn"}}}, sess)
    tap.ok(r.json()["result"].get("isError") is True, "session tool: spawn without text is a tool error the model can read")
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 92, "method": "tools/call",
                       "params": {"name": "session", "arguments": {"action": "spawn", "text": "hello"}}}, sess)
    res = r.json()["result"]
    child = (res.get("structuredContent") or {}).get("child")
    tap.ok(child and not res.get("isError"), "session tool: spawn creates a child", res)
    st = srv.request("GET", f"/v1/sessions/{child}")
    tap.ok(st.status == 200 and json.loads(st.body).get("parent") == sid, "the child names this session as its parent")

    r, res = call(srv, sid, {"action": "exec", "code": "export X=41"})
    tap.ok(r.status == 200 and res.get("isError") is False, "exec export X=41", repr(r))
    r, res = call(srv, sid, {"action": "exec", "code": "echo $((X+1))"})
    tap.is_(text(res), "42\n", "exec: X persisted, 42")
    tap.is_(res.get("structuredContent", {}).get("status"), 0, "exec: structuredContent status")
    r, res = call(srv, sid, {"action": "exec", "code": "echo oops >&2; (exit 3)"})
    tap.ok(res.get("isError") is True and "oops" in (text(res) or "") and "exit status 3" in (text(res) or ""),
           "exec failure: isError, stderr and status in the text", repr(res))
    r, res = call(srv, sid, {"action": "exec", "code": "echo still $X"})
    tap.is_(text(res), "still 41\n", "state survives a failed call")
    r, res = call(srv, sid, {"action": "eval", "code": "import math\ny = math.factorial(5)\nprint(y)"})
    tap.is_(text(res), "120\n", "eval: python by default")
    r, res = call(srv, sid, {"action": "exec", "lang": "python", "code": "print(y + 1, math.pi > 3)"})
    tap.is_(text(res), "121 True\n", "python keeps variables and imports")
    r, res = call(srv, sid, {"action": "exec", "lang": "node", "code": "globalThis.z = 6 * 7; console.log(z)"})
    tap.is_(text(res), "42\n", "node exec")
    r, res = call(srv, sid, {"action": "exec", "code": "sleep 1.5; echo slow"})
    tap.is_(text(res), "slow\n", "a call longer than the server's io-timeout is answered")
    r, res = call(srv, sid, {"action": "exec", "code": "sleep 5", "timeout_ms": 300})
    tap.ok(res.get("isError") is True and "timed out" in (text(res) or ""), "timeout: isError, said so", repr(res))
    r, res = call(srv, sid, {"action": "state", "lang": "python"})
    tap.ok(res.get("isError") is False and "math" in (res.get("structuredContent", {}).get("modules") or [])
           and "y" in (res.get("structuredContent", {}).get("globals") or {}), "state: python modules and globals",
           repr(res)[:500])
    r, res = call(srv, sid, {"action": "history", "limit": 2})
    calls = res.get("structuredContent", {}).get("calls")
    tap.ok(isinstance(calls, list) and len(calls) == 2 and "sleep 5" in calls[-1].get("code", ""),
           "history: bounded by limit, newest last", repr(res)[:500])
    r, res = call(srv, sid, {"action": "exec", "code": "exit 4"})
    tap.ok(res.get("isError") is True and "ended the runtime" in (text(res) or "")
           and "exit status 4" in (text(res) or ""), "exit ends the runtime: said so", repr(res))
    r, res = call(srv, sid, {"action": "reset"})
    tap.ok(res.get("isError") is False, "reset", repr(res))
    r, res = call(srv, sid, {"action": "exec", "code": "echo \"[${X:-unset}]\""})
    tap.is_(text(res), "[unset]\n", "reset cleared bash state")

    # Tool errors versus protocol errors.
    r, res = call(srv, sid, {"action": "exec"})
    tap.ok(r.status == 200 and res.get("isError") is True and "code" in (text(res) or ""),
           "missing code: a tool error", repr(r))
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope"}})
    tap.is_(r.json().get("error", {}).get("code"), -32602, "unknown tool: -32602")
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 6, "method": "prompts/list"})
    tap.is_(r.json().get("error", {}).get("code"), -32601, "unknown method: -32601")
    r = rpc(srv, sid, b"{not json")
    tap.ok(r.status == 400 and r.json().get("error", {}).get("code") == -32700, "malformed JSON: 400, -32700",
           repr(r))
    r = rpc(srv, sid, {"jsonrpc": "2.0", "id": 7})
    tap.ok(r.status == 400 and r.json().get("error", {}).get("code") == -32600, "invalid request: 400, -32600")

    # Batches (2025-03-26): tool calls in one batch, replies in order.
    r = rpc(srv, sid, [{"jsonrpc": "2.0", "method": "notifications/initialized"},
                       {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                        "params": {"name": "runtime", "arguments": {"action": "exec", "code": "echo A"}}},
                       {"jsonrpc": "2.0", "id": "b", "method": "ping"}],
            {"MCP-Protocol-Version": "2025-03-26"})
    doc = r.json() if r.status == 200 else None
    tap.ok(isinstance(doc, list) and [m.get("id") for m in doc] == ["a", "b"]
           and doc[0]["result"]["content"][0]["text"] == "A\n", "batch: replies in order", repr(r))

    # The resource's other methods and guards.
    r = srv.request("GET", f"/v1/sessions/{sid}/mcp", headers={"Accept": "text/event-stream"})
    tap.is_(r.status, 405, "GET: 405")
    r = srv.request("DELETE", f"/v1/sessions/{sid}/mcp", headers={"Mcp-Session-Id": msid})
    tap.is_(r.status, 204, "DELETE: 204")
    r = rpc(srv, "no-such-session", init_msg())
    tap.ok(r.status == 404 and r.error_body() is not None, "unknown session: 404 JSON error", repr(r))
    r = rpc(srv, sid, init_msg(), {"MCP-Protocol-Version": "1999-01-01"})
    tap.is_(r.status, 400, "unsupported MCP-Protocol-Version: 400")
    r = rpc(srv, sid, init_msg(), {"Origin": "http://evil.example"})
    tap.is_(r.status, 403, "foreign Origin: 403")
    r = rpc(srv, sid, init_msg(), {"Origin": "http://localhost:3000"})
    tap.is_(r.status, 200, "loopback Origin: allowed")


def client_gone_test(tap, srv, sid):
    """A client that leaves mid-call cancels it; the runtime finishes the code and stays usable."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "runtime", "arguments": {"action": "exec", "code": "sleep 1; echo done"}}})
    req = (f"POST /v1/sessions/{sid}/mcp HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(req)
    time.sleep(0.2)
    s.close()
    r, res = call(srv, sid, {"action": "exec", "code": "echo after"})
    tap.is_(text(res), "after\n", "after a client left mid-call, the next call runs")
    tap.ok(srv.alive(), "server alive after a client left mid-call")


def stdio_tests(tap, srv, sid):
    p = subprocess.Popen([BIN, "mcp", "--session", sid, "--server", srv.url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(msg):
        p.stdin.write((json.dumps(msg) + "\n").encode())
        p.stdin.flush()

    def recv():
        line = read_line_with_timeout(p.stdout, 30)
        return json.loads(line) if line else None

    try:
        send(init_msg("2025-03-26"))
        m = recv()
        tap.is_((m or {}).get("result", {}).get("protocolVersion"), "2025-03-26", "stdio: initialize")
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        m = recv()
        tap.is_((m or {}).get("id"), 2, "stdio: the notification got no line; tools/list did")
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "runtime", "arguments": {"action": "exec", "code": "export X=41"}}})
        m = recv()
        tap.ok(m and m.get("id") == 3 and m["result"]["isError"] is False, "stdio: exec export X=41", repr(m))
        send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
              "params": {"name": "runtime", "arguments": {"action": "exec", "code": "echo $((X+1))"}}})
        m = recv()
        tap.is_(text((m or {}).get("result") or {}), "42\n", "stdio: echo $((X+1)) → 42")
        p.stdin.write(b"{broken\n")
        p.stdin.flush()
        m = recv()
        tap.is_((m or {}).get("error", {}).get("code"), -32700, "stdio: parse error passed through")
        p.stdin.close()
        rc = p.wait(10)
        tap.is_(rc, 0, "stdio: exits 0 on EOF")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

    # A session that does not exist: the request still gets an answer, as a JSON-RPC error.
    p = subprocess.run([BIN, "mcp", "--session", "nope", "--server", srv.url],
                       input=(json.dumps(init_msg()) + "\n").encode(), capture_output=True, timeout=30)
    lines = p.stdout.decode().splitlines()
    doc = json.loads(lines[0]) if lines else {}
    tap.ok(p.returncode == 0 and doc.get("id") == 1 and "nope" in doc.get("error", {}).get("message", ""),
           "stdio: unknown session is a JSON-RPC error", repr(p))
    p = subprocess.run([BIN, "mcp"], capture_output=True, timeout=30)
    tap.is_(p.returncode, 1, "stdio: --session is required")


def main(tap):
    # A short io-timeout: a tool call that outlasts it must still be answered (test below).
    srv = Server(args=["--io-timeout", "1000"])
    srv.start()
    r = srv.request("POST", "/v1/sessions", {"agent": "none"}, {"Content-Type": "application/json"})
    if not tap.ok(r.status == 201, "create a runtime-only session", repr(r)):
        return
    sid = r.json()["id"]
    http_tests(tap, srv, sid)
    client_gone_test(tap, srv, sid)
    stdio_tests(tap, srv, sid)
    tap.check_clean_exit(srv)


run_test(main)
