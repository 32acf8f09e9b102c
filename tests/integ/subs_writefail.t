#!/usr/bin/env python3
"""Subscriptions when their state cannot be stored: what the server says about a subscription is
what it stored. The server runs with a small RLIMIT_FSIZE (writes past it fail with EFBIG, as on a
full disk); once appends fail, subscriptions are created and deleted. A create answered 5xx must not
exist (GET 404), a delete answered 5xx must not have happened (GET 200), and after a restart without
the limit every subscription reads as the running server said. TAP output for prove.
"""
import os
import resource
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402

LIMIT = 2 << 20    # bytes any one file of the server may grow to
CHUNK = 32 << 10   # bytes per filler append
SUBS = "/v1/stream/__ds/subscriptions/"
CONFIG = {"type": "pull-wake", "streams": ["filler"], "wake_stream": "wakes"}


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def main(tap):
    srv = Server(preexec_fn=limit_file_size)
    srv.start()
    tap.is_(srv.create("/v1/stream/filler").status, 201, "a filler stream")
    tap.is_(srv.create("/v1/stream/wakes", "application/json").status, 201, "a wake stream")
    for name in ("kept", "doomed"):
        tap.is_(srv.request("PUT", SUBS + name, CONFIG).status, 201, f"subscription {name} created with space")

    # Fill to the limit, then the crumbs left, so that even a small state record no longer fits.
    failure = None
    for size in (CHUNK, 4096, 512, 64):
        for n in range(400):
            r = srv.append("/v1/stream/filler", bytes([97 + n % 26]) * size)
            if r.status != 204:
                failure = r
                break
    tap.ok(failure is not None and 500 <= failure.status < 600, "appends fail once the limit is reached",
           repr(failure))

    said = {}  # subscription -> True (exists) / False, as the running server answered its writes
    for i in range(5):
        r = srv.request("PUT", SUBS + f"new-{i}", CONFIG)
        tap.in_(r.status, (201, 500, 507), f"create new-{i} while full: 201 or a storage error")
        said[f"new-{i}"] = r.status == 201
    r = srv.request("DELETE", SUBS + "doomed")
    tap.in_(r.status, (204, 500, 507), "delete doomed while full: 204 or a storage error")
    said["doomed"] = r.status != 204
    said["kept"] = True
    refused = [k for k, v in said.items() if (k == "doomed") == v]
    tap.ok(len(refused) >= 2, "the full disk refused subscription writes (a create and the delete)",
           repr(said))

    for name, exists in sorted(said.items()):
        st = srv.request("GET", SUBS + name).status
        tap.is_(st, 200 if exists else 404, f"running: {name} {'exists' if exists else 'does not exist'}, "
                "as the answer to its write said")

    srv.stop()
    srv.preexec_fn = None
    srv.start()
    for name, exists in sorted(said.items()):
        st = srv.request("GET", SUBS + name).status
        tap.is_(st, 200 if exists else 404, f"after a restart: {name} still "
                f"{'exists' if exists else 'does not exist'}")
    tap.is_(srv.request("PUT", SUBS + "after", CONFIG).status, 201, "with space, subscriptions are created again")
    tap.check_clean_exit(srv)


run_test(main)
