#!/usr/bin/env python3
"""How `agentd serve` stops (SIGTERM) and starts, seen from its clients: an idle keep-alive
connection does not hold the stop up (it is closed at once); a request that arrives while the server
stops is answered 503 shutting_down with Retry-After, or its connection is closed, never 404 for a
stream or session that exists; and a restarting server answers nothing before its sessions are
loaded. TAP output for prove.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, drain, read_line_with_timeout, run_test, status_of  # noqa: E402


def read_response(sock, timeout):
    """Reads one response (headers and a Content-Length body) or until EOF: (bytes, 'eof'|'timeout'|'ok')."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v.strip())
            if len(rest) >= n:
                return data, "ok"
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except ConnectionResetError:
            return data, "eof"
        if not chunk:
            return data, "eof"
        data += chunk


def keepalive_get(srv, path):
    """A keep-alive connection that has had one answered request: (socket, status)."""
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    raw, how = read_response(sock, 10)
    return sock, status_of(raw)


def idle_client_does_not_delay_stop(tap, srv):
    srv.start()
    r = srv.create("/v1/stream/kept", "text/plain")
    tap.is_(r.status, 201, "a stream is created")
    conn = srv.connection()
    r = srv.append("/v1/stream/kept", b"acknowledged", "text/plain", conn=conn)
    tap.is_(r.status, 204, "an append on a keep-alive connection is acknowledged")
    sock, status = keepalive_get(srv, "/v1/stream/kept?offset=-1")
    tap.is_(status, 200, "a second keep-alive connection has read the stream")
    t0 = time.monotonic()
    tap.check_clean_exit(srv, "with two idle keep-alive clients: stops cleanly on SIGTERM")
    took = time.monotonic() - t0
    tap.ok(took < 0.8, "... and in well under a second", f"the stop took {took:.2f} s")
    raw, how = read_response(sock, 2)
    tap.ok(how == "eof" and raw == b"", "the idle client's connection was closed, with nothing sent on it",
           f"{how} {raw[:200]!r}")
    sock.close()
    conn.close()
    srv.start()
    data, r = srv.read_bytes("/v1/stream/kept")
    tap.is_(data, b"acknowledged", "after a restart the acknowledged append is there")


def no_404_while_stopping(tap, srv):
    """Requests completed at staggered times after SIGTERM, on connections that were mid-request when
    the stop began (so the server waits for them), for a stream, a session transcript and a session
    that all exist: each gets 503 shutting_down with Retry-After, or its connection closes
    unanswered. (Before, they were served during the drain, and those that came in the teardown's
    turns reached modules already freed: 404 for the session, or a crash.)"""
    sid = srv.request("POST", "/v1/sessions", {"agent": "none"}).json()["id"]
    paths = ["/v1/stream/kept?offset=-1", f"/v1/stream/sessions/{sid}/transcript?offset=-1",
             f"/v1/sessions/{sid}"]
    for p in paths:
        tap.is_(srv.request("GET", p).status, 200, f"before the stop: GET {p.split('?')[0]} is 200")
    conns = []
    for i in range(16):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        # Headers not finished yet: the request is on its way when SIGTERM comes.
        s.sendall(f"GET {paths[i % len(paths)]} HTTP/1.1\r\nHost: t\r\n".encode())
        conns.append(s)
    time.sleep(0.2)
    answers = [None] * len(conns)

    def finish(i, s):
        time.sleep(0.1 * i)  # all within the 2 s the server waits for connections to finish
        try:
            s.sendall(b"\r\n")
        except OSError:
            answers[i] = (b"", "eof")
            return
        answers[i] = read_response(s, 10)

    srv.proc.send_signal(15)
    # The stop has begun once the listener is closed.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((srv.host, srv.port), timeout=1).close()
        except (ConnectionRefusedError, ConnectionResetError):
            break  # refused, or reset: taken from the backlog of a listener that closed
        except OSError:
            pass
        time.sleep(0.005)
    threads = [threading.Thread(target=finish, args=(i, s)) for i, s in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    rc = srv.proc.wait(15)
    report = srv.sanitizer_report()
    tap.ok(rc == 0 and not report, "the server exits with status 0 (and no sanitizer report)",
           f"exit status {rc}\n{report or srv.stderr_tail()}")
    bad = []
    n503 = 0
    for i, (raw, how) in enumerate(answers):
        st = status_of(raw)
        if st is None and how == "eof":
            continue
        head = raw.partition(b"\r\n\r\n")[0].lower()
        if st == 503 and b"retry-after:" in head and b'"shutting_down"' in raw:
            n503 += 1
            continue
        bad.append((i * 0.1, st, how, raw[:300]))
    tap.ok(not bad, "every request finished during the stop got 503 shutting_down + Retry-After, or none",
           "\n".join(repr(b) for b in bad))
    tap.ok(n503 > 0, "at least one of them was answered 503 (the server was still stopping)",
           repr([(status_of(raw), how) for raw, how in answers]))
    for s in conns:
        s.close()


def nothing_answered_before_loaded(tap, srv):
    """Restarted on the same port with 300 sessions to load, a client that connects as early as the
    kernel lets it (the listener is bound before the sessions are loaded) gets its answer only once
    they are: 200 for a session that exists, never 404."""
    ids = [srv.request("POST", "/v1/sessions", {"agent": "none"}).json()["id"] for _ in range(300)]
    port = srv.port
    srv.stop()
    srv.listen = f"127.0.0.1:{port}"
    proc = srv.spawn()
    first = None
    deadline = time.monotonic() + 20
    while first is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            sock = socket.create_connection((srv.host, port), timeout=10)
        except OSError:
            time.sleep(0.001)
            continue
        sock.sendall(f"GET /v1/sessions/{ids[-1]} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        raw, how = read_response(sock, 20)
        sock.close()
        first = (status_of(raw), how, raw[:200])
    line = read_line_with_timeout(proc.stdout, 20)
    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    tap.ok(line is not None and line.startswith(b"http://"), "the restarted server printed its URL")
    tap.ok(first is not None and first[0] == 200,
           "the earliest request, for the last of 300 sessions, is answered 200", repr(first))
    tap.check_clean_exit(srv, "and it stops cleanly")


def main(tap):
    srv = Server()
    idle_client_does_not_delay_stop(tap, srv)
    no_404_while_stopping(tap, srv)
    srv.start()
    nothing_answered_before_loaded(tap, srv)


run_test(main)
