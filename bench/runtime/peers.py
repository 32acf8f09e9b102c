"""Peers for bench/runtime: pexpect replwrap and jupyter_client + ipykernel on the commands
rtbench uses, printed in rtbench's format: <system> <lang> <what> <p50_us> <p99_us> <n>.

Run with Debian's python3 (python3-pexpect, python3-jupyter-client, python3-ipykernel).
Usage: peers.py [calls=2000] [cold_starts=10]
"""
import os
import re
import sys
import time

CALLS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
COLDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
# pexpect's default delaybeforesend is 50 ms per command; measuring 2000 of those takes minutes
# and tells nothing more, so the default variant gets a handful of calls.
DEFAULT_DELAY_CALLS = 20


def report(system, lang, what, samples):
    s = sorted(samples)
    n = len(s)
    p50 = s[n // 2]
    p99 = s[min(n - 1, (n * 99) // 100)]
    print("%s %s %s %.1f %.1f %d" % (system, lang, what.replace(" ", "_"), p50 * 1e6, p99 * 1e6, n),
          flush=True)


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pexpect_suite(lang, delay, calls):
    from pexpect import replwrap
    system = "pexpect" if delay else "pexpect-nodelay"
    cmds = {"bash": ("x=0", "x=$((x+1))", "echo $x"),
            "python": ("x = 0", "x = x + 1", "print(x)")}[lang]

    def start():
        if lang == "bash":
            r = replwrap.bash()
        else:
            r = replwrap.python(command="/usr/bin/python3")
        if not delay:
            r.child.delaybeforesend = None
        return r

    colds = []
    for _ in range(max(3, COLDS // 2) if delay else COLDS):
        t0 = time.perf_counter()
        r = start()
        r.run_command(cmds[1])
        colds.append(time.perf_counter() - t0)
        r.child.close(force=True)
    r = start()
    r.run_command(cmds[0])
    for _ in range(calls // 10):
        r.run_command(cmds[1])
    a, b = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        r.run_command(cmds[1])
        t1 = time.perf_counter()
        out = r.run_command(cmds[2])
        b.append(time.perf_counter() - t1)
        a.append(t1 - t0)
    nums = re.findall(r"\d+", re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out))
    if not nums or int(nums[-1]) <= calls:
        raise SystemExit("pexpect: state not kept: %r" % out)
    r.child.close(force=True)
    report(system, lang, cmds[1], a)
    report(system, lang, cmds[2], b)
    report(system, lang, "cold", colds)


def jupyter_suite(calls):
    from jupyter_client.manager import start_new_kernel

    def run(kc, code):
        reply = kc.execute_interactive(code, timeout=30, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise SystemExit("jupyter: %s failed" % code)

    colds = []
    for _ in range(COLDS):
        t0 = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        run(kc, "x = 1")
        colds.append(time.perf_counter() - t0)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km, kc = start_new_kernel(kernel_name="python3")
    run(kc, "x = 0")
    for _ in range(calls // 10):
        run(kc, "x = x + 1")
    a, b = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        run(kc, "x = x + 1")
        t1 = time.perf_counter()
        run(kc, "print(x)")
        b.append(time.perf_counter() - t1)
        a.append(t1 - t0)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    report("jupyter", "python", "x = x + 1", a)
    report("jupyter", "python", "print(x)", b)
    report("jupyter", "python", "cold", colds)


def main():
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets ipykernel's debugger
    for lang in ("bash", "python"):
        pexpect_suite(lang, False, CALLS)
        pexpect_suite(lang, True, min(CALLS, DEFAULT_DELAY_CALLS))
    jupyter_suite(CALLS)


if __name__ == "__main__":
    main()
