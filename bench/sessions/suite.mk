# Joins bench/sessions/run.sh to `make bench` (see bench/bench.mk).
BENCH_SUITES += bench/sessions/run.sh
