#!/usr/bin/env python3
"""Revocation reaches the connections already open (issue 8, defect 2).

On a server with --token: readers of a session's transcript are open with a share token — SSE,
long-poll and WebSocket, by ?share= and by Authorization — when the token is revoked: each ends
within 100 ms (SSE ends, the long-poll gets 401, the WebSocket closes with 1008), nothing written
afterwards reaches them, and a reader with another share token of the same session goes on.

Then a session is deleted while readers are open on it with a share token (cut as above) and with
the server's token (they see the end: the `deleted` event, then the stream closed; the WebSocket
closes with 1000) — each within 100 ms. An agent's own MCP token dies with its session: a call in
flight with it is cut with 401, and the token opens nothing afterwards.
"""
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import OP_CLOSE, OP_TEXT, ROOT, WS, Server, run_test, session_run, wait_for  # noqa: E402

TOKEN = "revoke-token"
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
CUT_S = 0.100


class Reader:
    """A raw HTTP/1.1 GET with Connection: close, read in a thread until the server ends it: t_end
    is when the connection ended, data everything received."""

    def __init__(self, srv, path, headers=None, name=""):
        self.name = name
        self.data = b""
        self.t_end = None
        self.sock = socket.create_connection((srv.host, srv.port), timeout=30)
        lines = [f"GET {path} HTTP/1.1", f"Host: {srv.host}:{srv.port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.data += chunk
        except OSError:
            pass
        self.t_end = time.monotonic()

    def status(self):
        head = self.data.split(b"\r\n", 1)[0].split(b" ")
        return int(head[1]) if len(head) > 1 and head[1].isdigit() else None

    def started(self):
        return b"\r\n\r\n" in self.data

    def close(self):
        self.sock.close()


class WSReader:
    """A WebSocket reader in a thread: frames until the close, t_end when it came."""

    def __init__(self, srv, path, headers=None):
        self.ws = WS(srv.host, srv.port, path, headers=headers, timeout=30)
        self.events = []
        self.greeted = threading.Event()
        self.t_end = None
        if self.ws.status == 101:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            m = self.ws.recv(30)
            if m is None or m[0] == OP_CLOSE:
                break
            if m[0] == OP_TEXT:
                self.events += json.loads(m[1])["events"]
                self.greeted.set()
        self.t_end = time.monotonic()

    def close(self):
        self.ws.shut()


def api(srv, method, path, body=None, auth=True):
    data = json.dumps(body).encode() if body is not None else None
    r = srv.request(method, path, data, {"Content-Type": "application/json"} if data else {}, auth=auth)
    try:
        return r.status, (json.loads(r.body) if r.body else None)
    except ValueError:
        return r.status, None


def open_readers(srv, sid, query, headers=None):
    """SSE, long-poll and WebSocket readers of sid's transcript from its tail."""
    sse = Reader(srv, f"/v1/stream/sessions/{sid}/transcript?offset=now&live=sse{query}", headers)
    lp = Reader(srv, f"/v1/stream/sessions/{sid}/transcript?offset=now&live=long-poll{query}", headers)
    ws = WSReader(srv, f"/v1/sessions/{sid}/ws?offset=now{query}", headers)
    wait_for(lambda: sse.started() and ws.greeted.is_set(), 5)
    time.sleep(0.2)  # the long-poll is parked (it answers nothing before data or its timeout)
    return sse, lp, ws


def ended_within(reader, t0):
    """Whether the reader ended no later than CUT_S after t0 (waiting a little longer to see)."""
    wait_for(lambda: reader.t_end is not None, 2)
    return reader.t_end is not None and reader.t_end - t0 <= CUT_S, \
        None if reader.t_end is None else round((reader.t_end - t0) * 1000, 1)


def main(tap):
    srv = Server(token=TOKEN, long_poll_timeout=20000)
    srv.start()

    # ---- a share token revoked ----
    st, a = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    A = a["id"]
    api(srv, "POST", f"/v1/sessions/{A}/runtimes/bash/exec", {"code": "echo before"})
    _, s1 = api(srv, "POST", f"/v1/sessions/{A}/share")
    _, s2 = api(srv, "POST", f"/v1/sessions/{A}/share")
    t1, t2 = s1["token"], s2["token"]
    sse, lp, ws = open_readers(srv, A, f"&share={t1}")
    tap.ok(sse.status() == 200 and ws.ws.status == 101, "readers open with ?share= (SSE 200, WebSocket 101)",
           (sse.data[:200], ws.ws.status))
    bearer = Reader(srv, f"/v1/stream/sessions/{A}/transcript?offset=now&live=sse",
                    {"Authorization": f"Bearer {t1}"})
    other = Reader(srv, f"/v1/stream/sessions/{A}/transcript?offset=now&live=sse&share={t2}")
    wait_for(lambda: bearer.started() and other.started(), 5)
    tap.ok(bearer.status() == 200 and other.status() == 200, "an SSE reader by Authorization: Bearer, and one "
           "with a second share token")

    st, _ = api(srv, "DELETE", f"/v1/sessions/{A}/share/{t1}")
    t0 = time.monotonic()
    tap.is_(st, 204, "the share token is revoked")
    for name, r in (("SSE (?share=)", sse), ("SSE (Bearer)", bearer), ("long-poll", lp), ("WebSocket", ws)):
        ok, ms = ended_within(r, t0)
        tap.ok(ok, f"revoked: the {name} reader made with it ends within 100 ms ({ms} ms)")
    tap.is_(lp.status(), 401, "revoked: the long-poll is answered 401")
    tap.is_(ws.ws.close_code, 1008, "revoked: the WebSocket closes with 1008")
    st, _ = api(srv, "POST", f"/v1/sessions/{A}/runtimes/bash/exec", {"code": "echo after-revoke"})
    seen = wait_for(lambda: b"after-revoke" in other.data, 5)
    tap.ok(seen, "the reader with the other share token goes on and sees the next event")
    tap.ok(all(b"after-revoke" not in r.data for r in (sse, bearer, lp)) and
           not any("after-revoke" in json.dumps(e) for e in ws.events),
           "nothing written after the revocation reached the revoked readers")
    st, _ = api(srv, "GET", f"/v1/stream/sessions/{A}/transcript?offset=-1&share={t1}", auth=False)
    tap.is_(st, 401, "a new read with the revoked token gets 401")
    for r in (sse, bearer, lp, ws, other):
        r.close()

    # ---- a session deleted ----
    st, b = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    B = b["id"]
    api(srv, "POST", f"/v1/sessions/{B}/runtimes/bash/exec", {"code": "echo hi"})
    _, sb = api(srv, "POST", f"/v1/sessions/{B}/share")
    shared = open_readers(srv, B, f"&share={sb['token']}")
    owner = open_readers(srv, B, "", {"Authorization": f"Bearer {TOKEN}"})
    st, _ = api(srv, "DELETE", f"/v1/sessions/{B}")
    t0 = time.monotonic()
    tap.is_(st, 204, "the session is deleted")
    for who, readers in (("share-token", shared), ("server-token", owner)):
        for name, r in zip(("SSE", "long-poll", "WebSocket"), readers):
            ok, ms = ended_within(r, t0)
            tap.ok(ok, f"deleted: the {who} {name} reader ends within 100 ms ({ms} ms)")
    tap.is_((shared[1].status(), shared[2].ws.close_code), (401, 1008),
            "deleted: share-token readers are cut like a revocation (401, 1008)")
    sse_o, lp_o, ws_o = owner
    tap.ok(b'"action":"deleted"' in sse_o.data and b'"streamClosed":true' in sse_o.data,
           "deleted: the server-token SSE reader gets the deleted event, then the stream closed",
           sse_o.data[-400:])
    tap.ok(lp_o.status() == 200 and b'"action":"deleted"' in lp_o.data,
           "deleted: the server-token long-poll returns with the deleted event", lp_o.data[-300:])
    tap.ok(ws_o.ws.close_code == 1000 and "deleted" in (ws_o.ws.close_reason or "") and
           any(e.get("action") == "deleted" for e in ws_o.events),
           "deleted: the server-token WebSocket gets the deleted event and closes with 1000",
           (ws_o.ws.close_code, ws_o.ws.close_reason))
    st, _ = api(srv, "GET", f"/v1/stream/sessions/{B}/transcript?offset=-1&share={sb['token']}", auth=False)
    tap.is_(st, 401, "deleted: its share token opens nothing any more")
    for r in shared + owner:
        r.close()

    # ---- an agent's token dies with its session ----
    log = os.path.join(tempfile.mkdtemp(dir=srv.root), "input.jsonl")
    st, c = api(srv, "POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT, "--log", log]})
    C = c["id"]
    run, done, _, _ = session_run(srv, C, "echo hi", 30)
    url = ""
    with open(log) as f:
        for line in f:
            url = (json.loads(line).get("mcp") or {}).get("url") or url
    tok = url.partition("agent_token=")[2]
    if not tap.ok(len(tok) == 64, "the agent got an MCP URL with a token of its own", url):
        return tap.check_clean_exit(srv)
    call = Reader.__new__(Reader)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "runtime", "arguments": {"action": "exec", "code": "sleep 20"}}})
    call.name, call.data, call.t_end = "mcp", b"", None
    call.sock = socket.create_connection((srv.host, srv.port), timeout=30)
    call.sock.sendall((f"POST /v1/sessions/{C}/mcp?agent_token={tok} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    call.thread = threading.Thread(target=call._read, daemon=True)
    call.thread.start()
    time.sleep(0.5)
    tap.ok(call.t_end is None, "an MCP call with the agent's token is in flight (sleep 20)")
    st, _ = api(srv, "DELETE", f"/v1/sessions/{C}")
    t0 = time.monotonic()
    ok, ms = ended_within(call, t0)
    tap.ok(ok and call.status() == 401, f"deleted: the agent-token call is cut with 401 within 100 ms ({ms} ms)",
           call.data[:300])
    r = srv.request("POST", f"/v1/sessions/{C}/mcp?agent_token={tok}", body.encode(),
                    {"Content-Type": "application/json"}, auth=False)
    tap.is_(r.status, 401, "deleted: the agent's token opens nothing any more")
    call.close()
    tap.check_clean_exit(srv)


run_test(main)
