#!/usr/bin/env python3
# Space comes back (issue 12): rounds of writing 1-2 MiB and throwing it away, three ways: a stream
# deleted with DELETE, a stream left to expire (Stream-TTL: 1, retired by the sweep), and a session
# whose agent writes ~1 MiB of events into its transcript, deleted with its streams
# (DELETE /v1/sessions/<id>?streams=delete).
# What was thrown away is gone for readers at once; its pages are reused, so the database file stops
# growing: measured after a clean stop (which checkpoints the whole WAL into it) after 12 rounds (by
# then the store has moved its log once: it holds up to 16 MiB before it does) and again after 30
# (50 MiB written in all), and stays under the bound the two log segments set. (A session deleted
# without ?streams=delete keeps its streams, closed, for their readers: their space stays until
# they are deleted.)
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, Server, run_test  # noqa: E402

ROUNDS = 30
FIRST = 12  # the database is measured after this round (past the store's first 16 MiB cycle) and the last
CHUNK = 32 << 10
CHUNKS = 64  # 2 MiB a stream round; a session round writes ~1 MiB
BOUND = 38 << 20  # two 16 MiB log segments + a round in flight + records/free-list slack

AGENT = r'''#!/usr/bin/env python3
import sys
sys.stdin.readline()
out = sys.stdout
out.write('{"type":"session","id":"space"}\n')
for i in range(1000):
    out.write('{"type":"message","text":"%s"}\n' % (("%04d" % i) * 250))
out.write('{"type":"result","text":"done"}\n')
out.flush()
'''


def db_size(srv):
    return os.path.getsize(os.path.join(srv.data_dir, "agentd.db"))


def stream_round(tap, srv, r, ttl):
    path = f"/v1/stream/space/{r}"
    headers = {"Stream-TTL": "1"} if ttl else None
    ok = srv.create(path, headers=headers).status == 201
    conn = srv.connection()
    for i in range(CHUNKS):
        ok &= 200 <= srv.append(path, bytes([65 + (r + i) % 26]) * CHUNK, conn=conn).status < 300
    conn.close()
    if not ttl:
        ok &= srv.request("DELETE", path).status in (200, 204)
        ok &= srv.request("GET", f"{path}?offset=-1").status == 404
    return ok


def session_round(tap, srv, r, agent):
    r0 = srv.request("POST", "/v1/sessions", json.dumps({"agent": "jsonl", "command": [agent],
                                                         "mcp": False}).encode(),
                     {"Content-Type": "application/json"})
    if r0.status != 201:
        return False
    sid = r0.json()["id"]
    r1 = srv.request("POST", f"/v1/sessions/{sid}/messages", b'{"text":"go"}',
                     {"Content-Type": "application/json"})
    if r1.status != 202:
        return False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if srv.request("GET", f"/v1/sessions/{sid}").json().get("status") == "idle":
            break
        time.sleep(0.1)
    transcript = f"/v1/stream/sessions/{sid}/transcript"
    data, _ = srv.read_bytes(transcript)
    ok = len(data) > 1_000_000
    ok &= srv.request("DELETE", f"/v1/sessions/{sid}?streams=delete").status in (200, 202, 204)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and srv.request("GET", f"{transcript}?offset=-1").status == 200:
        time.sleep(0.1)
    ok &= srv.request("GET", f"{transcript}?offset=-1").status in (404, 410)
    return ok


def main(tap):
    if REF:
        tap.skip("space comes back", "the reference server is not what this tests")
        return
    srv = Server()
    agent = os.path.join(srv.root, "agent.py")
    with open(agent, "w") as f:
        f.write(AGENT)
    os.chmod(agent, 0o755)
    srv.start()
    sizes = {}
    bad = []
    for r in range(1, ROUNDS + 1):
        kind = r % 3
        if kind == 0:
            good = stream_round(tap, srv, r, ttl=False)
        elif kind == 1:
            good = stream_round(tap, srv, r, ttl=True)
        else:
            good = session_round(tap, srv, r, agent)
        if not good:
            bad.append(f"round {r} ({['delete', 'ttl', 'session'][kind]})")
        if r in (FIRST, ROUNDS):
            time.sleep(3.5)  # the TTL'd streams expire and the sweep (every 2 s) retires them
            expired = [p for p in range(1, r + 1, 3)
                       if srv.request("GET", f"/v1/stream/space/{p}?offset=-1").status != 404]
            if expired:
                bad.append(f"streams with a TTL still there after it: {expired}")
            rc = srv.stop()
            sizes[r] = db_size(srv)
            if rc != 0:
                bad.append(f"the server did not stop cleanly after round {r}")
            srv.start()
    tap.ok(not bad, f"{ROUNDS} rounds of 1-2 MiB written then deleted, expired or deleted with its session",
           "\n".join(bad))
    # Where the high-water mark lands depends on where the move cycles fall against the rounds
    # (seen: +1.1 MB and +3.2 MB between rounds 12 and 30), so the test checks the two things that
    # do not: the file stays within the design's bound (two log segments of 16 MiB, one round in
    # flight, slack for records and the free list), and what it gained from round 12 on is a small
    # fraction of the ~30 MiB written meanwhile (without reuse it would gain all of it).
    first, last = sizes.get(FIRST, 0), sizes.get(ROUNDS, 1 << 60)
    tap.ok(last <= BOUND and last - first <= (30 << 20) // 5,
           f"the database file stops growing: {first} bytes after {FIRST} rounds, {last} after {ROUNDS} "
           f"(50 MiB written; bound {BOUND}, growth at most 6 MiB)")
    tap.check_clean_exit(srv)


run_test(main)
