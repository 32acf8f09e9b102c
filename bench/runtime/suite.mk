# Joins bench/runtime/run.sh to `make bench` (see bench/bench.mk).
BENCH_SUITES += bench/runtime/run.sh
