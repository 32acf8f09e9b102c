#!/bin/sh
# The sessions suite of `make bench`: starts a fresh agentd on loopback (own data directory, fsync on
# every append) and drives it with bench/sessions/sessbench.py: session create -> environment ready,
# event ingest from a jsonl agent writing as fast as it can, and RSS with idle sessions; then a
# second fresh agentd with bench/sessions/sessload: 1,000 live sessions whose agents
# (bench/sessions/loadagent) stream 50 deltas/s each to one SSE reader per session, then 10,000 idle
# sessions with 10,000 idle readers; then a third with bench/sessions/hitlbench.py: Claude Code warm
# vs a fresh process per message, and permission requests answered by policy and by a person. See
# bench/sessions/README.md.
#
# Environment:
#   BUILD=build/release       where `make` put agentd, bench/sessions/sessload and loadagent
#   AGENTD=$BUILD/agentd      the server under test
#   SESSBENCH_ARGS=           extra sessbench.py flags, e.g. "--events 50000 --sessions 50"
#   SESSLOAD_ARGS=            extra sessload flags, e.g. "--sessions 200 --idle 2000"
#   HITLBENCH_ARGS=           extra hitlbench.py flags, e.g. "--messages 10 --asks 200"
# Exit status: 0 when everything ran and the ingest count matched; 1 otherwise.
set -eu

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
AGENTD=${AGENTD:-$BUILD/agentd}

die() { echo "bench/sessions: $*" >&2; exit 1; }

SESSLOAD=$BUILD/bench/sessions/sessload
LOADAGENT=$BUILD/bench/sessions/loadagent
# 10,000 idle readers take 10,000 descriptors in the client and as many in agentd, and each of the
# 1,000 live runs a few more (pipes, pidfd).
NOFILE_WANTED=16384

[ -x "$AGENTD" ] || die "$AGENTD is missing; run it through 'make bench'"
[ -x "$SESSLOAD" ] && [ -x "$LOADAGENT" ] || die "$SESSLOAD or $LOADAGENT is missing; run it through 'make bench'"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

soft=$(ulimit -n)
hard=$(ulimit -Hn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$NOFILE_WANTED" ]; then
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE_WANTED" ]; then
        echo "bench/sessions: warning: hard fd limit $hard < $NOFILE_WANTED; the idle phase may fail" >&2
        ulimit -n "$hard"
    else
        ulimit -n "$NOFILE_WANTED"
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-sessions.XXXXXX")
agentd_pid=
stop_agentd() {
    if [ -n "$agentd_pid" ]; then
        kill "$agentd_pid" 2>/dev/null || true
        wait "$agentd_pid" 2>/dev/null || true
    fi
    agentd_pid=
}
trap 'stop_agentd; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# start_agentd NAME: a fresh agentd on $tmp/NAME; sets agentd_pid and url.
start_agentd() {
    mkdir -p "$tmp/$1"
    "$AGENTD" serve --listen 127.0.0.1:0 --data "$tmp/$1" --durability fsync \
        >"$tmp/$1.out" 2>"$tmp/$1.err" &
    agentd_pid=$!
    i=0
    url=
    while [ $i -lt 150 ]; do
        url=$(head -n 1 "$tmp/$1.out" 2>/dev/null || true)
        case $url in http://*) return 0 ;; esac
        url=
        kill -0 "$agentd_pid" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    tail -n 20 "$tmp/$1.err" >&2 || true
    die "agentd did not print its URL"
}

# check_alive NAME: agentd must still run after a client is done.
check_alive() {
    kill -0 "$agentd_pid" 2>/dev/null && return 0
    echo "bench/sessions: agentd exited during the run; its stderr ends with:" >&2
    tail -n 20 "$tmp/$1.err" >&2 || true
    status=1
}

status=0
start_agentd data
echo "== agent sessions: $AGENTD (python3 client, jsonl agents: /bin/true and bench/sessions/flood_agent.py)"
echo "   $(nproc) CPUs shared by client, server and agents; data in $(df -T "$tmp" | awk 'NR==2 {print $2}') at $tmp; fsync on every append"
# shellcheck disable=SC2086 # SESSBENCH_ARGS is a word list
python3 bench/sessions/sessbench.py --url "$url" --pid "$agentd_pid" ${SESSBENCH_ARGS:-} || status=$?
check_alive data
stop_agentd

start_agentd load
echo
echo "== many live sessions: $AGENTD ($SESSLOAD, agents $LOADAGENT)"
strict=
[ "${BENCH_STRICT:-0}" = 1 ] && strict=--strict
# shellcheck disable=SC2086 # SESSLOAD_ARGS is a word list
"$SESSLOAD" --url "$url" --pid "$agentd_pid" --agent "$(cd "$(dirname "$LOADAGENT")" && pwd)/loadagent" \
    --seconds 20 $strict ${SESSLOAD_ARGS:-} || status=$?
check_alive load
stop_agentd

start_agentd loop
echo
echo "== a person in the loop, warm agents: $AGENTD (bench/sessions/hitlbench.py)"
# shellcheck disable=SC2086 # HITLBENCH_ARGS is a word list
python3 bench/sessions/hitlbench.py --url "$url" ${HITLBENCH_ARGS:-} || status=$?
check_alive loop
stop_agentd
[ $status -eq 0 ] || echo "bench/sessions: FAILED (status $status)" >&2
exit $status
