#!/usr/bin/env python3
# Forks whose source another node holds (doc/SHARDING-PLAN.md §2.3, serve_internal_http.h): three
# nodes on one PostgreSQL with --shard-policy balance and a --token; source S in a shard node A
# holds, fork F in one node B holds.
#   - F created through B reads S's prefix and its own appends, through either node; the ref is
#     S's owner's row (agentd_fork_refs) with F's id, written before F's create was answered;
#   - a fork of a missing source: 404, of a deleted one 409, as the local path answers;
#   - /v1/internal/stream-ref without the token: 401;
#   - F deleted, then S: S is gone for good (404, the path created anew);
#   - S deleted first (soft: its path is still taken), then F: the unref B sends after F's delete
#     reclaims S at once (its path is free again within seconds, well before the 60 s sweep);
#   - A killed with -9 after forks were made: B takes A's shards; every acknowledged byte of the
#     sources and of the forks is there, and both take appends again;
#   - C paused (SIGSTOP) holding a source: a fork of it created through B waits, B takes C's shards
#     once their leases expire, and the fork is then made there as a local one (201, its prefix).
# Skipped only when PostgreSQL's binaries are missing.
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, wait_for  # noqa: E402
from cluster import psql, shard_of, test_cluster  # noqa: E402

LEASE_MS = 1000
TOKEN = "remote-fork-token"
P = "/v1/stream/"


def held(pg, url):
    rc, out = psql(pg, f"SELECT shard FROM agentd_shards WHERE node = '{url}' AND expires_at > now() ORDER BY shard")
    return {int(x) for x in out.split()} if rc == 0 else set()


def path_in(shards, stem, taken):
    """A stream path (without /v1/stream/) whose shard is in shards."""
    for i in range(100000):
        p = f"rf/{stem}{i}"
        if shard_of(p) in shards and p not in taken:
            taken.add(p)
            return p
    raise RuntimeError("no path in those shards")


def stream_id(pg, path):
    rc, out = psql(pg, f"SELECT id FROM agentd_streams WHERE path = '{path}'")
    return int(out) if rc == 0 and out.strip() else None


def body(srv, path):
    data, r = srv.read_bytes(P + path)
    return data if r.status == 200 else r.status


def main(tap):
    with test_cluster(tap, "forks across nodes", nodes=3, lease_ms=LEASE_MS, token=TOKEN,
                      args=["--shard-policy", "balance"]) as c:
        if c is not None:
            c.start()
            check(tap, c.pg, c.nodes)


def check(tap, pg, nodes):
    a, b, c = nodes
    spread = lambda: [len(held(pg, n.url)) for n in nodes]  # noqa: E731
    tap.ok(wait_for(lambda: sum(spread()) == 64 and min(spread()) >= 20, 15), "the shards spread about 21/21/22",
           repr(spread()))
    on_a, on_b, on_c, taken = held(pg, a.url), held(pg, b.url), held(pg, c.url), set()
    sc = path_in(on_c, "c", taken)
    tap.is_(c.create(P + sc, "text/plain", b"on C;").status, 201, "a source on C (for the pause, last)")

    # a fork through B of a source A holds
    s, f = path_in(on_a, "s", taken), path_in(on_b, "f", taken)
    tap.is_(a.create(P + s, "text/plain", b"abc").status, 201, "source S created on A")
    tap.ok(a.append(P + s, b"def", "text/plain").status in (200, 204), "S appended")
    r = b.create(P + f, "text/plain", headers={"Stream-Forked-From": P + s})
    tap.ok(r.status == 201, "fork F of S created through B (S's shard is A's)", f"{r.status} {r.body[:300]!r}")
    tap.is_(r.header("Agentd-Node"), b.url, "F's create was served by B")
    tap.is_(b.create(P + f, "text/plain", headers={"Stream-Forked-From": P + s}).status, 200,
            "F created again through B (idempotent): 200")
    tap.ok(a.append(P + s, b"SSS", "text/plain").status in (200, 204), "S appended after the fork")
    tap.ok(b.append(P + f, b"xyz", "text/plain").status in (200, 204), "F appended through B")
    tap.is_(body(b, f), b"abcdefxyz", "F reads S's prefix and its own append (through B)")
    tap.is_(body(a, f), b"abcdefxyz", "... and through A")
    sid, fid = stream_id(pg, s), stream_id(pg, f)
    rc, refs = psql(pg, f"SELECT fork FROM agentd_fork_refs WHERE src = {sid}")
    tap.is_(refs.split(), [str(fid)],
            "S's one ref names F's id (agentd_fork_refs; the re-create asked for none: its path existed)")

    # refusals as the local path makes them
    r = b.create(P + path_in(on_b, "f", taken), "text/plain", headers={"Stream-Forked-From": P + "rf/missing"})
    tap.ok(r.status == 404 or shard_of("rf/missing") in on_b, "a fork of a missing source: 404", repr(r.status))
    r = b.create(P + path_in(on_b, "f", taken), "application/json", headers={"Stream-Forked-From": P + s})
    tap.is_(r.status, 409, "a fork with another content type than its remote source: 409")
    r = b.request("POST", "/v1/internal/stream-ref", json.dumps({"src": s, "fork": 1}).encode(),
                  {"Content-Type": "application/json"}, auth=False)
    tap.is_(r.status, 401, "POST /v1/internal/stream-ref without the token: 401")

    # F deleted, then S: S gone for good
    tap.is_(b.request("DELETE", P + f).status, 204, "F deleted (through B)")
    tap.is_(a.request("DELETE", P + s).status, 204, "S deleted then")
    # gone for good once B's unref has reached A (sent after F's delete committed; it may come
    # after S's delete, which is then soft until it does)
    tap.ok(wait_for(lambda: a.request("GET", P + s).status == 404, 5), "S: 404")
    tap.is_(a.create(P + s, "text/plain").status, 201, "S's path is free (created anew)")

    # S deleted first, then F: the unref reclaims S
    s2, f2 = path_in(on_a, "s", taken), path_in(on_b, "f", taken)
    a.create(P + s2, "text/plain", b"hello")
    tap.is_(b.create(P + f2, "text/plain", headers={"Stream-Forked-From": P + s2}).status, 201, "F2 of S2")
    tap.is_(a.request("DELETE", P + s2).status, 204, "S2 deleted while F2 reads through it")
    tap.is_(a.create(P + s2, "text/plain").status, 409, "S2's path is still taken (soft delete)")
    tap.is_(body(b, f2), b"hello", "F2 still reads S2's bytes")
    tap.is_(b.request("DELETE", P + f2).status, 204, "F2 deleted")
    t0 = time.monotonic()
    tap.ok(wait_for(lambda: a.create(P + s2, "text/plain").status == 201, 10),
           f"S2 reclaimed by the unref (path free after {round(time.monotonic() - t0, 2)} s)")

    # A killed after forks: nothing acknowledged lost
    pairs = [(path_in(on_a, "k", taken), path_in(on_b, "g", taken)) for _ in range(5)]
    for i, (sp, fp) in enumerate(pairs):
        a.create(P + sp, "text/plain", f"src{i};".encode())
        b.create(P + fp, "text/plain", headers={"Stream-Forked-From": P + sp})
        b.append(P + fp, f"fork{i};".encode(), "text/plain")
    a.kill9()
    killed = time.monotonic()
    tap.ok(wait_for(lambda: len(held(pg, b.url)) + len(held(pg, c.url)) == 64, 10),
           f"B and C take A's shards ({round(time.monotonic() - killed, 2)} s)")
    ok = wait_for(lambda: all(b.append(P + sp, b"more;", "text/plain").status in (200, 204) for sp, _ in pairs), 10)
    tap.ok(ok, "the sources take appends again through B")
    got = [(body(b, sp), body(b, fp)) for sp, fp in pairs]
    want = [(f"src{i};more;".encode(), f"src{i};fork{i};".encode()) for i in range(len(pairs))]
    tap.is_(got, want, "every acknowledged byte of the sources and the forks is there")

    # C paused: the fork through B waits until B holds the source's shard, then is made there
    fc, gone = path_in(held(pg, b.url), "h", taken), path_in(held(pg, b.url), "h", taken)
    c.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:  # a client that leaves while its fork's ref waits: B drops the ask (ASan: no use after free)
        b.request("PUT", P + gone, b"", {"Content-Type": "text/plain", "Stream-Forked-From": P + sc}, timeout=0.2)
        left = False
    except OSError:
        left = True
    tap.ok(left, "a client that leaves while its fork's ref waits on paused C")
    r = b.create(P + fc, "text/plain", headers={"Stream-Forked-From": P + sc})
    took = round(time.monotonic() - t0, 2)
    tap.ok(r.status == 201 and shard_of(sc) in held(pg, b.url) and took < 4,
           f"a fork of a source on paused C: 201 once B took its shard ({took} s, within lease + 3 s)", f"{r.status} {r.body[:200]!r}")
    tap.is_(body(b, fc), b"on C;", "the fork reads the source's bytes")
    c.proc.send_signal(signal.SIGCONT)
    tap.check_clean_exit(b, "B stops cleanly")


run_test(main)
