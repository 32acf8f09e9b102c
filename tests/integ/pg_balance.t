#!/usr/bin/env python3
# Several holders for plain streams: three nodes on one PostgreSQL with --shard-policy balance
# (doc/SHARDING-PLAN.md §1's take policy, §7 increment 4), each taking its share of the 64 shards
# and serving the streams of those itself; every other request is forwarded to its shard's holder.
#   - started together, the nodes spread the shards about 21/21/22 (GET /v1/nodes: `shards` per node);
#   - 32 writers (idempotent producers, retried until acknowledged) append to 1,000 streams, each
#     request through the next node in turn; appends are served by all three nodes (Agentd-Node);
#   - PostgreSQL restarted past the lease (every lease then looks expired): no node exits, each
#     holds the shards it held (the grace after an outage: holders renew before anybody takes);
#   - one node is killed with -9: a stream of each of its shards is writable again through the
#     survivors within lease + 1 s (they take its shards: a request for a shard with no live holder
#     asks for it, store_shard_want), no acknowledged append is lost, every stream holds for each
#     writer a contiguous prefix of what it sent with nothing twice, and the survivors end within
#     ±1 of the new share (32);
#   - a survivor paused (SIGSTOP) past its lease while writers go through it: the other takes its
#     shards; resumed, the paused node stores nothing (its batch is fenced) and exits 75; no stream
#     holds two histories.
# Skipped only when PostgreSQL's binaries are missing.
import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import Writer, balance_nodes, check_streams, held, shard_of, shards_by_node  # noqa: E402

LEASE_MS = 1000
WRITERS = 32
STREAMS = 1000
SHARDS = 64
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")
WRITABLE_WITHIN = LEASE_MS / 1000 + 1 + (2 if SLOW else 0)


def start_writers(nodes, paths, first=0):
    """WRITERS writers, ids first, first + 1, ... (a new round's are new producers)."""
    stop = threading.Event()
    writers = [Writer(nodes, first + w, paths[w::WRITERS], stop) for w in range(WRITERS)]
    for wr in writers:
        wr.start()
    return stop, writers


def acked(writers):
    return sum(n for wr in writers for n in wr.acked.values())


def round_restart(tap, pg, nodes, paths):
    before = {n.url: held(pg, n.url) for n in nodes}
    pg.stop("fast")
    time.sleep(3 * LEASE_MS / 1000)
    pg.start()

    def written():
        try:
            return all(200 <= n.append(p, b"probe;", "text/plain").status < 300 for n, p in zip(nodes, paths))
        except OSError:
            return False
    tap.ok(wait_for(written, 20), "PostgreSQL restarted past the lease: appends through each node work again")
    time.sleep(3 * LEASE_MS / 1000)  # past the grace: a node would have taken others' shards by now
    exited = [(n.url, n.proc.poll()) for n in nodes if n.proc.poll() is not None]
    tap.ok(not exited, "no node exits (the grace after an outage)", repr(exited))
    after = {n.url: held(pg, n.url) for n in nodes}
    tap.ok(after == before, "each node holds the shards it held before",
           "\n".join(f"{u}: {before[u]} -> {after[u]}" for u in before))


def round_kill(tap, pg, nodes, paths):
    a, b, dead = nodes
    stop, writers = start_writers(nodes, paths)
    tap.ok(wait_for(lambda: acked(writers) >= 3000, 60), "32 writers over 1,000 streams are acknowledged",
           f"{acked(writers)} acknowledged")
    by = {}
    for wr in writers:
        for u, n in wr.served_by.items():
            by[u] = by.get(u, 0) + n
    tap.ok(sorted(by) == sorted(n.url for n in nodes) and min(by.values()) > acked(writers) / 10,
           "appends are served by all three nodes (Agentd-Node)", repr(by))

    lost = held(pg, dead.url)
    probes = {}
    for p in (f"/v1/stream/bal/probe{i}" for i in range(5000)):
        if shard_of(p[len("/v1/stream/"):]) in lost and shard_of(p[len("/v1/stream/"):]) not in probes:
            probes[shard_of(p[len("/v1/stream/"):])] = p
    tap.ok(all(a.create(p, "text/plain").status == 201 for p in probes.values()),
           f"a probe stream in each of the {len(lost)} shards of the node to kill")
    dead.kill9()
    killed = time.monotonic()
    writable = {}

    def probe(k, p):
        srv = (a, b)[k % 2]
        while time.monotonic() - killed < 20:
            try:
                r = srv.append(p, b"probe;", "text/plain")
                if 200 <= r.status < 300:
                    writable[k] = time.monotonic() - killed
                    return
            except OSError:
                pass
            time.sleep(0.05)
    threads = [threading.Thread(target=probe, args=(k, p), daemon=True) for k, p in probes.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    took = max(writable.values(), default=None)
    tap.ok(len(writable) == len(probes) and took < WRITABLE_WITHIN,
           f"a stream of each of its shards is writable through the survivors {took and round(took, 2)} s after "
           f"the kill -9 (lease {LEASE_MS} ms; bound {WRITABLE_WITHIN:.1f} s)",
           f"{len(writable)} of {len(probes)}: {sorted(writable.values())[-5:]}")
    base = acked(writers)
    tap.ok(wait_for(lambda: acked(writers) >= base + 2000, 60), "the writers go on through the survivors",
           f"{acked(writers) - base} more")
    urls = [a.url, b.url]
    share = -(-SHARDS // 2)
    spread = lambda: shards_by_node(a, urls)  # noqa: E731
    tap.ok(wait_for(lambda: sum(spread().values()) == SHARDS and all(abs(v - share) <= 1 for v in spread().values()),
                    10),
           f"the survivors hold all {SHARDS} shards, each within ±1 of its share ({share})", repr(spread()))
    stop.set()
    for wr in writers:
        wr.join(20)
    bad = check_streams(a, writers)
    tap.ok(not bad, "no acknowledged append lost; every stream a contiguous prefix per writer", "\n".join(bad[:10]))
    other = [o for wr in writers for o in wr.other]
    tap.ok(not other, "no answer but 2xx or 503 throughout", repr(other[:5]))


def round_pause(tap, pg, a, b, paths):
    """b paused past its lease under writers: a takes its shards; b, resumed, stores nothing."""
    stop, writers = start_writers([a, b], paths, first=WRITERS)
    tap.ok(wait_for(lambda: acked(writers) >= 1000, 60), "writers through both survivors")
    paused = held(pg, b.url)
    probe = next(p for p in (f"/v1/stream/bal/pause{i}" for i in range(5000)) if shard_of(p[11:]) in paused)
    tap.ok(a.create(probe, "text/plain").status == 201, "a stream in one of the shards of the node to pause")
    b.proc.send_signal(signal.SIGSTOP)
    tap.ok(wait_for(lambda: len(held(pg, a.url)) == SHARDS, 10 + 3 * LEASE_MS / 1000),
           "the paused node's shards are taken by the other (all 64 on it)", repr(held(pg, a.url)))
    r = a.append(probe, b"probe;", "text/plain")
    tap.ok(200 <= r.status < 300 and r.header("Agentd-Node") == a.url,
           "meanwhile a stream of the paused node's shards is written by the other node", repr(r))
    b.proc.send_signal(signal.SIGCONT)
    try:
        rc = b.proc.wait(15)
    except Exception:  # noqa: BLE001
        rc = None
    tap.is_(rc, 75, "resumed, the paused node exits 75 (it lost shards it held)")
    time.sleep(0.5)
    stop.set()
    for wr in writers:
        wr.join(20)
    bad = check_streams(a, writers)
    tap.ok(not bad, "no stream holds two histories: each a contiguous prefix with every acknowledged append",
           "\n".join(bad[:10]))


def main(tap):
    with balance_nodes(tap, "--shard-policy balance", lease_ms=LEASE_MS) as (pg, nodes):
        if not pg:
            return
        urls = [n.url for n in nodes]
        spread = lambda: shards_by_node(nodes[0], urls)  # noqa: E731
        tap.ok(wait_for(lambda: sum(spread().values()) == SHARDS and max(spread().values()) - min(spread().values()) <= 2
                        and len(spread()) == 3, 10),
               "the shards spread about 21/21/22 (GET /v1/nodes)", repr(spread()))
        paths = [f"/v1/stream/bal/s{i}" for i in range(STREAMS)]
        made = [nodes[i % 3].create(p, "text/plain").status for i, p in enumerate(paths)]
        tap.ok(made.count(201) == STREAMS, f"{STREAMS} streams created through the three nodes",
               repr({s: made.count(s) for s in set(made)}))
        round_restart(tap, pg, nodes, paths)
        round_kill(tap, pg, nodes, paths)
        round_pause(tap, pg, nodes[0], nodes[1], paths)
        tap.check_clean_exit(nodes[0], "the last node stops cleanly")


run_test(main)
