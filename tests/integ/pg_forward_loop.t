#!/usr/bin/env python3
# A follower never forwards a request that another node forwarded to it. Node A holds the write
# lease, but its --node-url wrongly names node B's address (a balancer in front of the nodes would
# do the same). B, a follower, forwards to A's --node-url, which is B itself. Without the
# Agentd-Forwarded-By mark, that one request forwarded itself over and over: about 10,000
# connections and 20,000 descriptors in under two seconds, until B's descriptors ran out. With the
# mark, the second hop answers 503 owner_unavailable and names the bad --node-url. Then a holder
# whose --node-url refuses connections: a follower holds a request for it (as for an owner that just
# died) only for the lease's time left plus a second, then answers 503 owner_unavailable.
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402
from cluster import ONE_HOLDER  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 1000


def fds(srv):
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


def main(tap):
    if REF:
        tap.skip("a forwarding loop between nodes", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    port_b = free_port()
    # B forwards everything to the holder (A, then C): the node started first holds every shard.
    a = Server(args=["--store", pg.url, "--node-url", f"http://127.0.0.1:{port_b}", *ONE_HOLDER])
    b = Server(args=["--store", pg.url, "--node-url", f"http://127.0.0.1:{port_b}/b", *ONE_HOLDER],
               listen=f"127.0.0.1:{port_b}")
    c = Server(args=["--store", pg.url, "--node-url", f"http://127.0.0.1:{free_port()}", "--lease-ms",
                     str(LEASE_MS), *ONE_HOLDER])
    try:
        a.start()
        b.start()
        before = fds(b)
        t0 = time.monotonic()
        r = b.request("GET", "/v1/sessions")
        took = time.monotonic() - t0
        tap.is_((r.status, (r.error_body() or {}).get("code")), (503, "owner_unavailable"),
                "a request that B forwards to itself is answered 503 owner_unavailable")
        tap.ok("--node-url" in (r.error_body() or {}).get("message", ""),
               "the answer names the --node-url at fault", repr(r.body[:300]))
        tap.ok(took < 2, f"at once ({took * 1000:.0f} ms)")
        tap.ok(fds(b) < before + 20, f"B holds no pile of connections ({before} -> {fds(b)} descriptors)")
        tap.check_clean_exit(b, "B stops cleanly")
        tap.check_clean_exit(a, "A stops cleanly")

        # A holder whose --node-url refuses connections (nothing listens there): B holds the request
        # (it could be a holder that just died), but only for the lease's time left plus a second.
        c.start()
        b.start()
        t0 = time.monotonic()
        r = b.request("GET", "/v1/sessions")
        took = time.monotonic() - t0
        tap.is_((r.status, (r.error_body() or {}).get("code")), (503, "owner_unavailable"),
                "a holder that refuses connections: 503 owner_unavailable")
        tap.ok(0.5 < took < LEASE_MS / 1000 + 2.5, f"after holding the request at most the lease's time left plus "
               f"a second ({took:.1f} s, lease {LEASE_MS} ms)")
        tap.check_clean_exit(b, "B stops cleanly")
        tap.check_clean_exit(c, "C stops cleanly")
    finally:
        if tap.failed:
            tap.diag(a.stderr_tail())
            tap.diag(b.stderr_tail())
            tap.diag(c.stderr_tail())
        for srv in (a, b, c):
            if srv.proc and srv.proc.poll() is None:
                srv.stop()
        pg.cleanup()


run_test(main)
