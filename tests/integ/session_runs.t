#!/usr/bin/env python3
"""Runs of agent sessions over HTTP, with the jsonl test agent (tests/agents/jsonl_agent.py): fast,
no external CLI. Against the real binary ($AGENTD_BIN), through agentd's HTTP API only.

Checked (issue 3, "Done when"): a run's transcript order (run_start, message, pre_tool, post_tool,
message, run_completed) with environment status events, run records in the state stream and in
GET .../runs; resume (the agent gets its native session back; "history" counts 2); fork (the fork
continues a copy of the native session, the parent is unaffected); cancel during `sleep 30` ends
the run cancelled within 2 s and leaves no process of the run (pid and process-group scan of
/proc, also for a tool child that setsid()s and for an agent that ignores SIGTERM); input modes
queue / reject / interrupt under concurrent senders (at most one run at a time, queue order kept);
kill -9 of agentd mid-run, restart: the run is closed with server_restart and the next message
resumes; a client that reconnects with its last offset gets every event exactly once, in order,
across that restart; the `sessions` feed (catch-up and a live long-poll from its tail) shows a
session appear and change; bad input gets JSON errors (unknown agent, jsonl without command,
missing workspace, malformed body, bad mode, message to a deleted session); a missing agent
binary, a crash, a failing exit, garbage and stderr become error/log events, never a server crash;
the environment the agent sees is the session's, not agentd's; deleting a session or stopping
agentd kills a running agent's processes.
"""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, http_request, message_texts, of_run, procs, run_test, wait_for  # noqa: E402

AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
CANARY = "AGENTD_TEST_CANARY"
TAP = None
SRV = None
WORK = None  # the jsonl agent's --state and --log live here

SLEEP_RE = re.compile(r"sleep pid=(\d+) pgid=(\d+) sid=(\d+) agent_pid=(\d+) agent_pgid=(\d+)")
AGENT_RE = re.compile(r"jsonl_agent pid=(\d+) native=(\S+) turn=(\d+)")


# ---- helpers ------------------------------------------------------------------------------------

def api(method, path, body=None, raw=None, timeout=15.0):
    """One JSON request; returns (status, parsed body or None)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    r = SRV.request(method, path, data, headers, timeout=timeout)
    try:
        doc = json.loads(r.body) if r.body else None
    except ValueError:
        doc = None
    return r.status, doc


def is_error_body(doc):
    return isinstance(doc, dict) and isinstance(doc.get("error"), dict) and \
        isinstance(doc["error"].get("code"), str) and isinstance(doc["error"].get("message"), str)


def agent_cmd(name="a"):
    # The agent keeps its native sessions in $HOME, the session's private directory (as
    # AGENT-PROTOCOL.md asks): a fork finds the parent's native session only if agentd gives it a
    # copy of that directory as it was at the fork.
    return ["python3", AGENT, "--log", os.path.join(WORK, f"input-{name}.jsonl")]


def inputs(name="a"):
    """What agentd wrote on the agent's stdin (every line, in order), from the agent's --log."""
    path = os.path.join(WORK, f"input-{name}.jsonl")
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    return out


def new_session(name="a", **fields):
    body = {"agent": "jsonl", "command": agent_cmd(name)}
    body.update(fields)
    st, doc = api("POST", "/v1/sessions", body)
    if st != 201 or not isinstance(doc, dict) or "id" not in doc:
        raise RuntimeError(f"jsonl session create: {st} {doc!r}")
    return doc["id"]


def send(sid, text, mode=None):
    body = {"text": text}
    if mode:
        body["mode"] = mode
    return api("POST", f"/v1/sessions/{sid}/messages", body)


def transcript(sid):
    evs, r = SRV.read_json(f"/v1/stream/sessions/{sid}/transcript")
    return evs if r.status == 200 else []


def state_records(sid):
    evs, r = SRV.read_json(f"/v1/stream/sessions/{sid}/state")
    return evs if r.status == 200 else []




def completion(evs, run):
    return next((e for e in evs if e.get("type") == "run_completed" and e.get("run") == run), None)


def wait_done(sid, run, timeout=20.0):
    """Waits for the run's run_completed; returns (that event or None, the transcript)."""
    box = {}

    def done():
        box["evs"] = transcript(sid)
        return completion(box["evs"], run)
    ev = wait_for(done, timeout)
    return ev, box["evs"]


def run_and_wait(sid, text, mode=None, timeout=20.0):
    st, doc = send(sid, text, mode)
    if st != 202 or not isinstance(doc, dict) or "run" not in doc:
        raise RuntimeError(f"send {text!r}: {st} {doc!r}")
    ev, evs = wait_done(sid, doc["run"], timeout)
    return doc["run"], ev, evs






def log_texts(evs, run=None):
    return [e.get("text", "") for e in evs if e.get("type") == "log" and (run is None or e.get("run") == run)]


def sleep_info(evs, run):
    for t in log_texts(evs, run):
        m = SLEEP_RE.search(t)
        if m:
            return dict(zip(("pid", "pgid", "sid", "agent_pid", "agent_pgid"), map(int, m.groups())))
    return None


def wait_sleep(sid, run, timeout=10.0):
    info = wait_for(lambda: sleep_info(transcript(sid), run), timeout)
    if info:
        # The processes alive now: a process of the run left behind later is one of these (pids
        # and group ids get reused when other tests fork a lot; pid_max may be 32768).
        info["_alive"] = {(p[0], p[6]) for p in procs()}
    return info


def native_of(evs, run):
    for t in log_texts(evs, run):
        m = AGENT_RE.search(t)
        if m:
            return m.group(2)
    return None


def overlaps(evs):
    """Violations of 'at most one run at a time': a run_start while another run is open, or an
    agent event outside its run's start..completed."""
    bad, open_run, started = [], None, set()
    for e in evs:
        t, r = e.get("type"), e.get("run")
        if t == "run_start":
            if open_run is not None:
                bad.append(f"run_start {r} while {open_run} is open")
            open_run = r
            started.add(r)
        elif t == "run_completed":
            if r in started and r != open_run:
                bad.append(f"run_completed {r} while {open_run} is open")
            if r == open_run:
                open_run = None
        elif r is not None and r != open_run and r in started:
            bad.append(f"{t} of {r} outside its run (open: {open_run})")
    return bad


def leftovers(info):
    """Live (non-zombie) processes of a run: the agent, its sleep child, anything in their groups."""
    if not info:
        return []
    pids = {info["pid"], info["agent_pid"]}
    groups = {info["pgid"], info["agent_pgid"]}
    alive = info.get("_alive")
    return [p for p in procs() if (p[0] in pids or p[3] in groups) and p[1] != "Z"
            and (alive is None or (p[0], p[6]) in alive)]


def wait_gone(info, timeout=3.0):
    return wait_for(lambda: not leftovers(info), timeout)


def active_id(sess):
    a = (sess or {}).get("active_run")
    return a.get("id") or a.get("run") if isinstance(a, dict) else a


def section(name, fn, *args):
    """Runs one part; an exception fails that part only (the server must still be healthy)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        import traceback
        TAP.ok(False, f"{name}: raised", traceback.format_exc())
        if not SRV.healthy():
            TAP.diag(SRV.stderr_tail())
        return None


# ---- the core flow ----------------------------------------------------------------------------

def test_flow():
    sid = new_session("flow")
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(st == 200 and sess.get("agent") == "jsonl", "GET a jsonl session", sess)

    st, doc = send(sid, "tool")
    TAP.ok(st == 202 and isinstance(doc, dict) and doc.get("run") and doc.get("status") in ("running", "queued"),
           "a message starts a run: 202 {run, status}", f"{st} {doc!r}")
    run = doc["run"]
    ev, evs = wait_done(sid, run)
    TAP.ok(ev is not None, "the run completes", json.dumps(evs)[-2000:])
    kinds = [e["type"] for e in of_run(evs, run, ("run_start", "message", "pre_tool", "post_tool", "run_completed"))]
    TAP.is_(kinds, ["run_start", "message", "pre_tool", "post_tool", "message", "run_completed"],
            "transcript order: run_start, message, pre_tool, post_tool, message, run_completed")
    start = next((e for e in of_run(evs, run, ("run_start",))), {})
    inp = start.get("input")
    TAP.ok(inp == "tool" or (isinstance(inp, dict) and inp.get("text") == "tool"), "run_start carries the input", start)
    ev = ev or {}
    TAP.is_(ev.get("status"), "success", "run_completed status success")
    TAP.is_(ev.get("result"), "The tool said: hi", "run_completed result is the agent's result text")
    TAP.ok(isinstance(ev.get("duration_ms"), int) and ev["duration_ms"] >= 0, "run_completed has duration_ms", ev)
    TAP.ok(isinstance(ev.get("usage"), dict) and ev["usage"].get("output_tokens", 0) > 0 and "cost_usd" in ev,
           "run_completed carries the agent's usage and cost", ev)
    agent_evs = of_run(evs, run, ("message", "pre_tool", "post_tool"))
    TAP.ok(all(isinstance(e.get("ts"), int) and e.get("session") == sid for e in of_run(evs, run)),
           "every run event has ts, session and run", [e for e in of_run(evs, run) if not isinstance(e.get("ts"), int)])
    TAP.ok(all(isinstance(e.get("native"), dict) and e["native"].get("type") == e["type"] for e in agent_evs),
           "agent events keep the agent's line under native", agent_evs)
    pre = next((e for e in agent_evs if e["type"] == "pre_tool"), {})
    post = next((e for e in agent_evs if e["type"] == "post_tool"), {})
    TAP.ok(pre.get("name") == "Bash" and pre.get("input") == {"command": "echo hi"} and
           post.get("output") == "hi\n" and post.get("id") == pre.get("id"),
           "pre_tool/post_tool carry name, input, output and the same id", [pre, post])

    envst = [(i, e) for i, e in enumerate(evs) if e.get("type") == "status" and e.get("scope") == "environment"]
    names = [e.get("status") for _, e in envst]
    TAP.ok("ready" in names, "environment status events, reaching ready", names)
    first_msg = next((i for i, e in enumerate(evs) if e.get("run") == run and e.get("type") == "message"), None)
    ready_i = next((i for i, e in envst if e.get("status") == "ready"), None)
    TAP.ok(ready_i is not None and first_msg is not None and ready_i < first_msg,
           "the environment is ready before the agent's first message", names)
    if "starting" in names and "ready" in names:
        TAP.ok(names.index("starting") < names.index("ready"), "status starting comes before ready", names)

    native = native_of(evs, run)
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(native and sess.get("native_session") == native, "the session names the agent's native session", sess)
    TAP.ok(not active_id(sess), "no active run once it completed", sess)
    st, runs = api("GET", f"/v1/sessions/{sid}/runs")
    rl = (runs or {}).get("runs") or []
    mine = [r for r in rl if r.get("id") == run]
    TAP.ok(st == 200 and len(mine) == 1 and mine[0].get("status") == "success" and "created_at" in mine[0],
           "GET .../runs lists the run as success", runs)
    recs = [r for r in state_records(sid) if r.get("type") == "run" and r.get("key") == run]
    ops = [r.get("headers", {}).get("operation") for r in recs]
    TAP.ok(ops[:1] == ["insert"] and "update" in ops and recs[-1].get("value", {}).get("status") == "success",
           "the state stream records the run: insert, then updates ending in success", recs)
    first_input = [i for i in inputs("flow") if i.get("type") == "user"]
    TAP.ok(len(first_input) == 1 and first_input[0].get("text") == "tool" and not first_input[0].get("resume")
           and first_input[0].get("session") == sid and first_input[0].get("run") == run,
           "the agent's first stdin line: user, text, session, run, no resume", first_input)
    return sid, native


def test_resume(sid, native):
    run, ev, evs = run_and_wait(sid, "history")
    TAP.is_(message_texts(evs, run), ["turns: 2"], "resume: the second run continues the conversation (history 2)")
    user = [i for i in inputs("flow") if i.get("type") == "user"]
    TAP.ok(len(user) == 2 and user[1].get("resume") == native and not user[1].get("fork"),
           "resume: the agent got its native session id as resume", user)
    TAP.is_(native_of(evs, run), native, "resume: same native session")
    run3, _, evs = run_and_wait(sid, "history")
    TAP.is_(message_texts(evs, run3), ["turns: 3"], "resume: and again (history 3)")


def test_fork(sid, native):
    pre = transcript(sid)
    st, child = api("POST", f"/v1/sessions/{sid}/fork", {})
    TAP.ok(st == 201 and isinstance(child, dict) and child.get("id") and child["id"] != sid, "fork created", child)
    cid = child["id"]
    # the parent moves on first: 2 more turns (4, 5)
    run_and_wait(sid, "echo p4")
    prun, _, pevs = run_and_wait(sid, "history")
    TAP.is_(message_texts(pevs, prun), ["turns: 5"], "fork: the parent goes on (history 5)")
    frun, fev, fevs = run_and_wait(cid, "history; whoami")
    TAP.ok(fev and fev.get("status") == "success", "fork: a message on the fork runs", fev)
    a = message_texts(fevs, frun)
    TAP.ok(a[:1] == ["turns: 4"], "fork: its history counts from the fork point (3 + 1), not the parent's later turns",
           f"{a}\n(turns: 1 = the fork's HOME lacks the parent's native session; more than 4 = the fork saw the "
           f"parent's native session as it is now, not as it was at the fork)\n" + "\n".join(log_texts(fevs, frun)))
    fnative = native_of(fevs, frun)
    TAP.ok(fnative and fnative != native, "fork: the fork has its own native session", (fnative, native))
    finputs = [i for i in inputs("flow") if i.get("type") == "user" and i.get("session") == cid]
    TAP.ok(finputs and finputs[0].get("resume") == native and finputs[0].get("fork") is True,
           "fork: the first run on the fork resumes the parent's native session with fork true", finputs)
    frun2, _, fevs = run_and_wait(cid, "history")
    TAP.is_(message_texts(fevs, frun2), ["turns: 5"], "fork: the fork's next run continues the fork (history 5)")
    finputs = [i for i in inputs("flow") if i.get("type") == "user" and i.get("session") == cid]
    TAP.ok(len(finputs) == 2 and finputs[1].get("resume") == fnative and not finputs[1].get("fork"),
           "fork: ... resuming the fork's own native session", finputs)
    prun2, _, pevs = run_and_wait(sid, "history; whoami")
    TAP.is_(message_texts(pevs, prun2), ["turns: 6", f"native: {native}"], "fork: the parent is unaffected (history 6, same native)")
    st, csess = api("GET", f"/v1/sessions/{cid}")
    TAP.ok(csess.get("native_session") == fnative, "fork: the fork's session names its own native session", csess)
    starts_in_fork = [e.get("run") for e in fevs if e.get("type") == "run_start"]
    TAP.ok(prun not in starts_in_fork and all(e.get("run") != prun for e in fevs),
           "fork: the parent's later runs are not in the fork's transcript")
    pre_runs = [e.get("run") for e in pre if e.get("type") == "run_start"]
    TAP.ok(all(r in starts_in_fork for r in pre_runs), "fork: the fork's transcript starts with the parent's history")
    TAP.ok(not overlaps(fevs), "fork: runs do not overlap in the fork's transcript", overlaps(fevs))


# ---- cancel and processes -----------------------------------------------------------------------

def cancel_case(label, text, limit):
    sid = new_session("cancel")
    st, doc = send(sid, text)
    run = doc["run"]
    info = wait_sleep(sid, run)
    if not TAP.ok(info, f"{label}: the agent started its sleep child", transcript(sid)[-5:]):
        return
    TAP.ok(leftovers(info), f"{label}: the sleep child is alive before the cancel", info)
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(active_id(sess) == run, f"{label}: the session names its active run", sess)
    t0 = time.monotonic()
    st, doc = api("POST", f"/v1/sessions/{sid}/runs/{run}/cancel", {})
    TAP.ok(st == 200 and isinstance(doc, dict) and doc.get("run") == run and doc.get("status"),
           f"{label}: cancel answers 200 {{run, status}}", f"{st} {doc!r}")
    ev, evs = wait_done(sid, run, timeout=15)
    took = time.monotonic() - t0
    TAP.ok(ev is not None and ev.get("status") == "cancelled", f"{label}: run_completed status cancelled", ev)
    TAP.ok(took <= limit, f"{label}: ended within {limit} s of the cancel ({took:.2f} s)")
    gone = wait_gone(info, 0.5)
    TAP.ok(gone, f"{label}: no process of the run is left (pid/pgid scan)", leftovers(info))
    if not gone:
        for p in leftovers(info):
            try:
                os.kill(p[0], 9)
            except OSError:
                pass
    st, runs = api("GET", f"/v1/sessions/{sid}/runs")
    TAP.ok(any(r.get("id") == run and r.get("status") == "cancelled" for r in (runs or {}).get("runs", [])),
           f"{label}: the run is listed as cancelled", runs)
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(not active_id(sess), f"{label}: no active run after the cancel", sess)
    TAP.diag(f"{label}: cancel to run_completed {took * 1000:.0f} ms")
    return sid


def test_cancel():
    sid = cancel_case("cancel", "sleep 30", 2.0)
    cancel_case("cancel setsid child", "sleep 30 setsid", 2.0)
    cancel_case("cancel SIGTERM-proof agent", "sleep 30 stubborn", 10.0)
    if sid:
        st, doc = api("POST", f"/v1/sessions/{sid}/runs/run_nosuchrun/cancel", {})
        TAP.ok(st in (404, 409) and is_error_body(doc), "cancelling an unknown run is a JSON error", f"{st} {doc!r}")
        run, ev, evs = run_and_wait(sid, "history")
        TAP.ok(ev and ev.get("status") == "success" and message_texts(evs, run) == ["turns: 2"],
               "after a cancel the session resumes (history 2)", message_texts(evs, run))


# ---- input modes ----------------------------------------------------------------------------------

def concurrently(fns):
    out = [None] * len(fns)
    gate = threading.Barrier(len(fns))

    def go(i):
        gate.wait()
        out[i] = fns[i]()
    ts = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def test_modes():
    # queue: one sender, in order
    sid = new_session("modes")
    st, first = send(sid, "sleep 1")
    wait_sleep(sid, first["run"])
    seq = [send(sid, f"echo q{i}") for i in range(3)]
    TAP.ok(all(s == 202 and d.get("status") == "queued" for s, d in seq), "queue: 202 queued while a run is active", seq)
    last = seq[-1][1]["run"]
    ev, evs = wait_done(sid, last, 20)
    order = [message_texts(evs, d["run"]) for _, d in seq]
    TAP.is_(order, [["q0"], ["q1"], ["q2"]], "queue: each queued run gets its own input")
    starts = [e["run"] for e in evs if e.get("type") == "run_start"]
    TAP.is_(starts, [first["run"]] + [d["run"] for _, d in seq], "queue: runs start in the order they were sent")
    TAP.ok(not overlaps(evs), "queue: one run at a time", overlaps(evs))

    # queue: concurrent senders
    st, first = send(sid, "sleep 1")
    wait_sleep(sid, first["run"])
    res = concurrently([lambda i=i: send(sid, f"echo c{i}") for i in range(6)])
    TAP.ok(all(s == 202 and d.get("status") == "queued" for s, d in res), "queue, 6 concurrent senders: all 202 queued", res)
    runs = [d["run"] for _, d in res]
    TAP.is_(len(set(runs)), 6, "queue, concurrent: six distinct runs")
    done = wait_for(lambda: all(completion(transcript(sid), r) for r in runs), 30)
    evs = transcript(sid)
    TAP.ok(done, "queue, concurrent: every queued run completes")
    TAP.ok(all(completion(evs, r) and completion(evs, r).get("status") == "success" for r in runs),
           "queue, concurrent: all succeed", [completion(evs, r) for r in runs])
    TAP.ok(all(message_texts(evs, d["run"]) == [f"c{i}"] for i, (_, d) in enumerate(res)),
           "queue, concurrent: each run answers its own input", [message_texts(evs, r) for r in runs])
    TAP.ok(not overlaps(evs), "queue, concurrent: one run at a time", overlaps(evs))
    st, rl = api("GET", f"/v1/sessions/{sid}/runs")
    listed = [r["id"] for r in (rl or {}).get("runs", []) if r.get("id") in runs]
    starts = [e["run"] for e in evs if e.get("type") == "run_start" and e.get("run") in runs]
    inbox, _ = SRV.read_json(f"/v1/stream/sessions/{sid}/inbox")
    inbox_order = [m.get("run") for m in inbox if isinstance(m, dict) and m.get("run") in runs]
    TAP.ok(starts == inbox_order or (not inbox_order and starts == listed),
           "queue, concurrent: runs start in the order they were accepted",
           f"starts {starts}\ninbox {inbox_order}\nlisted {listed}")

    # reject
    st, active = send(sid, "sleep 2")
    wait_sleep(sid, active["run"])
    res = concurrently([lambda i=i: send(sid, f"echo r{i}", "reject") for i in range(5)])
    TAP.ok(all(s == 409 and is_error_body(d) for s, d in res), "reject, 5 concurrent senders: all 409 JSON errors", res)
    ev, evs = wait_done(sid, active["run"], 15)
    TAP.ok(ev and ev.get("status") == "success", "reject: the active run is not disturbed", ev)
    TAP.ok(not any(e.get("type") == "run_start" and e.get("input") in [f"echo r{i}" for i in range(5)] for e in evs),
           "reject: no rejected input ran")
    st, d = send(sid, "echo idle", "reject")
    TAP.ok(st == 202 and d.get("status") == "running", "reject when idle: runs at once", f"{st} {d!r}")
    if st == 202:
        wait_done(sid, d["run"])

    # interrupt
    st, active = send(sid, "sleep 30")
    info = wait_sleep(sid, active["run"])
    t0 = time.monotonic()
    st, d = send(sid, "echo interrupted you", "interrupt")
    TAP.ok(st == 202 and d.get("run"), "interrupt: 202", f"{st} {d!r}")
    ev, evs = wait_done(sid, d["run"], 15)
    took = time.monotonic() - t0
    old = completion(evs, active["run"])
    TAP.ok(old and old.get("status") == "cancelled", "interrupt: the active run is cancelled", old)
    TAP.ok(ev and ev.get("status") == "success" and message_texts(evs, d["run"]) == ["interrupted you"],
           "interrupt: then the new input runs", ev)
    TAP.ok(took < 3.0, f"interrupt: the new run completed {took:.2f} s after the interrupt (< 3 s)")
    TAP.ok(wait_gone(info, 1.0), "interrupt: nothing of the interrupted run is left", leftovers(info))

    # interrupt, concurrent senders
    st, active = send(sid, "sleep 30")
    info = wait_sleep(sid, active["run"])
    res = concurrently([lambda i=i: send(sid, f"echo i{i}", "interrupt") for i in range(4)])
    TAP.ok(all(s == 202 for s, _ in res), "interrupt, 4 concurrent senders: all 202", res)
    runs = [d["run"] for s, d in res if s == 202]
    done = wait_for(lambda: all(completion(transcript(sid), r) for r in runs + [active["run"]]), 20)
    evs = transcript(sid)
    TAP.ok(done, "interrupt, concurrent: every run ends", [completion(evs, r) for r in runs])
    TAP.is_((completion(evs, active["run"]) or {}).get("status"), "cancelled", "interrupt, concurrent: the sleeping run is cancelled")
    stats = [(completion(evs, r) or {}).get("status") for r in runs]
    TAP.ok("success" in stats and all(s in ("success", "cancelled") for s in stats),
           "interrupt, concurrent: the new runs succeed or are cancelled by a later interrupt", stats)
    TAP.ok(not overlaps(evs), "interrupt, concurrent: one run at a time", overlaps(evs))
    TAP.ok(wait_gone(info, 1.0), "interrupt, concurrent: nothing of the sleeping run is left", leftovers(info))
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(not active_id(sess), "modes: the session ends idle", sess)


# ---- restart, offsets, feed -------------------------------------------------------------------------

class Follower(threading.Thread):
    """A client following a JSON stream: catch-up, then long-polls, each a new connection resuming
    from the last offset it saw; connection failures (the server is down) are retried."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.offset = "-1"
        self.events = []
        self.stop = threading.Event()
        self.requests = 0
        self.errors = 0

    def run(self):
        while not self.stop.is_set():
            q = f"{self.path}?offset={self.offset}" + ("" if self.offset == "-1" else "&live=long-poll")
            try:
                r = http_request(SRV.host, SRV.port, "GET", q, timeout=5)
            except OSError:
                self.errors += 1
                time.sleep(0.05)
                continue
            self.requests += 1
            if r.status == 200:
                if r.body.strip():
                    self.events.extend(json.loads(r.body))
                self.offset = r.header("Stream-Next-Offset") or self.offset
            elif r.status == 204:
                self.offset = r.header("Stream-Next-Offset") or self.offset
            else:
                self.errors += 1
                time.sleep(0.05)


def test_restart():
    sid = new_session("restart")
    fol = Follower(f"/v1/stream/sessions/{sid}/transcript")
    fol.start()
    run1, ev, evs = run_and_wait(sid, "echo first")
    native = native_of(evs, run1)
    st, d = send(sid, "count 5 20; sleep 30")
    run2 = d["run"]
    info = wait_sleep(sid, run2)
    TAP.ok(info, "restart: a run is mid-way (sleep child running)")
    SRV.kill9()
    gone = wait_gone(info, 5.0)
    TAP.ok(gone, "restart: nothing of the run outlives agentd killed with -9", leftovers(info))
    for p in leftovers(info):
        try:
            os.kill(p[0], 9)
        except OSError:
            pass
    time.sleep(0.3)  # the follower sees the server down
    SRV.start()
    ev, evs = wait_done(sid, run2, 10)
    TAP.ok(ev and ev.get("status") == "error" and ev.get("code") == "server_restart",
           "restart: the interrupted run is closed as error, code server_restart", ev)
    errs = [e for e in of_run(evs, run2, ("error",)) if e.get("code") == "server_restart"]
    TAP.is_(len(errs), 1, "restart: one error event with code server_restart")
    st, runs = api("GET", f"/v1/sessions/{sid}/runs")
    r2 = [r for r in (runs or {}).get("runs", []) if r.get("id") == run2]
    TAP.ok(r2 and r2[0].get("status") == "error", "restart: the run is listed as error", runs)
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.ok(st == 200 and not active_id(sess) and sess.get("native_session") == native,
           "restart: the session is idle and keeps its native session", sess)
    run3, ev, evs = run_and_wait(sid, "history")
    TAP.ok(ev and ev.get("status") == "success" and message_texts(evs, run3) == ["turns: 3"],
           "restart: the next message resumes the session (history 3)", message_texts(evs, run3))
    user = [i for i in inputs("restart") if i.get("type") == "user"]
    TAP.ok(user and user[-1].get("resume") == native, "restart: the agent got resume = its native session", user[-1:])
    TAP.ok(not overlaps(evs), "restart: one run at a time", overlaps(evs))

    # the follower: every event exactly once, in order, across the restart
    time.sleep(0.3)
    n = len(transcript(sid))
    wait_for(lambda: len(fol.events) >= n, 5)
    fol.stop.set()
    fol.join(10)
    # it reconnects once more from its last offset and catches up with whatever came since
    bodies, _ = SRV.read_all(f"/v1/stream/sessions/{sid}/transcript", offset=fol.offset)
    for b in bodies:
        if b.strip():
            fol.events.extend(json.loads(b))
    full = transcript(sid)
    TAP.ok(fol.events == full, f"reconnecting client: {len(fol.events)} events, exactly the transcript's "
           f"{len(full)}, once each, in order ({fol.requests} requests, {fol.errors} failed while down)",
           f"follower {len(fol.events)} vs transcript {len(full)}")
    # a catch-up reader paging through with ?offset= gets the same
    offs = []
    off = "-1"
    got = []
    for _ in range(1000):
        r = SRV.request("GET", f"/v1/stream/sessions/{sid}/transcript?offset={off}")
        if r.status != 200:
            break
        batch = json.loads(r.body) if r.body.strip() else []
        got.extend(batch)
        offs.append(off)
        nxt = r.header("Stream-Next-Offset")
        if r.header("Stream-Up-To-Date") == "true" or nxt == off:
            break
        off = nxt
    TAP.ok(got == full, "catch-up with ?offset= from the start reads the same events", len(got))
    return sid


def test_feed():
    r = SRV.request("GET", "/v1/stream/sessions?offset=-1")
    TAP.is_(r.status, 200, "the sessions feed is readable")
    tail = r.header("Stream-Next-Offset")
    box = {}

    def poll(off, key, until):
        """Long-polls the feed from off until a record satisfying until arrives (or 10 s)."""
        deadline = time.monotonic() + 10
        got = []
        while time.monotonic() < deadline:
            try:
                rr = http_request(SRV.host, SRV.port, "GET", f"/v1/stream/sessions?offset={off}&live=long-poll",
                                  timeout=5)
            except OSError:
                time.sleep(0.05)
                continue
            if rr.status == 200 and rr.body.strip():
                got.extend(json.loads(rr.body))
            off = rr.header("Stream-Next-Offset") or off
            if any(until(x) for x in got):
                break
        box[key] = (got, off)

    t = threading.Thread(target=poll, args=(tail, "new", lambda x: x.get("key") == box.get("sid")), daemon=True)
    t.start()
    time.sleep(0.2)
    sid = box["sid"] = new_session("feed", tags=["feed"])
    t.join(12)
    got, off = box.get("new", ([], tail))
    mine = [x for x in got if x.get("key") == sid]
    TAP.ok(mine and mine[0].get("headers", {}).get("operation") == "insert" and
           mine[0].get("value", {}).get("id") == sid,
           "feed: a live long-poll from the tail sees the new session (insert)", got)

    t = threading.Thread(target=poll, args=(off, "change", lambda x: x.get("key") == sid and
                                            x.get("headers", {}).get("operation") == "update"), daemon=True)
    t.start()
    run, ev, _ = run_and_wait(sid, "echo changed")
    t.join(12)
    got, off = box.get("change", ([], off))
    ups = [x for x in got if x.get("key") == sid and x.get("headers", {}).get("operation") == "update"]
    TAP.ok(ups, "feed: a run changes the session (update records)", got)
    TAP.diag("feed update values: " + json.dumps([u.get("value", {}).get("status") for u in ups]))

    t = threading.Thread(target=poll, args=(off, "del", lambda x: x.get("key") == sid and (
        x.get("headers", {}).get("operation") == "delete" or x.get("value", {}).get("status") == "deleted")),
        daemon=True)
    t.start()
    st, _ = api("DELETE", f"/v1/sessions/{sid}")
    t.join(12)
    got, _ = box.get("del", ([], off))
    TAP.ok(any(x.get("key") == sid and (x.get("headers", {}).get("operation") == "delete" or
                                        x.get("value", {}).get("status") == "deleted") for x in got),
           "feed: the deletion shows", got)
    allrecs, r = SRV.read_json("/v1/stream/sessions")
    TAP.ok(sum(1 for x in allrecs if x.get("key") == sid) >= 3, "feed: catch-up from -1 holds the session's history",
           [x for x in allrecs if x.get("key") == sid])


# ---- bad input and misbehaving agents --------------------------------------------------------------

def test_bad_input():
    cases = [
        ("unknown agent", {"agent": "no-such-agent"}),
        ("jsonl without command", {"agent": "jsonl"}),
        ("jsonl with an empty command", {"agent": "jsonl", "command": []}),
        ("command not strings", {"agent": "jsonl", "command": ["python3", 7]}),
        ("missing workspace", {"agent": "jsonl", "command": agent_cmd(), "workspace": "/nonexistent/agentd-ws"}),
        ("env not an object", {"agent": "jsonl", "command": agent_cmd(), "env": ["A=B"]}),
    ]
    for name, body in cases:
        st, doc = api("POST", "/v1/sessions", body)
        TAP.ok(st == 400 and is_error_body(doc), f"bad input: {name} → 400 JSON error", f"{st} {doc!r}")
    for name, raw in [("malformed body", b"{not json"), ("body not an object", b"[1,2]"), ("empty body", b"")]:
        st, doc = api("POST", "/v1/sessions", raw=raw)
        TAP.ok(st == 400 and is_error_body(doc), f"bad input: {name} → 400 JSON error", f"{st} {doc!r}")

    sid = new_session("bad")
    for name, raw in [("malformed message body", b"{\"text\":"), ("message without text", b"{}"),
                      ("text not a string", b"{\"text\":5}"), ("unknown mode", b"{\"text\":\"x\",\"mode\":\"later\"}")]:
        st, doc = api("POST", f"/v1/sessions/{sid}/messages", raw=raw)
        TAP.ok(st == 400 and is_error_body(doc), f"bad input: {name} → 400 JSON error", f"{st} {doc!r}")
    st, doc = send("nosuchsession", "hello")
    TAP.ok(st == 404 and is_error_body(doc), "message to an unknown session → 404 JSON error", f"{st} {doc!r}")
    st, doc = api("POST", "/v1/sessions", {"agent": "none"})
    st, doc = send(doc["id"], "hello")
    TAP.ok(st in (400, 409) and is_error_body(doc), "message to a runtime-only session → JSON error", f"{st} {doc!r}")

    # delete while a run is active: its processes end; then messages get 404
    st, d = send(sid, "sleep 30")
    info = wait_sleep(sid, d["run"])
    st, _ = api("DELETE", f"/v1/sessions/{sid}")
    TAP.ok(st in (200, 204), "delete a session with an active run", st)
    TAP.ok(info and wait_gone(info, 3.0), "delete: no process of its run is left", leftovers(info))
    st, doc = send(sid, "hello")
    TAP.ok(st == 404 and is_error_body(doc), "message to a deleted session → 404 JSON error", f"{st} {doc!r}")
    st, doc = api("POST", f"/v1/sessions/{sid}/runs/{d['run']}/cancel", {})
    TAP.ok(st == 404 and is_error_body(doc), "cancel in a deleted session → 404 JSON error", f"{st} {doc!r}")


def test_agents_misbehaving():
    # binary missing
    st, doc = api("POST", "/v1/sessions", {"agent": "jsonl", "command": ["/nonexistent/agentd-test-agent", "x"]})
    if TAP.ok(st == 201, "a session whose agent binary is missing can be created", f"{st} {doc!r}"):
        sid = doc["id"]
        run, ev, evs = run_and_wait(sid, "hello", timeout=10)
        errs = [e.get("code") for e in of_run(evs, run, ("error",))]
        TAP.ok(ev and ev.get("status") == "error", "missing binary: the run ends as error", ev)
        TAP.ok("agent_not_found" in errs, "missing binary: an error event with code agent_not_found", errs)
        TAP.ok(ev and ev.get("code") == "agent_not_found", "missing binary: run_completed code agent_not_found", ev)

    sid = new_session("misc", env={"FOO": "bar"})
    run, ev, evs = run_and_wait(sid, "crash")
    errs = [e.get("code") for e in of_run(evs, run, ("error",))]
    TAP.ok(ev and ev.get("status") == "error" and ev.get("code") == "agent_crashed" and "agent_crashed" in errs,
           "crash (SIGSEGV): run error with code agent_crashed and an error event", (ev, errs))
    TAP.ok(message_texts(evs, run) == ["crashing"], "crash: what the agent wrote before is kept")

    run, ev, evs = run_and_wait(sid, "exit 3")
    TAP.ok(ev and ev.get("status") == "error" and ev.get("code") == "agent_error",
           "exit 3 without a result: run error, code agent_error", ev)
    run, ev, evs = run_and_wait(sid, "echo partial; fail nope")
    TAP.ok(ev and ev.get("status") == "error" and ev.get("result") == "nope",
           "a result with is_error: run error with the result text", ev)
    run, ev, evs = run_and_wait(sid, "noresult")
    TAP.ok(ev and ev.get("status") == "success", "exit 0 without a result: success", ev)

    run, ev, evs = run_and_wait(sid, "garbage", timeout=30)
    TAP.ok(ev and ev.get("status") == "success" and message_texts(evs, run) == ["after garbage"],
           "garbage: the run goes on past it and succeeds", ev)
    warns = [e for e in of_run(evs, run, ("log",)) if e.get("level") == "warn"]
    natives = [e.get("native") for e in warns]
    TAP.ok("this is not json" in natives, "garbage: a non-JSON line is a warn log keeping the raw line", natives[:8])
    TAP.ok(len(warns) >= 5, f"garbage: each bad line becomes a warn log ({len(warns)})", natives[:8])
    big = [e for e in of_run(evs, run, ("error",)) if e.get("code") == "agent_output_too_long"]
    TAP.ok(len(big) == 1, "garbage: the 9 MiB line is one error agent_output_too_long", [e.get("code") for e in of_run(evs, run, ("error",))])
    TAP.ok(SRV.healthy(), "garbage: the server keeps serving")

    run, ev, evs = run_and_wait(sid, "stderr")
    lv = {e.get("text"): e.get("level") for e in of_run(evs, run, ("log",))}
    TAP.ok(lv.get("warning: careful") == "warn" and lv.get("error: broken") == "error" and lv.get("plain line") == "info",
           "stderr lines are log events with a level", lv)

    run, ev, evs = run_and_wait(sid, f"env FOO; env {CANARY}; pwd")
    st, sess = api("GET", f"/v1/sessions/{sid}")
    TAP.is_(message_texts(evs, run), ["bar", "<unset>", os.path.realpath(sess.get("workspace", ""))],
            "the agent sees the session's env, not agentd's, and runs in the workspace")
    run, ev, evs = run_and_wait(sid, "delta hello big world")
    TAP.ok([e.get("text") for e in of_run(evs, run, ("delta",))] == ["hello ", "big ", "world"] and
           message_texts(evs, run) == ["hello big world"], "delta events, then the whole message")
    TAP.ok(not overlaps(transcript(sid)), "misbehaving agents: runs never overlap", overlaps(transcript(sid)))


def test_stop_with_active_run():
    sid = new_session("stop")
    st, d = send(sid, "sleep 30")
    info = wait_sleep(sid, d["run"])
    TAP.check_clean_exit(SRV, "SIGTERM with a run active: clean exit")
    TAP.ok(info and wait_gone(info, 3.0), "... and no process of that run is left", leftovers(info))
    SRV.start()
    ev, evs = wait_done(sid, d["run"], 10)
    TAP.ok(ev and ev.get("status") in ("error", "cancelled"), "... the run is closed at the next start", ev)
    TAP.check_clean_exit(SRV)


def main(tap):
    global TAP, SRV, WORK
    TAP = tap
    SRV = Server(env={CANARY: "leaked"})
    SRV.start()
    WORK = os.path.join(SRV.root, "agent")
    os.makedirs(WORK)
    st, doc = api("POST", "/v1/sessions", {"agent": "jsonl", "command": agent_cmd("probe")})
    if st in (404, 501):
        tap.skip("jsonl agent sessions", f"agentd does not run agents yet: {st} {doc!r}")
        return
    tap.is_(st, 201, "POST /v1/sessions with agent jsonl and a command")

    r = section("flow", test_flow)
    if r:
        sid, native = r
        section("resume", test_resume, sid, native)
        section("fork", test_fork, sid, native)
    section("cancel", test_cancel)
    section("modes", test_modes)
    section("feed", test_feed)
    section("bad input", test_bad_input)
    section("misbehaving agents", test_agents_misbehaving)
    section("restart", test_restart)
    section("stop", test_stop_with_active_run)


if __name__ == "__main__":
    run_test(main)
