#!/usr/bin/env python3
# A balance node loads the shards it takes off the loop (doc/ARCHITECTURE.md "Several nodes on one
# database", "Taking shards"): two nodes with --shard-policy balance on one PostgreSQL, a stream in
# each one's shards.
#   (a) A psql session locks agentd_records (every load of a stream's row reads its tail there) and
#       B is killed with -9: A takes B's shards once B's lease expires, and their load waits for the
#       lock. Meanwhile A answers /v1/health, HEAD and offset=now of its own stream within a second
#       (before: the load ran on the loop's connection, and A answered nothing until the lock went),
#       and an append to B's stream sent to A is held, not refused; once the lock goes it is
#       acknowledged and A serves B's stream whole.
#   (b) A load that fails (agentd_producers renamed away, so the load's query fails) does not stop
#       the node (before: "took shards but cannot serve them ...; stopping", exit 1): a third node C,
#       which holds nothing while A holds every shard, takes them all when A is killed, cannot load
#       them, says so, answers /v1/health and stays up; once the table is back it loads them (a
#       later try) and serves what A wrote, and stops cleanly (no sanitizer report under MODE=asan).
# Skipped only when PostgreSQL's binaries are missing.
import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import balance_nodes, held, pg_node, psql, shard_of  # noqa: E402
from pg import Locker, free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")


def path_in(shards, tag):
    """A stream path whose shard is in shards."""
    for i in range(10000):
        p = f"/v1/stream/take/{tag}{i}"
        if shard_of(p[len("/v1/stream/"):]) in shards:
            return p
    raise RuntimeError("no path found")


def timed(srv, method, path):
    t0 = time.monotonic()
    try:
        r = srv.request(method, path, timeout=5)
        return r.status, round(time.monotonic() - t0, 3)
    except OSError as e:
        return repr(e), round(time.monotonic() - t0, 3)


class Req(threading.Thread):
    def __init__(self, srv, method, path, body=None, headers=None):
        super().__init__(daemon=True)
        self.args = (method, path, body, headers)
        self.srv, self.resp, self.err, self.t = srv, None, None, None

    def run(self):
        t0 = time.monotonic()
        try:
            self.resp = self.srv.request(*self.args, timeout=30)
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.err = e
        self.t = time.monotonic() - t0


def body(srv, path):
    try:
        r = srv.request("GET", path + "?offset=-1", timeout=5)
        return r.body if r.status == 200 else r.status
    except OSError as e:
        return repr(e)


def stderr_has(srv, text):
    with open(srv.stderr_path, errors="replace") as f:
        return text in f.read()


def locked_take(tap, pg, a, b):
    """(a)"""
    tap.ok(wait_for(lambda: len(held(pg, a.url)) + len(held(pg, b.url)) == SHARDS and held(pg, b.url), 10),
           "A and B share the shards", repr((len(held(pg, a.url)), len(held(pg, b.url)))))
    mine, theirs = path_in(set(held(pg, a.url)), "a"), path_in(set(held(pg, b.url)), "b")
    ra, rb = a.create(mine, "text/plain", b"a;"), a.create(theirs, "text/plain", b"b;")
    tap.ok(ra.status == 201 and rb.status == 201, "a stream in A's shards and one in B's", repr((ra, rb)))
    lock = Locker(pg)
    try:
        b.proc.kill()
        b.proc.wait()
        took = wait_for(lambda: len(held(pg, a.url)) == SHARDS, 10)
        time.sleep(0.3)  # the load of B's shards waits for the lock now
        health = [timed(a, "GET", "/v1/health") for _ in range(3)]
        head = timed(a, "HEAD", mine)
        now = timed(a, "GET", mine + "?offset=now")
        tap.ok(took and all(s == 200 and t < 1.0 for s, t in health + [head, now]),
               "while the load of the shards A took waits for the lock, /v1/health, HEAD and offset=now of "
               "its own stream answer within a second", repr((took, health, head, now)))
        app = Req(a, "POST", theirs, b"more;", {"Content-Type": "text/plain"})
        app.start()
        time.sleep(0.3)
        tap.ok(app.resp is None and app.err is None, "an append to B's stream sent to A is held meanwhile",
               repr((app.resp, app.err)))
    finally:
        lock.release()
    app.join(20)
    tap.ok(app.resp is not None and app.resp.status == 204, "once the lock goes it is acknowledged",
           repr((app.resp, app.err, app.t)))
    data, _ = a.read_bytes(theirs)
    tap.ok(data == b"b;more;" and stderr_has(a, "loaded the shards it took"), "and A serves B's stream whole",
           repr(data))
    return mine, theirs


def failed_load(tap, pg, a, paths):
    """(b)"""
    c = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
    c.start(30)
    try:
        tap.ok(held(pg, c.url) == [], "C, started while A holds every shard, holds none")
        rc, out = psql(pg, "ALTER TABLE agentd_producers RENAME TO agentd_producers_away")
        a.proc.kill()
        a.proc.wait()
        took = wait_for(lambda: len(held(pg, c.url)) == SHARDS, 10)
        said = wait_for(lambda: stderr_has(c, "cannot load shards"), 10)
        time.sleep(0.5)
        health = timed(c, "GET", "/v1/health")
        tap.ok(rc == 0 and took and said and c.proc.poll() is None and health[0] == 200 and health[1] < 1.0,
               "C takes A's shards, cannot load them (their table is gone), says so, and stays up answering "
               "/v1/health", repr((rc, out, took, said, c.proc.poll(), health)) + "\n" + c.stderr_tail())
    finally:
        psql(pg, "ALTER TABLE agentd_producers_away RENAME TO agentd_producers")
    served = wait_for(lambda: body(c, paths[1]) == b"b;more;", 20)
    try:
        r = c.append(paths[0], b"c;", "text/plain").status
        data, _ = c.read_bytes(paths[0])
    except OSError as e:  # it stopped (before: exit 1)
        r, data = repr(e), None
    tap.ok(served and r == 204 and data == b"a;c;" and c.proc.poll() is None,
           "once the table is back C loads the shards and serves what A wrote", repr((served, r, data)))
    tap.check_clean_exit(c, "C, which failed loads and retried them, stops cleanly (no sanitizer report)")


def main(tap):
    with balance_nodes(tap, "a balance node's load of the shards it takes", nodes=2, lease_ms=LEASE_MS) as (pg, ns):
        if ns is None:
            return
        a, b = ns
        paths = locked_take(tap, pg, a, b)
        failed_load(tap, pg, a, paths)


run_test(main)
