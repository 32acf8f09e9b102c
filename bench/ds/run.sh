#!/bin/sh
# The Durable Streams suite of `make bench`: starts agentd and the pinned Node reference server on
# loopback, each with a fresh data directory and fsync on every append, drives both with dsbench and
# prints the comparison table with the targets agentd must meet.
#
# Environment:
#   BUILD=build/release     where `make` put agentd and bench/ds/dsbench
#   AGENTD=$BUILD/agentd    the server under test
#   DSBENCH_ARGS=           extra dsbench flags, e.g. "--seconds 2" for a quicker run
#   AGENTD_ARGS=            extra agentd serve flags, e.g. "--store postgres://..." (bench/cluster)
#   BENCH_STRICT=1          exit non-zero when a target fails (default: report only)
# Exit status: 0 when both servers ran (targets are reported, not enforced, unless BENCH_STRICT=1);
# 1 when a server could not be started or the client failed.
set -eu

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
AGENTD=${AGENTD:-$BUILD/agentd}
DSBENCH=$BUILD/bench/ds/dsbench
FLOOR=$BUILD/bench/ds/floor
LONG_POLL_MS=2000
# 1000 SSE subscribers take 1000 descriptors in the client and 1000 in each server.
NOFILE_WANTED=4096

die() { echo "bench/ds: $*" >&2; exit 1; }

[ -x "$DSBENCH" ] || die "$DSBENCH is missing; run it through 'make bench'"
command -v node >/dev/null 2>&1 || die "node is required for the reference server (apt-get install nodejs npm)"
if [ ! -d bench/ds/node_modules/@durable-streams/server ]; then
    command -v npm >/dev/null 2>&1 || die "npm is required to install the reference server (apt-get install npm)"
    echo "bench/ds: installing the reference server from bench/ds/package-lock.json" >&2
    (cd bench/ds && npm ci --no-audit --no-fund >&2) || die "npm ci failed in bench/ds"
fi

# Raise the soft fd limit (inherited by both servers and the client), never lower it.
soft=$(ulimit -n)
hard=$(ulimit -Hn)
if [ "$soft" != unlimited ] && [ "$soft" -lt "$NOFILE_WANTED" ]; then
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$NOFILE_WANTED" ]; then
        echo "bench/ds: warning: hard fd limit $hard < $NOFILE_WANTED; 1000 subscribers may fail" >&2
        ulimit -n "$hard"
    else
        ulimit -n "$NOFILE_WANTED"
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-ds.XXXXXX")
agentd_pid=
ref_pid=
cleanup() {
    for pid in $agentd_pid $ref_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $agentd_pid $ref_pid; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_url NAME PID OUT: prints the URL the server wrote as the first line of OUT, within 15 s.
wait_url() {
    i=0
    while [ $i -lt 150 ]; do
        url=$(head -n 1 "$3" 2>/dev/null || true)
        case $url in http://*) echo "$url"; return 0 ;; esac
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    echo "bench/ds: $1 did not print its URL; its stderr ends with:" >&2
    tail -n 20 "$tmp/$1.err" >&2 || true
    return 1
}

# wait_health URL: agentd answers GET /v1/health with 200 once it is ready, within 10 s.
wait_health() {
    i=0
    while [ $i -lt 100 ]; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1/v1/health" 2>/dev/null || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "bench/ds: agentd never answered 200 on $1/v1/health" >&2
    return 1
}

# still_running NAME PID: a server that died under load fails the suite, with its last words.
still_running() {
    [ -z "$2" ] || kill -0 "$2" 2>/dev/null && return 0
    echo "bench/ds: $1 exited during the run; its stderr ends with:" >&2
    tail -n 20 "$tmp/$1.err" >&2 || true
    return 1
}

status=0
args=
mkdir -p "$tmp/agentd" "$tmp/reference"
if [ -x "$AGENTD" ]; then
    # shellcheck disable=SC2086 # AGENTD_ARGS is a word list
    "$AGENTD" serve --listen 127.0.0.1:0 --data "$tmp/agentd" --durability fsync \
        --long-poll-timeout "$LONG_POLL_MS" ${AGENTD_ARGS:-} >"$tmp/agentd.out" 2>"$tmp/agentd.err" &
    agentd_pid=$!
    if agentd_url=$(wait_url agentd "$agentd_pid" "$tmp/agentd.out") && wait_health "$agentd_url"; then
        args="--agentd $agentd_url --agentd-pid $agentd_pid"
    else
        kill "$agentd_pid" 2>/dev/null || true
        agentd_pid=
        status=1
    fi
else
    echo "bench/ds: $AGENTD is missing" >&2
    status=1
fi

node bench/ds/refserver.mjs "$tmp/reference" "$LONG_POLL_MS" >"$tmp/reference.out" 2>"$tmp/reference.err" &
ref_pid=$!
if ref_url=$(wait_url reference "$ref_pid" "$tmp/reference.out"); then
    args="$args --ref $ref_url --ref-pid $ref_pid"
else
    status=1
fi
[ -n "$args" ] || die "no server started"

echo "== Durable Streams: agentd vs @durable-streams/server $(node -p "require('./bench/ds/node_modules/@durable-streams/server/package.json').version") (node $(node --version))"
echo "   $(nproc) CPUs shared by client and servers; data in $(df -T "$tmp" | awk 'NR==2 {print $2}') at $tmp; fsync on every append"
# What the disk and the loopback cost before any server is involved (see bench/ds/floor.c).
if [ -x "$FLOOR" ]; then
    mkdir -p "$tmp/floor"
    "$FLOOR" "$tmp/floor" | sed 's/^/   /' || echo "bench/ds: floor could not measure this machine" >&2
fi
strict=
[ "${BENCH_STRICT:-0}" = 1 ] && strict=--strict
# shellcheck disable=SC2086 # args and DSBENCH_ARGS are word lists
"$DSBENCH" $args $strict ${DSBENCH_ARGS:-} || status=$?
still_running agentd "$agentd_pid" || status=1
still_running reference "$ref_pid" || status=1
[ $status -eq 0 ] || echo "bench/ds: FAILED (status $status)" >&2
exit $status
