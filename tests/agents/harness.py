"""Python helpers for tests that drive real agent CLIs against the fake model servers in this directory
(python3 standard library only). See README.md.

    from harness import FakeModel, claude_bin, claude_env, run_agent

    fake = FakeModel("anthropic", [   # or "responses" (Codex), "chat" (OpenCode){"tool_use": {"name": "Bash", "input": {"command": "echo hi"}}},
                                   {"text": "done: {{tool_result}}"}])
    fake.start()                                   # prints nothing; fake.url is the base URL
    home = tempfile.mkdtemp()
    run = run_agent([claude_bin(), "-p", "--output-format", "stream-json", "--verbose", "hi"],
                    env=claude_env(home, fake.url), cwd=home, timeout=120)
    run.rc, run.events (parsed stdout JSON lines), run.result (the "result" line or None), run.stderr
    fake.requests(kind="main")                     # what the CLI sent, in order
    fake.stop()
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "node_modules", ".bin")

FAKES = {
    "anthropic": "fake_anthropic.mjs",        # Claude Code
    "responses": "fake_openai_responses.mjs", # Codex
    "chat": "fake_chat_completions.mjs",      # OpenCode
}


def _read_line(stream, timeout):
    """The first line of a pipe, or None after timeout seconds."""
    box = []
    t = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return box[0] if box else None


def _drain(stream):
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


class FakeModel:
    """One fake model server (a node process in its own process group) following a script."""

    def __init__(self, kind, script, extra_args=()):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"fake-{kind}-")
        self.script_path = os.path.join(self.dir, "script.json")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        self.stderr_path = os.path.join(self.dir, "stderr")
        with open(self.script_path, "w") as f:
            json.dump(script, f)
        self.extra_args = list(extra_args)
        self.proc = None
        self.url = None

    def start(self, timeout=15.0):
        err = open(self.stderr_path, "wb")
        cmd = ["node", os.path.join(HERE, FAKES[self.kind]), "--script", self.script_path,
               "--log", self.log_path] + self.extra_args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                     start_new_session=True)
        err.close()
        line = _read_line(self.proc.stdout, timeout)
        if not line or not line.startswith(b"http://"):
            self.stop()
            raise RuntimeError(f"fake {self.kind} did not start: {line!r}\n{self.stderr()}")
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
        self.url = line.decode().strip()
        return self.url

    def set_script(self, script):
        """Replaces the script and rewinds it (the request log is kept)."""
        req = urllib.request.Request(self.url + "/_fake/script", data=json.dumps(script).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def requests(self, kind=None):
        """The recorded requests (dicts, see fake_anthropic.mjs), optionally only those of one kind."""
        out = []
        if os.path.exists(self.log_path):
            with open(self.log_path) as f:
                for line in f:
                    if line.strip():
                        rec = json.loads(line)
                        if kind is None or rec.get("kind") == kind:
                            out.append(rec)
        return out

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- anthropic message helpers ---------------------------------------------------------------------

def tool_results(request):
    """[(tool_use_id, text, is_error)] for every tool_result block in a recorded /v1/messages request."""
    out = []
    body = request.get("body") or {}
    for m in body.get("messages") or []:
        if m.get("role") != "user" or not isinstance(m.get("content"), list):
            continue
        for b in m["content"]:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                c = b.get("content")
                if isinstance(c, list):
                    c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
                out.append((b.get("tool_use_id"), c if isinstance(c, str) else json.dumps(c),
                            bool(b.get("is_error"))))
    return out


# ---- the agent CLIs --------------------------------------------------------------------------------

def claude_bin():
    """Path of the pinned Claude Code binary, or None when tests/agents/node_modules lacks it.

    Normally node_modules/.bin/claude (the package's postinstall put the native binary there); when
    install scripts did not run, the platform package's binary is used directly."""
    cands = [os.path.join(BIN, "claude")]
    plat = os.path.join(HERE, "node_modules", "@anthropic-ai")
    if os.path.isdir(plat):
        for name in sorted(os.listdir(plat)):
            if name.startswith("claude-code-linux-"):
                cands.append(os.path.join(plat, name, "claude"))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK) and os.path.getsize(c) > 1 << 20:
            return c
    return None


def claude_env(home, base_url, extra=None):
    """The environment AGENT-CLIS.md measured for offline runs: nothing inherited but PATH (and the
    locale), so a developer's own credentials or proxies never leak into a test."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-fake",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }
    env.update(extra or {})
    return env


def codex_bin():
    """Path of the pinned Codex CLI, or None."""
    p = os.path.join(BIN, "codex")
    return p if os.path.exists(p) else None


def codex_env(home, base_url, extra=None):
    """Environment for `codex exec` against fake_openai_responses.mjs; writes $home/config.toml
    (CODEX_HOME=home) naming the fake as model provider, wire_api "responses"."""
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write('model = "fake-model"\nmodel_provider = "fake"\n\n[model_providers.fake]\nname = "fake"\n'
                f'base_url = "{base_url}/v1"\nwire_api = "responses"\nenv_key = "FAKE_API_KEY"\n')
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": home, "CODEX_HOME": home,
           "LANG": "C.UTF-8", "FAKE_API_KEY": "sk-fake"}
    env.update(extra or {})
    return env


OPENCODE_DIR = os.path.join(HERE, "opencode", "node_modules")


def opencode_bin():
    """Path of the pinned OpenCode CLI (tests/agents/opencode, installed by scripts/deps.sh test), or None.

    Normally node_modules/.bin/opencode (the package's postinstall put the platform binary there); when
    install scripts did not run, the linux-x64 platform package's binary is used directly."""
    cands = [os.path.join(OPENCODE_DIR, ".bin", "opencode")]
    if os.path.isdir(OPENCODE_DIR):
        for name in sorted(os.listdir(OPENCODE_DIR)):
            if name.startswith("opencode-linux-"):
                cands.append(os.path.join(OPENCODE_DIR, name, "bin", "opencode"))
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK) and os.path.getsize(c) > 1 << 20:
            return c
    return None


def opencode_env(home, base_url, extra_config=None, extra=None):
    """Environment for `opencode run --format json` (prompt on stdin) against fake_chat_completions.mjs:
    the provider in OPENCODE_CONFIG_CONTENT, XDG dirs under home. extra_config is merged into the
    config (e.g. {"mcp": {...}})."""
    cfg = {"model": "fake/fake-model",
           "provider": {"fake": {"npm": "@ai-sdk/openai-compatible",
                                 "options": {"baseURL": base_url + "/v1", "apiKey": "sk-fake"},
                                 "models": {"fake-model": {"tool_call": True}}}}}
    cfg.update(extra_config or {})
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": os.path.join(home, ".config"), "XDG_DATA_HOME": os.path.join(home, ".local/share"),
           "XDG_CACHE_HOME": os.path.join(home, ".cache"), "XDG_STATE_HOME": os.path.join(home, ".local/state"),
           "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
           "OPENCODE_CONFIG_CONTENT": json.dumps(cfg)}
    env.update(extra or {})
    return env


class AgentRun:
    def __init__(self, rc, stdout, stderr, elapsed, timed_out, leftover):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        self.timed_out = timed_out
        self.leftover = leftover     # True if something of the process group was still alive at the end
        self.events = []
        for line in stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
        results = [e for e in self.events if e.get("type") == "result"]
        self.result = results[-1] if results else None

    def describe(self, n=4000):
        return (f"rc={self.rc} timed_out={self.timed_out} elapsed={self.elapsed:.1f}s\n"
                f"-- stdout (tail) --\n{self.stdout[-n:]}\n-- stderr (tail) --\n{self.stderr[-n:]}")


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def run_agent(cmd, env, cwd, timeout=120.0, stdin_data=None):
    """Runs an agent CLI in its own process group with a time limit; SIGKILLs the whole group
    afterwards (Claude Code leaves tool children behind on SIGTERM). Returns an AgentRun."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.PIPE if stdin_data else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(stdin_data, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    elapsed = time.monotonic() - t0
    # Give the group a moment to end on its own, then make sure it has.
    deadline = time.monotonic() + 2.0
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = _group_alive(proc.pid)
    if leftover:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return AgentRun(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), elapsed,
                    timed_out, leftover)
