#!/usr/bin/env python3
# Smoke test of the Durable Streams surface a user touches first: create, append, read, HEAD, close,
# fork, DELETE, JSON mode, long-poll, and that data survives a graceful restart. The conformance suite
# (tests/conformance) covers the protocol in depth.
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

S = "/v1/stream/basic"


def main(tap):
    srv = Server()
    srv.start()

    if not REF:
        r = srv.request("GET", "/v1/health")
        tap.is_(r.status, 200, "GET /v1/health is 200")
        r = srv.request("GET", "/v1/nodes")
        nodes = r.json() if r.status == 200 else {}
        tap.ok(nodes.get("store") == "sqlite" and len(nodes.get("nodes", [])) == 1
               and nodes["nodes"][0]["owner"] and nodes["nodes"][0]["self"] and "lease_ms" not in nodes,
               "GET /v1/nodes on SQLite: this one node, the owner, no lease", repr(r))
        one = (nodes.get("nodes") or [{}])[0]
        tap.ok(one.get("state") == "live" and one.get("agents") == 0 and one.get("runtimes") == 0,
               "it is live, with no live agent and no runtime yet", repr(one))
        tap.is_(one.get("shards"), 1, "SQLite has one shard, which it holds")
        tap.is_(srv.request("POST", "/v1/nodes").status, 405, "POST /v1/nodes is 405")

    # create
    r = srv.create(f"{S}/bytes", "text/plain")
    tap.is_(r.status, 201, "PUT creates a stream: 201")
    tap.ok(r.header("Location", "").endswith(f"{S}/bytes"), "201 carries Location", repr(r))
    empty_tail = r.header("Stream-Next-Offset")
    tap.ok(empty_tail, "create returns Stream-Next-Offset", repr(r))
    r = srv.create(f"{S}/bytes", "text/plain")
    tap.is_(r.status, 200, "PUT again with the same config: 200")
    r = srv.create(f"{S}/bytes", "application/json")
    tap.is_(r.status, 409, "PUT again with another content type: 409")

    # append + read
    offsets = [empty_tail]
    for part in (b"hello ", b"durable ", b"world"):
        r = srv.append(f"{S}/bytes", part, "text/plain")
        tap.is_(r.status, 204, f"POST {part!r}: 204")
        offsets.append(r.header("Stream-Next-Offset"))
    tap.ok(all(offsets) and offsets == sorted(offsets) and len(set(offsets)) == len(offsets),
           "offsets strictly increase (byte-wise)", repr(offsets))
    r = srv.request("GET", f"{S}/bytes?offset=-1")
    tap.is_((r.status, r.body), (200, b"hello durable world"), "GET from the start returns all bytes")
    tap.is_(r.header("Stream-Up-To-Date"), "true", "catch-up read to the tail is Up-To-Date")
    tap.is_(r.header("Stream-Next-Offset"), offsets[-1], "read ends at the last append's offset")
    r = srv.request("GET", f"{S}/bytes?offset={offsets[1]}")
    tap.is_(r.body, b"durable world", "GET from an acknowledged offset returns what follows it")
    r = srv.request("GET", f"{S}/bytes?offset={offsets[-1]}")
    tap.is_((r.status, r.body, r.header("Stream-Up-To-Date")), (200, b"", "true"),
            "GET at the tail: 200, empty, Up-To-Date")

    # HEAD
    r = srv.request("HEAD", f"{S}/bytes")
    tap.is_((r.status, r.body), (200, b""), "HEAD: 200 without body")
    tap.is_(r.header("Stream-Next-Offset"), offsets[-1], "HEAD reports the tail offset")
    tap.ok((r.header("Content-Type") or "").startswith("text/plain"), "HEAD reports the content type",
           repr(r))
    r = srv.request("HEAD", f"{S}/missing")
    tap.is_(r.status, 404, "HEAD of a missing stream: 404")

    # long-poll at the tail times out with 204 (server runs with --long-poll-timeout 500)
    t0 = time.monotonic()
    r = srv.request("GET", f"{S}/bytes?offset={offsets[-1]}&live=long-poll", timeout=10)
    took = time.monotonic() - t0
    tap.is_(r.status, 204, "long-poll at the tail times out with 204")
    tap.ok(0.3 <= took < 5, f"long-poll waited about the configured timeout ({took:.2f}s)")

    # JSON mode
    r = srv.create(f"{S}/json", "application/json")
    tap.is_(r.status, 201, "create a JSON stream")
    r = srv.append(f"{S}/json", b'{"a":1}', "application/json")
    tap.is_(r.status, 204, "append one JSON value")
    r = srv.append(f"{S}/json", b'[{"b":2},{"c":3}]', "application/json")
    tap.is_(r.status, 204, "append a JSON array (flattened one level)")
    items, r = srv.read_json(f"{S}/json")
    tap.is_(items, [{"a": 1}, {"b": 2}, {"c": 3}], "JSON read returns every message in one array")

    # fork at the middle offset, then append to the fork only
    r = srv.request("PUT", f"{S}/fork", b"", {"Stream-Forked-From": f"{S}/bytes",
                                               "Stream-Fork-Offset": offsets[2]})
    tap.is_(r.status, 201, "fork at an offset: 201")
    r = srv.append(f"{S}/fork", b"fork", "text/plain")
    tap.is_(r.status, 204, "append to the fork")
    body, _ = srv.read_bytes(f"{S}/fork")
    tap.is_(body, b"hello durable fork", "fork reads the source prefix, then its own data")
    body, _ = srv.read_bytes(f"{S}/bytes")
    tap.is_(body, b"hello durable world", "the source is unchanged by the fork")

    # close
    r = srv.request("POST", f"{S}/bytes", b"", {"Stream-Closed": "true"})
    tap.is_((r.status, r.header("Stream-Closed")), (204, "true"), "close: 204 + Stream-Closed")
    r = srv.append(f"{S}/bytes", b"late", "text/plain")
    tap.is_(r.status, 409, "append to a closed stream: 409")
    r = srv.request("GET", f"{S}/bytes?offset={offsets[-1]}&live=long-poll", timeout=10)
    tap.is_((r.status, r.header("Stream-Closed")), (204, "true"),
            "long-poll at the tail of a closed stream answers at once: 204 + Stream-Closed")

    # survive a graceful restart
    tap.check_clean_exit(srv, "server stops cleanly on SIGTERM (before restart)")
    srv.start()
    body, r = srv.read_bytes(f"{S}/bytes")
    tap.is_((body, r.header("Stream-Closed")), (b"hello durable world", "true"),
            "after restart: data and closure are kept")
    items, _ = srv.read_json(f"{S}/json")
    tap.is_(items, [{"a": 1}, {"b": 2}, {"c": 3}], "after restart: JSON stream is kept")
    body, _ = srv.read_bytes(f"{S}/fork")
    tap.is_(body, b"hello durable fork", "after restart: fork is kept")

    # delete
    r = srv.request("DELETE", f"{S}/json")
    tap.is_(r.status, 204, "DELETE: 204")
    r = srv.request("GET", f"{S}/json")
    tap.is_(r.status, 404, "GET after DELETE: 404")
    r = srv.request("DELETE", f"{S}/bytes")
    tap.is_(r.status, 204, "DELETE of a forked source: 204")
    r = srv.request("GET", f"{S}/bytes")
    tap.is_(r.status, 410, "GET of a deleted source that has forks: 410")
    body, _ = srv.read_bytes(f"{S}/fork")
    tap.is_(body, b"hello durable fork", "the fork still reads after its source was deleted")

    tap.check_clean_exit(srv)


run_test(main)
