#!/usr/bin/env bash
# Installs what agentd needs to build (`deps.sh build`) or to build and test (`deps.sh test`).
# `deps.sh web` keeps web/node_modules (the dashboard's build tools) in step with its lock file;
# scripts/web-build.sh runs it before building the dashboard.
#
# Debian packages are detected with dpkg-query; apt-get runs only when something is missing, so a
# machine that has everything hears nothing from this script. Without root, a missing package is an
# error that names what to install. `test` also keeps tests/conformance/node_modules in step with its
# package-lock.json (npm ci when it is absent or was installed from a different lock file), and
# tests/agents/node_modules (the pinned agent CLIs) the same way.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# zlib1g-dev: the dashboard's embedded files are gzip-compressed and inflated for clients that do
# not take gzip. Node.js and npm (see install_pkgs) build the dashboard, web/.
build_pkgs=(gcc make pkg-config libuv1-dev libh2o-dev libwslay-dev libjansson-dev libsqlite3-dev libpq-dev
            libcurl4-openssl-dev libsodium-dev libssl-dev zlib1g-dev)
# clang + libclang-rt-14-dev: libFuzzer targets and sanitizer runtimes. clang-format: the layout check
# (make format-check). perl: prove. python3: the integration tests. curl, wrk: smoke and load checks. The python3-* packages and bubblewrap are for the
# runtime and sandbox modules' tests. chromium: the dashboard's browser tests (tests/browser drive it
# with playwright-core; no browser is downloaded).
test_pkgs=(clang clang-format libclang-rt-14-dev perl python3 curl wrk postgresql-15 python3-pexpect python3-jupyter-client
           python3-ipykernel bubblewrap chromium)

usage() {
    echo "usage: $0 build|test|web" >&2
    exit 2
}

# Prints each argument that dpkg does not report as installed.
missing_pkgs() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = installed ] || echo "$pkg"
    done
}

install_pkgs() {
    local missing
    mapfile -t missing < <(missing_pkgs "$@")
    # Node.js (the dashboard's build, the test tools) may come from a vendor build whose nodejs
    # package already ships npm; Debian's npm package would conflict with it, so node and npm are
    # judged by the commands, not by package names.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    [ "${#missing[@]}" -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
        echo "deps.sh: install them as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "deps.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# npm ci in DIR unless its node_modules was installed from the current package-lock.json (a stamp
# holds the lock file's hash) and still has PACKAGE. Used for tests/conformance (the conformance
# suite), tests/agents (the pinned agent CLIs the end-to-end tests drive, e.g. Claude Code) and web
# (the dashboard's build tools).
npm_modules() {
    local dir="$root/$1" package=$2 stamp want have=""
    [ -f "$dir/package-lock.json" ] || return 0
    stamp="$dir/node_modules/.agentd-lock.sha256"
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    [ -f "$stamp" ] && have=$(cat "$stamp")
    [ "$want" = "$have" ] && [ -d "$dir/node_modules/$package" ] && return 0
    echo "deps.sh: npm ci in $1" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$stamp"
}

[ $# -eq 1 ] || usage
case "$1" in
    build) install_pkgs "${build_pkgs[@]}" ;;
    web) npm_modules web vite ;;
    test)
        install_pkgs "${build_pkgs[@]}" "${test_pkgs[@]}"
        npm_modules tests/conformance @durable-streams/server-conformance-tests
        npm_modules tests/agents @anthropic-ai/claude-code
        # OpenCode, pinned in a directory of its own: its lock file has hand-written entries for the
        # platform packages this registry lacks (see tests/agents/README.md).
        npm_modules tests/agents/opencode opencode-ai
        # The dashboard: its build tools, the client package's tests (vitest), the browser tests.
        npm_modules web vite
        npm_modules clients/typescript vitest
        npm_modules tests/browser playwright-core
        ;;
    *) usage ;;
esac
