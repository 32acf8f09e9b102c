#!/usr/bin/env python3
# The dashboard's view of the nodes, in Chromium (tests/browser/page_driver.mjs: playwright-core, as
# the browser suite drives it), against the real binary:
#   - one SQLite node, a session's page: the top bar's badge names the node the page talks to and
#     nothing more; Enter on it opens the list (focus moves in): that one node, the owner; the list
#     is polled while the tab is visible, not while it is hidden, at once when it is visible again,
#     and not at all once closed on a single node; Esc closes it and gives the focus back (and does
#     not leave the session page, as Esc otherwise does);
#   - three nodes on one PostgreSQL (tests/integ/cluster.py), the page opened through a follower:
#     the badge names that follower among three nodes; the list has the three, exactly one owner (the
#     first node), its lease's time left, and says the page talks to the follower, which forwards to
#     the owner; a jsonl agent running on the owner is shown in the owner's row (its load, as the
#     owner's heartbeat recorded it: the follower has none of its own); the owner killed (kill -9),
#     the list shows the new owner within a few seconds and the killed node as unreachable (the
#     server's judgement); the third node stopped cleanly is shown stopped; a node whose name and
#     URL are HTML and script (written into agentd_nodes) renders as inert text.
# Skipped when chromium or tests/browser's node_modules are missing, and (the PostgreSQL half) when
# PostgreSQL's binaries are.
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import REF, ROOT, Server, read_line_with_timeout, run_test  # noqa: E402
from cluster import ONE_HOLDER, test_cluster  # noqa: E402
from pg import bin_dir  # noqa: E402

DRIVER = os.path.join(ROOT, "tests", "browser", "page_driver.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BADGE = '[data-testid="node-badge"]'
NODES = "/v1/nodes"
# Sanitizer builds start and fail over slower: the bound gets a margin there (as pg_cluster.t's).
SLOW = "asan" in os.environ.get("AGENTD_BIN", "")
NEW_OWNER_WITHIN = 5 + (3 if SLOW else 0)
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
HOSTILE_NODE = '<img src=x onerror="window.__pwned=1">evil'
HOSTILE_URL = "javascript:window.__pwned=2//<script>window.__pwned=3</script>"

# What the page shows: the badge, the list's rows (their data-* and text), where the focus is.
STATE = """() => {
  const b = document.querySelector('[data-testid="node-badge"]');
  const p = document.querySelector('[data-testid="nodes-panel"]');
  return {
    badge: b ? b.textContent : null,
    badgeClass: b ? b.className : null,
    panel: !!p,
    talks: p?.querySelector('[data-testid="nodes-self"]')?.textContent ?? null,
    rows: p ? [...p.querySelectorAll('[data-testid="node-row"]')].map((r) => ({
      node: r.dataset.node, role: r.dataset.role, state: r.dataset.state, self: r.dataset.self === "1",
      text: r.textContent, load: r.querySelector('[data-testid="node-load"]')?.textContent ?? null })) : [],
    active: document.activeElement?.dataset?.testid ?? null,
    elements: p ? p.querySelectorAll("img, script, a").length : 0,
    pwned: window.__pwned ?? null,
    path: location.pathname,
  };
}"""
# The tab hidden, then visible again: what document.hidden and visibilitychange say.
HIDE = """() => {
  Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  delete document.hidden;
  delete document.visibilityState;
  document.dispatchEvent(new Event("visibilitychange"));
}"""


class Page:
    """tests/browser/page_driver.mjs: one page, one order at a time."""

    def __init__(self):
        self.proc = subprocess.Popen(["node", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=os.path.dirname(DRIVER))

    def do(self, timeout=30.0, **order):
        self.proc.stdin.write((json.dumps(order) + "\n").encode())
        self.proc.stdin.flush()
        line = read_line_with_timeout(self.proc.stdout, timeout)
        if not line:
            raise RuntimeError(f"the page driver did not answer {order!r}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(answer["error"])
        return answer.get("value")

    def state(self):
        return self.do(op="eval", js=STATE)

    def wait(self, pred, timeout):
        """Polls the page's state until pred holds; the last state either way."""
        end = time.monotonic() + timeout
        while True:
            st = self.state()
            if pred(st) or time.monotonic() > end:
                return st
            time.sleep(0.1)

    def polls(self):
        return self.do(op="count", path=NODES)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(20)


def host(url):
    return url.split("//", 1)[1]


def single(tap, page):
    srv = Server()
    srv.start()
    sid = srv.request("POST", "/v1/sessions", {"agent": "none"}).json()["id"]
    page.do(op="open", url=f"{srv.url}/s/{sid}")
    st = page.wait(lambda s: s["badge"], 10)
    tap.ok(st["badge"] and host(srv.url) in st["badge"] and "nodes" not in st["badge"] and not st["panel"],
           "one SQLite node: the top bar names the node the page talks to, and nothing more", st)
    page.do(op="press", sel=BADGE, key="Enter")
    st = page.wait(lambda s: s["rows"] and s["active"] == "nodes-panel", 10)
    rows = st["rows"]
    tap.ok(len(rows) == 1 and rows[0]["role"] == "owner" and rows[0]["self"] and rows[0]["state"] == "ok"
           and host(srv.url) in rows[0]["text"] and host(srv.url) in (st["talks"] or ""),
           "Enter on the badge opens the list: this one node, the owner, the one the page talks to", st)
    tap.is_(st["active"], "nodes-panel", "the focus moves into the list")
    page.do(op="shot", name="nodes-single")

    n0 = page.polls()
    time.sleep(5.5)
    n1 = page.polls()
    tap.ok(n1 - n0 >= 2, f"the open list is polled while the tab is visible ({n1 - n0} in 5.5 s)")
    page.do(op="eval", js=HIDE)
    time.sleep(0.5)  # one poll may have been in flight
    n2 = page.polls()
    time.sleep(4.5)
    tap.is_(page.polls() - n2, 0, "hidden, the tab polls no more")
    page.do(op="eval", js=SHOW)
    time.sleep(0.5)
    tap.ok(page.polls() > n2, "visible again, it polls at once")

    page.do(op="press", sel="", key="Escape")
    st = page.wait(lambda s: not s["panel"], 5)
    tap.ok(not st["panel"] and st["active"] == "node-badge" and st["path"] == f"/s/{sid}",
           "Esc closes the list and gives the focus back to the badge; the session page stays", st)
    time.sleep(2.5)  # the open list's last poll
    n3 = page.polls()
    time.sleep(4)
    tap.is_(page.polls() - n3, 0, "closed, on a single node, nothing is polled")
    tap.is_(page.do(op="errors"), [], "no console or page error")
    tap.check_clean_exit(srv)


def insert_hostile(c):
    """A row of agentd_nodes whose name and URL are HTML and script, last heard of a minute ago."""
    now = int(time.time() * 1000)
    sql = (f"INSERT INTO agentd_nodes(node, url, started_ms, seen_ms, token_hash) VALUES "
           f"($h${HOSTILE_NODE}$h$, $h${HOSTILE_URL}$h$, {now - 60000}, {now - 60000}, 'none');")
    subprocess.run([os.path.join(bin_dir(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", c.pg_url, "-c", sql],
                   check=True, capture_output=True, timeout=20)


def start_sleeper(srv):
    """A jsonl session on srv whose run sleeps: one live agent. Its run id or None."""
    state = os.path.join(tempfile.mkdtemp(prefix="ui_nodes."), "agent-state")
    r = srv.request("POST", "/v1/sessions", {"agent": "jsonl", "command": ["python3", AGENT, "--state", state]})
    sid = r.json()["id"] if r.status == 201 else None
    r = srv.request("POST", f"/v1/sessions/{sid}/messages", {"text": "sleep 20"}) if sid else None
    return r.json().get("run") if r is not None and r.status == 202 else None


def agents_of(row):
    m = re.match(r"(\d+) live agents?", row["load"] or "") if row else None
    return int(m.group(1)) if m else None


def cluster(tap, page):
    # The owner's and the followers' rows: the first node holds every shard.
    with test_cluster(tap, "three nodes on one PostgreSQL", args=ONE_HOLDER) as c:
        if c is None:
            return
        c.start()
        owner, via = c.nodes[0], c.nodes[1]
        tap.ok(c.owner() is owner, "the first node started holds the lease")
        page.do(op="open", url=via.url + "/")
        st = page.wait(lambda s: s["badge"] and "3 nodes" in s["badge"], 10)
        tap.ok(host(via.url) in (st["badge"] or "") and "follower · 3 nodes" in (st["badge"] or ""),
               "through a follower: the badge names that node, a follower among three", st)
        page.do(op="press", sel=BADGE, key="Enter")
        st = page.wait(lambda s: len(s["rows"]) == 3, 10)
        rows = st["rows"]
        owners = [r for r in rows if r["role"] == "owner"]
        tap.ok(sorted(r["node"] for r in rows) == sorted(n.url for n in c.nodes) and len(owners) == 1
               and owners[0]["node"] == owner.url and all(r["state"] == "ok" for r in rows),
               "the list has the three nodes, exactly one owner (the first node), all reachable", rows)
        tap.ok([r["node"] for r in rows if r["self"]] == [via.url], "the page's own node is the follower", rows)
        talks = st["talks"] or ""
        tap.ok(talks.index(host(via.url)) < talks.index(host(owner.url)) if host(owner.url) in talks and
               host(via.url) in talks else False,
               "it says the page talks to the follower, which forwards to the owner", talks)
        r = owner.request("GET", NODES)
        epoch = next((n.get("epoch") for n in r.json().get("nodes", []) if n.get("node") == owner.url), None) \
            if r.status == 200 else None
        tap.ok(epoch is not None and owners and "left" in owners[0]["text"]
               and re.search(rf"epoch {epoch}\b", owners[0]["text"].replace(owners[0]["load"] or "", " ")) is not None,
               f"the owner's row gives its lease's time left and the epoch GET /v1/nodes says ({epoch})", owners)
        run = start_sleeper(owner)
        st = page.wait(lambda s: (agents_of(next((r for r in s["rows"] if r["node"] == owner.url), None)) or 0) >= 1,
                       10)
        load = {r["node"]: agents_of(r) for r in st["rows"]}
        tap.ok(run and (load.get(owner.url) or 0) >= 1 and load.get(via.url) == 0,
               "through the follower, the owner's row shows its live agent (the follower: none)", st["rows"])
        page.do(op="shot", name="nodes-cluster")

        t0 = time.monotonic()
        owner.kill9()

        def new_owner(s):
            o = [r for r in s["rows"] if r["role"] == "owner"]
            return len(o) == 1 and o[0]["node"] != owner.url and o[0]["state"] == "ok"

        st = page.wait(new_owner, 15)
        took = time.monotonic() - t0
        tap.ok(new_owner(st) and took < NEW_OWNER_WITHIN, f"the owner killed (-9), the list shows the new owner after {took:.1f} s "
               "(lease 1 s, polled every 2 s)", st)
        # unreachable as the server judges it: three of its beats (1 s each at this lease) missed,
        # then the next poll (2 s)
        st = page.wait(lambda s: [r["state"] for r in s["rows"] if r["node"] == owner.url] == ["unreachable"], 5)
        old = [r for r in st["rows"] if r["node"] == owner.url]
        tap.ok(old and old[0]["role"] == "follower" and old[0]["state"] == "unreachable"
               and "last seen" in old[0]["text"], f"the killed node is shown unreachable "
               f"{time.monotonic() - t0:.1f} s after the kill", old)
        tap.ok("conn-reconnecting" in (st["badgeClass"] or ""), "the badge warns: a node is unreachable", st)
        page.do(op="shot", name="nodes-failover")

        third = c.nodes[2]
        tap.is_(third.stop(), 0, "the third node stops cleanly (SIGTERM)")
        st = page.wait(lambda s: [r["state"] for r in s["rows"] if r["node"] == third.url] == ["stopped"], 10)
        row = [r for r in st["rows"] if r["node"] == third.url]
        tap.ok(row and row[0]["state"] == "stopped" and "stopped" in row[0]["text"] and "unreachable" not in row[0]["text"],
               "it is shown stopped, not unreachable", row)

        insert_hostile(c)
        st = page.wait(lambda s: len(s["rows"]) == 4, 10)
        bad = [r for r in st["rows"] if r["node"] == HOSTILE_NODE]
        tap.ok(bad and "<script>window.__pwned=3</script>" in bad[0]["text"] and st["elements"] == 0
               and st["pwned"] is None and bad[0]["state"] == "unreachable",
               "a node named with HTML and script is listed as inert text", st)
        page.do(op="shot", name="nodes-hostile")
        tap.is_(page.do(op="errors"), [], "no console or page error")


def main(tap):
    why = None
    if REF:
        why = "the reference server has no dashboard"
    elif not os.access(CHROMIUM, os.X_OK):
        why = f"no chromium at {CHROMIUM}"
    elif not os.path.isdir(os.path.join(ROOT, "tests", "browser", "node_modules", "playwright-core")):
        why = "tests/browser/node_modules is missing (scripts/deps.sh test)"
    if why:
        tap.skip("the dashboard's nodes view", why)
        return
    probe = Server()
    probe.start()
    built_without = b"built without its dashboard" in probe.request("GET", "/").body
    probe.stop()
    if built_without:
        tap.skip("the dashboard's nodes view", "this binary was built without its dashboard (make UI=0)")
        return
    page = Page()
    try:
        single(tap, page)
        cluster(tap, page)
    finally:
        page.close()


run_test(main)
