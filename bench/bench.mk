# make bench: builds agentd and every bench program, then runs each suite in BENCH_SUITES in turn.
# A suite is a script run from the repository root with BUILD set to the build directory; it starts the
# servers it compares, prints its table, and fails the make only when something could not run.
# A new suite joins without editing this file: put `BENCH_SUITES += bench/<dir>/run.sh` in
# bench/<dir>/suite.mk.
BENCH_SUITES += bench/ds/run.sh
-include $(wildcard bench/*/suite.mk)

bench: all benches
	@set -e; for suite in $(BENCH_SUITES); do BUILD=$(BUILD) sh $$suite; done
