#!/usr/bin/env python3
# What a follower's held requests cost in memory while a killed owner's lease lives on. Each pass
# of a request through h2o's proxy copies its line and headers into the request's memory, which is
# freed only when the request ends. Before, every held request went through the proxy again at
# every tick (100 ms doubling to 800 ms) to learn that the dead owner still refused it. GETs carry
# no body, so --max-held did not count any of this. 200 GETs with 60 KB of headers each then grew
# the follower by about 12 MB per tick: some 50 MB between 0.5 s and 3.5 s of a 4 s lease. Now one
# TCP probe of the owner's address per tick decides, and a refused probe touches no held request:
# the follower's RSS stays flat until the takeover, which still serves every held GET. (A GET of
# /v1/sessions: a follower answers catch-up reads of streams itself, and holds the rest.)
import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test  # noqa: E402
from cluster import pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 4000
N = 200
GROWTH_MB = 20  # the old code grew by about 50 MB over the window; the new one by less than 1


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(tap):
    if REF:
        tap.skip("held requests' memory", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb = free_port(), free_port()
    a, b = pg_node(pg, LEASE_MS, pa), pg_node(pg, LEASE_MS, pb)
    socks = []
    try:
        a.start()
        b.start()
        tap.is_(a.create("/v1/stream/mem", "text/plain", b"x").status, 201, "a stream created on the owner")
        a.kill9()
        killed = time.monotonic()
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 3990) for i in range(15))
        req = b"GET /v1/sessions HTTP/1.1\r\nHost: x\r\n" + pad + b"Connection: close\r\n\r\n"
        for _ in range(N):
            s = socket.create_connection((b.host, b.port))
            s.sendall(req)
            socks.append(s)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - killed)))
        first = rss_mb(b.proc.pid)
        time.sleep(max(0.0, LEASE_MS / 1000 - 0.5 - (time.monotonic() - killed)))
        last = rss_mb(b.proc.pid)
        tap.ok(last - first < GROWTH_MB,
               f"{N} held GETs of {len(req)} bytes: the follower's RSS grows by less than {GROWTH_MB} MB "
               f"while the dead owner's lease lives on", f"{first:.0f} MB at 0.5 s, {last:.0f} MB at "
               f"{time.monotonic() - killed:.1f} s")
        got = 0
        for s in socks:
            s.settimeout(LEASE_MS / 1000 + 15)
            try:
                got += s.recv(20).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
        tap.is_(got, N, "every held GET is served once the follower took over")
        tap.check_clean_exit(b, "the new owner stops cleanly")
    finally:
        for s in socks:
            s.close()
        stop_nodes(tap, pg, (a, b))


run_test(main)
