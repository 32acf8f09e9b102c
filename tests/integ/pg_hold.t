#!/usr/bin/env python3
# A follower holds a request through a failover (serve_hold_http.c), but not one whose client went
# away meanwhile. The owner is killed (-9) inside its lease; two appends reach the follower: one
# client waits, the other gives up after 0.3 s and closes its connection. Once the follower takes
# the lease over, the waiting append is served there (204), and the abandoned one is not done at
# all: its client saw no answer and would retry it, so doing it too would store it twice. Before,
# HTTP/1 did not notice the closed connection while the request waited (h2o does not read a
# connection whose request it is answering), and the takeover replayed it.
import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 3000
PATH = "/v1/stream/hold/s"


def give_up(srv, body, after):
    """Sends an append, waits `after` seconds for its answer, then closes the connection."""
    s = socket.create_connection((srv.host, srv.port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        PATH.encode(), len(body), body))
    s.settimeout(after)
    try:
        answer = s.recv(4096)
    except socket.timeout:
        answer = b""
    s.close()
    return answer


def main(tap):
    if REF:
        tap.skip("a held request whose client went away", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb = free_port(), free_port()
    common = ["--store", pg.url, "--lease-ms", str(LEASE_MS)]
    a = Server(args=common + ["--node-url", f"http://127.0.0.1:{pa}"], listen=f"127.0.0.1:{pa}")
    b = Server(args=common + ["--node-url", f"http://127.0.0.1:{pb}"], listen=f"127.0.0.1:{pb}")
    try:
        a.start()
        b.start()
        tap.is_(a.create(PATH, "text/plain", b"first;").status, 201, "a stream created on the owner")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        killed = time.monotonic()
        kept = {}
        t = threading.Thread(target=lambda: kept.update(r=b.append(PATH, b"kept;", "text/plain")))
        t.start()
        tap.is_(give_up(b, b"gone;", 0.3), b"", "the follower holds an append while the lease lives on")
        t.join(LEASE_MS / 1000 + 15)
        r = kept.get("r")
        tap.is_((r.status, r.header("Agentd-Node")) if r else None, (204, b.url),
                f"the waiting append is served by the follower once it took over "
                f"({time.monotonic() - killed:.1f} s after the kill)")
        r = b.request("GET", PATH + "?offset=-1")
        tap.is_((r.status, r.body), (200, b"first;kept;"),
                "the append whose client went away was not done (its client would retry it)")
        tap.check_clean_exit(b, "the new owner stops cleanly")
    finally:
        if tap.failed:
            tap.diag(b.stderr_tail())
        for s in (a, b):
            if s.proc and s.proc.poll() is None:
                s.stop()
        pg.cleanup()


run_test(main)
