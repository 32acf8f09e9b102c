BENCH_SUITES += bench/ui/run.sh
