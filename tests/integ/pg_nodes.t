#!/usr/bin/env python3
# Two agentd nodes on one PostgreSQL (a PostgreSQL the test starts itself, tests/integ/pg.py): one
# write lease, fenced in every write transaction.
#   - node A takes the lease; node B, started on the same database, follows it (it serves at once,
#     forwarding to A; here A's --node-url is not one B can reach, so B answers 503
#     owner_unavailable), and GET /v1/nodes on A lists both, A as the owner, and says the lease;
#   - A is paused (SIGSTOP) while 8 writers append through it: once A's lease has expired, B takes
#     over (a higher epoch) and serves every stream, with everything A acknowledged;
#   - A resumed (SIGCONT) cannot store a single append: it learns it lost the lease and exits with
#     status 75 (a restart makes it a follower); its writes in the meantime are answered 503
#     node_fenced or end with the connection, and no stream ever holds two histories (each is a
#     contiguous prefix of A's appends holding every one A acknowledged, then B's append: nothing of
#     A's after it).
#   - what GET /v1/nodes says of each node, through any node: its load (a jsonl agent running on A
#     is counted in A's row as B lists it), its state (A paused: unreachable; A exited after losing
#     the lease, without a clean stop: still unreachable; B stopped cleanly: stopped).
import json
import os
import signal
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, ROOT, Server, run_test, wait_for  # noqa: E402
from cluster import ONE_HOLDER  # noqa: E402
from pg import Locker, Postgres  # noqa: E402

WRITERS = 8
LEASE_MS = 1000
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")


def node(pg, name):
    # One lease holder and its followers: A, started first, holds every shard.
    return Server(args=["--store", pg.url, "--node-url", f"http://{name}.test", "--lease-ms", str(LEASE_MS),
                        *ONE_HOLDER])


def nodes_of(srv):
    r = srv.request("GET", "/v1/nodes")
    return {n["node"]: n for n in r.json()["nodes"]} if r.status == 200 else {}


class Writer(threading.Thread):
    def __init__(self, srv, w, path, stop):
        super().__init__(daemon=True)
        self.srv, self.w, self.path, self.stop_event = srv, w, path, stop
        self.acked = 0
        self.sent = 0
        self.refusals = {}  # error code -> count, answers after A was resumed

    def run(self):
        conn = self.srv.connection(timeout=60)
        try:
            while not self.stop_event.is_set():
                n = self.acked
                self.sent = n + 1
                r = self.srv.append(self.path, f"a{self.w}:{n};".encode(), "text/plain", conn=conn)
                if 200 <= r.status < 300:
                    self.acked = n + 1
                    continue
                body = r.error_body()
                code = f"{r.status} {body['code'] if body else r.body[:60]!r}"
                self.refusals[code] = self.refusals.get(code, 0) + 1
                time.sleep(0.02)
        except Exception as e:
            self.refusals[repr(e)] = 1
        finally:
            conn.close()


def start_sleeper(srv, work):
    """A jsonl session on srv whose run sleeps (its agent process stays live). Its run id or None."""
    body = {"agent": "jsonl", "command": ["python3", AGENT, "--state", os.path.join(work, "agent-state")]}
    r = srv.request("POST", "/v1/sessions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    sid = r.json()["id"] if r.status == 201 else None
    if sid is None:
        return None
    r = srv.request("POST", f"/v1/sessions/{sid}/messages", json.dumps({"text": "sleep 30"}).encode(),
                    {"Content-Type": "application/json"})
    return r.json().get("run") if r.status == 202 else None


def main(tap):
    if REF:
        tap.skip("PostgreSQL nodes", "the reference server has no --store")
        return
    pg = Postgres()
    pg.start()
    work = tempfile.mkdtemp(prefix="pg_nodes.")
    a, b, c = node(pg, "a"), node(pg, "b"), node(pg, "c")
    try:
        a.start()
        na = nodes_of(a)
        tap.ok(na.get("http://a.test", {}).get("owner") and na["http://a.test"].get("self"),
               "node A holds the write lease", repr(na))
        paths = [f"/v1/stream/nodes/{w}" for w in range(WRITERS)]
        tap.ok(all(a.create(p, "text/plain").status == 201 for p in paths), f"create {WRITERS} streams on A")
        stop = threading.Event()
        writers = [Writer(a, w, paths[w], stop) for w in range(WRITERS)]
        for wr in writers:
            wr.start()
        tap.ok(wait_for(lambda: all(wr.acked >= 5 for wr in writers), 30), "writers are acknowledged by A")

        started = threading.Thread(target=b.start, kwargs={"timeout": 60}, daemon=True)
        started.start()
        listed = wait_for(lambda: "http://b.test" in nodes_of(a), 15)
        tap.ok(listed, "node B waits as a standby and A lists it")
        nb = nodes_of(a).get("http://b.test", {})
        started.join(60)
        r = b.append(paths[0], b"x;", "text/plain") if b.url else None
        tap.ok(not nb.get("owner") and r is not None and (r.status, (r.error_body() or {}).get("code")) ==
               (503, "owner_unavailable"), "B holds no lease and serves nothing itself meanwhile",
               f"{nb!r} {r and r.status}")
        time.sleep(2)
        # A lists from its heartbeat's read (about once a second), so what it says of B is up to a
        # second older than B's last beat: the least of what it says over 1.5 s is one of B's beats.
        ages = []
        for _ in range(15):
            ages.append(nodes_of(a).get("http://b.test", {}).get("seen_ms_ago", 1e9))
            time.sleep(0.1)
        tap.ok(min(ages) < 1300, "the waiting standby is heard of about once a second", repr(ages))
        lease = a.request("GET", "/v1/nodes").json().get("lease_ms")
        tap.is_(lease, LEASE_MS, "GET /v1/nodes says the lease (--lease-ms): a node not heard of for longer is gone")
        epoch_a = nodes_of(a)["http://a.test"].get("epoch")

        # Every node's load, through any node: the follower B lists what A's heartbeat recorded.
        run = start_sleeper(a, work)
        t0 = time.monotonic()
        seen = wait_for(lambda: (nodes_of(b).get("http://a.test", {}).get("agents") or 0) >= 1, 10)
        nb = nodes_of(b)
        tap.ok(run and seen, f"a live agent on A is counted in A's row as the follower B lists it "
               f"({time.monotonic() - t0:.1f} s after its run started)", repr(nb))
        tap.ok(all(n.get("state") == "live" for n in nb.values()) and nb.get("http://b.test", {}).get("agents") == 0
               and isinstance(nb.get("http://a.test", {}).get("runtimes"), int),
               "both nodes are live; the follower runs no agent; runtimes are counted", repr(nb))

        a.proc.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        owner = wait_for(lambda: nodes_of(b).get("http://b.test", {}).get("owner")
                         and b.request("GET", paths[0]).status == 200, 60)
        took = time.monotonic() - paused_at
        tap.ok(owner, f"B takes over once A's lease has expired ({took:.1f} s after A was paused)")
        tap.ok(took < LEASE_MS / 1000 + 5, "within the lease and a few seconds")
        acked_by_a = [wr.acked for wr in writers]
        nb = nodes_of(b).get("http://b.test", {})
        tap.ok(nb.get("owner") and nb.get("epoch", 0) > (epoch_a or 0),
               "B holds the lease with a higher epoch", f"{nb!r} vs A's epoch {epoch_a}")
        # Three of A's beats (1 s each at this lease) missed: B says it, not the client.
        na = wait_for(lambda: nodes_of(b).get("http://a.test", {}).get("state") == "unreachable", 5)
        tap.ok(na, f"B lists the paused A as unreachable ({time.monotonic() - paused_at:.1f} s after the pause)",
               repr(nodes_of(b)))

        # B serves every stream with what A acknowledged, and takes appends.
        bad = []
        for wr in writers:
            data, r = b.read_bytes(wr.path)
            have = data.decode().split(";")[:-1]
            want_prefix = [f"a{wr.w}:{n}" for n in range(len(have))]
            if have != want_prefix or len(have) < acked_by_a[wr.w]:
                bad.append(f"{wr.path}: {len(have)} messages, {acked_by_a[wr.w]} acknowledged by A")
            elif not 200 <= b.append(wr.path, b"b;", "text/plain").status < 300:
                bad.append(f"{wr.path}: B refused an append")
        tap.ok(not bad, "B reads everything A acknowledged, and appends after it", "\n".join(bad))

        a.proc.send_signal(signal.SIGCONT)
        tap.ok(wait_for(lambda: all(wr.refusals for wr in writers), 15),
               "A, resumed, refuses its writers' appends", repr([wr.refusals for wr in writers]))
        stop.set()
        for wr in writers:
            wr.join(15)
        codes = set().union(*(wr.refusals for wr in writers))
        tap.ok(codes and all(c == "503 'node_fenced'" or not c[:3].isdigit() for c in codes),
               "A's refusals are 503 node_fenced, or its connection ends", repr(codes))
        # Answers A sent before the pause may reach the writers after acked_by_a was taken: the
        # final counts are what A acknowledged, all of which must precede B's append.
        after = [wr.acked for wr in writers]
        try:
            a.proc.wait(10)
        except Exception:
            pass
        tap.is_(a.proc.returncode, 75, "A, having lost the lease, exits with status 75")
        # Whoever learns first says it: the heartbeat names the new holder; a batch fenced before
        # the heartbeat read the lease row knows only that another node took it (serve__lost).
        tail = a.stderr_tail(200)
        tap.ok("lost the write lease to http://b.test at epoch" in tail
               or "lost the write lease to another node" in tail,
               "and says that it lost the lease (to b.test, when its heartbeat saw it first)", a.stderr_tail(5))

        bad = []
        for wr in writers:
            data, r = b.read_bytes(wr.path)
            have = data.decode().split(";")[:-1]
            k = len(have) - 1
            if have[:k] != [f"a{wr.w}:{n}" for n in range(k)] or have[k:] != ["b"] or k < after[wr.w]:
                bad.append(f"{wr.path}: {have[-5:]} ({k} of A's, {after[wr.w]} acknowledged)")
        tap.ok(not bad, "every stream holds one history: A's acknowledged prefix, then B's append",
               "\n".join(bad))
        # C follows B; A exited without a clean stop (it lost the lease), B then stops cleanly.
        # A's last beat was as it resumed, just before it exited: unreachable three beats later.
        c.start(timeout=60)
        nc = wait_for(lambda: (lambda n: n.get("http://a.test", {}).get("state") == "unreachable" and n)(nodes_of(c)), 5)
        tap.ok(nc and nc.get("http://b.test", {}).get("owner") and nc.get("http://c.test", {}).get("state") == "live",
               "a new follower C lists A unreachable (it exited without a clean stop), B the owner", repr(nodes_of(c)))
        tap.check_clean_exit(b, "B stops cleanly")
        nc = wait_for(lambda: (lambda n: n.get("http://b.test", {}).get("state") == "stopped"
                               and n.get("http://c.test", {}).get("owner") and n)(nodes_of(c)), 10)
        tap.ok(nc and nc["http://b.test"].get("agents") == 0 and nc.get("http://c.test", {}).get("owner"),
               "C takes over and lists B as stopped (its clean stop recorded it), with no load", repr(nodes_of(c)))
        # GET /v1/nodes runs no query on the loop: it answers from the heartbeat's read of the
        # nodes (about once a second), also while the tables are locked (a slow or stuck database).
        # Once that read is older than a node may go unheard of, it says the store is unavailable
        # rather than judge the nodes from it; and answers again once the heartbeat reads.
        lock = Locker(pg, ("agentd_records", "agentd_nodes"))
        try:
            t0 = time.monotonic()
            r = c.request("GET", "/v1/nodes", timeout=1)
            n = {x["node"]: x for x in r.json()["nodes"]} if r.status == 200 else {}
            tap.ok(n.get("http://b.test", {}).get("state") == "stopped" and n.get("http://c.test", {}).get("owner"),
                   f"with agentd_records and agentd_nodes locked, C lists the nodes from its heartbeat's read "
                   f"({time.monotonic() - t0:.2f} s)", f"{r.status} {r.body[:300]!r}")
            slow, stale = [], None
            while stale is None and time.monotonic() - t0 < 6:
                t1 = time.monotonic()
                r = c.request("GET", "/v1/nodes", timeout=1)
                if time.monotonic() - t1 > 0.5:
                    slow.append(round(time.monotonic() - t1, 2))
                if r.status != 200:
                    stale = (r.status, (r.error_body() or {}).get("code"), round(time.monotonic() - t0, 1))
                time.sleep(0.2)
            tap.ok(stale and stale[:2] == (503, "store_unavailable") and stale[2] > 2 and not slow,
                   "a read older than three beats is not judged from: 503 store_unavailable, answered at once",
                   f"{stale} slow answers: {slow}")
        finally:
            lock.release()
        nc = wait_for(lambda: nodes_of(c).get("http://c.test", {}).get("owner"), 5)
        tap.ok(nc, "the lock released, C lists the nodes again")
        tap.check_clean_exit(c, "C stops cleanly")
        tap.ok(not a.sanitizer_report(), "A's exit leaves no sanitizer report", a.sanitizer_report())
    finally:
        if tap.failed:
            tap.diag(a.stderr_tail())
            tap.diag(b.stderr_tail())
            tap.diag(c.stderr_tail())
            tap.diag(pg.log_tail())
        for srv in (a, b, c):
            if srv.proc and srv.proc.poll() is None:
                srv.proc.send_signal(signal.SIGCONT)
        pg.cleanup()


run_test(main)
