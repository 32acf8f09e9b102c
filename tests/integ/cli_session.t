#!/usr/bin/env python3
"""Integration tests for `agentd session send|tail|runs|cancel|fork|share` (src/cli/cli_session.c),
TAP output for prove.

The client is the real binary ($AGENTD_CLI_BIN, default $AGENTD_BIN) run against `agentd serve` on
port 0 (agentd_test.Server), with sessions whose agent is the jsonl test agent
(tests/agents/jsonl_agent.py). Most sessions are created over HTTP; test_new_agent creates one
with `session new --agent jsonl --command ...` and runs it.

Checked: send prints the run id on its first line; --wait prints the run's events and exits 0
for a successful run, 5 for a failed one, 4 for a cancelled one; --mode reject on a busy session
exits 4; cancel (default: the active run) stops a sleeping run within a few seconds and exits 4
when there is nothing to cancel; runs prints a table and --json one record per line; tail
--json --until-idle prints the whole transcript in order and exits; --until-idle waits for a run
in progress; tail --from OFFSET (the next-offset a tail reported) resumes with no event twice;
the readable rendering; fork prints the new id; share prints a token and absolute URLs, and
--revoke removes it; not found (3), unreachable (2), usage (1); --token reaches a server with a
token, also from tail --until-idle's second connection; --server, --token and --json before the
command; new, fork and share print their one result alone on stdout when it is not a terminal.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test, wait_for  # noqa: E402

BIN = os.environ.get("AGENTD_CLI_BIN") or os.environ.get("AGENTD_BIN") or "build/release/agentd"
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
RUN_RE = re.compile(r"^run_[0-9a-f]+$")
TAP = None
SRV = None
WORK = None


def ok(cond, name, diag=None):
    return TAP.ok(cond, name, diag)


def env_for(srv, token=None):
    env = dict(os.environ, AGENTD_URL=srv.url)
    env.pop("AGENTD_TOKEN", None)
    if token is not None:
        env["AGENTD_TOKEN"] = token
    return env


def cli(*args, srv=None, token=None, timeout=30):
    """Runs `agentd session ARGS`; returns (rc, stdout text, stderr text)."""
    proc = subprocess.run([BIN, "session"] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, env=env_for(srv or SRV, token), timeout=timeout)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def background(*args):
    return subprocess.Popen([BIN, "session"] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for(SRV))


def finish(proc, timeout=20):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def next_offset(err):
    m = re.search(r"^next-offset: (\S+)$", err, re.M)
    return m.group(1) if m else None


def new_session(srv=None, name="a"):
    srv = srv or SRV
    cmd = ["python3", AGENT, "--state", os.path.join(WORK, "state")]
    r = srv.request("POST", "/v1/sessions", json.dumps({"agent": "jsonl", "command": cmd}).encode(),
                    {"Content-Type": "application/json"})
    if r.status != 201:
        raise RuntimeError(f"session create: {r!r}")
    return r.json()["id"]


def transcript(sid):
    evs, r = SRV.read_json(f"/v1/stream/sessions/{sid}/transcript")
    return evs if r.status == 200 else []


def runs_of(sid):
    return SRV.request("GET", f"/v1/sessions/{sid}/runs").json()["runs"]




def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- send --------------------------------------------------------------------------------------

def test_new_agent():
    rc, out, err = cli("new", "--agent", "jsonl", "--command", sys.executable, "--command", AGENT, "--tag", "cli")
    sid = out.splitlines()[0] if out else ""
    TAP.ok(rc == 0 and len(sid) == 24, "session new --agent jsonl --command ... prints the new id", err)
    TAP.ok(out == sid + "\n" and re.search(r"^workspace: /", err, re.M),
           "session new into a pipe: the id alone on stdout, the workspace on stderr", (out, err))
    rc, out, err = cli("send", sid, "echo made by the cli", "--wait")
    TAP.ok(rc == 0 and "made by the cli" in out, "a session made by the cli runs its agent", out + err)
    rc, out, err = cli("new", "--agent", "jsonl")
    TAP.ok(rc == 5 and "command" in err, "a jsonl session without --command is refused with the server's reason", err)


def test_send(sid):
    rc, out, err = cli("send", sid, "echo plain")
    lines = out.splitlines()
    ok(rc == 0 and len(lines) == 1 and RUN_RE.match(lines[0]), "send prints the run id alone",
       (rc, out, err))
    wait_for(lambda: all(r["status"] not in ("queued", "running") for r in runs_of(sid)), 10)

    rc, out, err = cli("send", sid, "echo hello; tool echo tool-out", "--wait")
    lines = out.splitlines()
    ok(rc == 0, "send --wait: a successful run exits 0", (rc, out, err))
    ok(lines and RUN_RE.match(lines[0]), "send --wait: the run id is the first line", out)
    for want in ("> echo hello; tool echo tool-out", "hello", "$ Bash(echo tool-out)",
                 "  tool-out"):
        ok(want in lines, f"send --wait renders {want!r}", out)
    ok(lines and lines[-1] == "-- run completed: success", "send --wait ends with the run's end",
       out)
    run = lines[0] if lines else None
    evs = transcript(sid)
    ok(any(e.get("type") == "run_completed" and e.get("run") == run for e in evs),
       "the printed id is the run that completed", run)

    rc, out, err = cli("send", sid, "fail", "--wait")
    lines = out.splitlines()
    ok(rc == 5, "send --wait: a failed run exits 5", (rc, out, err))
    ok(lines and lines[-1] == "-- run completed: error (agent_error)",
       "send --wait: the failed run's end is printed", out)
    ok("ended error" in err, "send --wait: stderr says how the run ended", err)

    rc, out, err = cli("send", sid, "count 3", "--wait", "--json")
    docs = json_lines(out) if rc == 0 else []
    ok(rc == 0 and docs and RUN_RE.match(docs[0].get("id", "")),
       "send --wait --json: the answer first", (rc, out, err))
    if docs:
        run = docs[0]["id"]
        events = docs[1:]
        ok(events and all(e.get("run") == run for e in events),
           "send --wait --json: then only that run's events", out)
        ok([e["type"] for e in events][:1] == ["run_start"] and events[-1]["type"] == "run_completed"
           and events[-1]["status"] == "success", "send --wait --json: run_start .. run_completed",
           [e.get("type") for e in events])
        texts = [e["content"][0]["text"] for e in events if e["type"] == "message"]
        ok(texts == ["n=1", "n=2", "n=3"], "send --wait --json: the messages in order", texts)

    rc, out, err = cli("send", sid, "echo x", "--mode", "sideways")
    ok(rc == 5 and out == "", "send --mode with an unknown mode exits 5", (rc, out, err))
    rc, out, err = cli("send", sid)
    ok(rc == 1, "send without TEXT is a usage error", (rc, err))
    rc, out, err = cli("send", "no-such-session", "hi", "--wait")
    ok(rc == 3 and out == "", "send to a missing session exits 3", (rc, out, err))


# ---- cancel, reject ----------------------------------------------------------------------------

def test_cancel(sid):
    waiter = background("send", sid, "sleep 30", "--wait")
    line = waiter.stdout.readline().decode().strip()
    ok(RUN_RE.match(line), "send --wait prints the id before the run ends", line)

    def sleeping():
        return any(e.get("type") == "log" and e.get("run") == line and
                   str(e.get("text", "")).startswith("sleep pid=") for e in transcript(sid))
    ok(wait_for(sleeping, 10), "the agent is sleeping")

    rc, out, err = cli("send", sid, "echo rejected", "--mode", "reject")
    ok(rc == 4 and out == "", "send --mode reject while a run is active exits 4", (rc, out, err))

    started = time.monotonic()
    rc, out, err = cli("cancel", sid)
    lines = out.splitlines()
    ok(rc == 0 and lines[:1] == [line], "cancel without RUN cancels the active run, printing its id",
       (rc, out, err))
    rc, out, err = finish(waiter)
    took = time.monotonic() - started
    ok(rc == 4, "send --wait: a cancelled run exits 4", (rc, out[-300:], err))
    ok(out.splitlines()[-1:] == ["-- run completed: cancelled (cancelled)"],
       "send --wait: the cancelled run's end is printed", out[-300:])
    ok(took < 5, f"the sleeping run ended {took:.1f}s after cancel")
    ok(any(r["id"] == line and r["status"] == "cancelled" for r in runs_of(sid)),
       "the run record says cancelled")

    rc, out, err = cli("cancel", sid)
    ok(rc == 4 and "no active run" in err, "cancel with no active run exits 4", (rc, out, err))
    rc, out, err = cli("cancel", sid, line)
    ok(rc == 4, "cancel of a finished run exits 4", (rc, out, err))
    rc, out, err = cli("cancel", "no-such-session")
    ok(rc == 3, "cancel in a missing session exits 3", (rc, out, err))

    # A queued run cancelled by id, with --json.
    first = cli("send", sid, "sleep 30")[1].strip()
    queued = cli("send", sid, "echo later")[1].strip()
    rc, out, err = cli("cancel", sid, queued, "--json")
    docs = json_lines(out) if rc == 0 else []
    ok(rc == 0 and docs and docs[0].get("run") == queued and docs[0].get("status") == "cancelled",
       "cancel ID RUN --json cancels a queued run", (rc, out, err))
    rc, out, err = cli("cancel", sid, first)
    ok(rc == 0 and out.splitlines()[:1] == [first], "cancel ID RUN cancels the running one",
       (rc, out, err))
    ok(wait_for(lambda: all(r["status"] not in ("queued", "running") for r in runs_of(sid)), 10),
       "no run is left")


# ---- runs --------------------------------------------------------------------------------------

def test_runs(sid):
    records = runs_of(sid)
    rc, out, err = cli("runs", sid)
    lines = out.splitlines()
    ok(rc == 0 and lines and lines[0].split() == ["ID", "STATUS", "MODE", "CREATED", "TOOK", "CODE",
                                                   "INPUT"], "runs prints a table header",
       (rc, out, err))
    ok(len(lines) == len(records) + 1, "runs prints a row per run", (len(lines), len(records)))
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    ok(all(rows.get(r["id"], [None, None])[1] == r["status"] for r in records),
       "each row has the run's status", out)
    # ID STATUS MODE DATE TIME TOOK CODE INPUT...: CREATED is two words.
    ok(any(rows.get(r["id"], [None] * 7)[6] == "agent_error" for r in records),
       "a failed run's row shows its code", out)

    rc, out, err = cli("runs", sid, "--json")
    docs = json_lines(out) if rc == 0 else []
    ok([d.get("id") for d in docs] == [r["id"] for r in records], "runs --json: one record a line",
       (rc, out[:300], err))
    rc, out, err = cli("runs", "no-such-session")
    ok(rc == 3, "runs of a missing session exits 3", (rc, out, err))


# ---- tail --------------------------------------------------------------------------------------

def order_problems(evs):
    """Events of a run outside its run_start .. run_completed, or runs overlapping. A queued run
    cancelled before it started has only its error and run_completed."""
    bad, open_run, started = [], None, set()
    for e in evs:
        t, r = e.get("type"), e.get("run")
        if r is not None and t != "run_start" and r not in started:
            if t not in ("error", "run_completed"):
                bad.append(f"{t} of {r} before its run_start")
        elif t == "run_start":
            if open_run is not None:
                bad.append(f"run_start {r} while {open_run} is open")
            open_run = r
            started.add(r)
        elif t == "run_completed":
            if r != open_run:
                bad.append(f"run_completed {r} while {open_run} is open")
            open_run = None
        elif r is not None and r != open_run:
            bad.append(f"{t} of {r} outside its run")
    return bad


def test_tail(sid):
    expected = transcript(sid)
    rc, out, err = cli("tail", sid, "--json", "--until-idle", timeout=20)
    evs = json_lines(out) if rc == 0 else []
    ok(rc == 0, "tail --json --until-idle exits 0 on an idle session", (rc, err))
    ok(evs == expected, "tail --json prints the whole transcript, one event a line, in order",
       (len(evs), len(expected)))
    ok(evs and evs[0].get("type") == "session", "the first event is the session's creation",
       evs[:1])
    ok(not order_problems(evs), "each run's events lie between its run_start and run_completed",
       order_problems(evs))
    completed = {e["run"] for e in evs if e.get("type") == "run_completed"}
    ok(completed == {r["id"] for r in runs_of(sid)}, "every run's end was printed")
    offset = next_offset(err)
    ok(offset is not None, "tail reports its next offset on stderr", err)

    # --until-idle waits for a run in progress.
    run = cli("send", sid, "count 4 150")[1].strip()
    started = time.monotonic()
    rc, out, err = cli("tail", sid, "--json", "--until-idle", "--from", offset, timeout=20)
    took = time.monotonic() - started
    evs = json_lines(out) if rc == 0 else []
    ok(rc == 0 and evs and evs[-1].get("type") == "run_completed" and evs[-1].get("run") == run,
       "tail --until-idle ends with the run that was in progress", (rc, out[-300:], err))
    ok(took > 0.3, f"tail --until-idle waited for the run ({took:.2f}s)")
    ok(evs and evs[0].get("type") == "run_start" and evs[0].get("run") == run,
       "tail --from the reported offset starts with the next event", evs[:1])
    second = next_offset(err)

    # Resuming twice more: the pieces put together are the transcript, nothing twice.
    cli("send", sid, "echo resumed", "--wait")
    rc, out, err = cli("tail", sid, "--json", "--until-idle", "--from", second)
    third = json_lines(out) if rc == 0 else []
    ok(rc == 0 and [e.get("type") for e in third][:1] == ["run_start"] and
       third[0].get("input") == "echo resumed", "tail --from resumes at the new run", third[:1])
    rc, out, err = cli("tail", sid, "--json", "--until-idle", "--from", next_offset(err) or "now")
    ok(rc == 0 and out == "", "tail --from the final offset prints nothing new", (rc, out, err))
    full = transcript(sid)
    ok(expected + evs + third == full, "the resumed pieces are the transcript exactly once",
       (len(expected), len(evs), len(third), len(full)))

    # The readable rendering.
    rc, out, err = cli("tail", sid, "--until-idle")
    lines = out.splitlines()
    ok(rc == 0, "tail --until-idle (readable) exits 0", (rc, err))
    for want in ("> echo hello; tool echo tool-out", "$ Bash(echo tool-out)", "  tool-out",
                 "-- run completed: success", "-- run completed: error (agent_error)",
                 "[error] the agent reported an error (agent_error)",
                 "-- run completed: cancelled (cancelled)", "n=2", "-- environment: ready"):
        ok(want in lines, f"tail renders {want!r}", out[:2000])
    ok(not any(line.startswith("{") for line in lines), "the readable tail prints no raw JSON")
    ok(any(re.match(r"^\[(info|warn|debug)\] ", line) for line in lines), "logs as [level] text")

    rc, out, err = cli("tail", "no-such-session", "--until-idle")
    ok(rc == 3, "tail of a missing session exits 3", (rc, out, err))


def test_tail_follows_live(sid):
    """A tail without --until-idle keeps printing what comes, until it is stopped."""
    proc = background("tail", sid, "--json", "--from", "now")
    time.sleep(0.3)
    run = cli("send", sid, "echo live", "--wait")[1].splitlines()[0]
    got = []

    def seen():
        line = proc.stdout.readline()
        if line:
            got.append(json.loads(line))
        return any(e.get("type") == "run_completed" and e.get("run") == run for e in got)
    done = wait_for(seen, 10, interval=0)
    proc.terminate()
    finish(proc)
    ok(done and got[0].get("type") == "run_start", "a live tail prints new events as they come",
       got[:2])


# ---- fork, share -------------------------------------------------------------------------------

def test_fork(sid):
    rc, out, err = cli("fork", sid)
    lines = out.splitlines()
    child = lines[0] if lines else ""
    ok(rc == 0 and re.match(r"^[0-9a-f]+$", child) and child != sid and lines == [child],
       "fork prints the new id alone on stdout", (rc, out, err))
    ok(re.search(r"^workspace: /", err, re.M), "fork: the workspace on stderr", err)
    ok(SRV.request("GET", f"/v1/sessions/{child}").status == 200, "the fork exists")
    rc, out, err = cli("send", child, "history", "--wait")
    ok(rc == 0 and "-- run completed: success" in out, "the fork runs its own messages",
       (rc, out, err))

    evs, r = SRV.read_all(f"/v1/stream/sessions/{sid}/transcript", offset="-1", max_requests=1)
    at = r.header("Stream-Next-Offset")
    rc, out, err = cli("fork", sid, "--at", "0000000000000000_0000000000000000", "--json")
    docs = json_lines(out) if rc == 0 else []
    ok(rc == 0 and docs and docs[0].get("id"), "fork --at OFFSET --json prints the new session",
       (rc, out, err, at))
    if docs:
        rc, out, err = cli("tail", docs[0]["id"], "--json", "--until-idle")
        ok(rc == 0 and not any(e.get("type") == "run_start" for e in json_lines(out)),
           "a fork at the start has none of the parent's runs", out[:500])
    rc, out, err = cli("fork", sid, "--at", "bogus")
    ok(rc == 5, "fork --at a bad offset exits 5", (rc, out, err))
    rc, out, err = cli("fork", "no-such-session")
    ok(rc == 3, "fork of a missing session exits 3", (rc, out, err))


def test_share(sid):
    rc, out, err = cli("share", sid)
    lines = out.splitlines()
    token = lines[0] if lines else ""
    ok(rc == 0 and re.match(r"^[0-9a-f]{16,}$", token), "share prints the token first",
       (rc, out, err))
    ok(lines == [token], "share into a pipe: the token alone on stdout", out)
    urls = dict(line.split(": ", 1) for line in err.splitlines() if ": " in line)
    ok(urls.get("session", "").startswith(SRV.url + "/") and token in urls.get("session", ""),
       "share prints absolute URLs with the token (on stderr when stdout is not a terminal)", err)
    r = SRV.request("GET", urls.get("session", "")[len(SRV.url):], auth=False)
    ok(r.status == 200 and r.json().get("id") == sid, "the session URL works", r)

    rc, out, err = cli("share", sid, "--revoke", token)
    ok(rc == 0 and out == "", "share --revoke prints nothing", (rc, out, err))
    shares = SRV.request("GET", f"/v1/sessions/{sid}/share").json().get("shares", [])
    ok(not any(s.get("token") == token for s in shares), "the token is gone", shares)
    rc, out, err = cli("share", sid, "--revoke", token)
    ok(rc == 3, "revoking it again exits 3", (rc, out, err))

    rc, out, err = cli("share", sid, "--json")
    docs = json_lines(out) if rc == 0 else []
    ok(rc == 0 and docs and docs[0].get("token") and docs[0].get("urls"), "share --json",
       (rc, out, err))
    if docs:
        rc, out, err = cli("share", sid, "--revoke", docs[0]["token"], "--json")
        ok(rc == 0 and json_lines(out) == [{"token": docs[0]["token"], "revoked": True}],
           "share --revoke --json", (rc, out, err))


# ---- servers -----------------------------------------------------------------------------------

def test_unreachable(sid):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("send", sid, "hi", "--wait"), ("tail", sid), ("runs", sid), ("cancel", sid),
                 ("fork", sid), ("share", sid)):
        rc, out, err = cli(*args, "--server", url)
        ok(rc == 2, f"{args[0]} with no server exits 2", (rc, out, err))


def agentd(*args, env):
    proc = subprocess.run([BIN] + list(args), stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def test_global_options_first(sid):
    """--server, --token and --json may come before the command, as in `agentd --server URL session ls`."""
    env = dict(os.environ)
    env.pop("AGENTD_URL", None)
    env.pop("AGENTD_TOKEN", None)
    env["AGENTD_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there: only --server reaches SRV
    rc, out, err = agentd("--server", SRV.url, "session", "ls", env=env)
    ok(rc == 0 and sid in out, "agentd --server URL session ls", (rc, out, err))
    rc, out, err = agentd("--server", SRV.url, "--json", "session", "ls", env=env)
    docs = json_lines(out) if rc == 0 else []
    ok(docs and all(d.get("id") for d in docs) and sid in [d["id"] for d in docs] and "ID" not in out.split()[:1],
       "agentd --json session ls: one session record a line, no table header", (rc, out[:300], err))
    rc, out, err = agentd(f"--server={SRV.url}", "--json", "session", "show", sid, env=env)
    docs = json_lines(out) if rc == 0 else []
    ok(docs and docs[0].get("id") == sid, "agentd --server=URL --json session show ID", (rc, out, err))
    rc, out, err = agentd("--json", "--server", SRV.url, "stream", "read", f"sessions/{sid}/transcript", env=env)
    ok(rc == 0 and json_lines(out), "agentd --json --server URL stream read PATH", (rc, out[:300], err))
    rc, out, err = agentd("--bogus", "session", "ls", env=env)
    ok(rc == 1 and "unknown option --bogus" in err, "an unknown option before the command is a usage error",
       (rc, err))
    rc, out, err = agentd("--server", env=env)
    ok(rc == 1 and "needs a value" in err, "--server without a value before the command", (rc, err))
    rc, out, err = agentd("--json", env=env)
    ok(rc == 1 and "no command" in err, "options with no command", (rc, err))


def test_token():
    srv = Server(token="s3cret")
    srv.start()
    sid = new_session(srv)
    rc, out, err = cli("send", sid, "echo guarded", "--wait", "--token", "s3cret", srv=srv)
    ok(rc == 0 and "guarded" in out.splitlines(), "send --wait --token", (rc, out, err))
    rc, out, err = cli("tail", sid, "--until-idle", "--json", srv=srv, token="s3cret")
    ok(rc == 0 and json_lines(out)[-1].get("type") == "run_completed",
       "tail --until-idle with $AGENTD_TOKEN (both connections)", (rc, out[-300:], err))
    rc, out, err = cli("runs", sid, srv=srv)
    ok(rc == 5, "no token: 401 exits 5", (rc, out, err))
    TAP.check_clean_exit(srv, "the server with a token stops cleanly")


def main(tap):
    global TAP, SRV, WORK
    TAP = tap
    WORK = tempfile.mkdtemp(prefix="agentd-cli-session-")
    SRV = Server()
    SRV.start()
    sid = new_session()
    test_new_agent()
    test_send(sid)
    test_cancel(sid)
    test_runs(sid)
    test_tail(sid)
    test_tail_follows_live(sid)
    test_fork(sid)
    test_share(sid)
    test_unreachable(sid)
    test_global_options_first(sid)
    test_token()
    tap.check_clean_exit(SRV)


if __name__ == "__main__":
    run_test(main)
