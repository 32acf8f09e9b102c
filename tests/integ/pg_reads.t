#!/usr/bin/env python3
# A follower answers catch-up reads of streams itself, from PostgreSQL (doc/ARCHITECTURE.md "Several
# nodes on one database"): two nodes on one PostgreSQL the test starts, with a token.
#   (a) GET without live and HEAD through the follower carry Agentd-Node: <the follower>, and equal
#       the owner's answer to the same request (status, body, Content-Type, Stream-Next-Offset,
#       Stream-Up-To-Date, Stream-Closed, ETag, Cache-Control): a byte stream and a JSON stream from
#       the start, from an offset inside, at the tail, beyond it, offset=now, If-None-Match (304),
#       a bad offset and one inside a JSON message (400), a closed stream, a fork (its source's
#       bytes), a missing stream (404), a soft-deleted one (410), agentd's internal streams (404);
#   (b) what stays the owner's: appends, live reads (long-poll), a stream with a TTL or an expiry
#       time, a request without the server token, the subscriptions' resource under /v1/stream/__ds/,
#       a path that is not UTF-8 (PostgreSQL cannot look it up; the follower serves on after it);
#   (c) read-your-writes: each append acknowledged by the owner (through either node) is in the
#       next catch-up read on the follower, whose Stream-Next-Offset is the append's; a read of more
#       records than one query fetches is the owner's too;
#   (d) the owner paused (SIGSTOP, within its lease): the follower still answers catch-up reads,
#       the same as before the pause;
#   (e) PostgreSQL restarted: the follower's connection (and its prepared statement) come back,
#       and it answers the same reads itself again; its log has no error, and one reconnection;
#   (f) a read the database holds (a psql session keeps an ACCESS EXCLUSIVE lock on agentd_records)
#       does not hold the follower: with 35 reads waiting (more than its reader connections),
#       /v1/health, GET /v1/nodes and a request it forwards to the owner answer within a second,
#       HTTP/2 clients leave mid-read; once the lock goes the held reads answer as before.
# Skipped only when PostgreSQL's binaries are missing.
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import run_test, status_of, wait_for  # noqa: E402
from cluster import ONE_HOLDER, test_cluster  # noqa: E402
from pg import Locker  # noqa: E402

LEASE_MS = 5000  # the pause in (d) stays well inside it: the follower stays a follower
TOKEN = "reads-token"
RYW = 300
ODD = ("/v1/stream/reads/it's", "/v1/stream/reads/caf%C3%A9", "/v1/stream/reads/%FF")
DS_HEADERS = ("content-type", "stream-next-offset", "stream-up-to-date", "stream-closed", "etag",
              "cache-control", "stream-cursor", "stream-ttl", "stream-expires-at")


def node_of(r):
    return r.header("Agentd-Node")


def answer(r):
    """What must be the same whichever node answers."""
    return (r.status, r.body, {h: r.header(h) for h in DS_HEADERS})


def build(owner, follower):
    """Streams to read, written through both nodes. Returns (requests, etag of a full read)."""
    b, j, c, k = "/v1/stream/reads/bin", "/v1/stream/reads/json", "/v1/stream/reads/closed", "/v1/stream/reads/fork"
    follower.create(b, "application/octet-stream")
    for i, via in enumerate((owner, follower, owner)):
        via.append(b, bytes(range(i * 50, i * 50 + 50)))
    follower.create(j, "application/json")
    for i, via in enumerate((follower, owner)):
        via.append(j, b'[{"n":%d},{"s":"x\\ny"}]' % i, "application/json")
    owner.create(c, "text/plain", b"first;")
    owner.append(c, b"last;", "text/plain", {"Stream-Closed": "true"})
    r = follower.request("PUT", k, None, {"Content-Type": "application/octet-stream",
                                          "Stream-Forked-From": b, "Stream-Fork-Offset": mid_offset(owner, b)})
    assert r.status == 201, r
    follower.append(k, b"fork's own")
    owner.create("/v1/stream/reads/gone", "text/plain", b"src;")
    owner.request("PUT", "/v1/stream/reads/gone-fork", None,
                  {"Content-Type": "text/plain", "Stream-Forked-From": "/v1/stream/reads/gone"})
    owner.request("DELETE", "/v1/stream/reads/gone")
    for odd in ODD:  # a quote, a percent-escape, UTF-8: the row is found by path all the same
        owner.create(odd, "text/plain", odd.encode())
    full = owner.request("GET", b + "?offset=-1")
    json_second = json_message_offset(owner, j)
    tail = full.header("Stream-Next-Offset")
    reqs = []
    for p in (b, j, c, k):
        reqs += [("GET", p), ("GET", p + "?offset=-1"), ("GET", p + "?offset=now"), ("HEAD", p)]
    reqs += [("GET", b + "?offset=" + mid_offset(owner, b)), ("GET", b + "?offset=" + tail),
             ("GET", b + "?offset=9999999999999999_9999999999999999"), ("GET", b + "?offset=banana"),
             ("GET", b + "?offset=-1&offset=-1"), ("GET", j + "?offset=" + json_second),
             ("GET", j + "?offset=" + inside(json_second)), ("GET", k + "?offset=" + mid_offset(owner, k)),
             ("GET", "/v1/stream/reads/missing?offset=-1"), ("HEAD", "/v1/stream/reads/missing"),
             ("GET", "/v1/stream/reads/gone?offset=-1"), ("HEAD", "/v1/stream/reads/gone"),
             ("GET", "/v1/stream/reads/gone-fork?offset=-1"),
             ("GET", "/v1/stream/__agentd/anything?offset=-1"), ("GET", "/v1/stream/a//b?offset=-1")]
    reqs += [("GET", odd + "?offset=-1") for odd in ODD] + [("HEAD", odd + "x") for odd in ODD]
    return reqs, full.header("ETag")


def mid_offset(srv, path):
    """The offset after the stream's first append (a record boundary)."""
    r = srv.request("GET", path + "?offset=-1")
    tail = int(r.header("Stream-Next-Offset").split("_")[1])
    return "%016d_%016d" % (0, min(50, tail))


def json_message_offset(srv, path):
    """The offset of the JSON stream's second message: the first one's stored size ("{..},")."""
    return "%016d_%016d" % (0, len(b'{"n":0},'))


def inside(off):
    return "%016d_%016d" % (0, int(off.split("_")[1]) + 2)


def round_same(tap, owner, follower, reqs, etag):
    """(a)"""
    diff, by = [], []
    for method, path in reqs:
        want = owner.request(method, path)
        got = follower.request(method, path)
        if answer(want) != answer(got):
            diff.append((method, path, answer(want), answer(got)))
        if node_of(got) != follower.url or node_of(want) != owner.url:
            by.append((method, path, node_of(want), node_of(got)))
    statuses = {owner.request(m, p).status for m, p in reqs}
    tap.ok(statuses == {200, 400, 404, 410}, "the reads cover 200, 400, 404 and 410", repr(statuses))
    tap.ok(not by, f"{len(reqs)} catch-up reads and HEADs: answered by the node asked", repr(by[:5]))
    tap.ok(not diff, "the follower's answers equal the owner's (status, body, Stream-*, ETag, Cache-Control)",
           repr(diff[:3]))
    path = "/v1/stream/reads/bin?offset=-1"
    want, got = (s.request("GET", path, headers={"If-None-Match": etag}) for s in (owner, follower))
    tap.ok(want.status == got.status == 304 and node_of(got) == follower.url and
           answer(want) == answer(got), "If-None-Match with the ETag: 304 from either", f"{want!r} {got!r}")


def round_forwarded(tap, owner, follower):
    """(b)"""
    owner.request("PUT", "/v1/stream/reads/ttl", None, {"Content-Type": "text/plain", "Stream-TTL": "3600"})
    owner.request("PUT", "/v1/stream/reads/exp", None,
                  {"Content-Type": "text/plain", "Stream-Expires-At": "2099-01-01T00:00:00Z"})
    cases = [("POST", "/v1/stream/reads/bin", b"more", {"Content-Type": "application/octet-stream"}, True),
             ("GET", "/v1/stream/reads/bin?offset=now&live=long-poll", None, {}, True),
             ("GET", "/v1/stream/reads/ttl?offset=-1", None, {}, True),
             ("HEAD", "/v1/stream/reads/ttl", None, {}, True),
             ("GET", "/v1/stream/reads/exp?offset=-1", None, {}, True),
             ("GET", "/v1/stream/__ds/subscriptions/none", None, {}, True),
             ("GET", "/v1/stream/reads/bin?offset=-1", None, {"Authorization": "Bearer wrong"}, False)]
    bad = []
    for method, path, body, hdrs, auth in cases:
        if "live=long-poll" in path:  # answers at once: someone appends meanwhile
            owner.append("/v1/stream/reads/bin", b"+")
        r = follower.request(method, path, body, hdrs, auth=auth, timeout=40)
        if node_of(r) != owner.url:
            bad.append((method, path, r.status, node_of(r)))
    tap.ok(not bad, "appends, live reads, TTL and expiring streams, other credentials, subscriptions: "
           "the owner's (Agentd-Node)", repr(bad))
    # A path that is not UTF-8 cannot be looked up in PostgreSQL: the owner answers (its registry),
    # and the follower's connection goes on serving.
    raw = (b"GET /v1/stream/reads/\xff\xfe?offset=-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
    want, got = owner.raw(raw)[0], follower.raw(raw)[0]
    r = follower.request("GET", "/v1/stream/reads/bin?offset=-1")
    tap.ok(status_of(want) == status_of(got) and b"agentd-node: " + owner.url.encode() in got.lower() and
           r.status == 200 and node_of(r) == follower.url,
           "a path that is not UTF-8: the owner's answer, and the follower reads locally right after",
           f"{want[:60]!r} {got[:200]!r} {r!r}")


def round_ryw(tap, owner, follower):
    """(c)"""
    path = "/v1/stream/reads/ryw"
    owner.create(path, "text/plain")
    bad = []
    for i in range(RYW):
        via = (owner, follower)[i % 2]
        a = via.append(path, b"%d;" % i, "text/plain")
        r = follower.request("GET", path + "?offset=-1")
        if a.status not in (200, 204) or r.header("Stream-Next-Offset") != a.header("Stream-Next-Offset") \
                or not r.body.endswith(b"%d;" % i) or node_of(r) != follower.url:
            bad.append((i, a.status, a.header("Stream-Next-Offset"), r.header("Stream-Next-Offset"), r.body[-12:]))
    tap.ok(not bad, f"{RYW} appends (each acknowledged by the owner): each in the follower's next catch-up "
           "read, at the acknowledged offset", repr(bad[:3]))
    # more records than one query of the store fetches (256): the read spans several, in one snapshot
    want, got = (s.request("GET", path + "?offset=-1") for s in (owner, follower))
    tap.ok(answer(want) == answer(got) and got.header("Stream-Up-To-Date") == "true",
           f"a read of its {RYW} records: the same from either node", f"{want!r} {got!r}")


def round_pause(tap, owner, follower, reqs):
    """(d)"""
    before = [answer(follower.request(m, p)) for m, p in reqs]
    owner.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        got = [follower.request(m, p, timeout=3) for m, p in reqs]
        took = time.monotonic() - t0
    finally:
        owner.proc.send_signal(signal.SIGCONT)
    tap.ok(all(node_of(r) == follower.url for r in got) and [answer(r) for r in got] == before,
           f"owner paused: the follower answers the {len(reqs)} catch-up reads itself, as before "
           f"({took:.2f} s)", repr([(r.status, node_of(r)) for r in got][:5]))
    r = follower.request("GET", "/v1/nodes")
    roles = {n["node"]: n["role"] for n in r.json()["nodes"]} if r.status == 200 else {}
    tap.ok(roles.get(follower.url) == "follower" and roles.get(owner.url) == "owner",
           "and the owner kept its lease (the reads were a follower's)", repr(roles))


def round_pg_restart(tap, c, owner, follower, reqs):
    """(e)"""
    before = [answer(follower.request(m, p)) for m, p in reqs]
    c.pg.stop("fast")
    c.pg.start()

    def local():
        try:
            r = follower.request("GET", "/v1/stream/reads/bin?offset=-1", timeout=3)
        except OSError:
            return False
        return r.status == 200 and node_of(r) == follower.url
    t0 = time.monotonic()
    back = wait_for(local, 20)
    got = [follower.request(m, p) for m, p in reqs]
    tap.ok(back and all(node_of(r) == follower.url for r in got) and [answer(r) for r in got] == before,
           f"PostgreSQL restarted: the follower reconnects and answers the reads itself again, as before "
           f"({time.monotonic() - t0:.2f} s)", repr([(r.status, node_of(r)) for r in got][:5]))


def timed(srv, method, path):
    t0 = time.monotonic()
    try:
        r = srv.request(method, path, timeout=5)
        return r.status, node_of(r), round(time.monotonic() - t0, 3)
    except OSError as e:
        return repr(e), None, round(time.monotonic() - t0, 3)


def round_locked(tap, c, owner, follower, reqs):
    """(f)"""
    before = [answer(follower.request(m, p)) for m, p in reqs]
    lock = Locker(c.pg)
    pool = ThreadPoolExecutor(len(reqs))
    try:
        held = [pool.submit(follower.request, m, p, timeout=30) for m, p in reqs]
        time.sleep(0.5)
        # Only the paths refused before any read (agentd's internal streams, an empty segment) answer.
        answered = [p for (m, p), f in zip(reqs, held) if f.done()]
        refused = ["/v1/stream/__agentd/anything?offset=-1", "/v1/stream/a//b?offset=-1"]
        tap.ok(answered == refused, f"with agentd_records locked, the follower's {len(reqs) - 2} reads of "
               "streams wait", repr(answered))
        health = [timed(follower, "GET", "/v1/health") for _ in range(3)]
        nodes = timed(follower, "GET", "/v1/nodes")
        fwd = timed(follower, "GET", "/v1/sessions")  # the owner's, from its memory
        # HTTP/2 clients that leave while their read waits (h2o sees them go at once): reads cancelled.
        h2 = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-H",
                                f"Authorization: Bearer {TOKEN}", follower.url + p], stdin=subprocess.DEVNULL)
              for p in ("/v1/stream/reads/bin?offset=-1", "/v1/stream/reads/json")]
        time.sleep(0.3)
        for proc in h2:
            proc.kill()
            proc.wait()
        tap.ok(all(st == 200 and t < 1.0 and n == follower.url for st, n, t in health + [nodes]) and
               fwd[0] == 200 and fwd[1] == owner.url and fwd[2] < 1.0,
               "meanwhile the follower answers /v1/health and /v1/nodes, and forwards to the owner, each "
               "within a second", repr(health + [nodes, fwd]))
    finally:
        lock.release()
    got = [f.result(30) for f in held]
    pool.shutdown()
    tap.ok([answer(r) for r in got] == before and all(node_of(r) == follower.url for r in got),
           "once the lock goes, the held reads answer as before, from the follower",
           repr([(r.status, node_of(r)) for r in got][:5]))


def main(tap):
    # A follower's reads of the owner's streams: the first node holds every shard.
    with test_cluster(tap, "a follower's catch-up reads", nodes=2, lease_ms=LEASE_MS, args=ONE_HOLDER) as c:
        if c is None:
            return
        for n in c.nodes:
            n.token = TOKEN
        c.start()
        owner, follower = c.nodes
        tap.ok(c.owner() is owner, "the first node holds the lease", repr(c.node_list()))
        reqs, etag = build(owner, follower)
        round_same(tap, owner, follower, reqs, etag)
        round_forwarded(tap, owner, follower)
        round_ryw(tap, owner, follower)
        round_pause(tap, owner, follower, reqs)
        round_pg_restart(tap, c, owner, follower, reqs)
        round_locked(tap, c, owner, follower, reqs)
        with open(follower.stderr_path, errors="replace") as f:
            log = f.read()
        # Its reads run on the store's reader connections (2), each reconnected at most once.
        tap.ok("Z error " not in log and 1 <= log.count("connected to PostgreSQL again") <= 2,
               "the follower logged no error, and reconnected once a connection (the restart; a failed read "
               "keeps its connection)", follower.stderr_tail())
        for n in c.nodes:
            tap.check_clean_exit(n, f"node {n.url} stops cleanly")


run_test(main)
