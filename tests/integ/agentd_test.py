"""Shared helpers for the integration tests in tests/integ/*.t (python3 standard library only).

Each test starts the real binary from $AGENTD_BIN on port 0 with a fresh temporary data dir, talks
to it over HTTP, and prints TAP. With DS_SERVER=ref and no AGENTD_BIN, the Durable Streams reference
server (tests/conformance/ref) stands in, which is only useful for debugging the tests themselves:
it has no health route, no JSON errors and no --token.

    tap = Tap()
    srv = Server()             # nothing runs yet
    srv.start()                # waits for the URL line and for GET /v1/health == 200
    r = srv.request("PUT", "/v1/stream/x", b"", {"Content-Type": "text/plain"})
    tap.is_(r.status, 201, "create")
    srv.kill9(); srv.start()   # same data dir
    tap.check_clean_exit(srv)  # SIGTERM; exit status 0 and no sanitizer report
    sys.exit(tap.done())
"""

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.environ.get("DS_SERVER") == "ref" and not os.environ.get("AGENTD_BIN")


# ---- TAP ------------------------------------------------------------------------------------------

class Tap:
    """TAP producer: numbered ok / not ok lines, diagnostics, and the plan printed at the end."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        sys.stdout.reconfigure(line_buffering=True)

    def diag(self, msg):
        for line in str(msg).splitlines() or [""]:
            print(f"# {line}")

    def ok(self, cond, name, diag=None):
        self.n += 1
        cond = bool(cond)
        print(f"{'ok' if cond else 'not ok'} {self.n} - {name}")
        if not cond:
            self.failed += 1
            if diag is not None:
                self.diag(diag)
        return cond

    def is_(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def in_(self, got, allowed, name):
        return self.ok(got in allowed, name, f"got:  {got!r}\nwant one of: {allowed!r}")

    def skip(self, name, reason):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {reason}")

    def bail(self, msg):
        print(f"Bail out! {msg}")
        sys.exit(255)

    def check_clean_exit(self, srv, name="server stops cleanly on SIGTERM"):
        """Stops srv with SIGTERM and asserts exit status 0 and no sanitizer report on stderr.

        Under the ASan build this is what turns a leak or UB into a test failure."""
        rc = srv.stop()
        report = srv.sanitizer_report()
        ok = self.ok(rc == 0 and not report, name,
                     f"exit status {rc}\n{report or srv.stderr_tail()}")
        return ok

    def done(self):
        """Prints the plan; returns the exit status for sys.exit."""
        print(f"1..{self.n}")
        return 1 if self.failed else 0


def run_test(main):
    """Runs main(tap) and turns an uncaught exception into a failed test instead of a lost plan."""
    tap = Tap()
    try:
        main(tap)
    except SystemExit:
        raise
    except BaseException:
        tap.ok(False, "test script raised", traceback.format_exc())
    finally:
        Server.cleanup_all()
    sys.exit(tap.done())


# ---- HTTP -----------------------------------------------------------------------------------------

class Response:
    """A complete response: status, headers (lower-case names), body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body)

    def error_body(self):
        """Returns the parsed {"error":{"code","message"}} body, or None if it is not one."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
            return None
        err = doc["error"]
        if not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
            return None
        if not err["code"] or not err["message"]:
            return None
        return err

    def __repr__(self):
        shown = {k: v for k, v in self.headers.items()
                 if k.startswith(("stream-", "producer-", "content-type", "location"))}
        return f"<Response {self.status} {shown!r} {self.body[:300]!r}>"


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0, conn=None):
    """One HTTP/1.1 request with http.client. Reuses conn when given (keep-alive)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        if own:
            conn.close()


def raw_exchange(host, port, data, timeout=5.0, read_limit=1 << 20):
    """Sends raw bytes and reads until the peer closes, the timeout passes, or read_limit bytes.

    Returns (bytes received, 'closed' | 'timeout' | 'reset' | 'limit')."""
    sock = socket.create_connection((host, port), timeout=timeout)
    out = b""
    how = "closed"
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            how = "reset"
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                how = "timeout"
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                how = "timeout"
                break
            except ConnectionResetError:
                how = "reset"
                break
            if not chunk:
                break
            out += chunk
            if len(out) >= read_limit:
                how = "limit"
                break
    finally:
        sock.close()
    return out, how


def status_of(raw):
    """Status code of the first response in raw bytes, or None."""
    if not raw.startswith(b"HTTP/"):
        return None
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# ---- the server under test -----------------------------------------------------------------------

class Server:
    """The binary under test, run on 127.0.0.1:0 with its own data dir (kept across restarts)."""

    _all = []

    def __init__(self, args=(), data_dir=None, token=None, listen="127.0.0.1:0",
                 long_poll_timeout=500, preexec_fn=None, env=None):
        self.root = tempfile.mkdtemp(prefix="agentd-integ-")
        self.data_dir = data_dir or os.path.join(self.root, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.args = list(args)
        self.token = token
        self.listen = listen
        self.long_poll_timeout = long_poll_timeout
        self.preexec_fn = preexec_fn
        self.env = env
        self.proc = None
        self.url = None
        self.host = None
        self.port = None
        self.starts = 0
        self.stderr_path = None
        self.keep = False
        Server._all.append(self)

    # -- process control --

    def command(self):
        if REF:
            cmd = ["node", os.path.join(ROOT, "tests/conformance/ref/ref-server.mjs")]
        else:
            binary = os.environ.get("AGENTD_BIN")
            if not binary:
                raise RuntimeError("AGENTD_BIN is not set (or use DS_SERVER=ref to debug the tests)")
            cmd = [binary, "serve"]
        cmd += ["--listen", self.listen, "--data", self.data_dir,
                "--long-poll-timeout", str(self.long_poll_timeout)]
        if self.token is not None and not REF:
            cmd += ["--token", self.token]
        if not REF:
            cmd += self.args
        return cmd

    def spawn(self):
        """Starts the process without waiting for anything; returns the Popen."""
        self.starts += 1
        self.stderr_path = os.path.join(self.root, f"stderr.{self.starts}")
        err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=err, env=env,
                                     preexec_fn=self.preexec_fn, start_new_session=True)
        err.close()
        return self.proc

    def start(self, timeout=20.0):
        """Spawns the server, reads its URL from the first stdout line and waits for health."""
        proc = self.spawn()
        line = read_line_with_timeout(proc.stdout, timeout)
        if line is None:
            self._fail_start(f"no URL line within {timeout}s")
        url = line.decode(errors="replace").strip()
        if not url.startswith("http://"):
            self._fail_start(f"first stdout line is not a URL: {url!r}")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
        self.url = url
        hostport = url[len("http://"):].split("/", 1)[0]
        host, port = hostport.rsplit(":", 1)
        host = host.strip("[]")
        # A wildcard bind is reached through loopback.
        self.host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.port = int(port)
        self.wait_healthy(timeout)
        return url

    def _fail_start(self, why):
        rc = self.proc.poll()
        if rc is None:
            self.kill9()
        raise RuntimeError(f"server did not start: {why}; exit status {rc}\n{self.stderr_tail()}")

    def wait_healthy(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail_start("exited while waiting for health")
            try:
                if REF:
                    self.request("HEAD", "/v1/stream/__health_probe", timeout=2)
                    return
                r = self.request("GET", "/v1/health", timeout=2)
                if r.status == 200:
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        self._fail_start(f"/v1/health not 200 within {timeout}s (last: {last!r})")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM, wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "did not exit within %ss of SIGTERM" % timeout
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self, timeout=20.0):
        self.stop()
        return self.start(timeout)

    def stderr_tail(self, n=40):
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(["-- server stderr (tail) --"] + lines[-n:])

    def sanitizer_report(self):
        """The first lines of an ASan/UBSan/LSan report in the last run's stderr, or ''."""
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            text = f.read().decode(errors="replace")
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "ERROR: UndefinedBehaviorSanitizer"):
            i = text.find(marker)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return ""

    @classmethod
    def cleanup_all(cls):
        for srv in cls._all:
            srv.kill9()
            if srv.proc is not None and srv.proc.stdout:
                srv.proc.stdout.close()
            if not srv.keep:
                shutil.rmtree(srv.root, ignore_errors=True)
        cls._all = []

    # -- HTTP --

    def auth_headers(self, headers):
        hdrs = dict(headers or {})
        if self.token is not None and not any(k.lower() == "authorization" for k in hdrs):
            hdrs["Authorization"] = f"Bearer {self.token}"
        return hdrs

    def request(self, method, path, body=None, headers=None, timeout=10.0, conn=None, auth=True):
        hdrs = self.auth_headers(headers) if auth else dict(headers or {})
        return http_request(self.host, self.port, method, path, body, hdrs, timeout, conn)

    def connection(self, timeout=10.0):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def raw(self, data, timeout=5.0, read_limit=1 << 20):
        return raw_exchange(self.host, self.port, data, timeout, read_limit)

    def healthy(self):
        """True if the process runs and answers its health route with 200 (or anything, for ref)."""
        if not self.alive():
            return False
        try:
            if REF:
                self.request("HEAD", "/v1/stream/__health_probe", timeout=5)
                return True
            return self.request("GET", "/v1/health", timeout=5).status == 200
        except OSError:
            return False

    # -- Durable Streams helpers --

    def create(self, path, content_type="application/octet-stream", body=b"", headers=None):
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        return self.request("PUT", path, body, hdrs)

    def append(self, path, body, content_type="application/octet-stream", headers=None, conn=None):
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        return self.request("POST", path, body, hdrs, conn=conn)

    def read_all(self, path, offset="-1", max_requests=10000):
        """Catch-up reads from offset until Stream-Up-To-Date. Returns (list of bodies, last response)."""
        bodies = []
        for _ in range(max_requests):
            r = self.request("GET", f"{path}?offset={offset}")
            if r.status != 200:
                return bodies, r
            bodies.append(r.body)
            nxt = r.header("Stream-Next-Offset")
            if r.header("Stream-Up-To-Date") == "true" or nxt is None:
                return bodies, r
            if nxt == offset and not r.body:
                return bodies, r
            offset = nxt
        raise RuntimeError(f"read of {path} did not reach the tail in {max_requests} requests")

    def read_bytes(self, path):
        """The whole content of a byte stream. Returns (bytes, last response)."""
        bodies, r = self.read_all(path)
        return b"".join(bodies), r

    def read_json(self, path):
        """All messages of a JSON stream. Returns (list, last response)."""
        bodies, r = self.read_all(path)
        items = []
        for b in bodies:
            items.extend(json.loads(b))
        return items, r


def read_line_with_timeout(stream, timeout):
    """Reads one line from a pipe in a helper thread; None on timeout or EOF without a line."""
    box = []

    def reader():
        box.append(stream.readline())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not box or not box[0].endswith(b"\n"):
        return None
    return box[0]


def drain(stream):
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


def raise_nofile(want):
    """Raises this process's RLIMIT_NOFILE soft limit towards want (children inherit it)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- WebSocket ----------------------------------------------------------------------------------

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TIMEOUT = ("timeout", b"")


class WS:
    """A minimal RFC 6455 client (socket, handshake, frames). One client connection. After the handshake, recv() returns (opcode, payload) per message or
    ping (answered), TIMEOUT when nothing came in time, or None when the connection ended."""

    def __init__(self, host, port, path, headers=None, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a ping right after a message
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        head = head.decode(errors="replace").split("\r\n")
        self.status = int(head[0].split(" ")[1]) if head and head[0].startswith("HTTP/") else None
        self.headers = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.accept_ok = self.headers.get("sec-websocket-accept") == want
        self.body = b""
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            self.body = self.buf[:n]
        self.pings = 0
        self.pongs = []
        self.close_code = None
        self.close_reason = None

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        mask = self._need(4) if b1 & 0x80 else None
        payload = self._need(n)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, b1 & 0x80, payload

    def recv(self, timeout=10.0):
        """The next data or close message; pings are counted (and answered), pongs kept."""
        self.sock.settimeout(timeout)
        parts, first = [], None
        try:
            while True:
                fin, op, masked, payload = self.frame()
                if op == OP_PING:
                    self.pings += 1
                    self.send(OP_PONG, payload)
                    return OP_PING, payload
                if op == OP_PONG:
                    self.pongs.append(payload)
                    continue
                if op == OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.close_reason = payload[2:].decode(errors="replace")
                    return OP_CLOSE, payload
                if first is None:
                    first = op
                parts.append(payload)
                if fin:
                    return first, b"".join(parts)
        except socket.timeout:
            return TIMEOUT
        except (EOFError, ConnectionResetError):
            return None

    def send(self, op, payload=b"", fin=True):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | op])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def close(self, code=1000):
        try:
            self.send(OP_CLOSE, struct.pack("!H", code))
        except OSError:
            pass

    def shut(self):
        self.sock.close()


# ---- a small disk, for tests that fill it -----------------------------------------------------------

def mount_tmpfs(path, size):
    """Mounts a tmpfs of `size` (mount's syntax, e.g. "16m") on the directory path, so that a test
    can fill the disk under a server and give space back (remount_tmpfs) without a restart. Returns
    None, or why it cannot (not root, no mount(8), no permission in this container)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"mount failed: {e}"
    return None if r.returncode == 0 else f"mount failed: {r.stderr.decode(errors='replace').strip()}"


def remount_tmpfs(path, size):
    """Resizes a tmpfs mounted by mount_tmpfs (space returns, or is taken away). True on success."""
    return subprocess.run(["mount", "-o", f"remount,size={size}", path], capture_output=True).returncode == 0


def umount(path):
    """Detaches a mount made by mount_tmpfs, even with processes still inside (lazily)."""
    subprocess.run(["umount", "-l", path], capture_output=True)


# ---- sessions -------------------------------------------------------------------------------------

def wait_for(pred, timeout, interval=0.03):
    """Calls pred until it returns something true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def of_run(evs, run, types=None):
    """The transcript events of one run, optionally only those of the given types."""
    return [e for e in evs if e.get("run") == run and (types is None or e.get("type") in types)]


def message_texts(evs, run):
    """The text of the run's message events (content blocks joined, or a plain text field)."""
    out = []
    for e in of_run(evs, run, ("message",)):
        c = e.get("content")
        if isinstance(c, list):
            out.append("".join(b.get("text", "") for b in c if isinstance(b, dict)))
        elif isinstance(c, str):
            out.append(c)
        elif isinstance(e.get("text"), str):
            out.append(e["text"])
    return out


def procs():
    """[(pid, state, ppid, pgrp, session, comm, starttime)] of every process in /proc; starttime
    (clock ticks since boot) tells a reused pid from the process that had it before."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out.append((int(d), f[0], int(f[1]), int(f[2]), int(f[3]), comm, int(f[19])))
    return out


def session_transcript(srv, sid):
    """The events of a session's transcript so far ([] when it cannot be read)."""
    evs, r = srv.read_json(f"/v1/stream/sessions/{sid}/transcript")
    return evs if r.status == 200 else []


def session_run(srv, sid, text, timeout):
    """Sends text to a session and waits for its run to end. Returns (run id, its run_completed or
    None after timeout seconds, the transcript, seconds taken); raises when the message is refused."""
    t0 = time.monotonic()
    r = srv.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": text}).encode(),
                    {"Content-Type": "application/json"})
    doc = json.loads(r.body) if r.status == 202 and r.body else None
    if not isinstance(doc, dict) or "run" not in doc:
        raise RuntimeError(f"send {text!r}: {r.status} {r.body!r}")
    run = doc["run"]
    while True:
        evs = session_transcript(srv, sid)
        ev = next((e for e in evs if e.get("type") == "run_completed" and e.get("run") == run), None)
        if ev or time.monotonic() - t0 > timeout:
            return run, ev, evs, time.monotonic() - t0
        time.sleep(0.1)
