#!/usr/bin/env python3
"""A PostgreSQL of its own for a test: initdb into a temporary directory, the server on a free
loopback port (no Unix socket outside that directory), stopped and removed when the test ends.

PostgreSQL refuses to run as root, so as root the cluster belongs to `nobody` and every PostgreSQL
command runs through runuser. Debian's postgresql-15 package provides the binaries
(/usr/lib/postgresql/<version>/bin; scripts/deps.sh test installs it).

    pg = Postgres(); pg.start()      # pg.url: postgres://agentd@127.0.0.1:PORT/postgres
    pg.stop(); pg.start()            # same cluster, same port
    pg.cleanup()                     # also at exit

As a command it runs another command with a fresh cluster, its URL in $PG_URL (not AGENTD_STORE:
agentd reads that itself, as --store, and would put every agentd of the command on PostgreSQL):
    tests/integ/pg.py run -- tests/conformance/run.sh
"""

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True


def bin_dir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not dirs:
        raise RuntimeError("PostgreSQL is not installed (Debian: postgresql-15; scripts/deps.sh test)")
    return os.path.dirname(dirs[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    _all = []

    def __init__(self):
        self.bin = bin_dir()
        self.root = tempfile.mkdtemp(prefix="agentd-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "log")
        self.port = free_port()
        self.url = f"postgres://agentd@127.0.0.1:{self.port}/postgres"
        self.user = None
        if os.geteuid() == 0:
            self.user = "nobody"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "agentd", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nmax_connections = 50\n"
                    "shared_buffers = 32MB\n")
        Postgres._all.append(self)

    def _run(self, prog, *args, check=True):
        cmd = [os.path.join(self.bin, prog), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           cwd=self.root)
        if check and r.returncode != 0:
            raise RuntimeError(f"{prog} failed ({r.returncode}): {r.stdout.decode(errors='replace')}"
                               f"{self.log_tail()}")
        return r

    def start(self):
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        """pg_ctl stop: fast (clients are cut off, a clean shutdown) or immediate (like a crash)."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def running(self):
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def log_tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "\n-- postgresql log (tail) --\n" + "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cleanup(self):
        if self.running():
            self.stop("immediate")
        try:  # a postmaster pg_ctl could not stop
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        if self in Postgres._all:
            Postgres._all.remove(self)

    @classmethod
    def cleanup_all(cls):
        for pg in list(cls._all):
            pg.cleanup()


atexit.register(Postgres.cleanup_all)


class Locker:
    """A psql session that holds an ACCESS EXCLUSIVE lock on agentd_records (or on the tables given)
    until release(): every read of records (and of a stream's tail) waits for it meanwhile."""

    def __init__(self, pg, tables=("agentd_records",)):
        env = dict(os.environ, PGCONNECT_TIMEOUT="5")
        self.proc = subprocess.Popen([os.path.join(pg.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", pg.url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env)
        lock = f"BEGIN;\nLOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n"
        self.proc.stdin.write(lock.encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if line.strip() != b"locked":
            raise RuntimeError(f"psql did not take the lock: {line!r}")

    def release(self):
        self.proc.stdin.write(b"COMMIT;\n\\q\n")
        self.proc.stdin.flush()
        self.proc.wait(10)


def main(argv):
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: pg.py run -- COMMAND...", file=sys.stderr)
        return 2
    pg = Postgres()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        pg.start()
        env = dict(os.environ, PG_URL=pg.url)
        return subprocess.run(argv[2:], env=env).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        pg.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

