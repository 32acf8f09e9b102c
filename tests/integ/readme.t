#!/usr/bin/env python3
"""The README's shell examples, run as written against a real server; TAP output for prove.

A README example that breaks fails `make test`. The code blocks (lines indented by four spaces) of
the sections in SECTIONS are taken from README.md and run in order, each block in one bash
(`set -o pipefail`, so variables carry from line to line as they do for a reader), with these
changes only, each standing for what a reader has and the test has not:

  - http://127.0.0.1:4437 (the address `make run` serves on) becomes the test server's URL, and
    AGENTD_URL points the client commands there (their default is that same address);
  - build/release/agentd becomes $AGENTD_BIN (the build under test);
  - /path/to/agent becomes the jsonl test agent (tests/agents/jsonl_agent.py);
  - a command that follows live output (`live=sse`) is stopped after a few seconds (exit 124 is its
    success); one put in the background with `&` is waited for at the end of its block;
  - a line with a placeholder such as `<run>` is not run (reported as a skip).

Each command must exit 0 and print no `{"error":...}` body (curl -s exits 0 on an HTTP error). Output
the README documents is checked too: a comment `# {...` after a command (or on the next line) gives
the start of its output up to the first `...`; `# prints N` gives its output for a number N.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentd_test import ROOT, Server, run_test  # noqa: E402

SECTIONS = ["Using streams", "Sessions and runs", "A person in the loop", "Runtimes"]
README = os.path.join(ROOT, "README.md")
AGENT = os.path.join(ROOT, "tests", "agents", "jsonl_agent.py")
LIVE_SECONDS = 3


def blocks(text):
    """(section, [lines]) for every indented code block, in order."""
    section, out, cur = None, [], None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("    ") and line.strip():
            if cur is None:
                cur = (section, [])
                out.append(cur)
            cur[1].append(line[4:])
        else:
            cur = None
    return out


def split_comment(line):
    """(code, comment) at the first # that starts a word outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"':
                continue
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def commands(lines):
    """[(code, [documentation comments])]: each command with its inline comment and the comment
    lines right after it."""
    out = []
    for line in lines:
        code, comment = split_comment(line)
        if code:
            out.append([code, [comment] if comment else []])
        elif comment and out:
            out[-1][1].append(comment)
    return out


def expectations(comments):
    """What the README says a command prints: ('prefix', text) or ('exact', text)."""
    want = []
    for c in comments:
        if c.startswith("{"):
            want.append(("prefix", c.split("...", 1)[0]))
        m = re.match(r"prints (\d+)\b", c)
        if m:
            want.append(("exact", m.group(1)))
    return want


def run_block(tap, srv, section, lines, work):
    cmds = commands(lines)
    if not cmds:
        return
    bin_path = os.path.abspath(os.environ["AGENTD_BIN"])
    script = ["set -o pipefail", f"cd {ROOT!r}"]
    runnable = []
    for i, (code, comments) in enumerate(cmds):
        if re.search(r"<[a-z_]+>", code):
            runnable.append((i, code, comments, None))
            continue
        code = code.replace("http://127.0.0.1:4437", srv.url)
        code = code.replace("build/release/agentd", bin_path).replace("/path/to/agent", AGENT)
        base = os.path.join(work, f"c{i}")
        redirect = f'>{base}.out 2>{base}.err'
        if code.endswith("&"):
            script.append(f"{code[:-1].rstrip()} {redirect} & echo $! >{base}.bg")
        else:
            if "live=sse" in code:
                code = f"timeout {LIVE_SECONDS} {code}"
            script.append(f"{code} {redirect}; echo $? >{base}.rc")
        runnable.append((i, cmds[i][0], comments, base))
    # Background commands are waited for (with a bound) at the end of the block.
    script.append("for f in " + os.path.join(work, "c*.bg") + "; do [ -e \"$f\" ] || continue; "
                  "p=$(cat \"$f\"); for _ in $(seq 100); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; "
                  "if kill -0 $p 2>/dev/null; then kill $p; echo 999 >\"${f%.bg}.rc\"; "
                  "else wait $p; echo $? >\"${f%.bg}.rc\"; fi; done")
    env = dict(os.environ, AGENTD_URL=srv.url)
    env.pop("AGENTD_TOKEN", None)
    env.pop("AGENTD_SESSION", None)
    proc = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True, timeout=180)
    if proc.returncode != 0:
        tap.diag(proc.stderr.decode(errors="replace")[-2000:])

    for i, shown, comments, base in runnable:
        if base is None:
            tap.skip(f"{section}: {shown}", "a placeholder the reader fills in")
            continue
        def read(ext):
            try:
                with open(base + ext, "rb") as f:
                    return f.read().decode(errors="replace")
            except FileNotFoundError:
                return None
        rc, out, err = read(".rc"), read(".out") or "", read(".err") or ""
        rc = int(rc) if rc and rc.strip().lstrip("-").isdigit() else None
        live = "live=sse" in shown
        good_rc = rc == 0 or (live and rc == 124)
        tap.ok(good_rc and '{"error":' not in out, f"{section}: {shown}",
               f"exit {rc}\nstdout: {out[-800:]}\nstderr: {err[-800:]}")
        for kind, text in expectations(comments):
            text = text.replace("http://127.0.0.1:4437", srv.url)
            got = out.strip()
            hit = got.startswith(text) if kind == "prefix" else got == text
            tap.ok(hit, f"{section}: `{shown}` prints {text!r}" + (" ..." if kind == "prefix" else ""),
                   f"stdout: {out[-800:]}")


def main(tap):
    with open(README) as f:
        text = f.read()
    found = [b for b in blocks(text) if b[0] in SECTIONS]
    for section in SECTIONS:
        tap.ok(any(b[0] == section for b in found), f"README has the section {section!r} with examples")
    srv = Server()
    srv.start()
    work = tempfile.mkdtemp(prefix="agentd-readme-")
    for n, (section, lines) in enumerate(found):
        d = os.path.join(work, f"b{n}")
        os.makedirs(d)
        run_block(tap, srv, section, lines, d)
    tap.check_clean_exit(srv)


if __name__ == "__main__":
    run_test(main)
