#!/bin/sh
# bench/runtime/run.sh — agentd runtimes against pexpect replwrap and jupyter_client+ipykernel.
#
# Same commands everywhere: bash `x=$((x+1))` / `echo $x`, python `x = x + 1` / `print(x)`, plus
# cold start (create -> first command done). Prints one table: medians, p99 and the ratio of each
# peer's median to agentd's on the same row. Run from the repository root; BUILD is the build
# directory holding bench/runtime/rtbench (make bench-runtime sets it).
# Knobs: RT_BENCH_CALLS (2000), RT_BENCH_COLDS (30), RT_BENCH_PEER_COLDS (5).
set -e
BUILD=${BUILD:-build/release}
CALLS=${RT_BENCH_CALLS:-2000}
COLDS=${RT_BENCH_COLDS:-30}
PEER_COLDS=${RT_BENCH_PEER_COLDS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

"$BUILD/bench/runtime/rtbench" "$CALLS" "$COLDS" >"$tmp/all.txt"
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
		printf "targets: agentd round trip p50 <= 100 us; cold start <= 5000 us bash, <= 25000 us python\n"
		for (i = 1; i <= NR; i++) {
			if (sys[i] != "agentd") continue
			limit = (what[i] != "cold") ? 100 : (lang[i] == "bash" ? 5000 : 25000)
			printf "  %-7s %-12s %10.1f us  %s\n", lang[i], what[i], p50[i], (p50[i] <= limit) ? "met" : "MISSED"
		}
	}' "$tmp/all.txt"
