#!/usr/bin/env bash
# Builds the dashboard: web/ into web/dist (npm ci first when web/node_modules was not installed
# from the current package-lock.json, as scripts/deps.sh does for the test tools; then npm run
# build). make runs it when web/'s sources changed. Every failure says why and how to build
# agentd without the dashboard.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
without="or build agentd without its dashboard: make UI=0"

if [ ! -f "$root/web/package.json" ]; then
    echo "agentd: web/package.json is missing: the dashboard's sources are not in this tree; restore web/, $without" >&2
    exit 1
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "agentd: node and npm build the dashboard (web/) and are not installed: run make deps (installs them, as root), $without" >&2
    exit 1
fi
if ! "$root/scripts/deps.sh" web; then
    echo "agentd: npm ci in web/ failed (output above): the dashboard's packages could not be installed; $without" >&2
    exit 1
fi
echo "agentd: building the dashboard (npm run build in web/)" >&2
mkdir -p "$root/build"
if ! (cd "$root/web" && npm run build --silent >"$root/build/web-build.log" 2>&1); then
    cat "$root/build/web-build.log" >&2
    echo "agentd: the dashboard (web/) failed to build (npm run build, output above); fix it, $without" >&2
    exit 1
fi
if [ ! -f "$root/web/dist/index.html" ]; then
    echo "agentd: npm run build in web/ wrote no web/dist/index.html; $without" >&2
    exit 1
fi
