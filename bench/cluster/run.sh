#!/bin/sh
# bench/cluster: appends/s with 32 writers, on 1 stream and on 1,000 streams, for agentd on SQLite,
# agentd on PostgreSQL (one node), and the reference server, with the ratios between them; then three
# agentd nodes on one PostgreSQL (bench/cluster/nodes.py): appends/s with the writers spread over the
# nodes (and its ratio to one node), append -> SSE delivery for readers on the owner and on a
# follower, and the failover time after a kill -9 of the owner; then catch-up read latency on the
# owner, on a follower answering itself, and on a follower forwarding, and what forwarding costs an
# append and a GET (bench/cluster/reads.py).
#
# It runs bench/ds (dsbench's phase b only) twice, once per agentd store, each time beside the
# reference server, on a PostgreSQL 15 of its own (tests/integ/pg.py: initdb in a temporary dir, a
# loopback port, fsync on as PostgreSQL ships). Both agentd runs use --durability fsync: an append
# is acknowledged after SQLite's fdatasync, or after PostgreSQL's COMMIT returned.
#
# Beside each appends/s figure it prints where the CPU went in that measured window (dsbench reads
# /proc): CPU-seconds per 1,000 appends of agentd (summed over nodes), of PostgreSQL (the postmaster and
# its backends), of dsbench (the writers) and of the rest of the machine, and how many of the machine's
# cores were busy, so that "the cores were saturated" can be told apart from "it does not scale".
#
# Environment: BUILD, DSBENCH_ARGS as for bench/ds/run.sh; PG_URL=postgres://... uses that
# PostgreSQL instead of starting one. Exit status: non-zero when a server or the client failed.
set -eu

cd "$(dirname "$0")/../.."
if [ -z "${PG_URL:-}" ]; then
    command -v python3 >/dev/null 2>&1 || { echo "bench/cluster: python3 is required" >&2; exit 1; }
    exec python3 tests/integ/pg.py run -- sh bench/cluster/run.sh
fi

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench-cluster.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
# --store sqlite explicitly: an AGENTD_STORE in the environment would be read by agentd too.
DSBENCH_ARGS="--phases b ${DSBENCH_ARGS:-}" AGENTD_ARGS="--store sqlite" sh bench/ds/run.sh >"$tmp/sqlite" 2>&1 ||
    status=1
# The postmaster, so dsbench counts PostgreSQL's CPU time too (nothing when PG_URL is not on this machine).
pg_pid=$(python3 bench/cluster/pgpid.py "$PG_URL")
DSBENCH_ARGS="--phases b ${pg_pid:+--db-pid $pg_pid} ${DSBENCH_ARGS:-}" AGENTD_ARGS="--store $PG_URL" \
    sh bench/ds/run.sh >"$tmp/pg" 2>&1 || status=1
if [ $status -ne 0 ]; then
    echo "bench/cluster: a run failed; its output:" >&2
    cat "$tmp/sqlite" "$tmp/pg" >&2
    exit 1
fi

# figure FILE LABEL COLUMN: the agentd (1) or reference (2) value of a row of dsbench's table.
figure() {
    awk -v label="$2" -v col="$3" 'index($0, label) == 1 { print $(NF - 3 + col) }' "$1" | head -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", a / b; else print "-" }'; }

echo "== agentd on SQLite vs on PostgreSQL (1 node) vs @durable-streams/server: appends/s, 32 writers"
echo "   $(nproc) CPUs shared by client, servers and $("$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)/postgres" --version)"
printf '%-12s %10s %10s %10s %12s %12s %12s\n' "streams" "sqlite" "postgres" "reference" "pg/sqlite" \
    "sqlite/ref" "pg/ref"
pass=1
for n in "1 stream" "1000 streams"; do
    label="(b) appends/s, 32 writers, $n"
    sq=$(figure "$tmp/sqlite" "$label" 1)
    pg=$(figure "$tmp/pg" "$label" 1)
    ref=$(figure "$tmp/sqlite" "$label" 2)
    printf '%-12s %10s %10s %10s %12s %12s %12s\n' "${n% *}" "$sq" "$pg" "$ref" "$(ratio "$pg" "$sq")" \
        "$(ratio "$sq" "$ref")" "$(ratio "$pg" "$ref")"
    awk -v a="$pg" -v b="$ref" 'BEGIN { exit !(a + 0 >= 10 * b && b + 0 > 0) }' || pass=0
done
if [ $pass = 1 ]; then
    echo "PASS  agentd on PostgreSQL >= 10x the reference's appends/s (1 and 1000 streams)"
else
    echo "FAIL  agentd on PostgreSQL >= 10x the reference's appends/s (1 and 1000 streams)"
fi
echo "   where the CPU went in each measured window, CPU-seconds per 1,000 appends: server = agentd (or the"
echo "   reference's node process), dsbench = the 32 writers, kernel = interrupts, softirqs (loopback TCP)"
echo "   and kernel threads (the journal), others = other processes; cpu max/s = the appends/s the cores"
echo "   would carry at the cost of all but others if nothing else ran (load average before: $loadavg)"
printf '   %-10s %7s %10s %8s %8s %8s %8s %8s %10s  %s\n' "config" "streams" "appends/s" "server" "postgres" \
    "dsbench" "kernel" "others" "cpu max/s" "cores busy"
# cpu FILE SERVER CONFIG: dsbench's CPU lines of SERVER (1 and 1000 streams) under the name CONFIG.
cpu() {
    awk -v s="$2" -v cfg="$3" '$1 == s && ($2 == 1 || $2 == 1000) && NF >= 10 {
        printf "   %-10s %7s %10s %8s %8s %8s %8s %8s %10s  %s\n", cfg, $2, $3, $4, $5, $6, $7, $8, $9,
            substr($0, index($0, $10))
    }' "$1"
}
cpu "$tmp/sqlite" agentd sqlite
cpu "$tmp/pg" agentd postgres
cpu "$tmp/sqlite" reference reference
echo
python3 bench/cluster/nodes.py "$tmp/pg" || status=1
echo
python3 bench/cluster/reads.py 2000 || status=1
exit $status
