#!/usr/bin/env python3
"""How `agentd serve` stops (SIGTERM), seen from its clients: an idle keep-alive connection does not
hold the stop up (it is closed at once). TAP output for prove.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test, status_of  # noqa: E402


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


def main(tap):
    srv = Server()
    idle_client_does_not_delay_stop(tap, srv)


run_test(main)
