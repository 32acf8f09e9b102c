#!/usr/bin/env python3
"""A jsonl agent (doc/AGENT-PROTOCOL.md) that writes events as fast as it can, for bench/sessions.

The prompt `flood N` makes it write N small `message` events ({"type":"message","text":"n=I"}) in
64 KiB writes, then a result; any other prompt just writes the result. It exits at once after."""
import json
import sys


def main():
    line = sys.stdin.buffer.readline()
    try:
        text = json.loads(line).get("text", "")
    except ValueError:
        text = ""
    out = sys.stdout.buffer
    words = text.split()
    n = int(words[1]) if len(words) == 2 and words[0] == "flood" else 0
    out.write(b'{"type":"session","id":"flood"}\n')
    buf = []
    size = 0
    for i in range(1, n + 1):
        b = b'{"type":"message","text":"n=%d"}\n' % i
        buf.append(b)
        size += len(b)
        if size >= 65536:
            out.write(b"".join(buf))
            buf, size = [], 0
    out.write(b"".join(buf))
    out.write(b'{"type":"result","text":"flooded %d"}\n' % n)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
