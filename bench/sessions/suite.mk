# Joins bench/sessions/run.sh to `make bench` (see bench/bench.mk).
BENCH_SUITES += bench/sessions/run.sh

# The load agent links libc only, not agentd's library and its dependencies: a thousand of them run
# at once, so each must stay small (this explicit rule wins over bench.mk's pattern rule).
$(BUILD)/bench/sessions/loadagent: $(BUILD)/obj/bench/sessions/loadagent.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^
