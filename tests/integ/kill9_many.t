#!/usr/bin/env python3
# Crash safety with many streams (issue 12): 32 writers append to 1,000 byte streams (each writer
# owns 31 or 32 of them and goes round them), records of 100 bytes to 8 KiB so that the store's log
# fills and moves records out in cycles while they write; the server is killed with SIGKILL, twice,
# with a restart and more writing in between (the second crash hits a store that recovered from the
# first, perhaps in the middle of a move). After each restart:
#   - every append acknowledged with a 2xx is there, and each stream is a contiguous prefix of what
#     its writer sent (no gap, no garbage, no torn record): at most the one append in flight is
#     beyond the acknowledged ones;
#   - the streams' tails (HEAD) match what they hold, and appending works again.
import hashlib
import os
import random
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

STREAMS = 1000
WRITERS = 32
RUN_SECONDS = (2.0, 3.5)
# Each round also writes at least this much before the kill (up to 30 s), so that the log crosses
# the store's 16 MiB move threshold in the first round whatever the machine's speed.
ROUND_BYTES = 18 << 20
RECORD = re.compile(rb"<(\d+):(\d+):([0-9a-f]{16}):(\d+)>(x*)\n")


def path_of(s):
    return f"/v1/stream/kill9many/s{s}"


def record(s, n):
    """Append n to stream s: a header with a digest, then padding to 100 B .. 12 KiB."""
    size = 100 + (s * 7919 + n * 104729) % 12188
    digest = hashlib.sha1(f"{s}:{n}".encode()).hexdigest()[:16]
    head = f"<{s}:{n}:{digest}:{size}>".encode()
    return head + b"x" * max(0, size - len(head) - 1) + b"\n"


def decode(s, data):
    """The record numbers in a stream's bytes, or an error. Every byte must belong to a record of s."""
    out, pos = [], 0
    while pos < len(data):
        m = RECORD.match(data, pos)
        if not m:
            return out, f"garbage at byte {pos}: {data[pos:pos + 60]!r}"
        rs, n, digest, size = int(m.group(1)), int(m.group(2)), m.group(3).decode(), int(m.group(4))
        if rs != s or m.group(0) != record(s, n) or digest != hashlib.sha1(f"{s}:{n}".encode()).hexdigest()[:16]:
            return out, f"corrupt or foreign record at byte {pos}: {data[pos:pos + 60]!r}"
        out.append(n)
        pos = m.end()
    return out, None


class Writer(threading.Thread):
    def __init__(self, srv, w, sent, acked, stop):
        super().__init__(daemon=True)
        self.srv, self.stop_event = srv, stop
        self.streams = [s for s in range(STREAMS) if s % WRITERS == w]
        self.sent, self.acked = sent, acked  # shared per-stream counts, this writer's streams only
        self.unexpected = None
        self.bytes = 0

    def run(self):
        conn = self.srv.connection(timeout=10)
        try:
            while not self.stop_event.is_set():
                for s in self.streams:
                    if self.stop_event.is_set():
                        break
                    n = self.sent[s]
                    self.sent[s] = n + 1
                    r = self.srv.append(path_of(s), record(s, n), conn=conn)
                    if not 200 <= r.status < 300:
                        self.unexpected = f"stream {s} record {n}: {r!r}"
                        return
                    self.acked[s] = n + 1
                    self.bytes += len(record(s, n))
        except Exception:  # the server was killed under us
            pass
        finally:
            conn.close()


def write_until_killed(tap, srv, sent, acked, label):
    stop = threading.Event()
    writers = [Writer(srv, w, sent, acked, stop) for w in range(WRITERS)]
    before = sum(acked)
    for wr in writers:
        wr.start()
    start = time.monotonic()
    least = random.uniform(*RUN_SECONDS)
    while time.monotonic() - start < 30 and (time.monotonic() - start < least or
                                             sum(wr.bytes for wr in writers) < ROUND_BYTES):
        time.sleep(0.05)
    srv.kill9()
    stop.set()
    for wr in writers:
        wr.join(15)
    tap.ok(not any(wr.is_alive() for wr in writers), f"{label}: writers ended after the kill")
    unexpected = [wr.unexpected for wr in writers if wr.unexpected]
    tap.ok(not unexpected, f"{label}: no non-2xx answers while the server was alive", "\n".join(unexpected))
    tap.diag(f"{label}: {sum(acked) - before} appends acknowledged in this round, "
             f"{sum(sent) - sum(acked)} in flight at the kill")
    with open(srv.stderr_path, "rb") as f:
        return f.read().count(b"store: moving")


def verify(tap, srv, sent, acked, label):
    """Reads every stream back; returns the record counts found (to continue from)."""
    found, bad, tails, total = [0] * STREAMS, [], [], 0
    for s in range(STREAMS):
        data, r = srv.read_bytes(path_of(s))
        if r.status != 200:
            bad.append(f"stream {s}: read answered {r.status}")
            continue
        got, err = decode(s, data)
        k = len(got)
        if err:
            bad.append(f"stream {s}: {err}")
        elif got != list(range(k)):
            bad.append(f"stream {s}: not a contiguous prefix: {got[:5]}...")
        elif not acked[s] <= k <= sent[s]:
            bad.append(f"stream {s}: {k} records, {acked[s]} acknowledged, {sent[s]} sent")
        found[s] = k
        total += len(data)
        h = srv.request("HEAD", path_of(s))
        tail = int(h.header("Stream-Next-Offset", "0_-1").split("_")[1])
        if tail != len(data):
            tails.append(f"stream {s}: tail {tail}, {len(data)} bytes")
    tap.ok(not bad, f"{label}: all {STREAMS} streams hold every acknowledged append, as a contiguous prefix",
           "\n".join(bad[:20]))
    tap.ok(not tails, f"{label}: every stream's tail is where its bytes end", "\n".join(tails[:20]))
    tap.diag(f"{label}: {sum(found)} records, {total / (1 << 20):.1f} MiB")
    return found


def main(tap):
    if REF:
        tap.skip("kill -9 with 1,000 streams", "the reference server is not what this tests")
        return
    srv = Server(args=["--log-level", "debug"])  # to see the store's move cycles start
    srv.start()
    created = 0
    conn = srv.connection()
    for s in range(STREAMS):
        r = srv.request("PUT", path_of(s), b"", {"Content-Type": "application/octet-stream"}, conn=conn)
        created += r.status == 201
    conn.close()
    tap.is_(created, STREAMS, f"create {STREAMS} streams")
    sent, acked = [0] * STREAMS, [0] * STREAMS

    cycles = write_until_killed(tap, srv, sent, acked, "round 1")
    srv.start()
    found = verify(tap, srv, sent, acked, "after the first kill")
    # Writers continue from what survived (an unacknowledged append that survived counts as sent).
    for s in range(STREAMS):
        sent[s] = acked[s] = found[s]

    cycles += write_until_killed(tap, srv, sent, acked, "round 2")
    srv.start()
    found = verify(tap, srv, sent, acked, "after the second kill")
    tap.ok(cycles > 0, f"the store moved records out of its log while the writers wrote ({cycles} cycles)")

    bad = []
    for s in range(0, STREAMS, 50):
        r = srv.append(path_of(s), record(s, found[s]))
        data, _ = srv.read_bytes(path_of(s))
        got, err = decode(s, data)
        if not 200 <= r.status < 300 or err or got != list(range(found[s] + 1)):
            bad.append(f"stream {s}: {r!r} {err}")
    tap.ok(not bad, "appends after the restarts land at the ends", "\n".join(bad))
    tap.check_clean_exit(srv)


run_test(main)
