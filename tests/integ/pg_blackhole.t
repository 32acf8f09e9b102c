#!/usr/bin/env python3
# agentd on PostgreSQL behind a database host that drops packets (a dead host, a partition): the
# node reaches PostgreSQL through a TCP proxy in this test that can turn into a black hole (the
# connections it had end, as they would once tcp_user_timeout fires; new ones are accepted and
# never answered, so that every connect waits for its connect_timeout, 5 s):
#   (a) during such an outage /v1/health, HEAD, a read of what the node holds, and a 503
#       store_unavailable for an append each come back within half a second (the retry asked
#       whether the database was back on the loop, which a connect held for its timeout);
#   (b) once the proxy forwards again, writes resume without a restart and every acknowledged
#       append is there, once;
#   (c) a SIGTERM while reads are held by the database and the host goes dark: the stop's cancels
#       (each a new connection, black-holed) do not hold the loop: agentd exits once the reads'
#       connections end (and the heartbeat's reconnect, bounded by connect_timeout), not never;
#   (d) a SIGTERM while a probe of the database hangs in the black hole: a clean exit.
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test, wait_for  # noqa: E402
from pg import Locker, Postgres  # noqa: E402

FAST = 0.5  # seconds: what "at once" means while the database is dark
STOP_DARK = 4.5  # seconds: a stop in the dark, held reads cut after 2 s (+1 s for the heartbeat)


class Proxy(threading.Thread):
    """Forwards 127.0.0.1:port to PostgreSQL until dark(); restore() forwards again."""

    def __init__(self, upstream_port):
        super().__init__(daemon=True)
        self.up = upstream_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.mu = threading.Lock()
        self.is_dark = False
        self.pairs = []  # [client, upstream, frozen]
        self.held = []   # accepted while dark: never read, never answered

    def run(self):
        while True:
            c, _ = self.lsock.accept()
            with self.mu:
                if self.is_dark:
                    self.held.append(c)
                    continue
            u = socket.create_connection(("127.0.0.1", self.up))
            pair = [c, u, False]
            with self.mu:
                self.pairs.append(pair)
            threading.Thread(target=self.pump, args=(pair, c, u), daemon=True).start()
            threading.Thread(target=self.pump, args=(pair, u, c), daemon=True).start()

    def pump(self, pair, src, dst):
        src.settimeout(0.05)
        while True:
            if pair[2]:  # frozen: nothing read, nothing forwarded
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data or pair[2] is None:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        self.cut(pair)

    def cut(self, pair):
        pair[2] = None
        for s in pair[:2]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def dark(self, cut_after=0.0):
        """New connections hang from now on; the open ones freeze, and end after cut_after."""
        with self.mu:
            self.is_dark = True
            pairs, self.pairs = self.pairs, []
        for p in pairs:
            p[2] = True
        threading.Timer(cut_after, lambda: [self.cut(p) for p in pairs]).start()

    def restore(self):
        with self.mu:
            self.is_dark = False
            held, self.held = self.held, []
        for s in held:
            s.close()


def timed(srv, method, path, body=None, headers=None):
    t0 = time.monotonic()
    try:
        r = srv.request(method, path, body, headers, timeout=15)
        return r.status, round(time.monotonic() - t0, 3)
    except OSError as e:
        return repr(e), round(time.monotonic() - t0, 3)


class Writer(threading.Thread):
    """Appends n; to one stream with producer headers; a 503 is sent again until acknowledged."""

    def __init__(self, srv, path):
        super().__init__(daemon=True)
        self.srv, self.path = srv, path
        self.stop = threading.Event()
        self.acked = 0
        self.statuses = {}

    def run(self):
        while not self.stop.is_set():
            n = self.acked
            h = {"Producer-Id": "w", "Producer-Epoch": "0", "Producer-Seq": str(n), "Content-Type": "text/plain"}
            try:
                r = self.srv.request("POST", self.path, f"{n};".encode(), h, timeout=15)
            except OSError:
                time.sleep(0.05)
                continue
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            if 200 <= r.status < 300:
                self.acked = n + 1
            else:
                time.sleep(0.02)


def outage(tap, pg, proxy, srv):
    """(a) and (b)"""
    tap.is_(srv.create("/v1/stream/bh/a", "text/plain", b"x;").status, 201, "create a stream")
    tap.is_(srv.create("/v1/stream/bh/b", "text/plain", b"").status, 201, "and another")
    wr = Writer(srv, "/v1/stream/bh/b")
    wr.start()
    wait_for(lambda: wr.acked >= 5, 15)
    proxy.dark()
    tap.ok(wait_for(lambda: wr.statuses.get(503), 15), "dark: appends are answered 503", repr(wr.statuses))
    t_end = time.monotonic() + 3
    slow = []
    counts = 0
    while time.monotonic() < t_end:
        for what in (("GET", "/v1/health"), ("HEAD", "/v1/stream/bh/a"), ("GET", "/v1/stream/bh/a?offset=now"),
                     ("POST", "/v1/stream/bh/a", b"y;", {"Content-Type": "text/plain"})):
            st, t = timed(srv, *what)
            counts += 1
            if t > FAST or (what[0] == "POST" and st != 503) or (what[0] == "HEAD" and st != 200):
                slow.append((what[:2], st, t))
    tap.ok(not slow, f"dark for 3 s: health, HEAD, offset=now and a refused append each answer within {FAST} s "
           f"({counts} requests)", repr(slow[:10]) + "\n" + srv.stderr_tail())
    during = wr.acked
    proxy.restore()
    tap.ok(wait_for(lambda: wr.acked >= during + 5, 30), "back: the writer is acknowledged again",
           f"{wr.acked} {wr.statuses}\n{srv.stderr_tail()}")
    wr.stop.set()
    wr.join(20)
    data, _ = srv.read_bytes("/v1/stream/bh/b")
    want = "".join(f"{n};" for n in range(wr.acked)).encode()
    tap.ok(data in (want, want + f"{wr.acked};".encode()), "every acknowledged append is there, once",
           repr(data[-80:]))
    data, _ = srv.read_bytes("/v1/stream/bh/a")
    tap.is_(data, b"x;", "the refused appends are not there")


def stop_in_the_dark(tap, pg, proxy, srv):
    """(c)"""
    lock = Locker(pg)  # straight to PostgreSQL, not through the proxy
    try:
        gets = []
        for _ in range(2):
            t = threading.Thread(target=lambda: gets.append(timed(srv, "GET", "/v1/stream/bh/b?offset=-1")),
                                 daemon=True)
            t.start()
        time.sleep(0.5)
        tap.ok(not gets, "reads from the start wait for the locked table", repr(gets))
        proxy.dark(cut_after=2.0)
        t0 = time.monotonic()
        rc = srv.stop(timeout=20)
        took = time.monotonic() - t0
        # The reads end when their connections do (2 s); the heartbeat thread, found cut meanwhile,
        # may be in a reconnect (connect_timeout, 5 s): the stop waits 1 s for it, then leaves it
        # (it waited the whole reconnect before: 5.8 s in all). A cancel sent from the loop held it
        # until the black hole answered: never.
        report = srv.sanitizer_report()
        tap.ok(rc == 0 and took < STOP_DARK and not report, "a SIGTERM in the dark: agentd exits once the held "
               f"reads' connections end, its cancels black-holed, within {STOP_DARK} s",
               f"exit {rc} after {took:.1f}s\n{report or srv.stderr_tail()}")
        tap.diag(f"SIGTERM to exit: {took:.2f} s")
    finally:
        proxy.restore()
        lock.release()


def stop_while_probing(tap, proxy, srv):
    """(d)"""
    proxy.dark()
    try:
        refused = wait_for(lambda: srv.append("/v1/stream/bh/a", b"z;", "text/plain").status == 503, 15)
        tap.ok(refused, "dark again: an append is answered 503")
        time.sleep(0.5)  # a probe is connecting into the black hole now
        t0 = time.monotonic()
        rc = srv.stop(timeout=20)
        took = time.monotonic() - t0
        report = srv.sanitizer_report()
        tap.ok(rc == 0 and took < 10 and not report, "a SIGTERM while a probe hangs: agentd exits cleanly",
               f"exit {rc} after {took:.1f}s\n{report or srv.stderr_tail()}")
        tap.diag(f"SIGTERM to exit while probing: {took:.2f} s")
    finally:
        proxy.restore()


def main(tap):
    if REF:
        tap.skip("PostgreSQL store", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    proxy = Proxy(pg.port)
    proxy.start()
    try:
        url = pg.url.replace(f":{pg.port}/", f":{proxy.port}/")
        srv = Server(args=["--store", url])
        srv.start()
        outage(tap, pg, proxy, srv)
        tap.ok(srv.alive(), "the same agentd served throughout")
        tap.check_clean_exit(srv, "agentd stops cleanly after the outage")
        srv.start()  # the reads of (c) are not in its cache
        stop_in_the_dark(tap, pg, proxy, srv)
        srv.start()
        stop_while_probing(tap, proxy, srv)
    finally:
        if tap.failed:
            tap.diag(pg.log_tail())
        pg.cleanup()


run_test(main)
