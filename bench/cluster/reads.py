#!/usr/bin/env python3
"""bench/cluster, catch-up reads: two agentd nodes on one PostgreSQL of its own (tests/integ/cluster.py),
the first holding the write lease. Latency of one catch-up read (GET ?offset=-1, keep-alive, one
client, sequential), p50/p99 over N reads, of:
  - the owner, which reads its registry and PostgreSQL (one query per 256 records);
  - a follower answering it itself (a snapshot: BEGIN, the stream's row, the records, ROLLBACK);
  - a follower forwarding it to the owner: the same read of a stream with a Stream-TTL, which a
    follower always forwards (the cost of a catch-up read before followers served them);
for a small stream (10 appends of 100 bytes) and a large one (1,000 appends of 1 KiB: one 1 MiB answer,
four queries of records). Then what forwarding costs a request (the router's path on the follower:
the request's shard, its holder, the hop): an append of 100 bytes and a GET /v1/sessions (answered
from the owner's memory: the hop and the router alone, without a commit's spread), each sent to the
owner and to the follower, twice.

    python3 bench/cluster/reads.py [N]          (default 2000; BUILD=build/release)
"""
import http.client
import os
import sys
import time

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
BUILD = os.environ.get("BUILD", "build/release")
os.environ.setdefault("AGENTD_BIN", os.path.join(ROOT, BUILD, "agentd"))
from agentd_test import Server  # noqa: E402
from cluster import Cluster  # noqa: E402
from pg import Postgres  # noqa: E402


def timed(srv, path, n, method="GET", body=None):
    """p50 and p99 in ms of n requests, one at a time on one keep-alive connection, and the
    Agentd-Node of the last answer."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    lat, node = [], None
    headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
    for i in range(n + n // 10):  # the first tenth warms up
        t0 = time.perf_counter()
        conn.request(method, path, body, headers)
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 204):
            raise RuntimeError(f"{path}: {r.status}")
        if i >= n // 10:
            lat.append(time.perf_counter() - t0)
        node = r.getheader("Agentd-Node")
    conn.close()
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, node


def fill(srv, path, count, size, ttl=False):
    hdrs = {"Content-Type": "application/octet-stream", **({"Stream-TTL": "3600"} if ttl else {})}
    assert srv.request("PUT", path, None, hdrs).status == 201
    conn = srv.connection()
    for i in range(count):
        srv.append(path, bytes([i % 251]) * size, conn=conn)
    conn.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    pg = Postgres()
    pg.start()
    c = Cluster(pg.url, nodes=2, lease_ms=5000)
    try:
        c.start()
        owner, follower = c.nodes
        for name, count, size in (("small", 10, 100), ("large", 1000, 1024)):
            fill(owner, f"/v1/stream/bench/{name}", count, size)
            fill(owner, f"/v1/stream/bench/{name}-ttl", count, size, ttl=True)
        for name in ("a", "b"):
            assert owner.request("PUT", f"/v1/stream/bench/{name}", None,
                                 {"Content-Type": "application/octet-stream"}).status == 201
        print(f"catch-up read latency, {n} sequential reads each (keep-alive), ms:")
        for name in ("small", "large"):
            for label, srv, path in (("owner", owner, name), ("follower, local", follower, name),
                                     ("follower, forwarded", follower, name + "-ttl")):
                p50, p99, node = timed(srv, f"/v1/stream/bench/{path}?offset=-1", n)
                who = "owner" if node == owner.url else "follower"
                print(f"  {name:5} {label:20} p50 {p50:7.3f}  p99 {p99:7.3f}   (answered by the {who})")
        print(f"forwarding, {n} sequential requests each (keep-alive), ms:")
        for what, method, body in (("append", "POST", b"x" * 100), ("sessions", "GET", None)):
            for _ in range(2):
                for label, srv, name in (("owner", owner, "a"), ("follower, forwarded", follower, "b")):
                    path = f"/v1/stream/bench/{name}" if body else "/v1/sessions"
                    p50, p99, node = timed(srv, path, n, method, body)
                    who = "owner" if node == owner.url else "follower"
                    print(f"  {what:8} {label:20} p50 {p50:7.3f}  p99 {p99:7.3f}   (answered by the {who})")
    finally:
        c.stop()
        Server.cleanup_all()
        pg.cleanup()


if __name__ == "__main__":
    main()
