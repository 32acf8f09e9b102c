#!/usr/bin/env python3
# Exposure rules: binding a non-loopback address without --token refuses to start, with a message
# that says why and a non-zero exit; with --token, every request without `Authorization: Bearer T`
# (missing, wrong token, wrong scheme) gets 401 with a JSON error body, and the right token works.
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

TOKEN = "s3cret-token-for-listen-t"


def refuses_without_token(tap):
    for listen in ("0.0.0.0:0",):
        srv = Server(listen=listen)
        proc = srv.spawn()
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            srv.kill9()
            out = b""
        rc = proc.returncode
        with open(srv.stderr_path, "rb") as f:
            err = f.read().decode(errors="replace")
        tap.ok(rc not in (None, 0, -9), f"--listen {listen} without --token exits non-zero",
               f"exit status {rc}; stdout {out[:200]!r}")
        tap.ok(not out.startswith(b"http"), f"--listen {listen} without --token prints no URL",
               repr(out[:200]))
        msg = (err + out.decode(errors="replace")).lower()
        tap.ok("token" in msg and ("loopback" in msg or "refus" in msg),
               f"--listen {listen} without --token says why (mentions the token and the refusal)",
               f"stderr: {err[-500:]!r}")
        tap.ok(not srv.sanitizer_report(), f"--listen {listen} refusal exits without a sanitizer report",
               srv.sanitizer_report())


def requires_token(tap):
    srv = Server(listen="0.0.0.0:0", token=TOKEN)
    srv.start()  # health is probed with the token
    s = "/v1/stream/listen/s"
    tap.is_(srv.create(s, "text/plain").status, 201, "with the token: PUT creates a stream")
    tap.is_(srv.append(s, b"secret data", "text/plain").status, 204, "with the token: POST appends")
    r = srv.request("GET", f"{s}?offset=-1")
    tap.is_((r.status, r.body), (200, b"secret data"), "with the token: GET reads")

    wrong = {
        "no Authorization": None,
        "wrong token": f"Bearer {TOKEN}x",
        "token prefix": f"Bearer {TOKEN[:-1]}",
        "empty bearer": "Bearer ",
        "Basic scheme": "Basic " + "dXNlcjpwYXNz",
        "bare token": TOKEN,
    }
    requests = [
        ("GET", "/v1/health", None, {}),
        ("PUT", "/v1/stream/listen/new", b"", {"Content-Type": "text/plain"}),
        ("POST", s, b"injected", {"Content-Type": "text/plain"}),
        ("GET", f"{s}?offset=-1", None, {}),
        ("GET", f"{s}?offset=-1&live=long-poll", None, {}),
        ("GET", f"{s}?offset=-1&live=sse", None, {}),
        ("DELETE", s, None, {}),
        ("GET", "/v1/nope", None, {}),
    ]
    for label, value in wrong.items():
        for method, path, body, headers in requests:
            hdrs = dict(headers)
            if value is not None:
                hdrs["Authorization"] = value
            r = srv.request(method, path, body, hdrs, auth=False)
            name = f"{label}: {method} {path} -> 401"
            if tap.is_(r.status, 401, name) and not REF:
                tap.ok(r.error_body() is not None, f"{label}: {method} {path}: JSON error body", repr(r))
        r = srv.request("HEAD", s, headers={"Authorization": value} if value else {}, auth=False)
        tap.is_(r.status, 401, f"{label}: HEAD {s} -> 401")

    r = srv.request("GET", f"{s}?offset=-1")
    tap.is_((r.status, r.body), (200, b"secret data"),
            "the refused requests changed nothing (stream still exists with its data)")
    r = srv.request("GET", "/v1/stream/listen/new")
    tap.is_(r.status, 404, "the refused PUT created nothing")
    tap.check_clean_exit(srv)


def main(tap):
    if REF:
        tap.skip("listen rules", "the reference server has no --token")
        return
    refuses_without_token(tap)
    requires_token(tap)


run_test(main)
