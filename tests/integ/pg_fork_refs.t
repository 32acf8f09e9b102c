#!/usr/bin/env python3
# Fork references on PostgreSQL (doc/SHARDING-PLAN.md §2.3, increment 3): agentd_fork_refs holds one
# row per fork, written by the source's owner; a ref whose fork row is gone (a fork's create that
# failed after its ref committed, an unref lost) is reconciled by the owner's sweep once two sweeps
# running found it so, and a deleted source kept only by such a ref is reclaimed then. The sweep's
# period is 60 s; the test sets it to 1 s (AGENTD_TEST_FORK_SWEEP_MS, tests only), which the
# registry's 2 s sweep timer rounds up.
#   - a fork's create writes its ref; a leaked ref inserted with psql goes within the sweep;
#   - restarted with a leaked ref of a source S (loaded, so S counts it), S deleted and its only
#     real fork deleted: S stays, soft-deleted, until the sweep removes the ref and reclaims S (its
#     row gone, its path free again).
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test, wait_for  # noqa: E402
from pg import Postgres  # noqa: E402

SWEEP_MS = 1000
LEAKED = 987654321  # a stream id no row has


def psql(pg, sql):
    r = subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", pg.url, "-c", sql],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return r.stdout.decode().strip()


def stream_id(pg, path):
    return psql(pg, f"SELECT id FROM agentd_streams WHERE path = '{path}'")


def refs(pg):
    return psql(pg, "SELECT src || ':' || fork FROM agentd_fork_refs ORDER BY src, fork").split()


def main(tap):
    if REF:
        tap.skip("fork references on PostgreSQL", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    srv = Server(args=["--store", pg.url], env={"AGENTD_TEST_FORK_SWEEP_MS": str(SWEEP_MS)})
    try:
        srv.start()
        tap.is_(srv.create("/v1/stream/refs/s", "text/plain", b"source;").status, 201, "S created")
        r = srv.create("/v1/stream/refs/f", "text/plain", b"fork;", headers={"Stream-Forked-From": "/v1/stream/refs/s"})
        tap.is_(r.status, 201, "F created, a fork of S")
        s, f = stream_id(pg, "refs/s"), stream_id(pg, "refs/f")
        tap.is_(refs(pg), [f"{s}:{f}"], "F's create wrote its ref of S")

        psql(pg, f"INSERT INTO agentd_fork_refs VALUES ({s}, {LEAKED})")
        t0 = time.monotonic()
        gone = wait_for(lambda: refs(pg) == [f"{s}:{f}"], 10, 0.1)
        tap.ok(gone, f"a leaked ref of S (no fork row) is removed by the sweep ({time.monotonic() - t0:.1f} s)",
               repr(refs(pg)))

        psql(pg, f"INSERT INTO agentd_fork_refs VALUES ({s}, {LEAKED})")
        srv.restart()
        t0 = time.monotonic()
        tap.is_(srv.request("DELETE", "/v1/stream/refs/s").status, 204, "restarted with S's leaked ref loaded: S deleted")
        tap.is_(srv.request("DELETE", "/v1/stream/refs/f").status, 204, "... and F, its only fork")
        row = psql(pg, f"SELECT deleted FROM agentd_streams WHERE id = {s}")
        tap.is_(row, "1", "S stays, soft-deleted: the leaked ref still counts")
        tap.is_(srv.create("/v1/stream/refs/s", "text/plain", b"again;").status, 409,
                "... so its path cannot be created again yet")
        reclaimed = wait_for(lambda: psql(pg, f"SELECT count(*) FROM agentd_streams WHERE id = {s}") == "0", 10, 0.1)
        tap.ok(reclaimed, f"the sweep removes the leaked ref and reclaims S ({time.monotonic() - t0:.1f} s after "
               "the restart)")
        tap.is_(refs(pg), [], "no ref is left")
        tap.is_(srv.create("/v1/stream/refs/s", "text/plain", b"again;").status, 201, "S's path is free again")
        tap.check_clean_exit(srv, "agentd stops cleanly")
    finally:
        srv.stop()
        pg.cleanup()


if __name__ == "__main__":
    run_test(main)
