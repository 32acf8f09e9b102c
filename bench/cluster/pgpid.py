#!/usr/bin/env python3
"""The pid of the postmaster serving a local PostgreSQL URL, so that dsbench can count the CPU time of
it and its backends (--db-pid); prints nothing when none on this machine serves that port.

    python3 bench/cluster/pgpid.py postgres://agentd@127.0.0.1:PORT/postgres

A postmaster is a `postgres -D DATADIR` process whose DATADIR/postmaster.pid names its own pid and
the URL's port (its fourth line). Reading another user's data directory needs root, as the benches
run here (tests/integ/pg.py runs PostgreSQL as nobody then).
"""
import os
import sys
from urllib.parse import urlparse


def postmaster_pid(url):
    port = urlparse(url).port or 5432
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            if os.path.basename(argv[0]) != "postgres" or "-D" not in argv[:-1]:
                continue
            data = os.path.join(os.readlink(f"/proc/{name}/cwd"), argv[argv.index("-D") + 1])
            with open(os.path.join(data, "postmaster.pid")) as f:
                lines = f.read().splitlines()
            if lines[0].strip() == name and lines[3].strip() == str(port):
                return int(name)
        except (OSError, IndexError, ValueError):
            continue
    return None


if __name__ == "__main__":
    pid = postmaster_pid(sys.argv[1]) if len(sys.argv) == 2 else None
    if pid:
        print(pid)
