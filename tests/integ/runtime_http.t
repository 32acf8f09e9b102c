#!/usr/bin/env python3
"""Integration tests for persistent runtimes over HTTP (/v1/sessions/<id>/runtimes/<lang>/...) and
for the `agentd rt` and `agentd session` client commands, against the real binary ($AGENTD_BIN).

Everything goes through HTTP or the CLI: sessions are runtime-only (agent "none"); state must
survive between calls for bash, python and node; `state` must report it and `reset` clear it;
history is bounded; exit statuses and stderr are the code's; a timeout interrupts without losing
state; every call lands in the session's transcript; and a kill -9 of agentd leaves no process of
the session behind.
"""
import base64
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, run_test, wait_for  # noqa: E402

BIN = os.environ.get("AGENTD_CLI_BIN") or os.environ.get("AGENTD_BIN") or "build/release/agentd"
TAP = None
SRV = None


def ok(cond, name, diag=None):
    return TAP.ok(cond, name, diag)


def api(method, path, body=None, timeout=10.0):
    """One JSON request; returns (status, parsed body or None)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    r = SRV.request(method, path, body, headers, timeout=timeout)
    try:
        doc = json.loads(r.body) if r.body else None
    except ValueError:
        doc = None
    return r.status, doc


def new_session(**fields):
    body = {"agent": "none"}
    body.update(fields)
    status, doc = api("POST", "/v1/sessions", body)
    if status != 201 or not isinstance(doc, dict) or "id" not in doc:
        raise RuntimeError(f"session create: {status} {doc!r}")
    return doc


def rt(sid, lang, action, body=None, method="POST", query=""):
    return api(method, f"/v1/sessions/{sid}/runtimes/{lang}/{action}{query}", body, timeout=30)


def ex(sid, lang, code, timeout_ms=None):
    """Runs code; returns the exec answer (a dict), raising on a non-200."""
    body = {"code": code}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    status, doc = rt(sid, lang, "exec", body)
    if status != 200 or not isinstance(doc, dict):
        raise RuntimeError(f"{lang} exec {code!r}: {status} {doc!r}")
    return doc


def cli(*args, stdin=b"", session=None, timeout=30):
    """Runs `agentd ARGS` against the server; returns (rc, stdout bytes, stderr text)."""
    env = dict(os.environ, AGENTD_URL=SRV.url)
    env.pop("AGENTD_TOKEN", None)
    env.pop("AGENTD_SESSION", None)
    if session is not None:
        env["AGENTD_SESSION"] = session
    proc = subprocess.run([BIN] + list(args), input=stdin, capture_output=True, env=env,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


# ---- the HTTP API -----------------------------------------------------------------------------

def test_session_object():
    s = new_session(tags=["integ"], env={"GREETING": "hello"})
    ok(isinstance(s.get("id"), str) and s["id"], "POST /v1/sessions answers an id")
    ok(s.get("agent") == "none" and os.path.isdir(s.get("workspace", "")),
       "runtime-only session with an existing workspace", s)
    ok(s.get("tags") == ["integ"], "tags kept", s)
    ok(isinstance(s.get("streams"), dict) and
       s["streams"].get("transcript") == f"/v1/stream/sessions/{s['id']}/transcript",
       "streams name the transcript", s)
    status, doc = api("GET", f"/v1/sessions/{s['id']}")
    ok(status == 200 and doc.get("id") == s["id"], "GET /v1/sessions/<id>", doc)
    status, doc = api("GET", "/v1/sessions")
    ok(status == 200 and any(x.get("id") == s["id"] for x in doc.get("sessions", [])),
       "GET /v1/sessions lists it", doc)
    out = ex(s["id"], "bash", "echo $GREETING")
    TAP.is_(out["stdout"], "hello\n", "the session's env reaches its runtimes")
    return s


def test_bash(sid, ws):
    a = ex(sid, "bash", "export FOO=bar; counter=41; greet() { echo \"hi $1\"; }; "
                         "mkdir -p sub && cd sub")
    ok(a["status"] == 0 and a["outcome"] == "ok", "bash: first call ok", a)
    for key in ("stdout", "stderr", "status", "duration_us", "truncated", "outcome",
                "timed_out", "stdout_bytes", "stderr_bytes"):
        ok(key in a, f"exec answer has {key}", a)
    b = ex(sid, "bash", "counter=$((counter+1)); echo $FOO $counter; greet you; pwd")
    TAP.is_(b["stdout"], f"bar 42\nhi you\n{ws}/sub\n",
            "bash keeps export, variable, function and cwd across calls")
    status, st = rt(sid, "bash", "state")
    ok(status == 200 and isinstance(st, dict), "bash state answers", st)
    st = st or {}
    ok(st.get("exported", {}).get("FOO") == "bar", "bash state: exported FOO", st)
    ok("greet" in st.get("functions", []), "bash state: function greet", st)
    ok(st.get("cwd") == f"{ws}/sub", "bash state: cwd", st)
    ok(str(st.get("variables", {}).get("counter")) == "42", "bash state: variable counter", st)


def test_python(sid):
    ex(sid, "python", "import json\nx = 41\ndef inc(v):\n    return v + 1\n")
    out = ex(sid, "python", "x = inc(x)\nprint(x, json.dumps({'a': 1}))")
    TAP.is_(out["stdout"], "42 {\"a\": 1}\n", "python keeps variable, import and def")
    status, st = rt(sid, "python", "state")
    st = st or {}
    ok(status == 200 and "json" in st.get("modules", []), "python state: module json", st)
    g = st.get("globals", {})
    ok(g.get("x", {}).get("type") == "int" and g.get("x", {}).get("repr") == "42",
       "python state: x int 42", st)
    ok(g.get("inc", {}).get("type") == "function", "python state: inc is a function", st)


def test_node(sid):
    ex(sid, "node", "var y = 20; function twice(v) { return v * 2; }")
    out = ex(sid, "node", "y = y + 1; console.log(twice(y))")
    TAP.is_(out["stdout"], "42\n", "node keeps variable and function")
    status, st = rt(sid, "node", "state")
    g = (st or {}).get("globals", {})
    ok(status == 200 and "y" in g and "twice" in g, "node state: y and twice", st)


def test_reset(sid):
    status, doc = rt(sid, "bash", "reset")
    ok(status == 200 and (doc or {}).get("ok") is True, "bash reset answers ok:true", doc)
    out = ex(sid, "bash", "echo ${FOO:-unset} ${counter:-unset}; type greet >/dev/null 2>&1 || "
                          "echo nofunc")
    TAP.is_(out["stdout"], "unset unset\nnofunc\n", "bash reset clears variables and functions")
    rt(sid, "python", "reset")
    out = ex(sid, "python", "print('x' in globals(), 'json' in globals())")
    TAP.is_(out["stdout"], "False False\n", "python reset clears globals and imports")
    rt(sid, "node", "reset")
    out = ex(sid, "node", "console.log(typeof y, typeof twice)")
    TAP.is_(out["stdout"], "undefined undefined\n", "node reset clears globals")


def test_history(sid):
    for i in range(5):
        ex(sid, "bash", f"echo call{i}")
    status, doc = rt(sid, "bash", "history", method="GET", query="?limit=3")
    calls = (doc or {}).get("calls")
    ok(status == 200 and isinstance(calls, list) and len(calls) == 3, "history?limit=3: 3 calls",
       doc)
    if calls:
        TAP.is_([c.get("code") for c in calls], ["echo call2", "echo call3", "echo call4"],
                "history: the last calls, oldest first")
        ok(all("status" in c and "duration_us" in c for c in calls),
           "history rows carry status and timings", calls)
    status, doc = rt(sid, "bash", "history", method="GET")
    calls = (doc or {}).get("calls", [])
    ok(status == 200 and 5 <= len(calls) <= 100, "history without limit: bounded", len(calls))


def test_binary_output(sid):
    out = ex(sid, "bash", "printf '\\377\\376\\000ab\\n'; printf 'caf\\303\\251' >&2")
    ok(base64.b64decode(out.get("stdout_base64", "")) == b"\xff\xfe\x00ab\n" and "\ufffd" in out["stdout"],
       "bytes that are not UTF-8: stdout keeps U+FFFD text, stdout_base64 the exact bytes", out)
    ok(out["stderr"] == "caf\u00e9" and "stderr_base64" not in out, "UTF-8 text gets no base64 copy", out)


def test_status_and_stderr(sid):
    out = ex(sid, "bash", "echo out; echo oops >&2; sh -c 'exit 3'")
    ok(out["status"] == 3 and out["stdout"] == "out\n" and out["stderr"] == "oops\n",
       "bash: exit status 3, stdout and stderr apart", out)
    ok(out["stdout_bytes"] == 4 and out["stderr_bytes"] == 5, "bash: byte counts", out)
    out = ex(sid, "python", "import sys\nsys.stderr.write('warn\\n')\nraise ValueError('bad')")
    ok(out["status"] != 0 and "warn\n" in out["stderr"] and "ValueError: bad" in out["stderr"],
       "python: an exception is a nonzero status with its traceback on stderr", out)
    out = ex(sid, "python", "print('still here')")
    TAP.is_(out["stdout"], "still here\n", "python: the runtime survives an exception")
    out = ex(sid, "node", "console.error('nerr'); throw new Error('boom')")
    ok(out["status"] != 0 and "nerr" in out["stderr"] and "boom" in out["stderr"],
       "node: a throw is a nonzero status with its message on stderr", out)


def test_timeout(sid):
    ex(sid, "bash", "kept=7")
    t0 = time.monotonic()
    out = ex(sid, "bash", "while :; do :; done", timeout_ms=500)
    took = time.monotonic() - t0
    ok(took < 1.5, f"timeout 500 ms answered in {took:.2f} s (< 1.5 s)")
    ok(out["outcome"] == "interrupted" and out["timed_out"] is True,
       "timeout: outcome interrupted, timed_out true", out)
    TAP.is_(ex(sid, "bash", "echo $kept")["stdout"], "7\n", "timeout: bash state kept")
    ex(sid, "python", "kept = 8")
    t0 = time.monotonic()
    out = ex(sid, "python", "import time\ntime.sleep(100)", timeout_ms=500)
    took = time.monotonic() - t0
    ok(took < 1.5 and out["outcome"] == "interrupted", f"python sleep interrupted in {took:.2f} s",
       out)
    TAP.is_(ex(sid, "python", "print(kept)")["stdout"], "8\n", "timeout: python state kept")


def test_output_closed():
    """Code that closes the runtime's stdout used to hold the call until its timeout (bash) or make
    every later call fail (python, node). Now the call ends at once with outcome output_closed, its
    stderr says the runtime restarts, the transcript has the runtime's terminated status with that
    reason, and the next call runs in a fresh process."""
    sid = new_session()["id"]
    cases = (("bash", "x=1", "exec 1>&-", "echo ${x:-fresh}", "fresh\n"),
             ("python", "x = 1", "import sys; sys.stdout.close()", "print(globals().get('x', 'fresh'))", "fresh\n"),
             ("node", "var x = 1", "process.stdout.end()", "console.log(typeof x)", "undefined\n"))
    for lang, setup, close, probe, want in cases:
        ex(sid, lang, setup)
        t0 = time.monotonic()
        out = ex(sid, lang, close, timeout_ms=10000)
        took = time.monotonic() - t0
        ok(out["outcome"] == "output_closed" and took < 2,
           f"{lang}: `{close}` ends the call at once as output_closed ({took:.2f} s)", out)
        ok("restart" in out["stderr"], f"{lang}: the answer's stderr says the runtime restarts", out)
        TAP.is_(ex(sid, lang, probe)["stdout"], want, f"{lang}: the next call runs in a fresh process")
    deadline = time.monotonic() + 2.0
    while True:
        events, r = SRV.read_json(f"/v1/stream/sessions/{sid}/transcript")
        closed = [e.get("lang") for e in events if isinstance(e, dict) and e.get("type") == "status"
                  and e.get("scope") == "runtime" and e.get("status") == "terminated"
                  and e.get("reason") == "output_closed"]
        if len(closed) >= len(cases) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    TAP.is_(sorted(closed), ["bash", "node", "python"],
            "transcript: each runtime's terminated status says output_closed")
    api("DELETE", f"/v1/sessions/{sid}")


def test_transcript():
    s = new_session()
    sid = s["id"]
    codes = [("bash", "echo one"), ("python", "print('two')"), ("bash", "echo three")]
    for lang, code in codes:
        ex(sid, lang, code)
    # Events become readable once their batch is durable (the fsync runs off the loop, after the
    # exec answer went out), so follow the log briefly as a live viewer would.
    deadline = time.monotonic() + 2.0
    while True:
        events, r = SRV.read_json(f"/v1/stream/sessions/{sid}/transcript")
        runtime = [e for e in events if isinstance(e, dict) and e.get("type") == "runtime"]
        if len(runtime) >= len(codes) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    ok(r.status == 200, "transcript stream readable", r)
    TAP.is_(len(runtime), len(codes), "transcript: one runtime event per call")
    TAP.is_([e.get("code") for e in runtime], [c for _, c in codes],
            "transcript: events carry the code, in order")


def test_errors(sid):
    status, doc = api("POST", "/v1/sessions/nosuchsession/runtimes/bash/exec", {"code": "echo"})
    ok(status == 404 and isinstance((doc or {}).get("error"), dict),
       "unknown session: 404 with a JSON error", (status, doc))
    status, doc = api("GET", "/v1/sessions/nosuchsession")
    TAP.is_(status, 404, "GET unknown session: 404")
    status, doc = rt(sid, "cobol", "exec", {"code": "x"})
    ok(status == 400 and isinstance((doc or {}).get("error"), dict),
       "unknown lang: 400 with a JSON error", (status, doc))
    status, doc = rt(sid, "bash", "exec", b"{not json")
    ok(status == 400 and isinstance((doc or {}).get("error"), dict), "malformed body: 400",
       (status, doc))
    status, doc = rt(sid, "bash", "exec", {"timeout_ms": 5})
    TAP.is_(status, 400, "exec without code: 400")
    status, doc = rt(sid, "bash", "exec", {"code": 5})
    TAP.is_(status, 400, "exec with a non-string code: 400")
    status, doc = api("POST", "/v1/sessions", {"agent": "no-such-agent"})
    TAP.is_(status, 400, "unknown agent: 400")


def test_sandbox():
    """A session created with "sandbox": "bwrap" runs its runtimes in the same sandbox its agent
    gets: the workspace writable, / read-only, /tmp private; state and interrupts work as ever."""
    status, doc = api("POST", "/v1/sessions", {"agent": "none", "sandbox": "chroot"})
    ok(status == 400 and "sandbox" in json.dumps(doc or {}), "sandbox other than none|bwrap: 400", (status, doc))
    if not os.access("/usr/bin/bwrap", os.X_OK):
        TAP.skip("sandboxed runtimes", "no /usr/bin/bwrap")
        return
    s = new_session(sandbox="bwrap")
    sid, ws = s["id"], s["workspace"]
    marker = f"/tmp/agentd-sandbox-{sid}"
    out = ex(sid, "bash", f"echo inside > in-ws.txt; touch /etc/agentd-escape-{sid}; echo $?; "
                          f"echo private > {marker}; cat {marker}; sandboxed=yes")
    ok(os.path.exists(os.path.join(ws, "in-ws.txt")), "bwrap runtime: writes the workspace", out)
    ok(out["stdout"].startswith("1\n") and "Read-only file system" in out["stderr"]
       and not os.path.exists(f"/etc/agentd-escape-{sid}"), "bwrap runtime: / is read-only", out)
    ok("private" in out["stdout"] and not os.path.exists(marker), "bwrap runtime: its /tmp is its own", out)
    TAP.is_(ex(sid, "bash", "echo $sandboxed")["stdout"], "yes\n", "bwrap runtime: state kept between calls")
    py = ex(sid, "python", "import os\nprint(os.getpid(), os.access('/usr', os.W_OK))")
    ok(py["status"] == 0 and py["stdout"].split()[-1] == "False", "bwrap python: / read-only too", py)
    t0 = time.monotonic()
    out = ex(sid, "bash", "while :; do :; done", timeout_ms=500)
    ok(out.get("timed_out") is True and time.monotonic() - t0 < 3, "bwrap runtime: a timeout interrupts it", out)
    TAP.is_(ex(sid, "bash", "echo $sandboxed")["stdout"], "yes\n", "bwrap runtime: state survives the interrupt")
    api("DELETE", f"/v1/sessions/{sid}")


def test_limits():
    """A session's "limits" hold for its runtimes: rlimits for each interpreter, cgroup memory and
    process limits for the session as a whole (where the host lets agentd create cgroups)."""
    for bad, why in (({"limits": 5}, "not an object"), ({"limits": {"ram": 1}}, "unknown key"),
                     ({"limits": {"open_files": 0}}, "zero"), ({"limits": {"open_files": "64"}}, "a string")):
        body = {"agent": "none"}
        body.update(bad)
        status, doc = api("POST", "/v1/sessions", body)
        ok(status == 400 and "limits" in json.dumps(doc or {}), f"limits {why}: 400 naming limits", (status, doc))
    s = new_session(limits={"open_files": 100, "file_size_bytes": 1 << 20, "cpu_seconds": 50,
                            "memory_bytes": 192 << 20, "processes": 64})
    sid = s["id"]
    ok((s.get("agent_options") or {}).get("limits", {}).get("open_files") == 100,
       "the session shows its limits", s.get("agent_options"))
    out = ex(sid, "bash", "ulimit -n; ulimit -f; ulimit -t")
    TAP.is_(out["stdout"], "100\n1024\n50\n", "bash runs with the session's rlimits (files, size in KiB, CPU s)")
    out = ex(sid, "bash", "head -c 2000000 /dev/zero > big.bin; echo $?; stat -c %s big.bin")
    ok(out["stdout"].split()[-1] == str(1 << 20) and out["stdout"].split()[0] != "0",
       "a write past file_size_bytes fails and stops at the limit", out)
    py = ex(sid, "python", "import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    TAP.is_(py["stdout"], "100\n", "python too")
    cg = ex(sid, "bash", "cat /proc/self/cgroup")["stdout"]
    mem = [line for line in cg.splitlines() if ":memory:" in line]
    if not (mem and "/agentd-" in mem[0]):
        TAP.skip("session memory limit", f"no writable cgroup v1 memory hierarchy here ({mem!r})")
    else:
        out = ex(sid, "python", "x = bytearray(400 << 20)\nprint('allocated')", timeout_ms=20000)
        ok("allocated" not in out["stdout"], "python cannot take 400 MiB under a 192 MiB session limit", out)
        TAP.is_(ex(sid, "python", "print(6 * 7)")["stdout"], "42\n", "and the runtime answers afterwards")
        code = ("import subprocess\nps, failed = [], 0\nfor i in range(100):\n    try:\n"
                "        ps.append(subprocess.Popen(['sleep', '30']))\n    except OSError:\n        failed += 1\n"
                "for p in ps:\n    p.kill()\n    p.wait()\nprint(len(ps), failed)")
        out = ex(sid, "python", code, timeout_ms=20000)
        n = [int(x) for x in out["stdout"].split()] if out["status"] == 0 else []
        ok(len(n) == 2 and n[0] < 64 and n[1] > 0,
           "100 child processes: fewer than 64 start, the rest fail (session process limit)", out)
    api("DELETE", f"/v1/sessions/{sid}")
    if mem and "/agentd-" in mem[0]:
        def leftovers():
            r = subprocess.run(["find", "/sys/fs/cgroup", "-name", f"agentd-*-{sid}"], capture_output=True, text=True)
            return r.stdout.split()
        wait_for(lambda: not leftovers(), 5)
        ok(not leftovers(), "deleting the session removes its cgroups, runtimes and all", leftovers())

    # An agent of a limited session runs under the same limits.
    script = ('read line; printf \'{"type":"message","text":"nofile=%s fsize=%s"}\\n\' "$(ulimit -n)" "$(ulimit -f)"; '
              'printf \'{"type":"result","text":"ok"}\\n\'')
    a = new_session(agent="jsonl", command=["/bin/bash", "-c", script], limits={"open_files": 77, "file_size_bytes": 1 << 20})
    status, doc = api("POST", f"/v1/sessions/{a['id']}/messages", {"text": "hi"})
    ok(status == 202, "limited agent session: message accepted", (status, doc))
    deadline = time.monotonic() + 15
    texts = []
    while time.monotonic() < deadline and not any("nofile=" in t for t in texts):
        r = SRV.request("GET", f"/v1/stream/sessions/{a['id']}/transcript?offset=-1")
        evs = json.loads(r.body) if r.status == 200 and r.body else []
        texts = [json.dumps(e) for e in evs if e.get("type") == "message"]
        time.sleep(0.1)
    ok(any("nofile=77 fsize=1024" in t for t in texts), "the agent runs with the session's rlimits", texts)
    api("DELETE", f"/v1/sessions/{a['id']}")


def test_delete(s):
    sid = s["id"]
    status, _ = api("DELETE", f"/v1/sessions/{sid}")
    TAP.is_(status, 204, "DELETE /v1/sessions/<id>: 204")
    status, _ = api("GET", f"/v1/sessions/{sid}")
    TAP.is_(status, 404, "deleted session: 404")
    status, _ = rt(sid, "bash", "exec", {"code": "echo"})
    TAP.is_(status, 404, "deleted session: runtime 404")


# ---- the CLI ----------------------------------------------------------------------------------

def test_cli_session():
    rc, out, err = cli("session", "new", "--agent", "none", "--env", "CLIVAR=from-cli",
                       "--tag", "clitag", "--tag", "second")
    lines = out.decode().splitlines()
    ok(rc == 0 and lines and len(lines[0]) > 0, "session new: exit 0, id on the first line",
       (rc, out, err))
    sid = lines[0] if lines else ""
    status, doc = api("GET", f"/v1/sessions/{sid}")
    ok(status == 200 and doc.get("tags") == ["clitag", "second"], "session new: repeated --tag",
       doc)

    rc, out, err = cli("session", "ls")
    ok(rc == 0 and sid in out.decode() and "clitag,second" in out.decode(),
       "session ls: a table with the session and its tags", (rc, out, err))
    rc, out, err = cli("session", "ls", "--tag", "clitag", "--json")
    rows = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    ok(rc == 0 and [r["id"] for r in rows] == [sid], "session ls --tag --json: only that session",
       (rc, out, err))
    rc, out, err = cli("session", "show", sid)
    ok(rc == 0 and f"id: {sid}" in out.decode() and "agent: none" in out.decode(),
       "session show: key: value lines", (rc, out, err))
    rc, out, err = cli("session", "show", sid, "--json")
    ok(rc == 0 and json.loads(out)["id"] == sid, "session show --json", (rc, out, err))
    rc, out, err = cli("session", "show", "nosuchsession")
    ok(rc == 3 and "404" in err, "session show unknown: exit 3", (rc, out, err))
    rc, out, err = cli("session", "new")
    ok(rc == 1 and "--agent" in err, "session new without --agent: exit 1", (rc, out, err))
    rc, out, err = cli("session", "new", "--agent", "no-such-agent")
    TAP.is_(rc, 5, "session new --agent unknown: exit 5 (HTTP 400)")
    return sid


def test_cli_rt(sid):
    rc, out, err = cli("rt", "exec", "--session", sid, "echo $CLIVAR; x=1; echo e >&2; exit_me=3")
    ok(rc == 0 and out == b"from-cli\n" and err == "e\n",
       "rt exec: stdout and stderr exactly, exit 0", (rc, out, err))
    rc, out, err = cli("rt", "exec", "x=$((x+1)); echo $x; sh -c \"exit $exit_me\"", session=sid)
    ok(rc == 3 and out == b"2\n", "rt exec via $AGENTD_SESSION: state kept, exit status 3",
       (rc, out, err))
    rc, out, err = cli("rt", "exec", "--lang", "python", "-", stdin=b"import os\nz = 6 * 7\n",
                       session=sid)
    ok(rc == 0 and out == b"", "rt exec - reads the code from stdin", (rc, out, err))
    rc, out, err = cli("rt", "exec", "--lang", "python", session=sid, stdin=b"print(z)")
    ok(rc == 0 and out == b"42\n", "rt exec with no CODE reads stdin; python state kept",
       (rc, out, err))
    rc, out, err = cli("rt", "exec", "--lang", "python", "--timeout", "500", "import time",
                       ";", "time.sleep(30)", session=sid)
    ok(rc == 124, "rt exec --timeout: exit 124", (rc, out, err))
    rc, out, err = cli("rt", "exec", "printf '\\377\\376\\000ab\\n'; printf '\\200' >&2", session=sid)
    ok(rc == 0 and out == b"\xff\xfe\x00ab\n" and err.encode(errors="surrogateescape") != b"",
       "rt exec: output that is not UTF-8 comes out byte for byte", (rc, out, err))
    rc, out, err = cli("rt", "exec", "--json", "echo hi", session=sid)
    doc = json.loads(out) if rc == 0 else {}
    ok(rc == 0 and doc.get("stdout") == "hi\n" and doc.get("status") == 0,
       "rt exec --json: the server's answer", (rc, out, err))
    rc, out, err = cli("rt", "state", session=sid)
    ok(rc == 0 and "x: 2" in out.decode() and "cwd:" in out.decode(),
       "rt state: readable", (rc, out, err))
    rc, out, err = cli("rt", "state", "--lang", "python", "--json", session=sid)
    ok(rc == 0 and json.loads(out).get("globals", {}).get("z", {}).get("repr") == "42",
       "rt state --json: python globals", (rc, out, err))
    rc, out, err = cli("rt", "history", "--limit", "2", session=sid)
    rows = out.decode().splitlines()
    ok(rc == 0 and len(rows) == 3 and rows[0].split()[0] == "SEQ", "rt history --limit 2: two rows",
       (rc, out, err))
    rc, out, err = cli("rt", "history", "--json", session=sid)
    ok(rc == 0 and len(json.loads(out)["calls"]) >= 3, "rt history --json", (rc, out, err))
    rc, out, err = cli("rt", "reset", session=sid)
    ok(rc == 0, "rt reset: exit 0", (rc, out, err))
    rc, out, err = cli("rt", "exec", "echo ${x:-gone}", session=sid)
    ok(rc == 0 and out == b"gone\n", "rt reset cleared the bash state", (rc, out, err))
    rc, out, err = cli("rt", "exec", "echo")
    ok(rc == 1 and "AGENTD_SESSION" in err, "rt exec without a session: exit 1, says how",
       (rc, out, err))
    rc, out, err = cli("rt", "exec", "--session", "nosuchsession", "echo")
    TAP.is_(rc, 3, "rt exec unknown session: exit 3")
    rc, out, err = cli("rt", "exec", "--lang", "cobol", "x", session=sid)
    TAP.is_(rc, 5, "rt exec unknown lang: exit 5")
    rc, out, err = cli("rt", "exec", "--server", "http://127.0.0.1:1", "--session", sid, "echo")
    TAP.is_(rc, 2, "rt exec, server unreachable: exit 2")

    # interrupt from another client while a call runs
    env = dict(os.environ, AGENTD_URL=SRV.url, AGENTD_SESSION=sid)
    env.pop("AGENTD_TOKEN", None)
    runner = subprocess.Popen([BIN, "rt", "exec", "kept=9; sleep 30"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    t0 = time.monotonic()
    rc, out, err = cli("rt", "interrupt", session=sid)
    ok(rc == 0, "rt interrupt: exit 0", (rc, out, err))
    try:
        runner.wait(5)
    except subprocess.TimeoutExpired:
        runner.kill()
        runner.wait()
    ok(runner.returncode == 130 and time.monotonic() - t0 < 2,
       "the interrupted exec exits 130 at once", runner.returncode)
    rc, out, err = cli("rt", "exec", "echo $kept", session=sid)
    TAP.is_(out, b"9\n", "rt interrupt keeps the state")

    rc, out, err = cli("session", "rm", sid)
    ok(rc == 0 and out == b"", "session rm: exit 0, nothing on stdout", (rc, out, err))
    rc, out, err = cli("session", "rm", sid)
    TAP.is_(rc, 3, "session rm again: exit 3")


# ---- kill -9 ----------------------------------------------------------------------------------

def session_processes(ws, pgids):
    """Live pids whose cwd is under ws or whose process group is one of pgids."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        try:
            pgid = os.getpgid(pid)
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # already dead; only its reaping is pending
        except OSError:
            continue
        if cwd == ws or cwd.startswith(ws + "/") or pgid in pgids:
            found.append(pid)
    return found


def test_kill9():
    s = new_session()
    sid, ws = s["id"], s["workspace"]
    ex(sid, "bash", "sleep 300 & echo started")
    ex(sid, "python", "import subprocess\nchild = subprocess.Popen(['sleep', '300'])")
    ex(sid, "node", "var n = 1")
    status, doc = api("GET", f"/v1/sessions/{sid}")
    pgids = {rt_.get("pid") for rt_ in (doc or {}).get("runtimes", {}).values()
             if isinstance(rt_, dict) and rt_.get("pid")}
    before = session_processes(ws, pgids)
    ok(len(before) >= 5, f"session processes running before kill -9: {len(before)}", before)
    SRV.kill9()
    deadline = time.monotonic() + 2.0
    left = session_processes(ws, pgids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = session_processes(ws, pgids)
    ok(not left, "no process of the session survives kill -9 of agentd (within 2 s)",
       [open(f"/proc/{p}/cmdline").read().replace("\0", " ") for p in left
        if os.path.exists(f"/proc/{p}/cmdline")])
    for pid in left:  # do not leak them into later tests
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main(tap):
    global TAP, SRV
    TAP = tap
    SRV = Server()
    SRV.start()
    s = test_session_object()
    sid, ws = s["id"], s["workspace"]
    test_bash(sid, ws)
    test_python(sid)
    test_node(sid)
    test_reset(sid)
    test_history(sid)
    test_status_and_stderr(sid)
    test_binary_output(sid)
    test_timeout(sid)
    test_output_closed()
    test_transcript()
    test_errors(sid)
    test_sandbox()
    test_limits()
    test_delete(s)
    cli_sid = test_cli_session()
    test_cli_rt(cli_sid)
    tap.check_clean_exit(SRV)
    SRV.start()
    test_kill9()


run_test(main)
