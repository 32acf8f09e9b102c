#!/usr/bin/env python3
# agentd on PostgreSQL (--store postgres://...), against a PostgreSQL the test starts itself
# (tests/integ/pg.py: initdb in a temporary dir, a loopback port):
#   - streams, their records and producer states survive a restart of agentd;
#   - kill -9 of agentd while 32 writers append: every acknowledged append is there, each stream a
#     contiguous prefix of what its writer sent, and appending works again;
#   - PostgreSQL stopped under load: writes and reads are answered 503 store_unavailable (never
#     acknowledged), HEAD still answers; once PostgreSQL is back the same agentd recovers without a
#     restart, and nothing acknowledged is lost (writers retry with idempotent producer headers, so
#     every stream holds each message exactly once).
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test, wait_for  # noqa: E402
from pg import Postgres  # noqa: E402

WRITERS = 32


def message(w, n):
    return f"{w}:{n};".encode()


def parse(data):
    """[(w, n)] of a stream's bytes, or None if any byte is not part of a well-formed message."""
    out = []
    for part in data.split(b";")[:-1] if data.endswith(b";") or not data else [None]:
        if part is None:
            return None
        w, _, n = part.partition(b":")
        if not w.isdigit() or not n.isdigit():
            return None
        out.append((int(w), int(n)))
    return out


class Writer(threading.Thread):
    """Appends w:0; w:1; ... to its own stream. With retry, a message answered 503 is sent again
    (same producer sequence number: PostgreSQL may have stored it before the answer was lost) until
    it is acknowledged."""

    def __init__(self, srv, w, path, stop, retry=False):
        super().__init__(daemon=True)
        self.srv, self.w, self.path, self.stop_event, self.retry = srv, w, path, stop, retry
        self.sent = 0     # messages sent at least once
        self.acked = 0    # messages acknowledged (2xx)
        self.statuses = {}
        self.codes = set()
        self.ended_by = None

    def run(self):
        conn = None
        try:
            while not self.stop_event.is_set():
                if conn is None:
                    conn = self.srv.connection(timeout=10)
                n = self.acked
                self.sent = max(self.sent, n + 1)
                headers = {"Producer-Id": f"w{self.w}", "Producer-Epoch": "0", "Producer-Seq": str(n)}
                try:
                    r = self.srv.append(self.path, message(self.w, n), "text/plain", headers=headers, conn=conn)
                except OSError:
                    if not self.retry:
                        raise
                    conn.close()
                    conn = None
                    continue
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                if 200 <= r.status < 300:
                    self.acked = n + 1
                    continue
                body = r.error_body()
                self.codes.add(body["code"] if body else None)
                if not self.retry or r.status != 503:
                    self.ended_by = f"message {n}: {r!r}"
                    return
                time.sleep(0.02)
        except Exception as e:  # the server was killed under us
            self.ended_by = repr(e)
        finally:
            if conn is not None:
                conn.close()


def check_streams(tap, srv, writers, label):
    bad = []
    for wr in writers:
        data, r = srv.read_bytes(wr.path)
        got = parse(data) if r.status == 200 else None
        if got is None:
            bad.append(f"writer {wr.w}: unreadable ({r!r})")
            continue
        ns = [n for (w, n) in got if w == wr.w]
        if len(ns) != len(got) or ns != list(range(len(ns))):
            bad.append(f"writer {wr.w}: not a contiguous prefix: {ns[:10]}...")
        elif not wr.acked <= len(ns) <= wr.sent:
            bad.append(f"writer {wr.w}: {len(ns)} present, {wr.acked} acknowledged, {wr.sent} sent")
    tap.ok(not bad, f"{label}: every acknowledged append is there, each stream a contiguous prefix",
           "\n".join(bad))


def restart_persists(tap, pg):
    srv = Server(args=["--store", pg.url])
    srv.start()
    tap.is_(srv.create("/v1/stream/pg/a", "text/plain", b"one,").status, 201, "create a stream on PostgreSQL")
    h = {"Producer-Id": "p", "Producer-Epoch": "1", "Producer-Seq": "0"}
    tap.ok(200 <= srv.append("/v1/stream/pg/a", b"two,", "text/plain", headers=h).status < 300,
           "append with a producer")
    tap.is_(srv.create("/v1/stream/pg/j", "application/json", b'[{"a":1},{"b":2}]').status, 201,
            "create a JSON stream with two messages")
    tap.is_(srv.stop(), 0, "agentd stops cleanly")
    srv.start()
    data, r = srv.read_bytes("/v1/stream/pg/a")
    tap.is_(data, b"one,two,", "the records are read back after a restart")
    items, r = srv.read_json("/v1/stream/pg/j")
    tap.is_(items, [{"a": 1}, {"b": 2}], "JSON messages too")
    r = srv.append("/v1/stream/pg/a", b"two,", "text/plain", headers=h)
    tap.is_(r.status, 204, "the producer's state survived: a repeated sequence number is a duplicate")
    tap.check_clean_exit(srv)


def start_writers(tap, pg, label, retry):
    """A server on pg, WRITERS streams under /v1/stream/<label>/ and a writer each, all of them
    acknowledged a few times. Returns (server, stop event, writers)."""
    srv = Server(args=["--store", pg.url])
    srv.start()
    paths = [f"/v1/stream/{label}/{w}" for w in range(WRITERS)]
    tap.ok(all(srv.create(p, "text/plain").status == 201 for p in paths), f"{label}: create {WRITERS} streams")
    stop = threading.Event()
    writers = [Writer(srv, w, paths[w], stop, retry) for w in range(WRITERS)]
    for wr in writers:
        wr.start()
    wait_for(lambda: all(wr.acked >= 5 for wr in writers), 30)
    return srv, stop, writers


def kill9_round(tap, pg):
    srv, stop, writers = start_writers(tap, pg, "kill9", retry=False)
    time.sleep(0.5)
    srv.kill9()
    stop.set()
    for wr in writers:
        wr.join(15)
    acked = sum(wr.acked for wr in writers)
    tap.ok(all(wr.acked > 0 for wr in writers), f"kill -9: every writer was acknowledged ({acked} in all)")
    srv.start()
    check_streams(tap, srv, writers, "kill -9")
    bad = [wr.w for wr in writers
           if not 200 <= srv.append(wr.path, b"again;", "text/plain").status < 300]
    tap.ok(not bad, "kill -9: appending works again", repr(bad))
    tap.check_clean_exit(srv, "kill -9: agentd stops cleanly")


def outage_round(tap, pg):
    srv, stop, writers = start_writers(tap, pg, "outage", retry=True)
    paths = [wr.path for wr in writers]
    before = sum(wr.acked for wr in writers)
    pg.stop("fast")
    saw_503 = wait_for(lambda: all(wr.statuses.get(503) for wr in writers), 15)
    tap.ok(saw_503, "outage: every writer is answered 503 while PostgreSQL is down",
           f"{[wr.statuses for wr in writers]}\n{srv.stderr_tail()}")
    codes = set().union(*(wr.codes for wr in writers))
    tap.is_(codes, {"store_unavailable"}, "outage: the error code is store_unavailable")
    during = sum(wr.acked for wr in writers)
    time.sleep(0.5)
    tap.is_(sum(wr.acked for wr in writers), during, "outage: nothing is acknowledged while it is down")
    r = srv.request("GET", f"{paths[0]}?offset=-1")
    tap.ok(r.status == 503 and r.error_body() and r.error_body()["code"] == "store_unavailable",
           "outage: a read is answered 503 store_unavailable", repr(r))
    tap.is_(srv.request("HEAD", paths[0]).status, 200, "outage: HEAD still answers from memory")
    pg.start()
    recovered = wait_for(lambda: all(wr.acked >= during // WRITERS + 5 for wr in writers), 30)
    tap.ok(recovered, "outage: every writer is acknowledged again once PostgreSQL is back")
    stop.set()
    for wr in writers:
        wr.join(15)
    unexpected = [f"{wr.w}: {wr.ended_by} {wr.statuses}" for wr in writers
                  if wr.ended_by or set(wr.statuses) - {200, 204, 503}]
    tap.ok(not unexpected, "outage: only 2xx and 503 answers, no writer gave up", "\n".join(unexpected))
    tap.diag(f"acknowledged {before} before the outage, {sum(wr.acked for wr in writers)} in all")
    check_streams(tap, srv, writers, "outage")
    tap.ok(srv.alive(), "outage: the same agentd served throughout")
    srv.kill9()
    srv.start()
    check_streams(tap, srv, writers, "outage, after kill -9 and restart")
    tap.check_clean_exit(srv, "outage: agentd stops cleanly")


def main(tap):
    if REF:
        tap.skip("PostgreSQL store", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    try:
        restart_persists(tap, pg)
        kill9_round(tap, pg)
        outage_round(tap, pg)
    finally:
        if tap.failed:
            tap.diag(pg.log_tail())
        pg.cleanup()


run_test(main)
