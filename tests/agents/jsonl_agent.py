#!/usr/bin/env python3
"""A scriptable test agent speaking agentd's jsonl protocol (doc/AGENT-PROTOCOL.md); python3 stdlib.

    python3 jsonl_agent.py [--state DIR] [--log FILE] [--prefix ID-PREFIX] [--v2 [--caps LIST]]

Reads the first stdin line ({"type":"user","text",...,"resume"?,"fork"?}), announces its native
session with a `session` line, does what the prompt says, writes a `result` and exits. Control lines
that follow on stdin are watched: {"type":"cancel"} or EOF stops the run promptly (a result with
is_error true, exit 0).

--v2 speaks protocol 2 (doc/AGENT-PROTOCOL.md): a `capabilities` line first, announcing LIST (comma
separated, default approvals,steer,interrupt,warm). With approvals, and "approvals": true in the user
line, `tool` asks first (`permission_request` Bash {"command"}) and runs the command only when allowed
(updated_input's command when the answer has one); a denial becomes the tool's error output. With
steer, every `steer` line received is said back ("steer: TEXT") after the directive that was running,
within the same turn. With interrupt, an `interrupt` line ends the turn at once (a result with
"interrupted": true; a tool's child is killed). With warm, the process stays after each result and
takes the next `user` line as the next message of the same conversation, until EOF.

Native sessions live as DIR/<id>.json ({"id","turns":[prompt...],"forked_from"?}); DIR is --state,
else $JSONL_AGENT_STATE, else $HOME/.jsonl_agent. A first run makes a new id; `resume` reuses that
session and counts one more turn; `resume` with `"fork": true` copies it under a new id first.
--log FILE appends every input line received (first line and control lines) as JSON, one per line,
with the agent's pid, so a test can see exactly what agentd sent.

The prompt is a list of directives separated by ';' or newlines; each does one thing:

    echo TEXT        a message with TEXT (the run's answer)
    tool [CMD]       a message, pre_tool Bash {"command": CMD} (default `echo hi`), CMD run by sh,
                     post_tool with its output
    sleep N [setsid] [stubborn]
                     pre_tool Bash `sleep N`, then a child `sleep N` in the agent's process group
                     (with setsid: in a new session and group); a log event "sleep pid=P pgid=G
                     sid=S" names it; waits for it. On cancel/EOF the agent exits at once and leaves
                     the child to agentd (as Claude Code does with its tool children). stubborn:
                     ignore SIGTERM and the cancel line (agentd must SIGKILL).
    history          a message "turns: N", N the turns of this native session including this one
    pid              a message "pid: P", this process's pid (a warm agent keeps it across messages)
    whoami           a message "native: ID" (the native session id)
    env NAME         a message with $NAME ("<unset>" when missing)
    pwd              a message with the working directory
    count N [MS]     N messages "n=1".."n=N", MS milliseconds apart (default 0)
    delta TEXT       delta events per word, then the whole message
    stderr           lines on stderr: "warning: careful", "error: broken", "plain line"
    garbage          non-JSON lines, a JSON array, an unknown type, a message without content, a
                     9 MiB line, then a message "after garbage"
    error TEXT       an error event (code agent_error) with TEXT
    fail             a result with is_error true
    exit N           exit with status N, no result
    crash            SIGSEGV to itself (after a message "crashing")
    noresult         exit 0 without a result line
    anything else    a message "you said: <directive>"

The result's text is the last message's text; it carries usage, cost_usd, duration_ms, num_turns.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import queue

T0 = time.monotonic()
OUT_LOCK = threading.Lock()
CANCEL = threading.Event()
INTERRUPT = threading.Event()      # protocol 2: the turn is to end now
STATE = {"stubborn": False, "last": "", "out_tokens": 0, "v2": False, "caps": set(), "approvals": False,
         "warm": False}
STEERS = queue.Queue()             # steering texts received, said back in the turn
USERS = queue.Queue()              # next messages of a warm process (None: EOF)
ANSWERS = {}                       # permission request id -> its permission_response
ANSWERED = threading.Condition()


class TurnOver(Exception):
    """A warm process's turn ended (its result is written): back to waiting for the next message."""


def emit(ev):
    line = json.dumps(ev, separators=(",", ":")) + "\n"
    with OUT_LOCK:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)


def emit_raw(text):
    with OUT_LOCK:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)


def say(text):
    STATE["last"] = text
    STATE["out_tokens"] += len(text.split())
    emit({"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]})


def log(text, level="info"):
    emit({"type": "log", "level": level, "text": text})


def args_of(argv):
    opts = {"state": None, "log": None, "prefix": "jsonl", "v2": False, "caps": "approvals,steer,interrupt,warm"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--state", "--log", "--prefix", "--caps") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
            continue
        if a == "--v2":
            opts["v2"] = True
        i += 1
    return opts


def record(path, obj):
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(dict(obj, _pid=os.getpid(), _ts=time.time())) + "\n")


def finish(is_error=False, text=None, code=0, num_turns=1, extra=None):
    ev = {"type": "result", "is_error": is_error, "text": STATE["last"] if text is None else text,
          "usage": {"input_tokens": STATE.get("in_tokens", 0), "output_tokens": STATE["out_tokens"]},
          "cost_usd": 0.0001, "duration_ms": int((time.monotonic() - T0) * 1000), "num_turns": num_turns}
    ev.update(extra or {})
    emit(ev)
    if STATE["warm"] and not CANCEL.is_set() and code == 0:
        raise TurnOver()
    os._exit(code)


def cancelled():
    """Called when a cancel or EOF arrived: stop now (the tool children are left to agentd)."""
    if CANCEL.is_set():
        log("cancelled", "warn")
        finish(is_error=True, text="cancelled")
    log("interrupted", "warn")
    finish(is_error=True, text="interrupted", extra={"interrupted": True})


def said_steers():
    """Says back what steering arrived (protocol 2): the turn takes it into account."""
    while True:
        try:
            say(f"steer: {STEERS.get_nowait()}")
        except queue.Empty:
            return


def control(msg):
    """A protocol 2 control line (steer, interrupt, permission_response, user): True when handled."""
    kind = msg.get("type")
    if kind == "steer" and "steer" in STATE["caps"]:
        STEERS.put(msg.get("text", ""))
    elif kind == "interrupt" and "interrupt" in STATE["caps"]:
        INTERRUPT.set()
    elif kind == "permission_response":
        with ANSWERED:
            ANSWERS[msg.get("request")] = msg
            ANSWERED.notify_all()
    elif kind == "user" and STATE["warm"]:
        USERS.put(msg)
    else:
        return False
    return True


def watch_stdin(logpath):
    """Reads control lines after the first; a cancel or EOF sets CANCEL."""
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            record(logpath, {"type": "_eof"})
            break
        try:
            msg = json.loads(line)
        except ValueError:
            record(logpath, {"type": "_unparsable", "line": line.decode(errors="replace")})
            continue
        record(logpath, msg if isinstance(msg, dict) else {"type": "_other", "line": msg})
        if isinstance(msg, dict) and msg.get("type") == "cancel":
            break
        if isinstance(msg, dict) and STATE["v2"]:
            control(msg)
    USERS.put(None)
    if not STATE["stubborn"]:
        CANCEL.set()


def stop_now():
    return CANCEL.is_set() or INTERRUPT.is_set()


def wait(seconds):
    """Sleeps, returning early (True) on cancel or interrupt."""
    end = time.monotonic() + seconds
    while not stop_now():
        left = end - time.monotonic()
        if left <= 0:
            return False
        CANCEL.wait(min(left, 0.01))
    return True


def ask(tool, inp, n):
    """Protocol 2: asks agentd before using a tool; returns the permission_response (None: stopped)."""
    rid = f"ask-{os.getpid()}-{n}-{time.monotonic_ns()}"
    emit({"type": "permission_request", "request": rid, "tool": tool, "input": inp})
    with ANSWERED:
        while rid not in ANSWERS:
            if stop_now():
                return None
            ANSWERED.wait(0.01)
        return ANSWERS.pop(rid)


# ---- native sessions ------------------------------------------------------------------------------

def load(state_dir, sid):
    try:
        with open(os.path.join(state_dir, sid + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(state_dir, doc):
    os.makedirs(state_dir, exist_ok=True)
    tmp = os.path.join(state_dir, f".{doc['id']}.{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, os.path.join(state_dir, doc["id"] + ".json"))


def native_session(opts, user):
    state_dir = opts["state"] or os.environ.get("JSONL_AGENT_STATE") or \
        os.path.join(os.environ.get("HOME") or "/tmp", ".jsonl_agent")
    resume = user.get("resume")
    fork = bool(user.get("fork"))
    prev = load(state_dir, resume) if isinstance(resume, str) and resume else None
    new_id = f"{opts['prefix']}-{uuid.uuid4().hex[:12]}"
    if prev is None:
        doc = {"id": new_id, "turns": []}
        if resume:
            doc["lost"] = resume  # asked to resume a session this state dir does not know
    elif fork:
        doc = {"id": new_id, "turns": list(prev.get("turns", [])), "forked_from": prev["id"]}
    else:
        doc = prev
    doc["turns"].append(user.get("text", ""))
    save(state_dir, doc)
    return doc


# ---- behaviours -----------------------------------------------------------------------------------

def do_tool(cmd, n):
    cmd = cmd or "echo hi"
    tid = f"tool-{n}"
    say(f"I will run `{cmd}`.")
    emit({"type": "pre_tool", "id": tid, "name": "Bash", "input": {"command": cmd}})
    if STATE["v2"] and STATE["approvals"] and "approvals" in STATE["caps"]:
        answer = ask("Bash", {"command": cmd}, n)
        if answer is None:
            cancelled()
        if answer.get("decision") != "allow":
            why = answer.get("message") or "denied"
            emit({"type": "post_tool", "id": tid, "name": "Bash", "output": why, "is_error": True})
            say(f"The tool was denied: {why}")
            return
        cmd = ((answer.get("updated_input") or {}).get("command")) or cmd
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=60)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    emit({"type": "post_tool", "id": tid, "name": "Bash", "output": out, "is_error": p.returncode != 0})
    say(f"The tool said: {out.strip()}")


def do_sleep(words, n):
    secs = float(words[1]) if len(words) > 1 else 30.0
    setsid = "setsid" in words
    if "stubborn" in words:
        STATE["stubborn"] = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tid = f"tool-{n}"
    emit({"type": "pre_tool", "id": tid, "name": "Bash", "input": {"command": f"sleep {words[1] if len(words) > 1 else 30}"}})
    child = subprocess.Popen(["sleep", str(secs)], start_new_session=setsid,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             # the child must not inherit the agent's SIG_IGN for SIGTERM
                             preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    log(f"sleep pid={child.pid} pgid={os.getpgid(child.pid)} sid={os.getsid(child.pid)} "
        f"agent_pid={os.getpid()} agent_pgid={os.getpgid(0)}")
    while child.poll() is None:
        if wait(0.05):
            if INTERRUPT.is_set():  # the turn ends, this process stays: its tool child goes
                child.kill()
                child.wait()
                emit({"type": "post_tool", "id": tid, "name": "Bash", "output": "interrupted", "is_error": True})
            cancelled()
    emit({"type": "post_tool", "id": tid, "name": "Bash", "output": "", "is_error": child.returncode != 0})
    say(f"slept {words[1] if len(words) > 1 else 30}")


def do_garbage():
    emit_raw("this is not json\n")
    emit_raw("{\"type\": \"message\", broken\n")
    emit_raw("[1, 2, 3]\n")
    emit_raw("{\"type\":\"no_such_event_type\",\"x\":1}\n")
    emit_raw("{\"type\":\"message\"}\n")
    emit_raw("\x01\x02 control bytes\n")
    with OUT_LOCK:
        try:
            sys.stdout.buffer.write(b"\xff\xfe not utf-8 \xc3\n")
            sys.stdout.buffer.write(b"{\"huge\":\"" + b"x" * (9 << 20) + b"\"}\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            os._exit(0)
    say("after garbage")


def run_directive(d, n, doc):
    words = d.split()
    verb = words[0].lower() if words else ""
    rest = d[len(words[0]):].strip() if words else ""
    if verb == "echo":
        say(rest)
    elif verb == "tool":
        do_tool(rest, n)
    elif verb == "sleep":
        do_sleep(words, n)
    elif verb == "history":
        say(f"turns: {len(doc['turns'])}")
    elif verb == "whoami":
        say(f"native: {doc['id']}")
    elif verb == "pid":
        say(f"pid: {os.getpid()}")
    elif verb == "env":
        say(os.environ.get(rest, "<unset>"))
    elif verb == "pwd":
        say(os.getcwd())
    elif verb == "count":
        k = int(words[1]) if len(words) > 1 else 10
        ms = float(words[2]) if len(words) > 2 else 0.0
        for i in range(1, k + 1):
            if stop_now():
                cancelled()
            say(f"n={i}")
            if ms and wait(ms / 1000.0):
                cancelled()
    elif verb == "delta":
        parts = rest.split(" ")
        for i, w in enumerate(parts):
            emit({"type": "delta", "text": w + (" " if i + 1 < len(parts) else ""), "index": 0})
        say(rest)
    elif verb == "stderr":
        for line in ("warning: careful", "error: broken", "plain line"):
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        say("wrote stderr")
    elif verb == "garbage":
        do_garbage()
    elif verb == "error":
        emit({"type": "error", "message": rest or "something failed", "code": "agent_error"})
    elif verb == "fail":
        finish(is_error=True, text=rest or "failed", num_turns=len(doc["turns"]))
    elif verb == "exit":
        sys.stdout.flush()
        os._exit(int(words[1]) if len(words) > 1 else 1)
    elif verb == "crash":
        say("crashing")
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)
        os._exit(99)
    elif verb == "noresult":
        os._exit(0)
    elif verb:
        say(f"you said: {d}")


def run_turn(user, doc):
    """One message: its directives, steering said back, a result. Raises TurnOver when warm."""
    text = user.get("text") if isinstance(user.get("text"), str) else ""
    STATE.update(last="", out_tokens=0, in_tokens=len(text.split()), approvals=bool(user.get("approvals")))
    INTERRUPT.clear()
    directives = [d.strip() for d in text.replace("\n", ";").split(";") if d.strip()]
    if not directives:
        say("nothing to do")
    for n, d in enumerate(directives, 1):
        if stop_now():
            cancelled()
        run_directive(d, n, doc)
        said_steers()
    if stop_now():
        cancelled()
    finish(num_turns=len(doc["turns"]))


def main():
    opts = args_of(sys.argv[1:])
    first = sys.stdin.buffer.readline()
    if not first:
        return 0
    try:
        user = json.loads(first)
    except ValueError:
        log(f"first line is not JSON: {first[:200]!r}", "error")
        finish(is_error=True, text="bad input", code=2)
    if not isinstance(user, dict):
        user = {"text": str(user)}
    record(opts["log"], user)
    if opts["v2"]:
        caps = {c for c in opts["caps"].split(",") if c}
        STATE.update(v2=True, caps=caps, warm="warm" in caps)
        emit(dict({"type": "capabilities", "protocol": 2}, **{c: True for c in sorted(caps)}))
    threading.Thread(target=watch_stdin, args=(opts["log"],), daemon=True).start()

    doc = native_session(opts, user)
    emit({"type": "session", "id": doc["id"]})
    if doc.get("lost"):
        log(f"resume: no native session {doc['lost']} in this state dir; started {doc['id']}", "warn")
    log(f"jsonl_agent pid={os.getpid()} native={doc['id']} turn={len(doc['turns'])} "
        f"resume={user.get('resume')} fork={bool(user.get('fork'))}", "debug")
    while True:
        try:
            run_turn(user, doc)
        except TurnOver:
            pass
        user = USERS.get()
        if user is None:
            os._exit(0)
        record(opts["log"], user)
        doc["turns"].append(user.get("text", ""))
        save(opts["state"] or os.environ.get("JSONL_AGENT_STATE") or
             os.path.join(os.environ.get("HOME") or "/tmp", ".jsonl_agent"), doc)


if __name__ == "__main__":
    sys.exit(main())
