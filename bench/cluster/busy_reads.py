#!/usr/bin/env python3
"""bench/cluster, catch-up reads beside writes: one agentd on a PostgreSQL of its own
(tests/integ/pg.py). A stream of 1,024 appends of 1 KiB (one catch-up read: a 1 MiB answer, four
queries of records). Measures, p50/p99 in ms:
  - a 1 MiB catch-up read alone (GET ?offset=-1, keep-alive, one client, sequential);
  - small appends (100 bytes, one client, sequential, to another stream) and GET /v1/health, alone
    and while R clients each read the 1 MiB stream in a loop.
Reads on the loop's connection hold every other client of the node for the length of their queries;
reads off the loop (store_read_pooled) do not.

    python3 bench/cluster/busy_reads.py [N] [R]   (default 1000 appends, 2 readers; BUILD=build/release)
"""
import http.client
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
BUILD = os.environ.get("BUILD", "build/release")
os.environ.setdefault("AGENTD_BIN", os.path.join(ROOT, BUILD, "agentd"))
from agentd_test import Server  # noqa: E402
from pg import Postgres  # noqa: E402

BIG = "/v1/stream/bench/big"


def pct(lat):
    lat = sorted(lat)
    return lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3


def loop(srv, method, path, n, body=None, headers=None):
    """Latencies of n sequential requests (after n/10 to warm up)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    lat = []
    for i in range(n + n // 10):
        t0 = time.perf_counter()
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status}")
        if i >= n // 10:
            lat.append(time.perf_counter() - t0)
    conn.close()
    return lat


class Reader(threading.Thread):
    def __init__(self, srv, stop):
        super().__init__(daemon=True)
        self.srv, self.stop, self.reads = srv, stop, 0

    def run(self):
        conn = http.client.HTTPConnection(self.srv.host, self.srv.port, timeout=30)
        while not self.stop.is_set():
            conn.request("GET", BIG + "?offset=-1")
            r = conn.getresponse()
            if len(r.read()) < 1 << 20:
                raise RuntimeError("short read")
            self.reads += 1
        conn.close()


def smalls(srv, n):
    app = loop(srv, "POST", "/v1/stream/bench/small", n, b"x" * 100, {"Content-Type": "application/octet-stream"})
    health = loop(srv, "GET", "/v1/health", n)
    return pct(app), pct(health)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    readers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    pg = Postgres()
    pg.start()
    srv = Server(args=["--store", pg.url])
    try:
        srv.start()
        assert srv.create(BIG).status == 201 and srv.create("/v1/stream/bench/small").status == 201
        conn = srv.connection()
        for i in range(1024):
            srv.append(BIG, bytes([i % 251]) * 1024, conn=conn)
        conn.close()
        p50, p99 = pct(loop(srv, "GET", BIG + "?offset=-1", 200))
        print(f"{os.environ['AGENTD_BIN']}: ms, p50 / p99")
        print(f"  1 MiB catch-up read alone        {p50:7.2f} / {p99:7.2f}")
        (a50, a99), (h50, h99) = smalls(srv, n)
        print(f"  append 100 B alone               {a50:7.2f} / {a99:7.2f}")
        print(f"  GET /v1/health alone             {h50:7.2f} / {h99:7.2f}")
        stop = threading.Event()
        rs = [Reader(srv, stop) for _ in range(readers)]
        for r in rs:
            r.start()
        t0 = time.perf_counter()
        (a50, a99), (h50, h99) = smalls(srv, n)
        secs = time.perf_counter() - t0
        stop.set()
        for r in rs:
            r.join()
        print(f"  append 100 B, {readers} readers of 1 MiB  {a50:7.2f} / {a99:7.2f}")
        print(f"  GET /v1/health, {readers} readers        {h50:7.2f} / {h99:7.2f}")
        print(f"  (the readers read {sum(r.reads for r in rs) / secs:.0f} MiB/s meanwhile)")
    finally:
        srv.stop()
        Server.cleanup_all()
        pg.cleanup()


if __name__ == "__main__":
    main()
