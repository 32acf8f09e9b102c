#!/usr/bin/env python3
# Catch-up reads on PostgreSQL run off the loop (doc/ARCHITECTURE.md "The PostgreSQL store", "Reads
# and loading"), against a PostgreSQL the test starts itself:
#   (a) the same answers as on SQLite: the same writes sent to an agentd on PostgreSQL and to one on
#       SQLite, then catch-up reads (byte and JSON streams, from the start, inside, at the tail,
#       beyond it, inside a JSON message, a fork through its source, a closed stream, a stream of
#       more records than one query fetches, long-polls that find bytes at once, If-None-Match)
#       answer the same status, body and Stream-* headers, and an ETag of the same form; SSE
#       readers from the start get the same data events and offsets;
#   (b) a read the database holds (a psql session keeps an ACCESS EXCLUSIVE lock on agentd_records)
#       does not hold the node: /v1/health, HEAD, offset=now answer within a second meanwhile, and
#       an append is taken (answered once the lock is gone); once the lock is released the held
#       reads answer the bytes written, and SSE readers held at their catch-up (three at one
#       offset) get every byte;
#   (c) clients that disconnect while their read is held (HTTP/1 ones, seen at the answer; HTTP/2
#       ones, curl killed, seen at once: their reads are cancelled, SSE readers leave the read they
#       share): the node answers on, and stops cleanly (no sanitizer report under MODE=asan).
#   (d) a read the tail cache serves whole stays on the loop and needs no query: with the table
#       locked, a read of what was appended after a read reached the tail answers at once, while a
#       read from the start (not cached) waits for the lock.
#   (e) a session's WebSocket whose transcript read is held: the upgrade is answered and the node
#       serves on; once the lock goes the first frame is the one an unheld WebSocket got; a
#       WebSocket closed while its read is held does no harm.
#   (f) a session's history page whose read is held (GET /v1/sessions/<id>/events, with and without
#       before=): the node serves on; once the lock goes the pages equal the unheld ones, a before=
#       inside an event is still 400; HTTP/2 clients that leave mid-page do no harm.
#   (g) a GET whose stream is deleted while its read waits for a reader answers 404 with no-store,
#       as the next request would, not an empty cacheable 200 at the same offset (a client behind a
#       cache would read it again for minutes).
#   (h) reads whose HTTP/2 clients left while the lock held them are dropped, not run: once the lock
#       goes, PostgreSQL's statement log holds a few forward reads, not one for each of them.
#   (i) a stop (SIGTERM) while the lock holds reads of every kind: after a second of the drain their
#       queries are cancelled, they answer 503 (Retry-After), and the node exits within the bound
#       with status 0 and no sanitizer report (it waited for the lock, then leaked a connection).
# Skipped only when PostgreSQL's binaries are missing.
import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import OP_TEXT, REF, TIMEOUT, WS, Server, run_test, wait_for  # noqa: E402
from pg import Locker, Postgres  # noqa: E402

HEADERS = ("content-type", "stream-next-offset", "stream-up-to-date", "stream-closed", "cache-control")
BIG = 300  # appends of 4 KiB: more records than one query fetches (256)
LEFT = 100  # HTTP/2 GETs whose client leaves while their reads wait


def off(n):
    return "%016d_%016d" % (0, n)


def write(srv):
    """The same writes on each server; returns the requests to compare."""
    b, j, c, k, big = "/v1/stream/a/bin", "/v1/stream/a/json", "/v1/stream/a/closed", "/v1/stream/a/fork", \
        "/v1/stream/a/big"
    srv.create(b, "application/octet-stream")
    for i in range(3):
        srv.append(b, bytes(range(i * 50, i * 50 + 50)))
    srv.create(j, "application/json")
    for i in range(2):
        srv.append(j, b'[{"n":%d},{"s":"x\\ny"}]' % i, "application/json")
    srv.create(c, "text/plain", b"first;")
    srv.append(c, b"last;", "text/plain", {"Stream-Closed": "true"})
    r = srv.request("PUT", k, None, {"Content-Type": "application/octet-stream",
                                     "Stream-Forked-From": b, "Stream-Fork-Offset": off(75)})
    assert r.status == 201, r
    srv.append(k, b"fork's own")
    srv.create(big, "application/octet-stream")
    conn = srv.connection()
    for i in range(BIG):
        srv.append(big, bytes([i % 251]) * 4096, conn=conn)
    conn.close()
    second = len(b'{"n":0},')
    reqs = []
    for p in (b, j, c, k, big):
        reqs += [p, p + "?offset=-1", p + "?offset=now", p + "?offset=-1&live=long-poll"]
    reqs += [b + "?offset=" + off(50), b + "?offset=" + off(150), b + "?offset=" + off(10 ** 9),
             j + "?offset=" + off(second), j + "?offset=" + off(second + 2), k + "?offset=" + off(20),
             k + "?offset=" + off(75), k + "?offset=" + off(80), big + "?offset=" + off(4096 * 256 + 7),
             c + "?offset=" + off(3)]
    return reqs


def sse(srv, path, timeout=20):
    """The data events and control offsets of an SSE read from the start until up to date:
    [(b"data", payload) | (b"control", streamNextOffset)]."""
    conn = srv.connection(timeout=timeout)
    out = []
    try:
        conn.request("GET", path + "?offset=-1&live=sse")
        resp = conn.getresponse()
        if resp.status != 200:
            return [("status", resp.status)]
        event, data = None, []
        while True:
            line = resp.readline()
            if not line:
                return out
            line = line.rstrip(b"\r\n")
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:"):
                data.append(line[5:])
            elif not line and data:
                body = b"\n".join(data)
                if event == b"control":
                    doc = json.loads(body)
                    out.append((b"control", doc["streamNextOffset"]))
                    if doc.get("upToDate"):
                        return out
                else:
                    out.append((event, body))
                event, data = None, []
    finally:
        conn.close()


class Sse(threading.Thread):
    def __init__(self, srv, path):
        super().__init__(daemon=True)
        self.srv, self.path, self.events, self.err = srv, path, None, None

    def run(self):
        try:
            self.events = sse(self.srv, self.path, timeout=30)
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.err = e


def sse_bytes(events):
    return b"".join(base64.b64decode(b) for e, b in events or [] if e == b"data")


def answer(r):
    return (r.status, r.body, {h: r.header(h) for h in HEADERS})


def same_answers(tap, pg_srv, sq_srv, reqs):
    """(a)"""
    diff = []
    for path in reqs:
        want, got = sq_srv.request("GET", path), pg_srv.request("GET", path)
        if answer(want) != answer(got):
            diff.append((path, answer(want)[0], answer(got)[0], answer(want)[2], answer(got)[2],
                         len(want.body), len(got.body)))
    tap.ok(not diff, f"{len(reqs)} catch-up reads on PostgreSQL answer as on SQLite (status, body, "
           "Stream-*, Content-Type, Cache-Control)", repr(diff[:3]))
    etag = re.compile(r'^"\d+-\d+:\d+:\d+(:c)?"$')
    r = pg_srv.request("GET", "/v1/stream/a/bin?offset=-1")
    tag = r.header("ETag") or ""
    tap.ok(etag.match(tag) and tag.endswith(':%d"' % 150), "the ETag names the stream and the range read", tag)
    again = pg_srv.request("GET", "/v1/stream/a/bin?offset=-1", headers={"If-None-Match": tag})
    tap.is_(again.status, 304, "If-None-Match with it answers 304")
    paths = ("/v1/stream/a/bin", "/v1/stream/a/json", "/v1/stream/a/closed", "/v1/stream/a/fork",
             "/v1/stream/a/big")
    got = {p: sse(pg_srv, p) for p in paths}
    want = {p: sse(sq_srv, p) for p in paths}
    tap.ok(got == want and all(len(v) >= 2 for v in got.values()),
           "SSE readers from the start get the same data events and offsets as on SQLite",
           repr([(p, got[p][:2], want[p][:2]) for p in paths if got[p] != want[p]][:2]))
    big, last = pg_srv.read_bytes("/v1/stream/a/big")
    want = b"".join(bytes([i % 251]) * 4096 for i in range(BIG))
    tap.ok(big == want and last.header("Stream-Up-To-Date") == "true",
           f"a stream of {BIG} records reads back whole in chunks", f"{len(big)} of {len(want)} bytes")


class Get(threading.Thread):
    def __init__(self, srv, path, method="GET", body=None, headers=None):
        super().__init__(daemon=True)
        self.srv, self.path, self.method, self.body, self.headers = srv, path, method, body, headers
        self.resp, self.err, self.t = None, None, None

    def run(self):
        t0 = time.monotonic()
        try:
            self.resp = self.srv.request(self.method, self.path, self.body, self.headers, timeout=30)
        except Exception as e:  # noqa: BLE001 — reported by the test
            self.err = e
        self.t = time.monotonic() - t0


def timed(srv, method, path):
    t0 = time.monotonic()
    try:
        r = srv.request(method, path, timeout=5)
        return r.status, time.monotonic() - t0
    except OSError as e:
        return repr(e), time.monotonic() - t0


def held_reads(tap, pg, srv):
    """(b) and (c)"""
    big = "/v1/stream/a/big?offset=-1"
    lock = Locker(pg)
    try:
        gets = [Get(srv, big), Get(srv, "/v1/stream/a/json?offset=-1"), Get(srv, "/v1/stream/a/fork?offset=-1")]
        sses = [Sse(srv, "/v1/stream/a/big") for _ in range(3)]
        for g in gets + sses:
            g.start()
        # Clients that go away while their read is held (more of them than the store's readers).
        socks = []
        for q in ("offset=-1",) * 3 + ("offset=-1&live=sse", "offset=-1&live=long-poll"):
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(b"GET /v1/stream/a/bin?" + q.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(0.3)
        tap.ok(all(g.resp is None and g.err is None for g in gets) and
               all(g.events is None and g.err is None for g in sses), "the reads wait for the locked table",
               repr([(g.resp, g.err) for g in gets] + [(g.events, g.err) for g in sses]))
        health = [timed(srv, "GET", "/v1/health") for _ in range(3)]
        head = timed(srv, "HEAD", "/v1/stream/a/big")
        now = timed(srv, "GET", "/v1/stream/a/big?offset=now")
        tap.ok(all(s == 200 and t < 1.0 for s, t in health + [head, now]),
               "meanwhile /v1/health, HEAD and offset=now answer within a second", repr(health + [head, now]))
        app = Get(srv, "/v1/stream/a/bin", "POST", b"after", {"Content-Type": "application/octet-stream"})
        app.start()
        # HTTP/2 clients: h2o reads their connections on, so it sees them go while the read is held
        # (an HTTP/1 client that leaves is seen only at the answer).
        h2 = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                                f"http://{srv.host}:{srv.port}/v1/stream/a/{q}"], stdin=subprocess.DEVNULL)
              for q in ("big?offset=-1", "big?offset=-1&live=sse", "big?offset=-1&live=sse", "json?offset=-1")]
        time.sleep(0.5)
        for p in h2:
            p.kill()
            p.wait()
        for s in socks:
            s.close()
        time.sleep(0.3)
        tap.ok(timed(srv, "GET", "/v1/health")[0] == 200, "clients that went away: the node answers on")
    finally:
        lock.release()
    for g in gets + sses + [app]:
        g.join(20)
    want = b"".join(bytes([i % 251]) * 4096 for i in range(BIG))[: 1 << 20]
    g = gets[0]
    tap.ok(g.resp is not None and g.resp.status == 200 and g.resp.body == want[: len(g.resp.body)] and
           len(g.resp.body) >= 1 << 20 and g.resp.header("Stream-Next-Offset") == off(len(g.resp.body)),
           "once the lock is gone, the held 1 MiB read answers its bytes",
           repr((g.err, g.resp and g.resp.status, g.resp and len(g.resp.body))))
    tap.ok(gets[1].resp is not None and gets[1].resp.body == b'[{"n":0},{"s":"x\\ny"},{"n":1},{"s":"x\\ny"}]',
           "and the held JSON read its messages", repr(gets[1].resp))
    tap.ok(gets[2].resp is not None and gets[2].resp.body == bytes(range(75)) + b"fork's own",
           "and the held read of a fork its source's bytes and its own", repr(gets[2].resp))
    whole = b"".join(bytes([i % 251]) * 4096 for i in range(BIG))
    tap.ok(all(sse_bytes(g.events) == whole and g.events[-1] == (b"control", off(len(whole))) for g in sses),
           "and the SSE readers held at their catch-up every byte, up to the tail",
           repr([(g.err, len(sse_bytes(g.events))) for g in sses]))
    tap.ok(app.resp is not None and app.resp.status in (200, 204), "the append taken meanwhile is acknowledged",
           repr((app.resp, app.err)))
    data, _ = srv.read_bytes("/v1/stream/a/bin")
    tap.ok(data.endswith(b"after"), "and read back")


def cached_reads(tap, pg, srv):
    """(d)"""
    path = "/v1/stream/a/cached"
    srv.create(path, "text/plain", b"head;")
    r = srv.request("GET", path + "?offset=-1")  # reaches the tail: later appends are kept in memory
    tail = r.header("Stream-Next-Offset")
    for part in (b"abc;", b"def;"):
        srv.append(path, part, "text/plain")
    lock = Locker(pg)
    try:
        whole = Get(srv, path + "?offset=-1")
        whole.start()
        t0 = time.monotonic()
        try:
            got = srv.request("GET", path + "?offset=" + tail, timeout=5)
        except OSError as e:
            got = e
        took = time.monotonic() - t0
        tap.ok(not isinstance(got, OSError) and got.status == 200 and got.body == b"abc;def;" and took < 1.0,
               "with the table locked, a read the tail cache holds answers at once", repr((got, took)))
        time.sleep(0.3)
        tap.ok(whole.resp is None, "while a read from the start waits for the lock", repr(whole.resp))
    finally:
        lock.release()
    whole.join(20)
    tap.ok(whole.resp is not None and whole.resp.body == b"head;abc;def;", "and answers once it is gone",
           repr(whole.resp))


def session_ws(tap, pg, srv):
    """(e)"""
    r = srv.request("POST", "/v1/sessions", json.dumps({"agent": "none"}).encode(),
                    {"Content-Type": "application/json"})
    sid = json.loads(r.body)["id"]
    path = f"/v1/sessions/{sid}/ws"
    ws = WS(srv.host, srv.port, path)
    want = ws.recv(10)
    ws.shut()
    lock = Locker(pg)
    try:
        left = WS(srv.host, srv.port, path)
        held = WS(srv.host, srv.port, path)
        early = held.recv(0.5)
        left.shut()
        health = timed(srv, "GET", "/v1/health")
        tap.ok(held.status == 101 and early == TIMEOUT and health[0] == 200 and health[1] < 1.0,
               "a WebSocket whose transcript read is held: upgraded, no frame yet, the node serves on",
               repr((held.status, early, health)))
    finally:
        lock.release()
    got = held.recv(10)
    held.shut()
    tap.ok(want not in (None, TIMEOUT) and want[0] == OP_TEXT and got == want,
           "once the lock goes its first frame is the one an unheld WebSocket got", repr((want, got)))


def history_pages(tap, pg, srv):
    """(f)"""
    r = srv.request("POST", "/v1/sessions", json.dumps({"agent": "none"}).encode(),
                    {"Content-Type": "application/json"})
    sid = json.loads(r.body)["id"]
    conn = srv.connection()
    for k in range(0, 300, 7):  # records of 7 events: pages span more records than one query reads
        srv.append(f"/v1/stream/sessions/{sid}/transcript",
                   json.dumps([{"type": "log", "n": i} for i in range(k, k + 7)]).encode(), "application/json",
                   conn=conn)
    conn.close()
    base = f"/v1/sessions/{sid}/events"
    first = srv.request("GET", base)
    older = json.loads(first.body)["next_before"]
    paths = [base, base + "?limit=1", base + "?before=" + (older or off(0)) + "&limit=1000",
             base + "?before=" + off(3)]
    want = [(x.status, x.body) for x in (srv.request("GET", p) for p in paths)]
    lock = Locker(pg)
    try:
        gets = [Get(srv, p) for p in paths]
        for g in gets:
            g.start()
        h2 = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                                f"http://{srv.host}:{srv.port}{base}"], stdin=subprocess.DEVNULL) for _ in range(2)]
        time.sleep(0.5)
        for p in h2:
            p.kill()
            p.wait()
        health = timed(srv, "GET", "/v1/health")
        tap.ok(all(g.resp is None for g in gets) and health[0] == 200 and health[1] < 1.0,
               "history pages whose reads are held wait; the node serves on", repr((health, [g.resp for g in gets])))
    finally:
        lock.release()
    for g in gets:
        g.join(20)
    got = [(g.resp.status, g.resp.body) if g.resp else g.err for g in gets]
    tap.ok(got == want and want[0][0] == 200 and want[3][0] == 400 and older,
           "once the lock goes the pages equal the unheld ones (and before= inside an event is 400)",
           repr((got, want)))


def deleted_read(tap, pg, srv):
    """(g)"""
    results = []
    # The race is set up, not forced: on a loaded machine the read may still run before the delete.
    # Both outcomes are checked; trials go on (up to 8) until the deleted one has been seen.
    for trial in range(8):
        if trial >= 3 and any(x[1] != 200 for x in results):
            break
        path = "/v1/stream/a/gone%d" % trial
        srv.create(path, "text/plain", b"hello world")
        lock = Locker(pg)
        try:
            # Two 1 MiB reads hold the store's two readers once the lock goes; the read of `path`
            # waits behind them, and the delete (taken meanwhile) commits before it runs.
            hold = [Get(srv, "/v1/stream/a/big?offset=-1") for _ in range(2)]
            for g in hold:
                g.start()
            time.sleep(0.2)
            get = Get(srv, path + "?offset=-1")
            get.start()
            time.sleep(0.2)
            delete = Get(srv, path, "DELETE")
            delete.start()
            time.sleep(0.2)
        finally:
            lock.release()
        for g in hold + [get, delete]:
            g.join(20)
        r = get.resp
        results.append((delete.resp and delete.resp.status, r and r.status, r and r.body,
                        r and r.header("Cache-Control"), r and r.header("Stream-Next-Offset"), r and r.header("ETag")))
    deleted = [x for x in results if x[1] != 200]
    tap.ok(all(x[0] == 204 for x in results) and
           all(x[1:3] == (200, b"hello world") or
               (x[1] == 404 and x[3] == "no-store") for x in results) and deleted,
           "a GET whose stream is deleted while its read waits answers 404, no-store (never an empty "
           "cacheable 200 at the same offset)", repr(results))


def psql(pg, sql):
    subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", pg.url, "-c", sql],
                   check=True, capture_output=True, timeout=30)


def cancelled_reads(tap, pg, srv):
    """(h)"""
    small = "/v1/stream/a/small"
    srv.create(small, "text/plain", b"x")
    url = f"http://{srv.host}:{srv.port}/v1/stream/a/big?offset=-1"
    # PostgreSQL logs every statement meanwhile: the forward reads run are counted in its log.
    psql(pg, "ALTER SYSTEM SET log_min_duration_statement = 0")
    psql(pg, "SELECT pg_reload_conf()")
    lock = Locker(pg)
    try:
        # LEFT HTTP/2 GETs of 1.2 MiB whose clients leave while the lock holds their reads.
        left = [subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", url],
                                 stdin=subprocess.DEVNULL) for _ in range(LEFT)]
        time.sleep(1.0)
        for p in left:
            p.kill()
            p.wait()
        time.sleep(0.3)
        get = Get(srv, small + "?offset=-1")
        get.start()
        time.sleep(0.2)
    finally:
        mark = os.path.getsize(pg.log)
        t0 = time.monotonic()
        lock.release()
    get.join(30)
    took = time.monotonic() - t0
    time.sleep(1.0)  # what still runs (before: every read left) runs now
    psql(pg, "ALTER SYSTEM RESET log_min_duration_statement")
    psql(pg, "SELECT pg_reload_conf()")
    with open(pg.log, errors="replace") as f:
        f.seek(mark)
        reads = sum("SELECT off, data FROM agentd_records" in line for line in f)
    tap.ok(get.resp is not None and get.resp.status == 200 and get.resp.body == b"x" and reads < LEFT // 4,
           f"{LEFT} reads whose HTTP/2 clients left while the lock held them are dropped, not run: "
           f"{reads} forward queries once it went (before: one or more each); the GET behind them took "
           f"{took:.3f} s", repr((get.resp, get.err)))


def stop_held(tap, pg, srv):
    """(i)"""
    big = "/v1/stream/a/big?offset=-1"
    r = srv.request("POST", "/v1/sessions", json.dumps({"agent": "none"}).encode(),
                    {"Content-Type": "application/json"})
    page = f"/v1/sessions/{json.loads(r.body)['id']}/events"
    lock = Locker(pg)
    try:
        gets = [Get(srv, big) for _ in range(3)] + [Get(srv, "/v1/stream/a/json?offset=-1&live=long-poll"),
                                                    Get(srv, page)]
        sses = [Sse(srv, "/v1/stream/a/big")]
        for g in gets + sses:
            g.start()
        h2 = subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                               f"http://{srv.host}:{srv.port}{big}"], stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        h2.kill()
        h2.wait()
        t0 = time.monotonic()
        rc = srv.stop(timeout=15)
        took = time.monotonic() - t0
    finally:
        lock.release()
    for g in gets + sses:
        g.join(20)
    report = srv.sanitizer_report()
    tap.ok(rc == 0 and not report and took < 5.0,
           f"SIGTERM while the database holds reads: the node stops within 5 s ({took:.1f} s), exit status 0, "
           "no sanitizer report", f"exit status {rc}\n{report or srv.stderr_tail()}")
    got = [(g.resp.status, g.resp.header("Retry-After")) if g.resp else repr(g.err) for g in gets]
    tap.ok(all(x == (503, "1") for x in got) and all(g.err or g.events is not None for g in sses),
           "the held reads answer 503 with Retry-After (the SSE reader's connection ends)", repr(got))


def main(tap):
    if REF:
        tap.skip("PostgreSQL store", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    try:
        srv = Server(args=["--store", pg.url])
        srv.start()
        sq = Server()
        sq.start()
        reqs = write(srv)
        write(sq)
        same_answers(tap, srv, sq, reqs)
        sq.stop()
        held_reads(tap, pg, srv)
        cached_reads(tap, pg, srv)
        session_ws(tap, pg, srv)
        history_pages(tap, pg, srv)
        deleted_read(tap, pg, srv)
        cancelled_reads(tap, pg, srv)
        stop_held(tap, pg, srv)
    finally:
        if tap.failed:
            tap.diag(pg.log_tail())
        pg.cleanup()


run_test(main)
