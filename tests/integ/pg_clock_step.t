#!/usr/bin/env python3
# The lease's heartbeat and a wall clock stepped back (NTP correcting a clock that ran ahead): the
# owner's beat waits on a monotonic deadline, so a step back of 30 s while it waits does not hold its
# renewals for 30 s, its lease does not expire, the follower takes nothing over and the owner does
# not exit 75. The step is made in the owner alone, by a library preloaded into it (compiled here):
# after 3 s its CLOCK_REALTIME reads 30 s ahead of the kernel's, which is what a deadline computed
# before a 30 s step back looks like to the kernel. Neutral to --shard-policy: under balance the
# owner may give shards up to the follower meanwhile (the hand-off), but it loses none.
import os
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test  # noqa: E402
from cluster import pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 1000
STEP_AFTER_MS = 3000
STEP_MS = 30000

CLOCKSTEP_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
static int (*real_cg)(clockid_t, struct timespec *);
static struct timespec t0;
int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!real_cg) {
        real_cg = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
        real_cg(CLOCK_MONOTONIC, &t0);
    }
    int rc = real_cg(id, ts);
    if (rc == 0 && id == CLOCK_REALTIME) {
        struct timespec m;
        real_cg(CLOCK_MONOTONIC, &m);
        if ((m.tv_sec - t0.tv_sec) * 1000 + (m.tv_nsec - t0.tv_nsec) / 1000000 >= STEP_AFTER_MS)
            ts->tv_sec += STEP_MS / 1000;
    }
    return rc;
}
"""


def psql(pg, sql):
    r = subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-At", pg.url, "-c", sql], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.stdout.decode(errors="replace").strip()


def held_given(pg, node):
    """(shards node holds, shards it has given up by the hand-off so far, from its log): the log read
    on both sides of the count, until they agree (a hand-off logs once its next beat has seen the
    release, a quarter lease after the row says it)."""
    def given():
        with open(node.stderr_path, errors="replace") as f:
            return f.read().count("serve: gave shard ")
    for _ in range(10):
        g = given()
        n = psql(pg, f"SELECT count(*) FROM agentd_shards WHERE node = '{node.url}'")
        time.sleep(LEASE_MS / 1000 / 2)
        if given() == g:
            return int(n) if n.isdigit() else n, g
    return None, None


def main(tap):
    if REF:
        tap.skip("PostgreSQL store", "the reference server has no --store")
        return
    tmp = tempfile.mkdtemp(prefix="agentd-clockstep-")
    so = os.path.join(tmp, "clockstep.so")
    src = os.path.join(tmp, "clockstep.c")
    with open(src, "w") as f:
        f.write(CLOCKSTEP_C)
    r = subprocess.run(["cc", "-shared", "-fPIC", f"-DSTEP_AFTER_MS={STEP_AFTER_MS}", f"-DSTEP_MS={STEP_MS}", "-o",
                        so, src, "-ldl"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tap.is_(r.returncode, 0, f"the clock-step library is built ({r.stdout.decode()[-200:]})")
    pg = Postgres()
    pg.start()
    # ASan wants its runtime first among the preloaded libraries: told not to mind
    env = {"LD_PRELOAD": so, "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    owner = pg_node(pg, LEASE_MS, free_port(), env=env)
    follower = pg_node(pg, LEASE_MS, free_port())
    nodes = [owner, follower]
    try:
        owner.start()
        follower.start()
        tap.is_(owner.create("/v1/stream/c/1", "text/plain").status, 201, "the owner takes a write")
        held0, given0 = held_given(pg, owner)
        time.sleep((STEP_AFTER_MS + 3 * LEASE_MS) / 1000)  # the step, then three leases
        tap.is_(owner.proc.poll(), None, "the owner's wall clock stepped back 30 s: it is still running")
        held1, given1 = held_given(pg, owner)
        tap.ok(isinstance(held0, int) and held0 > 0 and held1 == held0 - (given1 - given0),
               f"it still holds every shard it held but those it gave up (its renewals went on): "
               f"{held0} -> {held1}, {given1 - given0} given up")
        try:
            status = owner.append("/v1/stream/c/1", b"x", "text/plain").status
        except OSError as e:
            status = repr(e)
        tap.is_(status, 204, "and still takes writes")
        tap.is_(follower.read_bytes("/v1/stream/c/1")[0], b"x", "which the follower reads")
        for n in nodes:
            tap.check_clean_exit(n, f"node {n.url} stops cleanly")
    finally:
        stop_nodes(tap, pg, nodes)
        subprocess.run(["rm", "-rf", tmp])


run_test(main)
