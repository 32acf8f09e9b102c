#!/usr/bin/env bash
# The dashboard's tests (make browser; part of make test): the client package's vitest suite against
# the real agentd, then the browser suite (node's test runner, playwright-core driving Debian's
# chromium). AGENTD_BIN names the binary (with the dashboard embedded); screenshots go to
# build/browser-shots/ (SHOTS_DIR to change).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export AGENTD_BIN=${AGENTD_BIN:-$root/build/release/agentd}
for d in clients/typescript tests/browser; do
    if [ ! -d "$root/$d/node_modules" ]; then
        echo "browser: $d/node_modules is missing: run scripts/deps.sh test (or npm ci in $d)" >&2
        exit 1
    fi
done
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "browser: no chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install chromium (scripts/deps.sh test does)" >&2
    exit 1
fi
echo "== clients/typescript (vitest against $AGENTD_BIN)"
(cd "$root/clients/typescript" && npx vitest run)
echo "== tests/browser (chromium)"
cd "$root/tests/browser" && exec node --test --test-reporter=spec browser.test.mjs
