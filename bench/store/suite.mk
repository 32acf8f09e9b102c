# Joins bench/store/run.sh to `make bench` (see bench/bench.mk).
BENCH_SUITES += bench/store/run.sh
