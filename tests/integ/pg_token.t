#!/usr/bin/env python3
# Nodes on one PostgreSQL cannot be split on --token (doc/ARCHITECTURE.md "Several nodes on one
# database", *One token*). A follower forwards to the owner, so a follower's --token protected
# nothing when the owner had none: node B `--token T` following node A (no token) served
# GET /v1/sessions 200 and PUT /v1/stream/x 201 without any token.
#   (1) B `--token T` does not start while A (no token) is live: it exits non-zero, naming A.
#   (2) both with T: through B, a request with T is served by A; one with no credential gets 401
#       from B itself (its Agentd-Node is B's); one with a wrong bearer (it could be a share token:
#       only the owner can tell) is forwarded and refused by A; the public JWKS is served.
#   (3) the holder comes back with another token while B could not see it (B paused past the
#       liveness window, so A's start did not find B live): B refuses to forward, 503
#       node_token_mismatch, and says so in its log. Nor does B answer a catch-up read itself with
#       the old token: a read sent while B was paused, answered as B resumes, is refused as the
#       forwarded requests are (before: 200 from B's own snapshot, B's view of the lease being the
#       one from before its pause, whose holder had recorded B's token).
#   (4) the same with a holder whose lease was longer than the one it restarts with (review7):
#       A `--lease-ms 10000` holds, B is paused 3.5 s, A is restarted with U and `--lease-ms 1000`
#       (its start window, 2 x 1 s + 1 s, is past, B's view of A's old lease is not). Before, B
#       trusted that view since its lease had not run out, and answered the read with T 200; now it
#       trusts only a view it read within 1 s by its own clock, and the read is refused.
import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER, pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 1000


def node(name_port):
    return f"http://127.0.0.1:{name_port}"


def main(tap):
    if REF:
        tap.skip("a cluster split on --token", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb = free_port(), free_port()
    # B forwards to A: A, started first, holds every shard.
    a = pg_node(pg, LEASE_MS, pa, args=ONE_HOLDER)
    b = pg_node(pg, LEASE_MS, pb, args=ONE_HOLDER, token="T")
    servers = [a, b]
    try:
        # (1) the reviewer's reproduction: A without a token, B with one.
        a.start()
        started = True
        try:
            b.start(timeout=10)
        except RuntimeError:
            started = False
        if started:  # before the fix: B starts and forwards anything to A
            r1 = b.request("GET", "/v1/sessions", auth=False)
            r2 = b.request("PUT", "/v1/stream/x", b"", {"Content-Type": "text/plain"}, auth=False)
            tap.ok(False, "B (--token T) does not start while A (no token) is live",
                   f"it started; without a token: GET /v1/sessions {r1.status}, PUT /v1/stream/x {r2.status}")
            b.stop()
        else:
            tap.ok(b.proc.returncode not in (0, None), "B (--token T) does not start while A (no token) is live",
                   f"exit status {b.proc.returncode}")
        err = b.stderr_tail(10)
        tap.ok(node(pa) in err and "--token" in err, "B's error names A and --token", err)
        a.stop()

        # (2) the same token on both.
        a.token = "T"
        a.start()
        b.start()
        r = b.request("PUT", "/v1/stream/y", b"", {"Content-Type": "text/plain"})
        tap.is_((r.status, r.header("Agentd-Node")), (201, node(pa)), "with the token, B forwards to A")
        r = b.request("GET", "/v1/sessions", auth=False)
        tap.is_((r.status, r.header("Agentd-Node")), (401, node(pb)),
                "without a credential, B answers 401 itself")
        r = b.request("POST", "/v1/stream/y", b"no", {"Content-Type": "text/plain"}, auth=False)
        tap.is_((r.status, r.header("Agentd-Node")), (401, node(pb)), "also a write")
        r = b.request("GET", "/v1/sessions", headers={"Authorization": "Bearer wrong"})
        tap.is_((r.status, r.header("Agentd-Node")), (401, node(pa)),
                "a bearer B cannot check (a share token?) goes to A, which refuses a wrong one")
        r = b.request("GET", "/v1/stream/__ds/jwks.json", auth=False)
        tap.is_(r.status, 200, "the public JWKS needs no token through B either")

        # (3) B paused long enough not to look live; A restarted with another token takes its own
        # lease back at once (same node name) and starts, since it sees no live node with T.
        b.proc.send_signal(signal.SIGSTOP)
        time.sleep(2 * LEASE_MS / 1000 + 1.5)
        a.kill9()
        a.token = "U"
        a.start()
        early = socket.create_connection((b.host, b.port))  # the kernel accepts it while B is stopped
        early.sendall(b"GET /v1/stream/y?offset=-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T\r\n"
                      b"Connection: close\r\n\r\n")
        b.proc.send_signal(signal.SIGCONT)
        early.settimeout(10)
        answer = b""
        try:
            while chunk := early.recv(65536):
                answer += chunk
        except socket.timeout:
            pass
        early.close()
        tap.ok(answer.startswith(b"HTTP/1.1 503") and b"node_token_mismatch" in answer,
               "a catch-up read with the old token, answered as B resumes, is refused too",
               answer[:400].decode(errors="replace"))
        ok = wait_for(lambda: (b.request("GET", "/v1/sessions").error_body() or {}).get("code")
                      == "node_token_mismatch", 5)
        r = b.request("GET", "/v1/sessions")
        tap.ok(ok, "B refuses to forward to a holder started with another token",
               f"{r.status} {r.body[:300]!r}")
        tap.is_(r.status, 503, "with 503")
        r = b.request("GET", "/v1/sessions", headers={"Authorization": "Bearer U"})
        tap.is_((r.error_body() or {}).get("code"), "node_token_mismatch", "even with the holder's token")
        tap.ok("token" in b.stderr_tail(20) and node(pa) in b.stderr_tail(20), "B's log says why",
               b.stderr_tail(5))
        tap.check_clean_exit(b, "B stops cleanly")
        tap.check_clean_exit(a, "A stops cleanly")

        # (4) A's old lease outlasts its new start window.
        for s, lease in ((a, 10000), (b, LEASE_MS)):
            s.token = "T"
            s.args[s.args.index("--lease-ms") + 1] = str(lease)
        a.start()
        b.start()
        r = b.request("GET", "/v1/stream/y?offset=-1")
        tap.is_((r.status, r.header("Agentd-Node")), (200, node(pb)), "B answers a read with T itself")
        b.proc.send_signal(signal.SIGSTOP)
        time.sleep(3.5)  # past A's start window with --lease-ms 1000 (at least 3 s)
        a.kill9()
        a.token = "U"
        a.args[a.args.index("--lease-ms") + 1] = str(LEASE_MS)
        a.start()
        early = socket.create_connection((b.host, b.port))
        early.sendall(b"GET /v1/stream/y?offset=-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer T\r\n"
                      b"Connection: close\r\n\r\n")
        b.proc.send_signal(signal.SIGCONT)
        early.settimeout(10)
        answer = b""
        try:
            while chunk := early.recv(65536):
                answer += chunk
        except socket.timeout:
            pass
        early.close()
        tap.ok(answer.startswith(b"HTTP/1.1 503") and b"node_token_mismatch" in answer,
               "a holder back with a shorter lease and another token: B refuses a read with the old one",
               answer[:400].decode(errors="replace"))
        tap.check_clean_exit(b, "B stops cleanly")
        tap.check_clean_exit(a, "A stops cleanly")
    finally:
        stop_nodes(tap, pg, servers)


run_test(main)
