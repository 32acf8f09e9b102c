#!/usr/bin/env python3
# A follower's held requests go on within a tick once a partition between it and the owner heals
# (serve_hold_http.c's probe). The owner's --node-url points at a port this test controls: at first
# nothing listens there (refused: the follower holds an append, the owner's lease lives on), then
# a listener whose accept queue is full drops every connect (a partition: the follower's probe is
# never answered), then the listener accepts and relays to the owner (healed). Before, the probe
# that went out during the partition stayed pending through the kernel's SYN retries (1, 3, 7, 15 s
# after it started on older kernels; 1, 2, 3, 4, 6, 10 s on newer ones) and no other started
# meanwhile, so the held append waited for the next retry (here at least 2.1 s); now a probe still
# pending at the next tick is replaced, and it goes on within about 0.8 s.
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, run_test  # noqa: E402
from cluster import pg_node, stop_nodes  # noqa: E402
from pg import Postgres, free_port  # noqa: E402

LEASE_MS = 30000  # the owner stays live throughout: only a probe moves the held append
# The probe that goes out in the partition's first 0.8 s retries its SYN 1, 2, 3, 4, 6 and 10 s after
# it started (Linux 6.5 on: net.ipv4.tcp_syn_linear_timeouts 4), or 1, 3, 7 and 15 s (before):
# healed 7.9 s in, the next retry is at least 2.1 s (7.1 s) away.
PARTITION_S = 7.9
PATH = "/v1/stream/probe/s"


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Partition:
    """A listener at port that drops connects (its accept queue full) until heal(), then relays
    each connection to target."""

    def __init__(self, port, target):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(0)  # Linux queues one connection, then drops SYNs
        self.fill = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self.fill.append(c)
        self.socks = []

    def heal(self):
        self.listener.listen(64)  # room again (Linux takes a new backlog on a listening socket)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the owner stopped: the test is over
                c.close()
                continue
            self.socks += [c, u]
            threading.Thread(target=pump, args=(c, u), daemon=True).start()
            threading.Thread(target=pump, args=(u, c), daemon=True).start()

    def close(self):
        for s in [self.listener] + self.fill + self.socks:
            s.close()


def main(tap):
    if REF:
        tap.skip("a held request after a partition heals", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    pa, pb, pr = free_port(), free_port(), free_port()
    a = pg_node(pg, LEASE_MS, pa, node_port=pr)  # its URL: the port the test controls
    b = pg_node(pg, LEASE_MS, pb)
    part = None
    try:
        a.start()
        b.start(timeout=60)
        tap.is_(a.create(PATH, "text/plain", b"first;").status, 201, "a stream created on the owner")
        got = {}

        def send():
            try:
                got["r"] = b.append(PATH, b"held;", "text/plain", conn=b.connection(timeout=40))
            except Exception as e:  # noqa: BLE001 - reported below
                got["r"] = e
            got["at"] = time.monotonic()

        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.5)
        tap.ok(t.is_alive(), "the follower holds the append while the owner's address refuses")
        part = Partition(pr, pa)
        time.sleep(PARTITION_S)
        tap.ok(t.is_alive(), f"and through {PARTITION_S:.1f} s of a partition (connects dropped)")
        healed = time.monotonic()
        part.heal()
        t.join(30)
        r = got.get("r")
        took = got["at"] - healed if "at" in got else None
        tap.is_(getattr(r, "status", r), 204, "the held append is served by the owner once it is reachable")
        tap.diag(f"served {took if took is None else round(took, 2)} s after the partition ended")
        tap.ok(took is not None and took < 1.6, "within a tick or two of the partition's end, not at the "
               "next SYN retry of a probe sent during it", f"{took if took is None else round(took, 2)} s")
        r = a.request("GET", PATH + "?offset=-1")
        tap.is_((r.status, r.body), (200, b"first;held;"), "stored once")
        tap.check_clean_exit(b, "the follower stops cleanly (each probe it cancelled freed)")
    finally:
        if part:
            part.close()
        stop_nodes(tap, pg, (a, b))


run_test(main)
