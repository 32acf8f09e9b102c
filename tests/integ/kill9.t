#!/usr/bin/env python3
# Crash safety as a user sees it: 8 concurrent writers append numbered messages (each to its own
# stream, and half of them also to one shared stream), the server is killed with SIGKILL while they
# write, and after a restart on the same data dir:
#   - every append that was acknowledged with a 2xx is there, in order;
#   - each stream is a contiguous prefix of what its writers sent: no gaps, no garbage, no torn
#     messages (JSON arrays appended in one POST are all there or all absent);
#   - acknowledged offsets still address the same place, and appending works again.
# Runs with byte streams, JSON streams, and byte streams under --durability os (a process crash must
# not lose acknowledged appends in either mode).
import hashlib
import json
import os
import random
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

WRITERS = 8
SHARED_WRITERS = 4  # writers 0..3 also append to the shared stream
RUN_SECONDS = (0.8, 1.6)


def digest(w, n, pad):
    return hashlib.sha1(f"{w}:{n}:{pad}".encode()).hexdigest()[:16]


def pad_for(w, n):
    return "x" * ((w * 31 + n * 7) % 97)


# ---- message encodings --------------------------------------------------------------------------

class Bytes:
    content_type = "application/octet-stream"
    name = "bytes"
    RECORD = re.compile(rb"(\d+):(\d+):(x*):([0-9a-f]{16})\n")

    @staticmethod
    def encode(w, n):
        pad = pad_for(w, n)
        return f"{w}:{n}:{pad}:{digest(w, n, pad)}\n".encode()

    @classmethod
    def decode(cls, data):
        """Returns ([(w, n)], error or None). Every byte must belong to a well-formed record."""
        out = []
        pos = 0
        while pos < len(data):
            m = cls.RECORD.match(data, pos)
            if not m:
                return out, f"garbage at byte {pos}: {data[pos:pos + 60]!r}"
            w, n, pad = int(m.group(1)), int(m.group(2)), m.group(3).decode()
            if m.group(4).decode() != digest(w, n, pad) or pad != pad_for(w, n):
                return out, f"corrupt record at byte {pos}: {m.group(0)!r}"
            out.append((w, n))
            pos = m.end()
        return out, None


class Json:
    content_type = "application/json"
    name = "json"

    @staticmethod
    def encode(w, n):
        pad = pad_for(w, n)
        if n % 5 == 4:
            # One POST of a two-element array: both messages or neither.
            return json.dumps([{"w": w, "n": n, "part": 0, "pad": pad, "d": digest(w, n, pad)},
                               {"w": w, "n": n, "part": 1}]).encode()
        return json.dumps({"w": w, "n": n, "pad": pad, "d": digest(w, n, pad)}).encode()

    @staticmethod
    def decode(items):
        out = []
        i = 0
        while i < len(items):
            it = items[i]
            if not isinstance(it, dict) or not isinstance(it.get("w"), int) \
                    or not isinstance(it.get("n"), int):
                return out, f"garbage message {i}: {it!r}"
            w, n = it["w"], it["n"]
            pad = pad_for(w, n)
            if it.get("pad") != pad or it.get("d") != digest(w, n, pad):
                return out, f"corrupt message {i}: {it!r}"
            if n % 5 == 4:
                nxt = items[i + 1] if i + 1 < len(items) else None
                if it.get("part") != 0 or nxt != {"w": w, "n": n, "part": 1}:
                    return out, f"torn array append at message {i}: {it!r} then {nxt!r}"
                i += 1
            out.append((w, n))
            i += 1
        return out, None


# ---- writers ------------------------------------------------------------------------------------

class Writer(threading.Thread):
    def __init__(self, srv, w, codec, own, shared, stop):
        super().__init__(daemon=True)
        self.srv, self.w, self.codec, self.stop_event = srv, w, codec, stop
        self.own, self.shared = own, shared
        # per stream: messages attempted, messages acknowledged, last acknowledged offset
        self.sent = {own: 0, shared: 0}
        self.acked = {own: 0, shared: 0}
        self.last_offset = {own: None, shared: None}
        self.unexpected = None  # a non-2xx answer while the server was alive
        self.ended_by = None

    def append(self, conn, path):
        n = self.sent[path]
        self.sent[path] = n + 1
        r = self.srv.append(path, self.codec.encode(self.w, n), self.codec.content_type, conn=conn)
        if not 200 <= r.status < 300:
            self.unexpected = f"{path} message {n}: {r!r}"
            return False
        self.acked[path] = n + 1
        self.last_offset[path] = r.header("Stream-Next-Offset")
        return True

    def run(self):
        conn = self.srv.connection(timeout=10)
        try:
            while not self.stop_event.is_set():
                if not self.append(conn, self.own):
                    break
                if self.w < SHARED_WRITERS and not self.append(conn, self.shared):
                    break
        except Exception as e:  # the server was killed under us
            self.ended_by = repr(e)
        finally:
            conn.close()


def check_prefix(tap, label, got, writers, path):
    """got: [(w, n)] read back from path. Each writer's messages must be 0..k-1 with
    acked <= k <= sent: the acknowledged ones plus at most the one in flight at the kill."""
    ok = True
    detail = []
    for wr in writers:
        mine = [n for (w, n) in got if w == wr.w]
        k = len(mine)
        if mine != list(range(k)):
            ok = False
            first_bad = next(i for i, n in enumerate(mine) if n != i)
            detail.append(f"writer {wr.w}: out of order or gap at position {first_bad}: "
                          f"{mine[max(0, first_bad - 3):first_bad + 3]}")
        elif not wr.acked[path] <= k <= wr.sent[path]:
            ok = False
            detail.append(f"writer {wr.w}: {k} messages present, {wr.acked[path]} acknowledged, "
                          f"{wr.sent[path]} sent")
    strangers = {w for (w, _) in got} - {wr.w for wr in writers}
    if strangers:
        ok = False
        detail.append(f"messages from writers that never wrote here: {sorted(strangers)}")
    tap.ok(ok, f"{label}: every acknowledged append is present, in order, as a contiguous prefix",
           "\n".join(detail))


def read_stream(srv, codec, path):
    if codec is Json:
        items, r = srv.read_json(path)
        if r.status != 200:
            return None, f"read failed: {r!r}"
        return codec.decode(items)
    data, r = srv.read_bytes(path)
    if r.status != 200:
        return None, f"read failed: {r!r}"
    return codec.decode(data)


def round_(tap, codec, args, label):
    tap.diag(f"round: {label}")
    srv = Server(args=args)
    srv.start()
    base = f"/v1/stream/kill9/{codec.name}-{len(args)}"
    own = [f"{base}/own-{w}" for w in range(WRITERS)]
    shared = f"{base}/shared"
    created = all(srv.create(p, codec.content_type).status == 201 for p in own + [shared])
    if not tap.ok(created, f"{label}: create {WRITERS + 1} streams"):
        return

    stop = threading.Event()
    writers = [Writer(srv, w, codec, own[w], shared, stop) for w in range(WRITERS)]
    for wr in writers:
        wr.start()
    time.sleep(random.uniform(*RUN_SECONDS))
    srv.kill9()
    stop.set()
    for wr in writers:
        wr.join(15)
    tap.ok(not any(wr.is_alive() for wr in writers), f"{label}: writers ended after the kill")
    unexpected = [wr.unexpected for wr in writers if wr.unexpected]
    tap.ok(not unexpected, f"{label}: no non-2xx answers while the server was alive",
           "\n".join(unexpected))
    acked_total = sum(sum(wr.acked.values()) for wr in writers)
    tap.ok(all(wr.acked[wr.own] > 0 for wr in writers),
           f"{label}: every writer had appends acknowledged before the kill ({acked_total} in all)",
           repr([wr.acked for wr in writers]))
    tap.diag(f"acknowledged {acked_total} appends, "
             f"{sum(sum(wr.sent.values()) for wr in writers) - acked_total} were in flight")

    srv.start()
    for w, path in enumerate(own):
        got, err = read_stream(srv, codec, path)
        if not tap.ok(err is None, f"{label}: own stream {w} reads back with no garbage", err):
            continue
        check_prefix(tap, f"{label}: own stream {w}", got, [writers[w]], path)
    got, err = read_stream(srv, codec, shared)
    if tap.ok(err is None, f"{label}: shared stream reads back with no garbage", err):
        check_prefix(tap, f"{label}: shared stream", got, writers[:SHARED_WRITERS], shared)

    # Acknowledged offsets survive the crash: reading from the last one gives at most the message
    # that was in flight, and the tail is not before it.
    bad = []
    for wr in writers:
        off = wr.last_offset[wr.own]
        if off is None:
            continue
        r = srv.request("GET", f"{wr.own}?offset={off}")
        if codec is Json:
            after = Json.decode(json.loads(r.body))[0] if r.status == 200 else None
        else:
            after = Bytes.decode(r.body)[0] if r.status == 200 else None
        allowed = [[], [(wr.w, wr.acked[wr.own])]]
        if r.status != 200 or after not in allowed:
            bad.append(f"writer {wr.w} offset {off}: {r!r}")
    tap.ok(not bad, f"{label}: reads from acknowledged offsets continue where the ack said", "\n".join(bad))

    # The log accepts appends again after recovery, and they land at the end.
    bad = []
    for wr in writers:
        before, _ = read_stream(srv, codec, wr.own)
        n = len(before)
        r = srv.append(wr.own, codec.encode(wr.w, n), codec.content_type)
        after, err = read_stream(srv, codec, wr.own)
        if not 200 <= r.status < 300 or err or after != before + [(wr.w, n)]:
            bad.append(f"writer {wr.w}: {r!r} {err}")
    tap.ok(not bad, f"{label}: appends after the restart land at the end", "\n".join(bad))
    tap.check_clean_exit(srv, f"{label}: server stops cleanly on SIGTERM")


def main(tap):
    round_(tap, Bytes, [], "byte streams")
    round_(tap, Json, [], "JSON streams")
    if REF:
        tap.skip("byte streams, --durability os", "the reference server has no --durability")
    else:
        round_(tap, Bytes, ["--durability", "os"], "byte streams, --durability os")


run_test(main)
