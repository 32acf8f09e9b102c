#!/usr/bin/env python3
"""Integration tests for `agentd stream ...` (src/cli/cli_stream.c), TAP output for prove.

The client is the real binary ($AGENTD_CLI_BIN, default $AGENTD_BIN), run against a server started
by agentd_test.Server (`agentd serve` on port 0 with a temporary data dir). To debug the tests
against the reference server: DS_SERVER=ref AGENTD_CLI_BIN=path/to/agentd, without AGENTD_BIN.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

BIN = os.environ.get("AGENTD_CLI_BIN") or os.environ.get("AGENTD_BIN") or "build/release/agentd"
URL = None
TAP = None


def ok(cond, name, diag=None):
    return TAP.ok(cond, name, diag)


def cli(*args, stdin=None, url=None, token=None, timeout=30):
    """Runs `agentd stream ARGS`; returns (rc, stdout bytes, stderr text)."""
    env = dict(os.environ, AGENTD_URL=url or URL)
    env.pop("AGENTD_TOKEN", None)
    if token is not None:
        env["AGENTD_TOKEN"] = token
    proc = subprocess.run([BIN, "stream"] + list(args), input=stdin if stdin is not None else b"",
                          capture_output=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def tail_process(*args):
    env = dict(os.environ, AGENTD_URL=URL)
    env.pop("AGENTD_TOKEN", None)
    return subprocess.Popen([BIN, "stream", "tail"] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def finish(proc, timeout=15):
    """Waits for a tail; kills it when it overstays. Returns (rc, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err.decode(errors="replace")


def json_lines(out):
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def name(prefix):
    return "cli-test/%s-%s" % (prefix, uuid.uuid4().hex[:8])


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- basic commands ---------------------------------------------------------------------------

def test_create_append_read():
    s = name("text")
    rc, out, err = cli("create", s, "--content-type", "text/plain", "--data", "hello")
    ok(rc == 0 and out.strip(), "create prints the next offset", (rc, out, err))
    first = out.decode().strip()
    rc, out, err = cli("create", s, "--content-type", "text/plain", "--data", "hello")
    ok(rc == 0, "identical create is idempotent (exit 0)", (rc, out, err))
    rc, out, err = cli("create", s, "--content-type", "application/json")
    ok(rc == 4, "create with another content type exits 4 (409)", (rc, out, err))

    rc, out, err = cli("append", s, " world")
    ok(rc == 0 and out.decode().strip() > first, "append DATA prints a larger offset", (rc, out, err))
    rc, out, err = cli("append", s, "-", stdin=b"\nfrom stdin")
    ok(rc == 0, "append - reads stdin", (rc, out, err))
    rc, out, err = cli("append", s, stdin=b"\npiped")
    ok(rc == 0, "append without DATA reads a non-tty stdin", (rc, out, err))
    rc, out, err = cli("append", s, "")
    ok(rc == 1, "empty append without --close is a usage error (exit 1)", (rc, out, err))

    rc, out, err = cli("read", s)
    ok(rc == 0 and out == b"hello world\nfrom stdin\npiped", "read prints the whole body", (rc, out, err))
    ok("next-offset:" in err, "read reports the next offset on stderr", err)

    rc, out, err = cli("read", s, "--offset", first)
    ok(rc == 0 and out == b" world\nfrom stdin\npiped", "read --offset starts there", (rc, out, err))

    rc, out, err = cli("read", s, "--json")
    lines = json_lines(out) if rc == 0 else []
    ok(rc == 0 and lines and lines[-1].get("upToDate") is True and lines[-1].get("closed") is False,
       "read --json ends with an upToDate line", (rc, out, err))
    ok("".join(l.get("data", "") for l in lines[:-1]) == "hello world\nfrom stdin\npiped",
       "read --json carries the data", lines)

    rc, out, err = cli("head", s, "--json")
    head = json_lines(out)[0] if rc == 0 else {}
    ok(head.get("contentType", "").startswith("text/plain") and head.get("closed") is False
       and head.get("nextOffset") == lines[-1].get("offset"), "head --json", (rc, out, err))
    rc, out, err = cli("head", s)
    ok(rc == 0 and b"next-offset: " in out and b"closed: false" in out, "head text output", (rc, out, err))


def test_not_found_and_usage():
    s = name("missing")
    for cmd in (["head", s], ["read", s], ["append", s, "x", "--content-type", "text/plain"],
                ["delete", s], ["close", s]):
        rc, out, err = cli(*cmd)
        ok(rc == 3 and err.strip(), "%s of a missing stream exits 3 with a message" % cmd[0], (rc, out, err))
    rc, out, err = cli("tail", s)
    ok(rc == 3, "tail of a missing stream exits 3", (rc, out, err))

    rc, out, err = cli("bogus")
    ok(rc == 1, "unknown command exits 1", (rc, out, err))
    rc, out, err = cli("read")
    ok(rc == 1, "missing PATH exits 1", (rc, out, err))
    rc, out, err = cli("read", "x", "--nope")
    ok(rc == 1 and "--nope" in err, "unknown option exits 1 and names it", (rc, out, err))
    rc, out, err = cli("--help")
    ok(rc == 0 and b"Exit status" in out and b"409" in out, "--help documents the exit statuses", (rc, out, err))
    rc, out, err = cli("append", "--help")
    ok(rc == 0 and b"--producer" in out, "command --help lists its options", (rc, out, err))

    rc, out, err = cli("head", "x", url="http://127.0.0.1:1")
    ok(rc == 2 and err.strip(), "unreachable server exits 2", (rc, out, err))

    rc, out, err = cli("create", name("badttl"), "--ttl", "abc")
    ok(rc == 5 and "HTTP 400" in err, "other HTTP errors exit 5 and show the status", (rc, out, err))


def test_json_stream():
    s = name("json")
    rc, out, err = cli("create", s, "--content-type", "application/json",
                       "--data", '[{"n":1},{"n":2,"s":"x,y]"}]', "--json")
    created = json_lines(out)[0] if rc == 0 else {}
    ok(rc == 0 and created.get("created") is True and created.get("nextOffset"),
       "create --json reports created", (rc, out, err))
    rc, out, err = cli("append", s, '{"n":3}')
    ok(rc == 0, "append a JSON message (content type from HEAD)", (rc, out, err))
    rc, out, err = cli("read", s)
    msgs = [json.loads(l) for l in out.decode().splitlines()]
    ok(rc == 0 and msgs == [{"n": 1}, {"n": 2, "s": "x,y]"}, {"n": 3}],
       "read prints one JSON message per line", (rc, out, err))
    rc, out, err = cli("read", s, "--json")
    lines = json_lines(out)
    ok([l["data"] for l in lines if "data" in l] == msgs, "read --json: data holds each message", lines)
    rc, out, err = cli("append", s, "not json")
    ok(rc == 5, "invalid JSON append exits 5 (400)", (rc, out, err))


def test_binary_stream():
    s = name("bin")
    payload = bytes(range(256))
    rc, out, err = cli("create", s)
    ok(rc == 0, "create defaults to application/octet-stream", (rc, out, err))
    rc, out, err = cli("append", s, "-", stdin=payload)
    ok(rc == 0, "append binary from stdin", (rc, out, err))
    rc, out, err = cli("close", s)
    ok(rc == 0, "close", (rc, out, err))
    rc, out, err = cli("read", s)
    ok(rc == 0 and out == payload, "read returns the bytes exactly", (rc, len(out), err))
    rc, out, err = cli("tail", s, timeout=15)
    ok(rc == 0 and out == payload, "tail decodes base64 SSE data exactly", (rc, out[:40], err))
    rc, out, err = cli("tail", s, "--json", timeout=15)
    lines = json_lines(out)
    data = b"".join(base64.b64decode(l["data"]) for l in lines if "data" in l)
    ok(rc == 0 and data == payload and all(l.get("encoding") == "base64" for l in lines if "data" in l)
       and lines[-1].get("closed") is True, "tail --json of a binary stream is base64", lines[-2:])


def test_tail_live():
    s = name("live")
    cli("create", s, "--content-type", "text/plain", "--data", "before;")
    tail = tail_process(s, "--json")
    now_tail = tail_process(s, "--offset", "now")
    time.sleep(0.7)
    sent = ["one;", "two\nlines;", "three;"]
    for chunk in sent:
        rc, out, err = cli("append", s, chunk)
        ok(rc == 0, "live append %r" % chunk, (rc, out, err))
        time.sleep(0.2)
    rc, out, err = cli("append", s, "last", "--close")
    ok(rc == 0, "append --close", (rc, out, err))
    rc, out, err = finish(tail)
    now_rc, now_out, now_err = finish(now_tail)
    lines = json_lines(out)
    ok(rc == 0, "tail exits 0 when the stream closes", (rc, err))
    ok("".join(l.get("data", "") for l in lines) == "before;" + "".join(sent) + "last",
       "tail --json prints every event once, in order", lines)
    offsets = [l["offset"] for l in lines]
    ok(offsets == sorted(offsets) and lines[-1].get("closed") is True,
       "tail --json offsets grow and the last line says closed", lines)
    ok(now_rc == 0 and now_out == ("".join(sent) + "last").encode(),
       "tail --offset now prints only new data", (now_rc, now_out, now_err))


def test_close_delete_fork():
    s = name("src")
    rc, out, err = cli("create", s, "--content-type", "text/plain", "--data", "abc")
    mid = out.decode().strip()
    cli("append", s, "def")
    f = name("fork")
    rc, out, err = cli("fork", s, f, "--offset", mid)
    ok(rc == 0 and out.decode().strip() == mid, "fork at an offset prints the fork's tail", (rc, out, err))
    rc, out, err = cli("read", f)
    ok(rc == 0 and out == b"abc", "the fork holds the source's prefix", (rc, out, err))
    cli("append", f, "XYZ")
    rc, out, err = cli("read", f)
    ok(out == b"abcXYZ", "fork appends are its own", (rc, out, err))
    rc, out, err = cli("fork", name("nosrc"), name("fork"))
    ok(rc == 3, "fork of a missing source exits 3", (rc, out, err))

    rc, out, err = cli("close", s)
    ok(rc == 0 and out.strip(), "close prints the final offset", (rc, out, err))
    rc, out, err = cli("close", s)
    ok(rc == 0, "closing again is idempotent", (rc, out, err))
    rc, out, err = cli("append", s, "more")
    ok(rc == 4 and err.strip(), "append to a closed stream exits 4 with a message", (rc, out, err))
    rc, out, err = cli("head", s, "--json")
    ok(rc == 0 and json_lines(out)[0].get("closed") is True, "head shows closed", (rc, out, err))

    d = name("del")
    cli("create", d)
    rc, out, err = cli("delete", d, "--json")
    ok(rc == 0 and json_lines(out) == [{"path": d, "deleted": True}], "delete --json", (rc, out, err))
    rc, out, err = cli("head", d)
    ok(rc == 3, "deleted stream is gone", (rc, out, err))


def test_sequencing():
    s = name("prod")
    cli("create", s, "--content-type", "text/plain")
    args = ["append", s, "m0", "--producer", "p1", "--epoch", "0", "--seq", "0", "--json"]
    rc, out, err = cli(*args)
    first = json_lines(out)[0] if rc == 0 else {}
    ok(rc == 0 and first.get("duplicate") is False, "producer append", (rc, out, err))
    rc, out, err = cli(*args)
    again = json_lines(out)[0] if rc == 0 else {}
    ok(rc == 0 and again.get("duplicate") is True and again.get("nextOffset") in (None, first.get("nextOffset")),
       "the same producer seq again is a duplicate", (rc, out, err))
    rc, out, err = cli("append", s, "gap", "--producer", "p1", "--epoch", "0", "--seq", "5")
    ok(rc == 4, "a producer sequence gap exits 4 (409)", (rc, out, err))
    rc, out, err = cli("append", s, "m", "--producer", "p1", "--seq", "1")
    ok(rc == 1 and "--producer needs --epoch and --seq" in err, "--producer without --epoch is a usage error",
       (rc, out, err))
    for extra, why in ((["--epoch", "0"], "--epoch needs --producer"),
                       (["--seq", "1", "--stream-seq", "1"], "--seq and --stream-seq both set Stream-Seq"),
                       (["--data", "n"], "give DATA or --data, not both")):
        rc, out, err = cli("append", s, "m", *extra)
        ok(rc == 1 and why in err, "append %s is a usage error: %s" % (" ".join(extra), why), (rc, out, err))
    rc, out, err = cli("read", s)
    ok(out == b"m0", "the duplicate was not appended twice, nor a refused append once", (rc, out, err))

    rc, out, err = cli("append", s, "a", "--seq", "2")
    ok(rc == 0, "Stream-Seq 2", (rc, out, err))
    rc, out, err = cli("append", s, "b", "--seq", "10")
    ok(rc == 4, "Stream-Seq 10 after 2 regresses (lexicographic): exit 4", (rc, out, err))


def test_tail_reconnect():
    """Restart the server under a running tail: it resumes from the last confirmed offset."""
    global URL
    srv = Server(listen="127.0.0.1:%d" % free_port())
    URL = srv.start()
    s = name("reconnect")
    cli("create", s, "--content-type", "application/json", "--data", '[{"n":1}]')
    tail = tail_process(s)
    time.sleep(0.7)
    srv.restart()
    cli("append", s, '{"n":2}')
    cli("close", s)
    rc, out, err = finish(tail, timeout=20)
    ok(rc == 0 and [json.loads(l) for l in out.decode().splitlines()] == [{"n": 1}, {"n": 2}],
       "tail survives a server restart without loss or duplicates", (rc, out, err))
    srv.stop()


def test_token():
    """--token and $AGENTD_TOKEN become a bearer token."""
    global URL
    srv = Server(token="cli-s3cret")
    URL = srv.start()
    s = name("auth")
    rc, out, err = cli("create", s)
    ok(rc != 0 and err.strip(), "without a token the server refuses", (rc, out, err))
    rc, out, err = cli("create", s, "--token", "cli-s3cret")
    ok(rc == 0, "--token is sent as a bearer token", (rc, out, err))
    rc, out, err = cli("head", s, token="cli-s3cret")
    ok(rc == 0, "$AGENTD_TOKEN is the default token", (rc, out, err))
    srv.stop()


def main(tap):
    global URL, TAP
    TAP = tap
    srv = Server()
    URL = srv.start()
    test_create_append_read()
    test_not_found_and_usage()
    test_json_stream()
    test_binary_stream()
    test_tail_live()
    test_close_delete_fork()
    test_sequencing()
    srv.stop()  # the server's own clean exit is basic.t's business
    test_tail_reconnect()
    if REF:
        tap.skip("bearer tokens", "the reference server has no --token")
    else:
        test_token()


if __name__ == "__main__":
    run_test(main)
