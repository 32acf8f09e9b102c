#!/usr/bin/env python3
# A storage write failure is reported, not hidden and not fatal: the server runs with a small
# RLIMIT_FSIZE (writes past it fail with EFBIG, as on a full disk), a client appends until an append
# fails, and that failure must be a 5xx with a JSON error body while the server keeps running and
# keeps serving what it acknowledged. After a restart without the limit, every acknowledged append is
# readable, in order, and appends work again.
import os
import resource
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

LIMIT = 2 << 20          # bytes any one file of the server may grow to
CHUNK = 32 << 10         # bytes per append
MAX_APPENDS = 400        # 12.5 MiB: far past the limit
PATH = "/v1/stream/writefail/log"
JPATH = "/v1/stream/writefail/json"


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def message(n):
    head = f"<{n:06d}:".encode()
    return head + bytes([97 + n % 26]) * (CHUNK - len(head) - 1) + b">"


def main(tap):
    srv = Server(preexec_fn=limit_file_size)
    srv.start()
    tap.is_(srv.create(PATH, "application/octet-stream").status, 201, "create a byte stream")
    tap.is_(srv.create(JPATH, "application/json").status, 201, "create a JSON stream")
    tap.is_(srv.append(JPATH, b'{"before":"limit"}', "application/json").status, 204,
            "append to the JSON stream before the limit is hit")

    acked = 0
    failure = None
    conn = srv.connection(timeout=30)
    try:
        for n in range(MAX_APPENDS):
            r = srv.append(PATH, message(n), conn=conn)
            if not 200 <= r.status < 300:
                failure = r
                break
            acked += 1
    except OSError as e:
        failure = e
    finally:
        conn.close()
    tap.diag(f"{acked} appends of {CHUNK} bytes acknowledged before the first failure")
    tap.ok(acked > 0, "appends succeed until the file size limit is reached")
    if not tap.ok(failure is not None, f"an append fails within {MAX_APPENDS} appends"):
        tap.check_clean_exit(srv)
        return
    tap.diag(f"first failure: {failure!r}")
    tap.ok(not isinstance(failure, Exception) and 500 <= failure.status < 600,
           "the failed write is answered with a 5xx",
           f"{failure!r}\nexit status: {srv.proc.poll()}\n{srv.stderr_tail()}")
    if not REF:
        tap.ok(not isinstance(failure, Exception) and failure.error_body() is not None,
               "the 5xx carries a JSON error body", repr(failure))
    tap.ok(srv.alive(), "the server is still running after the write failure", srv.stderr_tail())

    if srv.alive():
        r = srv.append(PATH, message(acked), conn=None)
        tap.ok(500 <= r.status < 600, "a further append also gets a 5xx (not a hang or a crash)", repr(r))
        data, r = srv.read_bytes(PATH)
        tap.ok(r.status == 200 and data[:acked * CHUNK] == b"".join(message(i) for i in range(acked)),
               "acknowledged data is still readable from the running server",
               f"{r!r}, {len(data)} bytes")
        rc = srv.stop()
        tap.ok(isinstance(rc, int), f"the server exits on SIGTERM (status {rc})", srv.stderr_tail())
        if rc != 0:
            tap.diag(f"exit status after the write failure: {rc}\n{srv.stderr_tail()}")
    else:
        srv.stop()

    srv.preexec_fn = None
    srv.start()
    data, r = srv.read_bytes(PATH)
    want = b"".join(message(i) for i in range(acked))
    # The failed appends may or may not have landed (none was acknowledged), but only whole ones.
    tail = data[len(want):]
    whole = len(tail) % CHUNK == 0 and all(
        tail[i * CHUNK:(i + 1) * CHUNK] == message(acked + i) for i in range(len(tail) // CHUNK))
    tap.ok(r.status == 200 and data.startswith(want) and whole,
           f"after restart without the limit: all {acked} acknowledged appends, in order, nothing torn",
           f"{r!r}: {len(data)} bytes read, {len(want)} acknowledged")
    items, r = srv.read_json(JPATH)
    tap.is_(items, [{"before": "limit"}], "after restart: the JSON stream is intact")
    n = len(data) // CHUNK
    r = srv.append(PATH, message(n))
    tap.is_(r.status, 204, "after restart: appends work again")
    data, _ = srv.read_bytes(PATH)
    tap.ok(data.endswith(message(n)) and len(data) == (n + 1) * CHUNK, "the new append is at the end")
    tap.check_clean_exit(srv)


run_test(main)
