#!/usr/bin/env python3
# A balance node that loses the shards it took while it still loads them exits 75, as one that
# loses shards it serves does (doc/ARCHITECTURE.md "Several nodes on one database", decision 3).
# Once a node is fenced its heartbeat only says it is alive (it takes nothing again), so a node whose
# only shards were still loading would otherwise stay up holding nothing and counting as live: the
# others' share would leave room for it, and shards handed to it would have no taker.
#   A alone holds every shard; B and C start, agentd_records is locked (a load of a stream's row
#   reads its tail there) and A killed -9 before it hands any shard off. B and C take A's shards,
#   whose loads wait for the lock. C is paused (SIGSTOP) past its lease and B takes its shards. C
#   resumed finds them taken (fenced) and exits 75 (before: it stayed up for good, holding nothing).
#   B is stopped (SIGTERM) while its loads still wait and the lock goes at once: the loads that end
#   in the drain are not taken in (before: the subscriptions started and another load ran in the
#   drain); it exits 0. A node started next serves what A wrote.
# Skipped only when PostgreSQL's binaries are missing.
import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import balance_nodes, held, pg_node  # noqa: E402
from pg import Locker, free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64
PATH = "/v1/stream/take/lost"


def body(srv):
    try:
        return srv.request("GET", PATH + "?offset=-1", timeout=5).body
    except OSError:
        return None


def main(tap):
    with balance_nodes(tap, "a balance node losing the shards it loads", nodes=1, lease_ms=LEASE_MS) as (pg, ns):
        if ns is None:
            return
        a = ns[0]
        tap.ok(wait_for(lambda: len(held(pg, a.url)) == SHARDS, 10), "A alone holds every shard")
        tap.ok(a.create(PATH, "text/plain", b"a;").status == 201, "A writes a stream")
        c = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        b = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        ns += [c, b]  # stopped (and resumed) by balance_nodes' teardown
        starts = [threading.Thread(target=n.start, args=(30,), daemon=True) for n in (c, b)]
        for t in starts:
            t.start()
        for t in starts:
            t.join(40)
        lock = Locker(pg)  # before A hands a shard off (over its share for 3 leases): C has none loaded
        try:
            a.proc.kill()
            a.proc.wait()
            took = wait_for(lambda: len(held(pg, c.url)) + len(held(pg, b.url)) == SHARDS and held(pg, c.url), 10)
            time.sleep(0.3)  # their loads wait for the lock
            tap.ok(took and c.proc.poll() is None, "B and C take A's shards; their loads wait for the lock",
                   repr((held(pg, b.url), held(pg, c.url))))
            c.proc.send_signal(signal.SIGSTOP)
            taken = wait_for(lambda: len(held(pg, b.url)) == SHARDS, 15)
            tap.ok(taken, "C paused past its lease: B takes its shards", repr(held(pg, b.url)))
            c.proc.send_signal(signal.SIGCONT)
            try:
                rc = c.proc.wait(15)
            except Exception:  # noqa: BLE001 — before: it stayed up
                rc = None
            tap.is_(rc, 75, "resumed, C, which lost the shards it was loading, exits 75")
            b.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)  # the lock goes within the drain's first second (reads are cancelled after)
        finally:
            lock.release()
        rc = b.proc.wait(15)
        report = b.sanitizer_report()
        with open(b.stderr_path, errors="replace") as f:
            log = f.read()
        drain = log[log.index("signal 15"):] if "signal 15" in log else ""
        tap.ok(rc == 0 and not report and "loaded the shards" not in drain and "subs:" not in drain,
               "B, stopped while its loads wait for the lock, takes nothing in once it goes (before: it started "
               "the subscriptions and another load in the drain) and exits 0", repr((rc, report, drain)))
        d = pg_node(pg, LEASE_MS, free_port(), args=["--shard-policy", "balance"])
        ns.append(d)
        d.start(30)
        try:
            served = wait_for(lambda: body(d) == b"a;", 20)
            r = d.append(PATH, b"d;", "text/plain").status
        except OSError as e:
            served, r = repr(e), None
        tap.ok(served is True and r == 204, "a node started next serves what A wrote", repr((served, r)))


run_test(main)
