#!/usr/bin/env python3
"""A jsonl agent (protocol 2) for bench/sessions/hitlbench.py: it asks agentd's permission before
each of its pretend tool calls and measures how long the answer takes to come back.

A message "ask N" makes N permission_request lines (tool Bash, {"command": "echo bench-I"}), one
after the other: each written, then stdin read until its permission_response arrives (the moment the
tool would start). For each it appends a line {"i", "written_ns", "answered_ns", "decision"} to the
file $PERMAGENT_OUT (CLOCK_MONOTONIC, as python's time.monotonic_ns, comparable across processes),
then writes a result. The process stays up between messages (warm).
"""
import json
import os
import sys
import time


def out(ev):
    sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    log = open(os.environ["PERMAGENT_OUT"], "a")
    out({"type": "capabilities", "protocol": 2, "approvals": True, "warm": True})
    line = sys.stdin.readline()
    seq = 0
    while line:
        user = json.loads(line)
        words = (user.get("text") or "").split()
        n = int(words[1]) if len(words) > 1 and words[0] == "ask" else 0
        for _ in range(n):
            seq += 1
            rid = f"b{seq}"
            t0 = time.monotonic_ns()
            out({"type": "permission_request", "request": rid, "tool": "Bash",
                 "input": {"command": f"echo bench-{seq}"}})
            while True:
                msg = sys.stdin.readline()
                if not msg:
                    return
                ans = json.loads(msg)
                if ans.get("type") == "permission_response" and ans.get("request") == rid:
                    break
            t1 = time.monotonic_ns()
            log.write(json.dumps({"i": seq, "written_ns": t0, "answered_ns": t1,
                                  "decision": ans.get("decision")}) + "\n")
            log.flush()
        out({"type": "result", "text": f"asked {n} times"})
        line = sys.stdin.readline()
        while line and json.loads(line).get("type") != "user":
            line = sys.stdin.readline()


if __name__ == "__main__":
    main()
