#!/usr/bin/env python3
"""Program lookup for agents and runtimes (src/exec/lookup.c), against the real binary ($AGENTD_BIN).

A session runs its programs with its own declared PATH, not agentd's. An agent CLI installed where
only the operator's PATH reaches (npm into a node version manager's directory, say) must still
start: a program missing from the session's PATH is looked up on agentd's PATH, and its directory,
and that of the interpreter its `#!/usr/bin/env <name>` line names, go on the PATH it runs with
(after the session's own entries). A program found nowhere ends the run as agent_not_found with a
message naming both PATHs searched; so does one whose interpreter is found nowhere. Runtimes find
their interpreters through the same lookup.

The server here runs with a PATH that starts with two temporary directories: tools/ holds
`pathagent` (#!/usr/bin/env pathinterp) and `halfagent` (#!/usr/bin/env agentd-no-such-interp),
interp/ holds `pathinterp` (a link to python3). Neither directory is on any session's PATH.
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import Server, message_texts, of_run, run_test, wait_for  # noqa: E402

TAP = None
SRV = None
SESSION_PATH = "/usr/local/bin:/usr/bin:/bin"  # a session's PATH when it declares none

AGENT = """#!/usr/bin/env pathinterp
import json, os, sys
sys.stdin.readline()
print(json.dumps({"type": "message", "text": "PATH=" + os.environ["PATH"]}), flush=True)
print(json.dumps({"type": "result", "text": "ok"}), flush=True)
"""


def api(method, path, body=None, timeout=15.0):
    data = json.dumps(body).encode() if body is not None else None
    r = SRV.request(method, path, data, {"Content-Type": "application/json"} if data else {}, timeout=timeout)
    try:
        return r.status, json.loads(r.body) if r.body else None
    except ValueError:
        return r.status, None


def run_once(command, **fields):
    """A jsonl session running `command`; sends one message, returns (run_completed, transcript)."""
    body = {"agent": "jsonl", "command": command}
    body.update(fields)
    st, doc = api("POST", "/v1/sessions", body)
    if st != 201:
        raise RuntimeError(f"session create: {st} {doc!r}")
    sid = doc["id"]
    st, doc = api("POST", f"/v1/sessions/{sid}/messages", {"text": "hi"})
    if st != 202:
        raise RuntimeError(f"message: {st} {doc!r}")
    run = doc["run"]
    box = {}

    def done():
        evs, r = SRV.read_json(f"/v1/stream/sessions/{sid}/transcript")
        box["evs"] = evs if r.status == 200 else []
        return next((e for e in box["evs"] if e.get("type") == "run_completed" and e.get("run") == run), None)
    ev = wait_for(done, 20)
    return ev, of_run(box["evs"], run)


def test_found_on_agentd_path(tools, interp):
    ev, evs = run_once(["pathagent"])
    ok = TAP.ok(ev and ev.get("status") == "success",
                "a program only on agentd's PATH, with an interpreter only there too, starts", (ev, evs))
    texts = message_texts(evs, ev.get("run") if ev else None) if ok else []
    want = f"PATH={SESSION_PATH}:{tools}:{interp}"
    TAP.is_(texts, [want], "its PATH is the session's, then its own directory, then its interpreter's")


def test_not_found(tools):
    ev, evs = run_once(["agentd-no-such-agent"])
    errs = [e for e in evs if e.get("type") == "error"]
    msg = errs[0].get("message", "") if errs else ""
    TAP.ok(ev and ev.get("code") == "agent_not_found", "a program found nowhere: agent_not_found", ev)
    TAP.ok(f"({SESSION_PATH})" in msg and tools in msg and "agentd-no-such-agent" in msg,
           "the error names the program, the session's PATH and agentd's PATH", msg)


def test_interpreter_not_found():
    ev, evs = run_once(["halfagent"])
    errs = [e for e in evs if e.get("type") == "error"]
    msg = errs[0].get("message", "") if errs else ""
    TAP.ok(ev and ev.get("code") == "agent_not_found",
           "a program whose #! interpreter is found nowhere: agent_not_found", ev)
    TAP.ok("agentd-no-such-interp" in msg and f"({SESSION_PATH})" in msg,
           "the error names the interpreter and the PATHs searched", msg)


def test_session_path_first(tools):
    # A session whose own PATH has the program: nothing is added, its PATH is as declared.
    ev, evs = run_once(["pathagent"], env={"PATH": f"{tools}:/usr/bin:/bin"})
    texts = message_texts(evs, ev.get("run") if ev else None) if ev else []
    TAP.ok(ev and ev.get("status") == "success" and texts and texts[0].startswith(f"PATH={tools}:/usr/bin:/bin"),
           "found on the session's own PATH: that PATH stays first", (ev, texts))


def test_runtime_interpreter():
    # The session's PATH has no bash at all: the runtime finds it on agentd's PATH.
    st, doc = api("POST", "/v1/sessions", {"agent": "none", "env": {"PATH": "/nonexistent"}})
    if st != 201:
        raise RuntimeError(f"session create: {st} {doc!r}")
    sid = doc["id"]
    bash_dir = os.path.dirname(shutil.which("bash", path=os.environ["PATH"]))
    st, out = api("POST", f"/v1/sessions/{sid}/runtimes/bash/exec", {"code": "echo $PATH"})
    TAP.ok(st == 200 and (out or {}).get("status") == 0,
           "a runtime whose interpreter is not on the session's PATH starts from agentd's", (st, out))
    TAP.is_((out or {}).get("stdout"), f"/nonexistent:{bash_dir}\n",
            "the runtime's PATH is the session's, then the interpreter's directory")


def main(tap):
    global TAP, SRV
    TAP = tap
    top = tempfile.mkdtemp(prefix="agentd-exec-path-")
    tools, interp = os.path.join(top, "tools"), os.path.join(top, "interp")
    os.mkdir(tools)
    os.mkdir(interp)
    os.symlink(shutil.which("python3", path="/usr/bin:/bin"), os.path.join(interp, "pathinterp"))
    for name, text in (("pathagent", AGENT), ("halfagent", AGENT.replace("pathinterp", "agentd-no-such-interp"))):
        with open(os.path.join(tools, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(tools, name), 0o755)
    SRV = Server(env={"PATH": f"{tools}:{interp}:{os.environ['PATH']}"})
    SRV.start()
    try:
        test_found_on_agentd_path(tools, interp)
        test_not_found(tools)
        test_interpreter_not_found()
        test_session_path_first(tools)
        test_runtime_interpreter()
        tap.check_clean_exit(SRV)
    finally:
        shutil.rmtree(top, ignore_errors=True)


run_test(main)
