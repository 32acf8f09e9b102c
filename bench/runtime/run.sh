#!/bin/sh
# bench/runtime/run.sh — agentd runtimes against pexpect replwrap and jupyter_client+ipykernel.
#
# Same commands everywhere: bash `x=$((x+1))` / `echo $x`, python `x = x + 1` / `print(x)`, plus
# cold start (create -> first command done). The agentd-http rows are the same round trips through
# a fresh `agentd serve` (POST .../runtimes/<lang>/exec on one kept-alive connection: httpbench.c).
# Prints one table: medians, p99 and the ratio of each peer's median to agentd's on the same row.
# Run from the repository root; BUILD is the build directory holding bench/runtime/rtbench (make
# bench-runtime sets it).
# Knobs: RT_BENCH_CALLS (2000), RT_BENCH_COLDS (30), RT_BENCH_PEER_COLDS (5).
set -e
BUILD=${BUILD:-build/release}
CALLS=${RT_BENCH_CALLS:-2000}
COLDS=${RT_BENCH_COLDS:-30}
PEER_COLDS=${RT_BENCH_PEER_COLDS:-5}
tmp=$(mktemp -d)
serve_pid=
trap '[ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

"$BUILD/bench/runtime/rtbench" "$CALLS" "$COLDS" >"$tmp/all.txt"

# agentd over HTTP: a fresh server on a free port and data dir (its first stdout line is its URL),
# once as configured by default (appends fsynced before they are acknowledged, and an exec's answer
# waits for its transcript event) and once with --durability os, to show what that fsync costs.
http_rows() { # SYSTEM [serve options...]
	system=$1
	shift
	rm -rf "$tmp/data" "$tmp/serve.out"
	mkdir "$tmp/data"
	"$BUILD/agentd" serve --listen 127.0.0.1:0 --data "$tmp/data" "$@" >"$tmp/serve.out" \
		2>"$tmp/serve.err" &
	serve_pid=$!
	tries=0
	until [ -s "$tmp/serve.out" ] || [ $tries -ge 100 ]; do sleep 0.1; tries=$((tries + 1)); done
	url=$(head -n 1 "$tmp/serve.out")
	case $url in
	http://*) "$BUILD/bench/runtime/httpbench" "$url" "$CALLS" "$system" >>"$tmp/all.txt" ;;
	*) echo "bench/runtime: agentd serve did not start:" >&2; tail -20 "$tmp/serve.err" >&2; exit 1 ;;
	esac
	kill "$serve_pid"
	wait "$serve_pid" || true
	serve_pid=
}
http_rows agentd-http
http_rows agentd-http-os --durability os
if /usr/bin/python3 -c 'import pexpect, jupyter_client, ipykernel' 2>/dev/null; then
	if ! PYDEVD_DISABLE_FILE_VALIDATION=1 /usr/bin/python3 bench/runtime/peers.py "$CALLS" \
		"$PEER_COLDS" >>"$tmp/all.txt" 2>"$tmp/peers.err"; then
		echo "bench/runtime: peers failed:" >&2
		tail -20 "$tmp/peers.err" >&2
	fi
else
	echo "# peers skipped: apt-get install python3-pexpect python3-jupyter-client python3-ipykernel"
fi

awk '
	{ sys[NR] = $1; lang[NR] = $2; what[NR] = $3; p50[NR] = $4; p99[NR] = $5; n[NR] = $6
	  if ($1 == "agentd") base[$2 " " $3] = $4 }
	END {
		printf "runtime round trip and cold start (microseconds; ratio = median / agentd median)\n"
		printf "%-16s %-7s %-12s %12s %12s %6s %9s\n", "system", "lang", "command", "p50_us", "p99_us", "n", "ratio"
		for (i = 1; i <= NR; i++) {
			b = base[lang[i] " " what[i]]
			r = (b > 0) ? sprintf("%8.1fx", p50[i] / b) : "        -"
			printf "%-16s %-7s %-12s %12.1f %12.1f %6d %9s\n", sys[i], lang[i], what[i], p50[i], p99[i], n[i], r
		}
		printf "targets: agentd round trip p50 <= 100 us (<= 300 us over HTTP); cold start <= 5000 us bash, <= 25000 us python\n"
		for (i = 1; i <= NR; i++) {
			if (sys[i] !~ /^agentd/) continue
			limit = (what[i] != "cold") ? 100 : (lang[i] == "bash" ? 5000 : 25000)
			if (sys[i] ~ /^agentd-http/) limit = 300
			printf "  %-15s %-7s %-12s %10.1f us  %s\n", sys[i], lang[i], what[i], p50[i], (p50[i] <= limit) ? "met" : "MISSED"
		}
	}' "$tmp/all.txt"
