#!/bin/sh
# bench/ui: the dashboard in Debian's chromium against the real agentd (see bench/README.md):
# a 100,000-event session opened against curl fetching its whole transcript, the tab's JS heap,
# live append -> DOM latency, and the embedded UI's gzipped size. Needs tests/browser's
# node_modules (playwright-core) and chromium (scripts/deps.sh test installs both).
set -eu
BUILD=${BUILD:-build/release}
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
AGENTD_BIN="$root/$BUILD/agentd" exec node "$root/bench/ui/uibench.mjs" "$@"
