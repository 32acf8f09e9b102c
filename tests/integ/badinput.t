#!/usr/bin/env python3
# Hostile and broken clients: each is answered with a 4xx (or dropped), never served as if valid,
# and afterwards the server still answers /v1/health and the data stored before is intact.
#   malformed request lines, oversized and too many headers, invalid JSON for a JSON stream (400 +
#   JSON error), bodies over the limit (413, declared and chunked), path traversal, unknown routes
#   (404 + JSON error), a slow-header client (dropped after the I/O timeout while others are served),
#   and 2000 idle connections held open while normal requests still succeed.
import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Response, Server, raise_nofile, run_test, status_of  # noqa: E402

SEED = "/v1/stream/bad/seed"
SEED_JSON = "/v1/stream/bad/seed-json"
SEED_BYTES = b"first|second|third"
SEED_ITEMS = [{"i": 1}, {"i": 2}, {"i": 3}]
IDLE_CONNECTIONS = 2000
SLOW_IO_TIMEOUT_MS = 2000


def seed(tap, srv):
    ok = srv.create(SEED, "application/octet-stream").status == 201
    for part in (b"first|", b"second|", b"third"):
        ok &= srv.append(SEED, part).status == 204
    ok &= srv.create(SEED_JSON, "application/json").status == 201
    ok &= srv.append(SEED_JSON, b'[{"i":1},{"i":2}]', "application/json").status == 204
    ok &= srv.append(SEED_JSON, b'{"i":3}', "application/json").status == 204
    tap.ok(ok, "seed a byte stream and a JSON stream")


def intact(srv):
    """'' if healthy and the seeded data reads back unchanged, else what is wrong."""
    if not srv.alive():
        return f"server exited with status {srv.proc.returncode}\n{srv.stderr_tail()}"
    if not srv.healthy():
        return "server does not answer /v1/health with 200"
    try:
        data, r = srv.read_bytes(SEED)
        if data != SEED_BYTES:
            return f"byte stream changed: {data!r} ({r!r})"
        items, r = srv.read_json(SEED_JSON)
        if items != SEED_ITEMS:
            return f"JSON stream changed: {items!r} ({r!r})"
    except OSError as e:
        return f"read failed: {e!r}"
    return ""


def check_after(tap, srv, case):
    why = intact(srv)
    tap.ok(not why, f"after {case}: server healthy, stored data intact", why)


def refused(raw, how):
    """A response with a 4xx/5xx status, or the connection closed with no response at all."""
    st = status_of(raw)
    if st is None:
        return not raw and how in ("closed", "reset")
    return 400 <= st < 600


# ---- cases --------------------------------------------------------------------------------------

def malformed_request_lines(tap, srv):
    cases = [
        (b"THIS IS NOT HTTP\r\n\r\n", "words instead of a request line"),
        (b"GET\r\n\r\n", "request line with only a method"),
        (b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n", "unknown HTTP version"),
        (b"\x00\xff\xfe\x01" * 64 + b"\r\n\r\n", "binary garbage"),
        (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "header line without colon"),
        (b"POST /v1/stream/bad/seed HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
         "non-numeric Content-Length"),
    ]
    for data, what in cases:
        raw, how = srv.raw(data, timeout=5)
        tap.ok(refused(raw, how), f"malformed request ({what}) is refused",
               f"got {raw[:200]!r}, connection {how}")
    check_after(tap, srv, "malformed request lines")


def oversized_headers(tap, srv):
    big = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n"
    raw, how = srv.raw(big, timeout=5)
    st = status_of(raw)
    tap.ok(st in (400, 413, 431) or (st is None and how in ("closed", "reset")),
           "a 100 KiB header is refused (400/413/431 or dropped)", f"got {raw[:200]!r}, connection {how}")
    many = (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n")
    raw, how = srv.raw(many, timeout=5)
    st = status_of(raw)
    tap.ok(st in (400, 413, 431) or (st is None and how in ("closed", "reset")),
           "5000 header fields are refused (400/413/431 or dropped)", f"got {raw[:200]!r}, connection {how}")
    check_after(tap, srv, "oversized headers")


def invalid_json(tap, srv):
    for body, what in ((b'{"a":', "truncated JSON"), (b"not json", "bare words"),
                       (b'{"a":1}{"b":2}', "two concatenated values"), (b"[]", "an empty array"),
                       (b'{"a":"\xff"}', "invalid UTF-8")):
        r = srv.append(SEED_JSON, body, "application/json")
        tap.is_(r.status, 400, f"invalid JSON ({what}) to a JSON stream: 400")
        if REF:
            continue
        tap.ok(r.error_body() is not None, f"invalid JSON ({what}): JSON error body", repr(r))
        tap.ok((r.header("Content-Type") or "").startswith("application/json"),
               f"invalid JSON ({what}): error has Content-Type application/json", repr(r))
    check_after(tap, srv, "invalid JSON appends")


def send_until_answer(sock, chunks):
    """Sends chunks until the peer answers or stops reading. Returns the bytes sent."""
    sent = 0
    for chunk in chunks:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            break
        sent += len(chunk)
    return sent


def read_response(sock, timeout=15):
    sock.settimeout(timeout)
    raw = b""
    try:
        while b"\r\n\r\n" not in raw or len(raw) < raw.index(b"\r\n\r\n") + 4 + body_length(raw):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return raw


def body_length(raw):
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def response_body(raw):
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


def huge_bodies(tap, srv):
    mib = b"z" * (1 << 20)
    auth = f"Authorization: Bearer {srv.token}\r\n".encode() if srv.token else b""
    # Declared: 1 GiB in Content-Length, then 1 MiB of it. The server must answer 413 without
    # waiting for the rest.
    sock = socket.create_connection((srv.host, srv.port), timeout=15)
    sock.sendall(b"POST " + SEED.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
                 + b"Content-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n")
    send_until_answer(sock, [mib])
    raw = read_response(sock)
    sock.close()
    tap.is_(status_of(raw), 413, "a body declared as 1 GiB is refused with 413")
    if not REF:
        err = Response(413, {}, response_body(raw)).error_body()
        tap.ok(err is not None, "the 413 carries a JSON error body", repr(raw[:300]))

    # Chunked: no length up front; 1 MiB chunks until the server answers (at most 64 MiB).
    sock = socket.create_connection((srv.host, srv.port), timeout=15)
    sock.sendall(b"POST " + SEED.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
                 + b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % len(mib) + mib + b"\r\n"
    sent = send_until_answer(sock, [chunk] * 64 + [b"0\r\n\r\n"])
    raw = read_response(sock)
    sock.close()
    tap.is_(status_of(raw), 413, f"a chunked body over the limit is refused with 413 "
                                 f"(after {sent >> 20} MiB)")
    check_after(tap, srv, "huge bodies (no partial append)")


def path_traversal(tap, srv):
    before = sorted(os.listdir(srv.root))
    # Dot segments, literal or percent-encoded, never name a stream.
    cases = ["/v1/stream/../x", "/v1/stream/%2e%2e/x", "/v1/stream/%2E%2E/%2e%2e/x",
             "/v1/stream/a/../../../x", "/v1/stream/bad/%2e%2e/%2e%2e/%2e%2e/x",
             "/v1/stream/../../../../etc/passwd", "/v1/stream/bad/./seed"]
    for path in cases:
        req = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               f"Content-Length: 3\r\nConnection: close\r\n\r\nabc").encode()
        raw, how = srv.raw(req, timeout=5)
        st = status_of(raw)
        tap.ok(st is not None and 400 <= st < 500, f"PUT {path} is refused with a 4xx",
               f"got {raw[:200]!r}, connection {how}")
        raw, how = srv.raw(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                           timeout=5)
        st = status_of(raw)
        tap.ok(st is not None and 400 <= st < 500, f"GET {path} is refused with a 4xx",
               f"got {raw[:200]!r}, connection {how}")
    # An encoded slash may be refused or taken as part of a name, but it must never alias another
    # stream: bad/x/..%2fseed is not bad/seed.
    alias = "/v1/stream/bad/x/..%2fseed"
    r = srv.request("GET", f"{alias}?offset=-1")
    tap.ok(r.status in (400, 404), f"GET {alias} does not read {SEED} (400 or 404)", repr(r))
    r = srv.request("PUT", alias, b"", {"Content-Type": "application/octet-stream"})
    tap.ok(r.status in (400, 201), f"PUT {alias} is refused or creates a new stream", repr(r))
    if r.status == 201:
        srv.append(alias, b"aliased?")
        data, _ = srv.read_bytes(alias)
        tap.is_(data, b"aliased?", f"{alias} is a stream of its own")
        tap.is_(srv.request("DELETE", alias).status, 204, f"DELETE {alias} deletes only that stream")
    after = sorted(os.listdir(srv.root))
    tap.is_(after, before, "nothing was created next to the data dir")
    check_after(tap, srv, "path traversal attempts")


def unknown_routes(tap, srv):
    # Paths outside /v1 are the dashboard's (tests/integ/ui.t; with --no-ui they are 404 too).
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1"), ("GET", "/v1/stream"), ("DELETE", "/v1/")):
        r = srv.request(method, path)
        tap.is_(r.status, 404, f"{method} {path}: 404")
        if not REF:
            tap.ok(r.error_body() is not None, f"{method} {path}: JSON error body", repr(r))
    check_after(tap, srv, "unknown routes")


def slow_header_client(tap):
    srv = Server(args=["--io-timeout", str(SLOW_IO_TIMEOUT_MS)])
    srv.start()
    slow = socket.create_connection((srv.host, srv.port), timeout=5)
    silent = socket.create_connection((srv.host, srv.port), timeout=5)
    slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    limit = 10 * SLOW_IO_TIMEOUT_MS / 1000
    t0 = time.monotonic()
    slow_closed = silent_closed = None
    others_ok = others = 0
    while time.monotonic() - t0 < limit and (slow_closed is None or silent_closed is None):
        if slow_closed is None:
            try:
                slow.sendall(b"a")  # one byte per tick: a per-read timer alone never fires
                readable, _, _ = select.select([slow], [], [], 0)
                if readable:
                    slow.recv(65536)  # a 408 or EOF: either way the server gave up on it
                    slow_closed = time.monotonic() - t0
            except OSError:
                slow_closed = time.monotonic() - t0
        if silent_closed is None:
            readable, _, _ = select.select([silent], [], [], 0)
            if readable:
                try:
                    silent.recv(65536)
                except OSError:
                    pass
                silent_closed = time.monotonic() - t0
        others += 1
        try:
            others_ok += srv.request("GET", "/v1/health" if not REF else "/v1/stream/x",
                                     timeout=5).status in (200, 404)
        except OSError:
            pass
        time.sleep(0.25)
    slow.close()
    silent.close()
    tap.ok(slow_closed is not None,
           f"a client trickling its headers is dropped (io timeout {SLOW_IO_TIMEOUT_MS} ms)",
           f"still open after {limit:.0f}s")
    if slow_closed is not None:
        tap.diag(f"trickling client dropped after {slow_closed:.1f}s")
    tap.ok(silent_closed is not None, "a connection that sends nothing is dropped",
           f"still open after {limit:.0f}s")
    tap.is_(others_ok, others, "other clients were served meanwhile")
    tap.ok(srv.healthy(), "after the slow clients: server healthy")
    tap.check_clean_exit(srv, "slow-client server stops cleanly on SIGTERM")


def idle_connections(tap, srv):
    socks = []
    failed = 0
    t0 = time.monotonic()
    for _ in range(IDLE_CONNECTIONS):
        try:
            socks.append(socket.create_connection((srv.host, srv.port), timeout=5))
        except OSError:
            failed += 1
    tap.is_(failed, 0, f"opened {IDLE_CONNECTIONS} idle connections "
                       f"({len(socks)} in {time.monotonic() - t0:.1f}s)")
    try:
        ok = 0
        path = "/v1/stream/bad/during-idle"
        ok += srv.create(path, "text/plain").status == 201
        for i in range(20):
            ok += srv.append(path, f"m{i};", "text/plain").status == 204
        data, r = srv.read_bytes(path)
        ok += data == "".join(f"m{i};" for i in range(20)).encode()
        tap.is_(ok, 22, "with the idle connections open, create/append/read all succeed")
        why = intact(srv)
        tap.ok(not why, "with the idle connections open: server healthy, stored data intact", why)
        # The idle connections themselves still work when they finally speak.
        sample = socks[:: max(1, len(socks) // 20)]
        answered = 0
        for s in sample:
            try:
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                s.settimeout(5)
                answered += s.recv(64).startswith(b"HTTP/1.1 ")
            except OSError:
                pass
        tap.is_(answered, len(sample), "idle connections are served when they send a request")
    finally:
        for s in socks:
            s.close()
    check_after(tap, srv, "closing 2000 connections")


def main(tap):
    nofile = raise_nofile(IDLE_CONNECTIONS * 2 + 256)  # the server inherits it
    if nofile < IDLE_CONNECTIONS + 64:
        tap.diag(f"RLIMIT_NOFILE is only {nofile}")
    srv = Server()
    srv.start()
    seed(tap, srv)
    check_after(tap, srv, "seeding")
    malformed_request_lines(tap, srv)
    oversized_headers(tap, srv)
    invalid_json(tap, srv)
    huge_bodies(tap, srv)
    path_traversal(tap, srv)
    unknown_routes(tap, srv)
    idle_connections(tap, srv)
    tap.check_clean_exit(srv)
    slow_header_client(tap)


run_test(main)
