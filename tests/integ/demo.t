#!/usr/bin/env python3
"""The built-in demo agent ("agent":"demo", `agentd demo-agent`): one run gives every kind of event
in order (logs at four levels, deltas that add up to the messages, three tool calls that really
touch the workspace, a coded error, a `file` event for the file it wrote) and ends in success with
usage and cost; the next message resumes the conversation, a fork continues a copy of it, and a
cancel ends a run at once."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, of_run, run_test, session_run, session_transcript, wait_for  # noqa: E402

LEVELS = ["debug", "info", "warn", "error"]


def api(srv, method, path, body=None):
    r = srv.request(method, path, json.dumps(body).encode() if body is not None else None,
                    {"Content-Type": "application/json"})
    return r.status, (json.loads(r.body) if r.body else None)


def text_of(ev):
    c = ev.get("content")
    return "".join(b.get("text", "") for b in c) if isinstance(c, list) else ev.get("text", "")


def first_run(tap, srv, sid, ws):
    text = "hello from demo.t: <script>x</script> ünïcode"
    run, done, evs, secs = session_run(srv, sid, text, 30)
    tap.ok(done is not None and done.get("status") == "success", f"the run ends in success ({secs:.1f} s)", done)
    if done is None:
        return None
    evs = wait_for(lambda: (lambda e: e if any(x.get("type") == "file" for x in e) else None)(
        session_transcript(srv, sid)), 5) or evs
    mine = of_run(evs, run)
    kinds = [e["type"] for e in mine]
    tap.is_(kinds[0], "run_start", "run_start comes first")
    tap.is_([k for k in kinds if k != "file"][-1], "run_completed", "run_completed ends the run")
    for kind in ("log", "delta", "message", "pre_tool", "post_tool", "error"):
        tap.ok(kind in kinds, f"the run has {kind} events", kinds)
    tap.ok(any(e["type"] == "file" and any(c.get("path", "").endswith("demo-notes.md") for c in e["changes"])
               for e in evs), "the file it wrote shows up as a file event", [e for e in evs if e["type"] == "file"])
    levels = {e.get("level") for e in mine if e["type"] == "log"}
    tap.ok(set(LEVELS) <= levels, "it logs at debug, info, warn and error", levels)
    order = [kinds.index(k) for k in ("delta", "message", "pre_tool", "post_tool", "error")]
    tap.is_(order, sorted(order), "deltas, then a message, then tools, then the error")

    msgs = [e for e in mine if e["type"] == "message"]
    deltas = "".join(e["text"] for e in mine if e["type"] == "delta")
    tap.is_(deltas, "".join(text_of(m) for m in msgs), "the deltas add up to the messages, in order")
    reply = text_of(msgs[-1]) if msgs else ""
    tap.ok(text in reply and "message 1 of this conversation" in reply,
           "the reply echoes the message and counts it", reply)
    tap.ok("workspace has **0 entries**" in reply, "the reply describes the (empty) workspace", reply)

    pre = {e["id"]: e for e in mine if e["type"] == "pre_tool"}
    post = {e["id"]: e for e in mine if e["type"] == "post_tool"}
    tap.is_(sorted(pre), sorted(post), "every tool call is paired by id")
    names = {e["name"]: post.get(i) for i, e in pre.items()}
    tap.ok(names.get("list_workspace") and names["list_workspace"]["output"] == "(empty)\n",
           "list_workspace really listed the empty workspace", names.get("list_workspace"))
    rd = names.get("read_file")
    tap.ok(rd and rd["is_error"] and "No such file" in rd["output"], "read_file of a missing README.md is an error",
           rd)
    wr = names.get("write_file")
    with open(os.path.join(ws, "demo-notes.md")) as f:
        notes = f.read()
    tap.ok(wr and not wr["is_error"] and "message 1" in notes, "write_file wrote demo-notes.md in the workspace",
           (wr, notes))
    err = next((e for e in mine if e["type"] == "error"), {})
    tap.ok(err.get("code") == "demo_rate_limited" and err.get("retryable") is True, "the error has a code", err)
    usage = done.get("usage") or {}
    tap.ok(usage.get("input_tokens", 0) > 0 and usage.get("output_tokens", 0) > 0 and done.get("cost_usd", 0) > 0,
           "run_completed reports usage and cost", done)
    tap.is_(done.get("result"), reply, "its result is the reply")
    return run


def list_fields(tap, srv, sid, run):
    """What the session list shows: from GET, the feed, and the run records."""
    st, runs = api(srv, "GET", f"/v1/sessions/{sid}/runs")
    rec = next((x for x in runs["runs"] if x["id"] == run), {})
    tap.ok(rec.get("status") == "success" and rec.get("usage", {}).get("output_tokens", 0) > 0 and
           rec.get("cost_usd", 0) > 0 and rec.get("duration_ms", -1) >= 0 and rec.get("num_turns") == 1,
           "the run record keeps usage, cost, duration and turns", rec)
    st, se = api(srv, "GET", f"/v1/sessions/{sid}")
    tap.is_(se.get("env_status"), "ready", "env_status: the environment is ready")
    tap.is_(se.get("status"), "idle", "status: idle (busy apart from the environment)")
    lr = se.get("last_run") or {}
    tap.ok(lr.get("id") == run and lr.get("status") == "success" and lr.get("ended_at", 0) > 0,
           "last_run: the run, its outcome and end", lr)
    tot = se.get("totals") or {}
    tap.ok(tot.get("runs") == 1 and tot.get("input_tokens") == rec["usage"]["input_tokens"] and
           tot.get("output_tokens") == rec["usage"]["output_tokens"] and abs(tot.get("cost_usd", 0) - rec["cost_usd"]) < 1e-9,
           "totals: one run's tokens and cost", tot)
    tap.ok(se.get("queued") == 0 and se.get("last_activity", 0) >= lr.get("ended_at", 1), "queued 0, last_activity",
           se)
    feed = srv.read_json("/v1/stream/sessions")[0]
    mine = [x["value"] for x in feed if x.get("key") == sid]
    tap.ok(mine and mine[-1].get("last_run", {}).get("status") == "success" and mine[-1].get("env_status") == "ready",
           "the sessions feed carries the same fields", mine[-1:])
    tap.ok(len(mine) < 12, f"and stays small: {len(mine)} updates for a run", [m.get("status") for m in mine])


def queue_count(tap, srv):
    st, se = api(srv, "POST", "/v1/sessions", {"agent": "demo", "env": {"AGENTD_DEMO_DELAY_MS": "1"}})
    sid = se["id"]
    api(srv, "POST", f"/v1/sessions/{sid}/messages", {"text": "slow one"})
    api(srv, "POST", f"/v1/sessions/{sid}/messages", {"text": "then this", "mode": "queue"})
    st, se = api(srv, "GET", f"/v1/sessions/{sid}")
    tap.ok(se["status"] == "running" and se["queued"] == 1, "a queued message: running, queued 1", se)
    feed = srv.read_json("/v1/stream/sessions")[0]
    mine = [x["value"] for x in feed if x.get("key") == sid]
    tap.ok(any(m.get("queued") == 1 for m in mine), "the feed counted the queue", [m.get("queued") for m in mine])
    api(srv, "POST", f"/v1/sessions/{sid}/runs/{se['active_run']}/cancel")


def resume_and_fork(tap, srv, sid):
    st, se = api(srv, "GET", f"/v1/sessions/{sid}")
    native = se.get("native_session")
    tap.ok(isinstance(native, str) and native.startswith("demo-"), "the session keeps the demo conversation id", se)
    run, done, evs, _ = session_run(srv, sid, "second message", 30)
    reply = text_of([e for e in of_run(evs, run) if e["type"] == "message"][-1])
    tap.ok(done and done["status"] == "success" and "message 2 of this conversation" in reply,
           "the next message resumes the conversation", reply)
    tap.ok("demo-notes.md" in reply or "1 entry" in reply, "and sees the file it wrote before", reply)
    tap.is_(api(srv, "GET", f"/v1/sessions/{sid}")[1].get("native_session"), native, "same conversation id")

    st, child = api(srv, "POST", f"/v1/sessions/{sid}/fork", {})
    tap.is_(st, 201, "fork the demo session")
    run, done, evs, _ = session_run(srv, child["id"], "in the fork", 30)
    reply = text_of([e for e in of_run(evs, run) if e["type"] == "message"][-1])
    tap.ok(done and "message 3 of this conversation" in reply, "the fork continues a copy of the conversation", reply)
    forked = api(srv, "GET", f"/v1/sessions/{child['id']}")[1].get("native_session")
    tap.ok(forked and forked != native, "under a new conversation id", (forked, native))
    run, done, evs, _ = session_run(srv, sid, "back in the parent", 30)
    reply = text_of([e for e in of_run(evs, run) if e["type"] == "message"][-1])
    tap.ok("message 3 of this conversation" in reply, "the parent's conversation did not move", reply)


def cancel(tap, srv):
    # "slow" in the message overrides the session's 1 ms pace: a run long enough to act in.
    st, se = api(srv, "POST", "/v1/sessions", {"agent": "demo", "env": {"AGENTD_DEMO_DELAY_MS": "1"}})
    sid = se["id"]
    st, doc = api(srv, "POST", f"/v1/sessions/{sid}/messages", {"text": "go slow please"})
    run = doc["run"]
    got = wait_for(lambda: any(e["type"] == "delta" for e in of_run(session_transcript(srv, sid), run)), 15)
    tap.ok(got, "the slow run streams its first delta")
    time.sleep(1.0)
    evs = of_run(session_transcript(srv, sid), run)
    tap.ok(not any(e["type"] == "run_completed" for e in evs) and
           sum(e["type"] == "delta" for e in evs) <= 12, "a second later it is still writing, slowly",
           [e["type"] for e in evs])
    t0 = time.monotonic()
    st, _ = api(srv, "POST", f"/v1/sessions/{sid}/runs/{run}/cancel")
    done = wait_for(lambda: next((e for e in session_transcript(srv, sid)
                                  if e["type"] == "run_completed" and e["run"] == run), None), 15)
    took = time.monotonic() - t0
    tap.ok(done and done["status"] == "cancelled" and took < 2.0, f"a cancel ends the run promptly ({took:.2f} s)",
           done)


def main(tap):
    srv = Server()
    srv.start()
    st, doc = api(srv, "POST", "/v1/sessions", {"agent": "nope"})
    tap.ok(st == 400 and "demo" in doc["error"]["message"], "the list of agents names demo", doc)
    st, doc = api(srv, "GET", "/v1/agents")
    names = [a["name"] for a in (doc or {}).get("agents", [])]
    tap.ok(st == 200 and set(names) == {"demo", "claude-code", "codex", "opencode", "jsonl", "none"},
           "GET /v1/agents lists every agent a session takes", doc)
    agents = {a["name"]: a for a in doc["agents"]}
    tap.ok(agents["demo"]["available"] is True and agents["demo"]["needs"] == [] and agents["demo"]["description"],
           "demo: available, needs nothing", agents["demo"])
    tap.ok(agents["jsonl"]["needs"] == ["command"] and agents["claude-code"]["program"] == "claude" and
           "api_key" in agents["claude-code"]["options"], "jsonl needs a command; claude-code runs claude", agents)
    for name in names:
        st, _ = api(srv, "POST", "/v1/sessions", {"agent": name, "command": ["/bin/true"]})
        tap.is_(st, 201, f"a session with agent {name} can be created")
    st, _ = api(srv, "GET", "/v1/agentsx")
    tap.is_(st, 404, "GET /v1/agentsx: 404")
    st, se = api(srv, "POST", "/v1/sessions", {"agent": "demo", "env": {"AGENTD_DEMO_DELAY_MS": "15"}})
    tap.is_(st, 201, "create a demo session (no command, no key)")
    run = first_run(tap, srv, se["id"], se["workspace"])
    if run:
        list_fields(tap, srv, se["id"], run)
        resume_and_fork(tap, srv, se["id"])
    queue_count(tap, srv)
    cancel(tap, srv)
    tap.check_clean_exit(srv)


run_test(main)
