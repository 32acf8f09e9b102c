BENCH_SUITES += bench/cluster/run.sh
