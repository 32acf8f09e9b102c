#!/bin/sh
# The sessions suite of `make bench`: starts a fresh agentd on loopback (own data directory, fsync on
# every append) and drives it with bench/sessions/sessbench.py: session create -> environment ready,
# event ingest from a jsonl agent writing as fast as it can, and RSS with idle sessions. See
# bench/sessions/README.md.
#
# Environment:
#   BUILD=build/release       where `make` put agentd
#   AGENTD=$BUILD/agentd      the server under test
#   SESSBENCH_ARGS=           extra sessbench.py flags, e.g. "--events 50000 --sessions 50"
# Exit status: 0 when everything ran and the ingest count matched; 1 otherwise.
set -eu

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
AGENTD=${AGENTD:-$BUILD/agentd}

die() { echo "bench/sessions: $*" >&2; exit 1; }

[ -x "$AGENTD" ] || die "$AGENTD is missing; run it through 'make bench'"
command -v python3 >/dev/null 2>&1 || die "python3 is required"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-sessions.XXXXXX")
agentd_pid=
cleanup() {
    if [ -n "$agentd_pid" ]; then
        kill "$agentd_pid" 2>/dev/null || true
        wait "$agentd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/data"
"$AGENTD" serve --listen 127.0.0.1:0 --data "$tmp/data" --durability fsync \
    >"$tmp/agentd.out" 2>"$tmp/agentd.err" &
agentd_pid=$!
i=0
url=
while [ $i -lt 150 ]; do
    url=$(head -n 1 "$tmp/agentd.out" 2>/dev/null || true)
    case $url in http://*) break ;; esac
    url=
    kill -0 "$agentd_pid" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$url" ]; then
    tail -n 20 "$tmp/agentd.err" >&2 || true
    die "agentd did not print its URL"
fi

echo "== agent sessions: $AGENTD (python3 client, jsonl agents: /bin/true and bench/sessions/flood_agent.py)"
echo "   $(nproc) CPUs shared by client, server and agents; data in $(df -T "$tmp" | awk 'NR==2 {print $2}') at $tmp; fsync on every append"
status=0
# shellcheck disable=SC2086 # SESSBENCH_ARGS is a word list
python3 bench/sessions/sessbench.py --url "$url" --pid "$agentd_pid" ${SESSBENCH_ARGS:-} || status=$?
if ! kill -0 "$agentd_pid" 2>/dev/null; then
    echo "bench/sessions: agentd exited during the run; its stderr ends with:" >&2
    tail -n 20 "$tmp/agentd.err" >&2 || true
    status=1
fi
[ $status -eq 0 ] || echo "bench/sessions: FAILED (status $status)" >&2
exit $status
