#!/usr/bin/env python3
"""Several agentd nodes on one PostgreSQL, and a round-robin proxy in front of them, for tests and
benches (README "Three nodes on one PostgreSQL").

Each node is `agentd serve --store PG --listen 127.0.0.1:PORT --node-url http://127.0.0.1:PORT
--lease-ms N` with a data directory of its own (tests/integ/agentd_test.py's Server); with ONE_HOLDER
in args the first one started takes the write lease (every shard) and the others forward to it. The proxy (tests/integ/rrproxy.mjs)
sends each request to the next node in turn.

    c = Cluster(pg, nodes=3, lease_ms=1000); c.start()   # c.nodes[i]: Server; c.proxy_url
    c.owner()                                            # the node holding the lease, from /v1/nodes
    c.stop()

As a command it runs another command against a fresh cluster on a fresh PostgreSQL (or $PG_URL),
the proxy's URL in $AGENTD_URL, the nodes' URLs (space separated) in $CLUSTER_NODES:
    tests/integ/cluster.py run [--nodes N] [--lease-ms MS] -- COMMAND...
On failure it prints the tail of each node's stderr.
"""
import contextlib
import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, ROOT, Server, drain, read_line_with_timeout  # noqa: E402
from pg import Postgres, bin_dir, free_port  # noqa: E402

PROXY = os.path.join(ROOT, "tests", "integ", "rrproxy.mjs")
# For a test about one holder and its followers: the first node started holds every shard (`all`),
# whatever the default policy (balance would spread the shards over the nodes).
ONE_HOLDER = ("--shard-policy", "all")


def pg_node(pg, lease_ms, port, node_port=None, args=(), **kw):
    """One node on pg (not started) listening on 127.0.0.1:port; its --node-url names node_port
    (default: its own port; a test may name an address it controls instead). kw go to Server."""
    return Server(args=["--store", pg.url, "--lease-ms", str(lease_ms), "--node-url",
                        f"http://127.0.0.1:{node_port or port}", *args], listen=f"127.0.0.1:{port}", **kw)


def stop_nodes(tap, pg, nodes):
    """A test's teardown: each node's stderr when the test failed, every node still running resumed
    (the test may have paused it) and stopped, then the PostgreSQL removed."""
    if tap.failed:
        for s in nodes:
            tap.diag(s.stderr_tail())
    for s in nodes:
        if s.proc and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGCONT)
            s.stop()
    pg.cleanup()


def shard_of(path, shards=64):
    """store_shard_of for a plain path (the key is the whole path): FNV-1a 64, mod shards."""
    h = 0xcbf29ce484222325
    for b in path.encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def psql(pg, sql):
    """(exit status, output) of one psql command, rows as a|b lines."""
    r = subprocess.run([os.path.join(pg.bin, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", pg.url, "-c", sql],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.returncode, r.stdout.decode(errors="replace").strip()


class Cluster:
    def __init__(self, pg_url, nodes=3, lease_ms=1000, token=None, args=()):
        """Nodes on 127.0.0.1 ports chosen now; every node gets --public-url (the proxy's URL)."""
        self.pg_url = pg_url
        self.nodes = []
        # The proxy's port is chosen first: it is the URL clients use, so the one the nodes must name
        # in the URLs they hand out (webhook callbacks, JWKS).
        self.proxy_port = free_port()
        public = ["--public-url", f"http://127.0.0.1:{self.proxy_port}"]
        for _ in range(nodes):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            self.nodes.append(Server(args=["--store", pg_url, "--node-url", url, "--lease-ms", str(lease_ms),
                                           *public, *args], token=token, listen=f"127.0.0.1:{port}"))
        self.proxy = None
        self.proxy_url = None

    def start(self, timeout=30.0):
        """Starts the nodes (the first one first, so it holds the lease), then the proxy."""
        self.nodes[0].start(timeout)
        rest = [threading.Thread(target=n.start, args=(timeout,), daemon=True) for n in self.nodes[1:]]
        for t in rest:
            t.start()
        for t in rest:
            t.join(timeout + 5)
        down = [n.listen for n in self.nodes if not n.url]
        if down:
            raise RuntimeError(f"nodes did not start: {down}")
        self.start_proxy([n.url for n in self.nodes])

    def start_proxy(self, upstreams, timeout=10.0):
        self.proxy = subprocess.Popen(["node", PROXY, "--listen", f"127.0.0.1:{self.proxy_port}", *upstreams], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, start_new_session=True)
        line = read_line_with_timeout(self.proxy.stdout, timeout)
        if not line or not line.startswith(b"http://"):
            raise RuntimeError(f"rrproxy printed no URL: {line!r}")
        threading.Thread(target=drain, args=(self.proxy.stdout,), daemon=True).start()
        self.proxy_url = line.decode().strip()

    def node_list(self, via=None):
        """GET /v1/nodes on one node (the first live one by default): {node url: entry}."""
        for srv in [via] if via else self.nodes:
            if not srv.alive():
                continue
            try:
                r = srv.request("GET", "/v1/nodes", timeout=3)
            except OSError:
                continue
            if r.status == 200:
                return {n["node"]: n for n in json.loads(r.body)["nodes"]}
        return {}

    def owner(self, via=None):
        """The node (Server) that /v1/nodes names the owner, or None."""
        listed = self.node_list(via)
        for srv in self.nodes:
            if listed.get(srv.url, {}).get("owner") and srv.alive():
                return srv
        return None

    def stderr_tails(self):
        return "\n".join(f"== node {n.url or n.listen}\n{n.stderr_tail()}" for n in self.nodes)

    def stop(self):
        if self.proxy and self.proxy.poll() is None:
            self.proxy.terminate()
            self.proxy.wait(5)
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
            n.stop()


def no_pg_reason():
    """Why a PostgreSQL test cannot run here (the reference server, no PostgreSQL binaries), or None."""
    if REF:
        return "the reference server has no --store"
    try:
        bin_dir()
    except RuntimeError as e:
        return str(e)
    return None


@contextlib.contextmanager
def test_cluster(tap, what, nodes=3, lease_ms=1000, **kw):
    """For a TAP test: a Cluster (not started; kw: Cluster's token, args) on a fresh PostgreSQL (c.pg), or None with `what`
    skipped (the reference server, or no PostgreSQL binaries). On the way out the nodes' and
    PostgreSQL's logs go to the output if a test failed, and everything is stopped."""
    why = no_pg_reason()
    if why:
        tap.skip(what, why)
        yield None
        return
    pg = Postgres()
    pg.start()
    c = Cluster(pg.url, nodes=nodes, lease_ms=lease_ms, **kw)
    c.pg = pg
    try:
        yield c
    finally:
        if tap.failed:
            tap.diag(c.stderr_tails())
            tap.diag(pg.log_tail())
        c.stop()
        pg.cleanup()


@contextlib.contextmanager
def balance_nodes(tap, what, nodes=3, lease_ms=1000):
    """For a TAP test: `nodes` nodes with --shard-policy balance on a fresh PostgreSQL (pg_main),
    started together (each takes its share in a beat), as (pg, [Server]); (None, None) with `what`
    skipped (the reference server, or no PostgreSQL binaries) or when one did not start. The list
    is pg_main's: a node the test appends to it is stopped on the way out too."""
    with pg_main(tap, what) as (pg, ns):
        if not pg:
            yield None, None
            return
        ns += [pg_node(pg, lease_ms, free_port(), args=["--shard-policy", "balance"]) for _ in range(nodes)]
        threads = [threading.Thread(target=n.start, args=(30,), daemon=True) for n in ns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        started = tap.ok(all(n.url for n in ns), f"{nodes} nodes with --shard-policy balance start")
        yield (pg, ns) if started else (None, None)


def resume_status(node, timeout=15):
    """Resumes a paused node (SIGCONT) and waits for it to exit: its exit status, or None."""
    node.proc.send_signal(signal.SIGCONT)
    try:
        return node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def held(pg, url):
    """The shards agentd_shards says node url holds."""
    rc, out = psql(pg, f"SELECT shard FROM agentd_shards WHERE node = '{url}' ORDER BY shard")
    return [int(x) for x in out.split()] if rc == 0 else []


def main(argv):
    usage = "usage: cluster.py run [--nodes N] [--lease-ms MS] -- COMMAND..."
    if not argv or argv[0] != "run" or "--" not in argv:
        print(usage, file=sys.stderr)
        return 2
    opts, cmd = argv[1:argv.index("--")], argv[argv.index("--") + 1:]
    nodes, lease_ms = 3, 1000
    while opts:
        if opts[0] == "--nodes" and len(opts) > 1:
            nodes = int(opts[1])
        elif opts[0] == "--lease-ms" and len(opts) > 1:
            lease_ms = int(opts[1])
        else:
            print(usage, file=sys.stderr)
            return 2
        opts = opts[2:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg = None
    url = os.environ.get("PG_URL")
    if not url:
        pg = Postgres()
        pg.start()
        url = pg.url
    # AGENTD_ARGS: more options for every node's serve (e.g. --shard-policy balance), as run.sh reads it
    c = Cluster(url, nodes=nodes, lease_ms=lease_ms, args=shlex.split(os.environ.get("AGENTD_ARGS", "")))
    rc = 1
    try:
        c.start()
        print(f"cluster.py: {nodes} node(s) on PostgreSQL behind {c.proxy_url}: "
              f"{' '.join(n.url for n in c.nodes)}", flush=True)
        env = dict(os.environ, AGENTD_URL=c.proxy_url, CLUSTER_NODES=" ".join(n.url for n in c.nodes))
        rc = subprocess.run(cmd, env=env).returncode
        dead = [n.url for n in c.nodes if not n.alive()]
        if dead:
            print(f"cluster.py: nodes died during the command: {dead}", file=sys.stderr)
            rc = rc or 1
        return rc
    except KeyboardInterrupt:
        return 130
    finally:
        if rc != 0:
            print(c.stderr_tails(), file=sys.stderr)
        c.stop()
        Server.cleanup_all()
        if pg:
            pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class SSEFollower(threading.Thread):
    """Follows a JSON stream live (SSE) through one node, reconnecting from the last offset when the
    connection ends (as the protocol intends), until stop. events: the items in order."""

    def __init__(self, srv, path):
        super().__init__(daemon=True)
        self.srv, self.path = srv, path
        self.offset = "-1"
        self.events = []
        self.connects = 0
        self.ends = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.follow()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            self.ends += 1
            time.sleep(0.1)

    def follow(self):
        conn = self.srv.connection(timeout=20)
        try:
            conn.request("GET", f"{self.path}?offset={self.offset}&live=sse")
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                return
            self.connects += 1
            event, data = None, []
            while not self.stop_event.is_set():
                line = resp.readline()  # a timeout raises: run() reconnects from the offset
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if line.startswith(b"event:"):
                    event = line[6:].strip()
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif not line and data:
                    doc = json.loads(b"\n".join(data))
                    if event == b"control":
                        self.offset = doc.get("streamNextOffset", self.offset)
                    elif isinstance(doc, list):
                        self.events.extend(doc)
                    event, data = None, []
        finally:
            conn.close()

    def completion(self, run):
        return next((e for e in self.events if e.get("type") == "run_completed" and e.get("run") == run), None)


# ---- what the --shard-policy balance tests share (pg_balance.t, pg_rebalance.t, pg_placement.t,
# pg_balance_start.t): their opening, writers that retry until acknowledged, and the checks of what
# the writers' streams hold.

@contextlib.contextmanager
def pg_main(tap, what):
    """For a TAP test's main: a fresh PostgreSQL, started, and a list for the nodes the test makes
    (pg_node), as (pg, nodes); (None, None) with `what` skipped (the reference server, or no
    PostgreSQL binaries). On the way out: stop_nodes over whatever the list then holds."""
    why = no_pg_reason()
    if why:
        tap.skip(what, why)
        yield None, None
        return
    pg = Postgres()
    pg.start()
    nodes = []
    try:
        yield pg, nodes
    finally:
        stop_nodes(tap, pg, nodes)


class Writer(threading.Thread):
    """Writer w appends body(w, n) (default "w:n;") to each of its paths in turn, an idempotent
    producer per path, each request to the next of `nodes` (a list the test may grow meanwhile). A
    failed append (connection error, 503) is sent again with the same sequence number, to the next
    node, until acknowledged. Counted: acked and sent per path, served_by (Agentd-Node of each
    acknowledgement), retried (503s; the first few in retried_why; to_self: those of a node that
    forwarded the request to itself), other (answers neither 2xx nor 503). pause: seconds between
    acknowledged appends."""

    def __init__(self, nodes, w, paths, stop, body=None, ctype="text/plain", pause=0.0):
        super().__init__(daemon=True)
        self.nodes, self.w, self.paths, self.stop_event = nodes, w, paths, stop
        self.body = body or (lambda w, n: f"{w}:{n};".encode())
        self.ctype, self.pause = ctype, pause
        self.acked = {p: 0 for p in paths}
        self.sent = {p: 0 for p in paths}
        self.served_by = {}
        self.retried = 0
        self.retried_why = []  # (node, body)
        self.to_self = 0  # 503s of a node that forwarded the request to itself (serve__not_owner)
        self.other = []

    def run(self):
        conns, k, i = {}, self.w, 0
        while not self.stop_event.is_set():
            nodes = list(self.nodes)
            srv = nodes[k % len(nodes)]
            k += 1
            p = self.paths[i % len(self.paths)]
            n = self.acked[p]
            self.sent[p] = max(self.sent[p], n + 1)
            headers = {"Content-Type": self.ctype, "Producer-Id": f"w{self.w}", "Producer-Epoch": "0",
                       "Producer-Seq": str(n)}
            try:
                conn = conns.get(srv.port) or srv.connection(timeout=15)
                conns[srv.port] = conn
                conn.request("POST", p, body=self.body(self.w, n), headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException):
                conns.pop(srv.port).close() if srv.port in conns else None
                time.sleep(0.01)
                continue
            if 200 <= resp.status < 300:
                self.acked[p] = n + 1
                by = resp.getheader("Agentd-Node")
                self.served_by[by] = self.served_by.get(by, 0) + 1
                i += 1
                if self.pause:
                    time.sleep(self.pause)
                continue
            if resp.status == 503:
                self.retried += 1
                self.to_self += b"must be its own address" in body
                if len(self.retried_why) < 3:
                    self.retried_why.append((srv.url, body[:300]))
            else:
                self.other.append((p, n, resp.status, body[:80]))
            time.sleep(0.02)
        for c in conns.values():
            c.close()


def parse_writes(data):
    """{writer: [n, ...]} of a stream's bytes (Writer's "w:n;" messages; "probe;" skipped), or None."""
    out = {}
    if data and not data.endswith(b";"):
        return None
    for part in data.split(b";")[:-1]:
        w, _, n = part.partition(b":")
        if part == b"probe":
            continue
        if not w.isdigit() or not n.isdigit():
            return None
        out.setdefault(int(w), []).append(int(n))
    return out


def check_streams(srv, writers):
    """Every stream of the writers ("w:n;" bodies) read through srv: for each writer a contiguous
    prefix 0..m-1 of what it sent, holding everything acknowledged. The list of what is wrong."""
    bad = []
    for p in dict.fromkeys(p for wr in writers for p in wr.paths):
        data, r = srv.read_bytes(p)
        got = parse_writes(data) if r.status == 200 else None
        if got is None:
            bad.append(f"{p}: {r.status}, not whole messages: {data[-80:]!r}")
            continue
        for wr in (wr for wr in writers if p in wr.acked):
            ns = got.get(wr.w, [])
            if ns != list(range(len(ns))):
                bad.append(f"{p}: writer {wr.w}: not a contiguous prefix without repeats: {ns[:8]}...{ns[-8:]}")
            elif not wr.acked[p] <= len(ns) <= wr.sent[p]:
                bad.append(f"{p}: writer {wr.w}: {len(ns)} messages, {wr.acked[p]} acknowledged, {wr.sent[p]} sent")
    return bad


def shards_by_node(srv, urls):
    """{node url: shards} from GET /v1/nodes on srv (the nodes in urls only); {} when it does not answer."""
    try:
        r = srv.request("GET", "/v1/nodes", timeout=3)
        listed = json.loads(r.body)["nodes"] if r.status == 200 else []
    except (OSError, ValueError):
        return {}
    return {n["node"]: n.get("shards") for n in listed if n["node"] in urls}
