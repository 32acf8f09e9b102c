#!/usr/bin/env python3
"""bench/cluster, three nodes: agentd x3 on one PostgreSQL of its own (tests/integ/cluster.py), the
first node holding the write lease, the other two forwarding to it.

    python3 bench/cluster/nodes.py [ONE_NODE_DSBENCH_OUTPUT]

  - appends/s, 32 writers spread over the three nodes (dsbench phase b, --agentd OWNER,F1,F2), on 1
    stream and on 1,000 streams; with the output of the one-node PostgreSQL run, the ratio to it;
    beside it where the CPU went (CPU-seconds per 1,000 appends of the three nodes, of PostgreSQL, of
    dsbench, of the rest of the machine; the cores busy), the share of appends the node asked
    forwarded, and append latency forwarded vs answered where sent;
  - append -> SSE delivery p50/p99, the writer on the owner, 10 and 100 readers on the owner and then
    on a follower (dsbench phase c, --agentd OWNER and --agentd OWNER,FOLLOWER);
  - failover: the owner killed with -9 -> the first append acknowledged through another node, twice
    (then the new owner is killed too), with --lease-ms 1000.
Environment: BUILD (build/release), DSBENCH_ARGS (extra dsbench flags), SHARD_POLICY (all, the
default, or balance: the nodes' --shard-policy; with balance they start together and each takes its
share of the shards, so appends are served by all three), APPENDS_ONLY=1 (the appends/s part only).
Exit status 1 when a node or dsbench failed.
"""
import os
import re
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
BUILD = os.environ.get("BUILD", "build/release")
os.environ.setdefault("AGENTD_BIN", os.path.join(ROOT, BUILD, "agentd"))
from agentd_test import Server  # noqa: E402
from cluster import Cluster  # noqa: E402
from pg import Postgres  # noqa: E402

LEASE_MS = 1000
POLICY = os.environ.get("SHARD_POLICY", "all")
LOADAVG = "-"
DSBENCH = os.path.join(ROOT, BUILD, "bench", "ds", "dsbench")


def dsbench(*args):
    extra = os.environ.get("DSBENCH_ARGS", "").split()
    r = subprocess.run([DSBENCH, "--seconds", "2", *args, *extra], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, cwd=ROOT)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace"))
        raise RuntimeError(f"dsbench {' '.join(args)} failed ({r.returncode})")
    return r.stdout.decode(errors="replace")


def figure(text, label, after=None):
    """The agentd column of a row of dsbench's table (the first row labelled so after `after`)."""
    lines = text.splitlines()
    if after is not None:
        lines = lines[next(i for i, l in enumerate(lines) if l.startswith(after)):]
    for line in lines:
        if line.startswith(label):
            v = line[len(label):].split()
            try:
                return float(v[0])
            except (IndexError, ValueError):
                return None
    return None


def fmt(v, d=0):
    return "-" if v is None else f"{v:.{d}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def cpu_rows(text, config):
    """dsbench's CPU lines for agentd (1 and 1,000 streams), as bench/cluster/run.sh prints them."""
    out = []
    for line in text.splitlines():
        v = line.split()
        if len(v) >= 10 and v[0] == "agentd" and v[1] in ("1", "1000") and "busy" in line:
            out.append(f"   {config:<10} {v[1]:>7} {v[2]:>10} {v[3]:>8} {v[4]:>8} {v[5]:>8} {v[6]:>8} {v[7]:>8} "
                       f"{v[8]:>10}  " + " ".join(v[9:]))
    return out


def forwarded_rows(text):
    """dsbench's forwarded-vs-local lines (after its "(b) agentd over N URLs" heading)."""
    out, on = [], False
    for line in text.splitlines():
        on = on or line.startswith("(b) agentd over")
        v = line.split()
        if on and len(v) == 7 and v[0] == "agentd" and v[1] in ("1", "1000"):
            out.append(f"   {v[1]:<10} {v[2]:>10} {v[3]:>10} {v[4]:>8} {v[5]:>14} {v[6]:>8}")
    return out


def postmaster_pid(pg):
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        return int(f.readline())


def xact_commits(pg):
    """Transactions committed in the database so far (pg_stat_database), or 0."""
    r = subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-At", pg.url, "-c",
                        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        return int(r.stdout.decode().strip())
    except ValueError:
        return 0


def failover(owner, others):
    """Kills owner with -9; seconds until an append through one of the others is acknowledged, to a
    stream in a shard the killed node held (with balance, most names are in another node's shard:
    their appends would not wait for the take-over at all)."""
    for i in range(512):
        path = f"/v1/stream/bench-failover-{i}"
        r = others[0].request("PUT", path, None, {"Content-Type": "text/plain"})
        if (r.header("Agentd-Node") or "").rstrip("/") == owner.url.rstrip("/"):
            break
    else:
        return None
    owner.kill9()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        for srv in others:
            try:
                if 200 <= srv.append(path, b"x", "text/plain").status < 300:
                    return time.monotonic() - t0
            except OSError:
                pass
        time.sleep(0.01)
    return None


def main(argv):
    global LOADAVG
    LOADAVG = " ".join(open("/proc/loadavg").read().split()[:3])
    one_node = open(argv[0]).read() if argv else ""
    pg = Postgres()
    pg.start()
    c = Cluster(pg.url, nodes=3, lease_ms=LEASE_MS, args=["--durability", "fsync", "--shard-policy", POLICY])
    try:
        started = []
        if POLICY == "all":  # the first one takes every shard
            c.nodes[0].start(30)
        def start(srv):
            try:
                started.append(srv.start(8))
            except RuntimeError:
                pass
        threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in c.nodes[POLICY == "all":]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        if POLICY == "all":
            print(f"== agentd: 3 nodes on one PostgreSQL (lease {LEASE_MS} ms, fsync), the first node owning the lease")
        else:
            time.sleep(3)  # each takes its share, 4 shards a beat
            spread = {u[-5:]: n.get("shards") for u, n in c.node_list().items()}
            print(f"== agentd: 3 nodes on one PostgreSQL (lease {LEASE_MS} ms, fsync), --shard-policy {POLICY}: "
                  f"shards per node {spread}")
        if len(started) < 3 - (POLICY == "all"):
            print("   FAILED: the other two nodes did not start beside the lease holder", flush=True)
            sys.stderr.write(c.stderr_tails() + "\n")
            return 1
        owner, f1, f2 = c.nodes
        urls = ",".join(n.url for n in c.nodes)
        pids = ",".join(str(n.proc.pid) for n in c.nodes)
        commits = xact_commits(pg)
        tput = dsbench("--agentd", urls, "--agentd-pid", pids, "--db-pid", str(postmaster_pid(pg)),
                       "--phases", "b")
        commits = xact_commits(pg) - commits
        print(f"   appends/s, 32 writers spread over the 3 nodes (2 of 3 connections reach a follower)")
        print(f"   {'streams':<10} {'1 node':>10} {'3 nodes':>10} {'3/1':>8}")
        for n in ("1 stream", "1000 streams"):
            label = f"(b) appends/s, 32 writers, {n}"
            one, three = figure(one_node, label), figure(tput, label)
            print(f"   {n.split()[0]:<10} {fmt(one):>10} {fmt(three):>10} {ratio(three, one):>8}")
        print("   (1 stream has one owner: expect 1 node's rate less the forward hop; a gain can only come on")
        print("   1,000 streams, once several nodes own shards)")
        print("   where the CPU went, CPU-seconds per 1,000 appends (server = the 3 nodes summed; load average "
              f"before: {LOADAVG})")
        print(f"   {'config':<10} {'streams':>7} {'appends/s':>10} {'server':>8} {'postgres':>8} {'dsbench':>8} "
              f"{'kernel':>8} {'others':>8} {'cpu max/s':>10}  cores busy")
        for row in cpu_rows(one_node, "1 node") + cpu_rows(tput, "3 nodes"):
            print(row)
        print("   appends forwarded by the node asked (Agentd-Node names another) vs answered there, ms")
        print(f"   {'streams':<10} {'forwarded':>10} {'local p50':>10} {'p99':>8} {'forwarded p50':>14} {'p99':>8}")
        for row in forwarded_rows(tput):
            print(row)
        appended = sum(figure(tput, f"(b) appends/s, 32 writers, {n}") or 0 for n in ("1 stream", "1000 streams"))
        if commits > 0 and appended > 0:  # each run lasts 2 s (dsbench --seconds 2)
            print(f"   PostgreSQL transactions committed over both runs: {commits}, about "
                  f"{2 * appended / commits:.1f} measured appends per transaction (a rough figure: the warm-ups,")
            print("   the streams' creation and the nodes' heartbeats commit too)")
        if os.environ.get("APPENDS_ONLY") == "1":
            return 0
        sse = {}
        for where, agentd in (("owner", owner.url), ("follower", f"{owner.url},{f1.url}")):
            sse[where] = dsbench("--agentd", agentd, "--phases", "c", "--subscribers", "10,100")
        print("   append -> SSE delivery, the writer on the owner, one 100-byte append every 10 ms")
        print(f"   {'readers':<16} {'owner p50':>10} {'p99 ms':>8} {'follower p50':>13} {'p99 ms':>8} {'f/o p50':>8}")
        for n in (10, 100):
            head = f"(c) SSE, {n} subscribers"
            o50, o99 = figure(sse["owner"], "      p50 ms", head), figure(sse["owner"], "      p99 ms", head)
            f50, f99 = figure(sse["follower"], "      p50 ms", head), figure(sse["follower"], "      p99 ms", head)
            print(f"   {n:<16} {fmt(o50, 3):>10} {fmt(o99, 3):>8} {fmt(f50, 3):>13} {fmt(f99, 3):>8} {ratio(f50, o50):>8}")
        for text in [tput, *sse.values()]:
            m = re.search(r"request errors: agentd (\d+)", text)
            if m:
                print(f"   request errors: {m.group(1)} (dsbench's stderr has the first ones)")
        t1 = failover(owner, [f1, f2])
        second = c.owner(f1) or f1
        t2 = failover(second, [f2 if second is f1 else f1])
        print(f"   failover, owner killed -9 -> an append acknowledged through another node: "
              f"{fmt(t1, 2)} s, then {fmt(t2, 2)} s (lease {LEASE_MS} ms)")
        return 0 if t1 is not None and t2 is not None else 1
    finally:
        c.stop()
        Server.cleanup_all()
        pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
