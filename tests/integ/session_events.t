#!/usr/bin/env python3
"""History pages (GET /v1/sessions/<id>/events?before=&limit=) on a session of 100,000 events
written in records of many messages: paging back from the tail yields every event exactly once,
newest first; the first page is fast; each event's offset is a Durable Streams offset (a read from
it starts with the event, a fork at it ends before it), and following live from `tail` misses
nothing; forks page through their source; bad input is refused; a share token may read pages."""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test  # noqa: E402

TOTAL = 100_000
BATCHES = [1, 7, 1000, 250, 1, 3000, 12, 500]  # messages per append, cycled: records of all sizes


def api(srv, method, path, body=None, headers=None, auth=True):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    r = srv.request(method, path, json.dumps(body).encode() if body is not None else None, h, auth=auth)
    try:
        return r.status, (json.loads(r.body) if r.body else None)
    except ValueError:
        return r.status, r.body


def fill(srv, sid):
    """Appends TOTAL events {"type":"log","n":i,...} through the stream API in arrays of mixed sizes."""
    path = f"/v1/stream/sessions/{sid}/transcript"
    n, k = 0, 0
    while n < TOTAL:
        size = min(BATCHES[k % len(BATCHES)], TOTAL - n)
        k += 1
        batch = [{"type": "log", "level": "info", "text": f"event {i}, with a comma, {{braces}} and \"quotes\"",
                  "n": i} for i in range(n, n + size)]
        r = srv.append(path, json.dumps(batch).encode(), "application/json")
        if r.status not in (200, 204):
            raise RuntimeError(f"append: {r!r}")
        n += size


def page_all(srv, sid, limit):
    events, before, pages = [], None, 0
    while True:
        q = f"limit={limit}" + (f"&before={before}" if before else "")
        st, doc = api(srv, "GET", f"/v1/sessions/{sid}/events?{q}")
        if st != 200:
            raise RuntimeError(f"page: {st} {doc!r}")
        events += doc["events"]
        pages += 1
        before = doc["next_before"]
        if before is None:
            return events, pages, doc


def ds_read(srv, sid, offset):
    r = srv.request("GET", f"/v1/stream/sessions/{sid}/transcript?offset={offset}")
    return r.status, (json.loads(r.body) if r.status == 200 else r.body), r.header("Stream-Next-Offset")


def strip(ev):
    return {k: v for k, v in ev.items() if k != "offset"}


def paging(tap, srv, sid):
    st, first = api(srv, "GET", f"/v1/sessions/{sid}/events")
    tap.ok(st == 200 and len(first["events"]) == 100 and first["events"][0].get("n") == TOTAL - 1,
           "the first page: the latest 100 events, newest first", (st, str(first)[:300]))
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        r = srv.request("GET", f"/v1/sessions/{sid}/events")
        times.append((time.monotonic() - t0) * 1000)
    best = min(times)
    tap.ok(r.status == 200 and best < 50, f"the first page of 100,000 events returns in {best:.1f} ms (< 50)", times)
    t0 = time.monotonic()
    r = srv.request("GET", f"/v1/sessions/{sid}/events?limit=1000")
    ms = (time.monotonic() - t0) * 1000
    tap.ok(r.status == 200 and ms < 200, f"a page of 1000 takes {ms:.1f} ms", ms)

    events, pages, last = page_all(srv, sid, 1000)
    ns = [e.get("n") for e in events if e.get("type") == "log"]
    tap.is_(len(ns), TOTAL, f"paging back ({pages} pages) yields {TOTAL} events")
    tap.ok(ns == list(range(TOTAL - 1, -1, -1)), "each exactly once, in reverse order")
    tap.ok(events[-1].get("type") == "session" and events[-1].get("action") == "created",
           "the oldest is the session's first event")
    offs = [e["offset"] for e in events]
    tap.ok(all(a > b for a, b in zip(offs, offs[1:])) and offs[-1] == "0" * 16 + "_" + "0" * 16,
           "offsets strictly decrease, down to the first offset")
    tap.ok(last["next_before"] is None and len(last["events"]) >= 1, "the last page says there is no more")
    return events, first


def offsets_are_ds_offsets(tap, srv, sid, events, first):
    rng = random.Random(7)
    picks = rng.sample(range(len(events) - 1), 25) + [0, len(events) - 2]
    good = 0
    for i in picks:
        st, body, _ = ds_read(srv, sid, events[i + 1]["offset"])  # an older event: two to compare
        good += st == 200 and len(body) >= 2 and body[0] == strip(events[i + 1]) and body[1] == strip(events[i])
    tap.is_(good, len(picks), "a read from an event's offset starts with that event, then the next one")
    st, body, nxt = ds_read(srv, sid, first["tail"])
    tap.ok(st == 200 and body == [] and nxt == first["tail"], "a read from `tail` is up to date", (st, nxt))
    # Inside a message: refused by the stream protocol and by the page API alike.
    inside = events[5]["offset"].split("_")
    inside = f"{inside[0]}_{int(inside[1]) + 3:016d}"
    st, body, _ = ds_read(srv, sid, inside)
    tap.is_(st, 400, "a read from inside a message is refused (400)")
    st, doc = api(srv, "GET", f"/v1/sessions/{sid}/events?before={inside}")
    tap.is_(st, 400, "before inside a message: 400")

    # Page, then follow from tail: new events come exactly once.
    path = f"/v1/stream/sessions/{sid}/transcript"
    srv.append(path, json.dumps([{"type": "log", "n": TOTAL + i} for i in range(3)]).encode(), "application/json")
    st, body, _ = ds_read(srv, sid, first["tail"])
    tap.ok([e.get("n") for e in body] == [TOTAL, TOTAL + 1, TOTAL + 2], "following from `tail` gets exactly the new events",
           body)
    st, doc = api(srv, "GET", f"/v1/sessions/{sid}/events?limit=5&before={first['tail']}")
    tap.ok([e.get("n") for e in doc["events"]] == [TOTAL - 1 - i for i in range(5)],
           "a page before the old tail starts where the first page started", doc)


def forks(tap, srv, sid, events):
    # Fork at an event inside a multi-message record: the fork's history ends just before it.
    at = events[len(events) // 2]  # some event in the middle
    st, child = api(srv, "POST", f"/v1/sessions/{sid}/fork", {"at": at["offset"]})
    tap.is_(st, 201, f"fork at the offset of event n={at.get('n')}")
    fevents, _, _ = page_all(srv, child["id"], 1000)
    logs = [e.get("n") for e in fevents if e.get("type") == "log"]
    tap.ok(logs == list(range(at["n"] - 1, -1, -1)), "the fork's pages: the source's events before the fork point",
           logs[:5])
    tap.ok(fevents[0].get("type") == "session" and fevents[0].get("action") == "forked",
           "and its own newer events on top", fevents[0])
    forward = srv.read_json(f"/v1/stream/sessions/{child['id']}/transcript")[0]
    tap.ok([strip(e) for e in reversed(fevents)] == forward, "the fork read forwards holds the same events")
    inside = at["offset"].split("_")
    st, doc = api(srv, "POST", f"/v1/sessions/{sid}/fork", {"at": f"{inside[0]}_{int(inside[1]) + 1:016d}"})
    tap.is_(st, 400, "a fork inside a message is refused")
    r = srv.request("PUT", "/v1/stream/forked-inside", b"", {"Content-Type": "application/json",
                    "Stream-Forked-From": f"sessions/{sid}/transcript",
                    "Stream-Fork-Offset": f"{inside[0]}_{int(inside[1]) + 1:016d}"})
    tap.is_(r.status, 400, "a Durable Streams fork inside a message is refused")


def bad_input(tap, srv, sid):
    for q, why in (("before=12", "a malformed before"), ("before=9999999999999999_9999999999999999", "before past the tail"),
                   ("limit=0", "limit 0"), ("limit=1001", "limit over 1000"), ("limit=x", "a limit that is not a number"),
                   ("limit=5&limit=6", "limit twice")):
        st, doc = api(srv, "GET", f"/v1/sessions/{sid}/events?{q}")
        tap.ok(st == 400 and isinstance(doc, dict) and "error" in doc, f"{why}: 400 JSON", (st, doc))
    st, doc = api(srv, "GET", "/v1/sessions/0123456789abcdef0123456789abcdef/events")
    tap.ok(st == 404 and "error" in doc, "unknown session: 404", (st, doc))
    st, doc = api(srv, "POST", f"/v1/sessions/{sid}/events", {})
    tap.is_(st, 405, "POST: 405")


def share(tap):
    srv = Server(token="t0k")
    srv.start()
    st, se = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    st, other = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    st, sh = api(srv, "POST", f"/v1/sessions/{se['id']}/share")
    tok = sh["token"]
    st, doc = api(srv, "GET", f"/v1/sessions/{se['id']}/events?share={tok}", auth=False)
    tap.ok(st == 200 and doc["events"], "a share token reads history pages (?share=)", (st, doc))
    st, doc = api(srv, "GET", f"/v1/sessions/{se['id']}/events", headers={"Authorization": f"Bearer {tok}"}, auth=False)
    tap.is_(st, 200, "and as a bearer token")
    for sub in ("runs", "children"):
        st, doc = api(srv, "GET", f"/v1/sessions/{se['id']}/{sub}?share={tok}", auth=False)
        tap.is_(st, 200, f"a share token reads .../{sub}")
    st, doc = api(srv, "GET", f"/v1/sessions/{other['id']}/events?share={tok}", auth=False)
    tap.is_(st, 401, "but not another session's pages")
    st, doc = api(srv, "GET", f"/v1/sessions/{se['id']}/events", auth=False)
    tap.is_(st, 401, "nor without any token")
    tap.check_clean_exit(srv, "token server stops cleanly")


def main(tap):
    srv = Server()
    srv.start()
    st, se = api(srv, "POST", "/v1/sessions", {"agent": "none"})
    sid = se["id"]
    t0 = time.monotonic()
    fill(srv, sid)
    tap.diag(f"wrote {TOTAL} events in {time.monotonic() - t0:.1f} s")
    events, first = paging(tap, srv, sid)
    offsets_are_ds_offsets(tap, srv, sid, events, first)
    forks(tap, srv, sid, events)
    bad_input(tap, srv, sid)
    tap.check_clean_exit(srv)
    share(tap)


run_test(main)
