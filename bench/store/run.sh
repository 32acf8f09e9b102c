#!/bin/sh
# The store suite of `make bench`: pages written per commit by the store alone (src/store through
# its API), beside the layout agentd used before issue 12 and the simple log + per-append index,
# reproduced in SQL in the same program (bench/store/storebench.c). Page counts are SQLite's own and
# deterministic; the microseconds beside them are CPU time on a shared machine.
#
# Environment:
#   BUILD=build/release     where `make` put bench/store/storebench
# Exit status: 0 when it ran, 1 otherwise.
set -eu

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
STOREBENCH=$BUILD/bench/store/storebench
[ -x "$STOREBENCH" ] || { echo "bench/store: $STOREBENCH is missing; run it through 'make bench'" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-store.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

echo "== the store alone: pages written per commit ($(df -T "$tmp" | awk 'NR==2 {print $2}') at $tmp)"
"$STOREBENCH" "$tmp"
