#!/usr/bin/env bash
# Runs the Durable Streams conformance suite against a freshly started server.
#   AGENTD_BIN=/abs/path/agentd tests/conformance/run.sh     agentd (what `make conformance` does)
#   PG_URL=postgres://... (with AGENTD_BIN)                  agentd on that PostgreSQL (--store); make
#                                                            conformance-pg starts one (tests/integ/pg.py)
#   DS_SERVER=ref tests/conformance/run.sh                   the npm reference server, for comparison
#                                                            (DS_REF_MEMORY=1: its in-memory store)
#   AGENTD_ARGS="--shards 64" (with AGENTD_BIN)                more options for agentd serve
# The server gets port 0, a temporary data dir and a 500 ms long-poll timeout (the suite needs it
# well under vitest's 5 s test timeout). Exits non-zero if the server fails to start or any test fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=${DS_SERVER:-agentd}
start_timeout=${START_TIMEOUT:-20}   # seconds to wait for the URL line and then for health
suite_timeout=${SUITE_TIMEOUT:-900}  # seconds for the whole vitest run

if [ ! -d "$here/node_modules/@durable-streams/server-conformance-tests" ]; then
    echo "run.sh: tests/conformance/node_modules is missing; run scripts/deps.sh test" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/agentd-conformance.XXXXXX")
mkdir "$work/data"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_log() {
    echo "---- server stderr (last 40 lines) ----" >&2
    tail -n 40 "$work/stderr" >&2 || true
}

case "$server" in
    agentd)
        : "${AGENTD_BIN:?set AGENTD_BIN to the agentd binary (or DS_SERVER=ref)}"
        cmd=("$AGENTD_BIN" serve)
        # Always said: an AGENTD_STORE in the environment would otherwise choose the store.
        cmd+=(--store "${PG_URL:-sqlite}")
        read -ra extra <<<"${AGENTD_ARGS:-}"
        cmd+=("${extra[@]}")
        health=/v1/health
        ;;
    ref)
        # The registry lacks some of the reference's optional platform packages, so its lock file
        # cannot satisfy `npm ci`; npm install tolerates that.
        if [ ! -d "$here/ref/node_modules/@durable-streams/server" ]; then
            (cd "$here/ref" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
        fi
        cmd=(node "$here/ref/ref-server.mjs")
        health=""   # the reference has no health route; it prints its URL once it listens
        ;;
    *)
        echo "run.sh: DS_SERVER must be agentd or ref, not '$server'" >&2
        exit 2
        ;;
esac
# Created before the server starts, so the wait below never reads a file the shell has not opened yet.
: >"$work/stdout"
"${cmd[@]}" --listen 127.0.0.1:0 --data "$work/data" --long-poll-timeout 500 \
    >"$work/stdout" 2>"$work/stderr" &
pid=$!

url=""
deadline=$((SECONDS + start_timeout))
while [ -z "$url" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: $server exited before printing its URL" >&2
        server_log
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "run.sh: $server printed no URL within ${start_timeout}s" >&2
        server_log
        exit 1
    fi
    # Only a complete first line counts.
    if [ "$(wc -l <"$work/stdout")" -ge 1 ]; then
        url=$(head -n 1 "$work/stdout")
        [ -n "$url" ] || url="(empty line)"
    else
        sleep 0.05
    fi
done
case "$url" in
    http://*) ;;
    *) echo "run.sh: first line of $server stdout is not a URL: '$url'" >&2; exit 1 ;;
esac

if [ -n "$health" ]; then
    deadline=$((SECONDS + start_timeout))
    until curl -fsS -o /dev/null --max-time 2 "$url$health" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "run.sh: $url$health did not answer 200 within ${start_timeout}s" >&2
            server_log
            exit 1
        fi
        sleep 0.1
    done
fi

echo "run.sh: conformance suite against $server${PG_URL:+ on PostgreSQL} at $url"
rc=0
(cd "$here" && AGENTD_URL="$url" timeout --kill-after=10 "$suite_timeout" \
    node_modules/.bin/vitest run --config vitest.config.js) || rc=$?

if ! kill -0 "$pid" 2>/dev/null; then
    echo "run.sh: $server died during the suite" >&2
    server_log
    rc=1
elif [ "$rc" -ne 0 ]; then
    server_log
fi
exit "$rc"
