#!/usr/bin/env python3
# Schema 5 on PostgreSQL (doc/SHARDING-PLAN.md §1, increment 1): one lease per shard, taken all or
# nothing, and a fence per shard.
#   - a schema-4 database is migrated: streams keep their records, forks and producer states; each
#     row's shard is filled (store_shard_of of its path; a detached row takes its first fork's);
#     each fork is one agentd_fork_refs row; the old agentd_fence raises, so an older agentd still
#     running is fenced; /v1/nodes says the node holds all 64 shards;
#   - forks made after the migration get their reference row, and lose it with their row;
#   - one shard taken by another node behind this one's back: the next batch writing to it is
#     refused and the node exits 75, naming the shard;
#   - PostgreSQL restarted past the lease with three nodes: no node exits (the grace after an
#     outage: the holder renews its shards before anybody may take them), the owner is the same and
#     writes work again.
# The schema-4 database is made by this binary: AGENTD_TEST_PG_SCHEMA=4 (a test-only variable) makes
# it migrate only that far and refuse to start; the rows are then written with psql, as an agentd of
# schema 4 writes them.
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER, Cluster, pg_node, psql, shard_of, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 1000
SHARDS = 64


def rows(pg, sql):
    rc, out = psql(pg, sql)
    if rc != 0:
        raise RuntimeError(f"psql: {out}")
    return [line.split("|") for line in out.splitlines() if line]


# Schema 4's rows: m/a (a source with one fork, m/b, at offset 3), a detached source 3 (soft
# deleted, no path) with its fork m/c at offset 2, and a producer state on m/a.
SCHEMA4_ROWS = """
INSERT INTO agentd_streams(id, path, content_type, created_ms, ttl_s, expires_at_ms, expires_at, closed,
  tail, fork_src, fork_off, fork_sub, refcount, deleted, last_seq, closer_pid, closer_epoch, closer_seq) VALUES
 (1, 'm/a', 'text/plain', 1, -1, -1, NULL, 0, 6, 0, 0, 0, 1, 0, NULL, NULL, 0, 0),
 (2, 'm/b', 'text/plain', 1, -1, -1, NULL, 0, 5, 1, 3, 0, 0, 0, NULL, NULL, 0, 0),
 (3, NULL, 'text/plain', 1, -1, -1, NULL, 0, 2, 0, 0, 0, 1, 1, NULL, NULL, 0, 0),
 (4, 'm/c', 'text/plain', 1, -1, -1, NULL, 0, 4, 3, 2, 0, 0, 0, NULL, NULL, 0, 0);
INSERT INTO agentd_records VALUES (1, 0, 'abc'), (1, 3, 'def'), (2, 3, 'XY'), (3, 0, 'zz'), (4, 2, '!!');
INSERT INTO agentd_producers VALUES (1, 'p', 1, 0);
SELECT setval('agentd_stream_ids', 1024);
"""


def migration(tap, pg):
    old = Server(args=["--store", pg.url], env={"AGENTD_TEST_PG_SCHEMA": "4"})
    proc = old.spawn()
    rc = proc.wait(30)
    tap.ok(rc != 0 and "stopped at schema 4" in old.stderr_tail(), "AGENTD_TEST_PG_SCHEMA=4 makes a schema-4 "
           "database and does not start", f"{rc}\n{old.stderr_tail()}")
    tap.is_(rows(pg, "SELECT v FROM agentd_meta WHERE k = 'schema_version'"), [["4"]], "the database is at schema 4")
    rc, out = psql(pg, SCHEMA4_ROWS)
    tap.is_(rc, 0, f"schema 4's rows written ({out[-200:]})")

    srv = pg_node(pg, LEASE_MS, free_port())
    srv.start()
    tap.ok("migrated agentd's tables in PostgreSQL (schema 5)" in srv.stderr_tail(), "the new agentd migrates to 5")
    tap.is_(rows(pg, "SELECT k, v FROM agentd_meta ORDER BY k"), [["schema_version", "5"], ["shards", "64"]],
            "agentd_meta: schema 5, 64 shards")
    tap.is_(srv.read_bytes("/v1/stream/m/a")[0], b"abcdef", "a stream keeps its records")
    tap.is_(srv.read_bytes("/v1/stream/m/b")[0], b"abcXY", "a fork reads through its source")
    tap.is_(srv.read_bytes("/v1/stream/m/c")[0], b"zz!!", "a fork of a detached source too")
    h = {"Producer-Id": "p", "Producer-Epoch": "1", "Producer-Seq": "0"}
    tap.is_(srv.append("/v1/stream/m/a", b"?", "text/plain", headers=h).status, 204,
            "a producer's state is kept (a repeated sequence number is a duplicate)")
    got = dict((int(i), int(k)) for i, k in rows(pg, "SELECT id, shard FROM agentd_streams WHERE id <= 4"))
    want = {1: shard_of("m/a"), 2: shard_of("m/b"), 3: shard_of("m/c"), 4: shard_of("m/c")}
    tap.is_(got, want, "each row's shard is its path's; the detached source's is its fork's")
    tap.is_(rows(pg, "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'agentd_streams'"
                     " AND column_name = 'shard'"), [["NO"]], "agentd_streams.shard is NOT NULL")
    tap.is_(rows(pg, "SELECT s.id, s.refcount, (SELECT count(*) FROM agentd_fork_refs f WHERE f.src = s.id)"
                     " FROM agentd_streams s WHERE s.refcount > 0 ORDER BY s.id"),
            [["1", "1", "1"], ["3", "1", "1"]], "each source's refcount is its number of fork refs")
    rc, out = psql(pg, "SELECT agentd_fence('old-node', 1)")
    tap.ok(rc != 0 and "older than this database" in out, "agentd_fence (an older agentd's) now raises", out)
    node = srv.url
    tap.is_(rows(pg, f"SELECT count(*) FROM agentd_shards WHERE node = '{node}'"), [[str(SHARDS)]],
            "the node holds every shard")
    def me():
        return [n for n in srv.request("GET", "/v1/nodes").json()["nodes"] if n["self"]]
    # The count is the node's row, written by its heartbeat about once a second: a balance node takes
    # its shards after it answers, so its row may say 0 for up to a beat.
    wait_for(lambda: (me() or [{}])[0].get("shards") == SHARDS, 5)
    now = me()
    tap.ok(now and now[0]["shards"] == SHARDS and now[0]["owner"], "/v1/nodes: the node holds 64 shards", repr(now))

    tap.is_(srv.request("PUT", "/v1/stream/m/d", headers={"Content-Type": "text/plain",
                                                            "Stream-Forked-From": "/v1/stream/m/a"}).status, 201,
            "fork m/a after the migration")
    tap.is_(rows(pg, "SELECT f.fork = (SELECT id FROM agentd_streams WHERE path = 'm/d') FROM agentd_fork_refs f"
                     " WHERE f.src = 1 ORDER BY f.fork DESC LIMIT 1"), [["t"]], "its reference row is written")
    tap.is_(srv.request("DELETE", "/v1/stream/m/d").status, 204, "delete the fork")
    wait_for(lambda: rows(pg, "SELECT count(*) FROM agentd_fork_refs WHERE src = 1") == [["1"]], 5)
    tap.is_(rows(pg, "SELECT count(*) FROM agentd_fork_refs WHERE src = 1"), [["1"]], "its reference row goes with it")
    return srv


# Many rows (schema 4's, written with psql into a database of their own): 20,000 plain streams, 2,000
# detached sources each with one fork, and a chain of three detached sources over one fork.
BIG_ROWS = """
INSERT INTO agentd_streams(id, path, content_type, created_ms, ttl_s, expires_at_ms, expires_at, closed,
  tail, fork_src, fork_off, fork_sub, refcount, deleted, last_seq, closer_pid, closer_epoch, closer_seq)
  SELECT g, 'p/' || g, 'text/plain', 1, -1, -1, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0, 0
  FROM generate_series(1, 20000) g;
INSERT INTO agentd_streams SELECT g, NULL, 'text/plain', 1, -1, -1, NULL, 0, 0, 0, 0, 0, 1, 1, NULL, NULL, 0, 0
  FROM generate_series(20001, 22000) g;
INSERT INTO agentd_streams SELECT g + 2000, 'f/' || g, 'text/plain', 1, -1, -1, NULL, 0, 0, g, 0, 0, 0, 0, NULL,
  NULL, 0, 0 FROM generate_series(20001, 22000) g;
INSERT INTO agentd_streams VALUES
 (30001, NULL, 'text/plain', 1, -1, -1, NULL, 0, 0, 0, 0, 0, 1, 1, NULL, NULL, 0, 0),
 (30002, NULL, 'text/plain', 1, -1, -1, NULL, 0, 0, 30001, 0, 0, 1, 1, NULL, NULL, 0, 0),
 (30003, NULL, 'text/plain', 1, -1, -1, NULL, 0, 0, 30002, 0, 0, 1, 1, NULL, NULL, 0, 0),
 (30004, 'chain/f', 'text/plain', 1, -1, -1, NULL, 0, 0, 30003, 0, 0, 0, 0, NULL, NULL, 0, 0);
SELECT setval('agentd_stream_ids', 31744);
ANALYZE agentd_streams;
"""


def big_migration(tap, pg):
    """The migration of a database with many rows and detached sources takes well under a second (it
    runs with every node stopped). Each detached row used to be found by a scan of agentd_streams
    (fork_src has no index): 18 s for these rows on the test machine."""
    psql(pg, "CREATE DATABASE big")
    url = pg.url.rsplit("/", 1)[0] + "/big"
    big = type("Big", (), {"url": url, "bin": pg.bin})()
    old = Server(args=["--store", url], env={"AGENTD_TEST_PG_SCHEMA": "4"})
    tap.ok(old.spawn().wait(30) != 0, "a schema-4 database of its own")
    rc, out = psql(big, BIG_ROWS)
    tap.is_(rc, 0, f"24,004 rows of schema 4 written ({out[-200:]})")
    srv = pg_node(big, LEASE_MS, free_port())
    t0 = time.monotonic()
    srv.start(timeout=120)
    took = time.monotonic() - t0
    try:
        tap.ok(took < 6, f"migrated and serving in {took:.1f} s (18 s before: a table scan per detached row)")
        tap.is_(rows(big, "SELECT count(*) FROM agentd_streams s JOIN agentd_streams f ON f.fork_src = s.id"
                          " WHERE s.path IS NULL AND s.shard = f.shard"), [["2003"]],
                "each detached source has its fork's shard, up a chain of three")
        tap.is_(rows(big, "SELECT shard FROM agentd_streams WHERE id = 30001"), [[str(shard_of("chain/f"))]],
                "the top of the chain too")
    finally:
        tap.check_clean_exit(srv, "the node stops cleanly")


def shard_fenced(tap, pg, srv):
    k = shard_of("m/a")
    other = next(p for p in (f"m/x{i}" for i in range(100)) if shard_of(p) != k)
    tap.is_(srv.create(f"/v1/stream/{other}", "text/plain").status, 201, "a stream in another shard")
    psql(pg, f"UPDATE agentd_shards SET node = 'intruder', epoch = epoch + 1,"
             f" expires_at = now() + interval '1 hour' WHERE shard = {k}")
    try:  # a refused batch makes the node exit at once: in-flight requests end with their connections
        status = srv.append("/v1/stream/m/a", b"g", "text/plain").status
    except OSError as e:  # RemoteDisconnected or a reset, depending on where the exit caught the exchange
        status = repr(e) if isinstance(e, ConnectionError) else e
    tap.ok(status == 503 or isinstance(status, str), f"shard {k} taken away: a write to it is refused "
           f"({status})")
    wait_for(lambda: srv.proc.poll() is not None, 10)
    tap.is_(srv.proc.poll(), 75, "the node exits 75 (lost shards are lost all together)")
    tap.ok(f"lost the write lease (shards {k}," in srv.stderr_tail(), "its log names the shard lost",
           srv.stderr_tail())
    psql(pg, "UPDATE agentd_shards SET node = '', expires_at = '-infinity'")  # free for the next round


def restart_grace(tap, pg):
    # One owner and its followers across the outage: the first node holds every shard.
    c = Cluster(pg.url, nodes=3, lease_ms=LEASE_MS, args=ONE_HOLDER)
    c.start()
    try:
        owner = c.owner()
        tap.ok(owner is not None, "three nodes: one owner")
        tap.is_(owner.create("/v1/stream/g/1", "text/plain").status, 201, "create a stream")
        pg.stop("fast")
        time.sleep(3 * LEASE_MS / 1000)  # every lease has expired when it comes back
        pg.start()
        def written():
            try:
                return owner.append("/v1/stream/g/1", b"x", "text/plain").status in (200, 204)
            except OSError:  # it exited: said below
                return owner.proc.poll() is not None
        wait_for(written, 15)
        time.sleep(3 * LEASE_MS / 1000)  # past the grace: a follower would have taken everything by now
        exited = [(n.url, n.proc.poll()) for n in c.nodes if n.proc.poll() is not None]
        tap.ok(not exited, "PostgreSQL restarted past the lease: no node exits", f"{exited}\n{c.stderr_tails()}")
        tap.ok(c.owner() is owner, "the owner is the same node")
        r = c.nodes[1].append("/v1/stream/g/1", b"y", "text/plain")
        tap.ok(200 <= r.status < 300, f"a write through a follower works ({r.status})")
        tap.is_(owner.read_bytes("/v1/stream/g/1")[0], b"xy", "the stream has both writes")
        tap.is_(rows(pg, f"SELECT count(*) FROM agentd_shards WHERE node = '{owner.url}'"), [[str(SHARDS)]],
                "the owner still holds every shard")
        for n in c.nodes[1:] + [owner]:
            tap.check_clean_exit(n, f"node {n.url} stops cleanly (no sanitizer report)")
        tap.is_(rows(pg, "SELECT count(*) FROM agentd_shards WHERE expires_at = '-infinity'"), [[str(SHARDS)]],
                "the owner's clean stop gave every shard up")
    finally:
        if tap.failed:
            tap.diag(c.stderr_tails())
        c.stop()


def main(tap):
    if REF:
        tap.skip("PostgreSQL store", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    nodes = []
    try:
        srv = migration(tap, pg)
        nodes.append(srv)
        shard_fenced(tap, pg, srv)
        restart_grace(tap, pg)
        big_migration(tap, pg)
    finally:
        stop_nodes(tap, pg, nodes)


run_test(main)
