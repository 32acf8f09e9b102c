# Test rules beyond the Makefile's own; the Makefile -includes this file after defining LIB_SRC,
# BASE_CFLAGS and LDLIBS.
#
#   make conformance   the Durable Streams conformance suite against build/$(MODE)/agentd
#   make conformance-shards  the same with the registry in 64 shards (serve --shards 64)
#   make conformance-pg  the same against agentd on PostgreSQL (the test starts its own, pg.py)
#   make conformance-cluster  the same through a round-robin proxy (tests/integ/rrproxy.mjs) in front
#                      of three agentd nodes on one PostgreSQL (tests/integ/cluster.py); CLUSTER_NODES=1
#                      checks the proxy itself against one node; the nodes spread the shards (the default
#                      policy: forks cross nodes, POST /v1/internal/stream-ref); AGENTD_ARGS="--shard-policy
#                      all" puts them all on the first node
#   make browser       the dashboard: clients/typescript's tests (vitest) against the real agentd,
#                      then tests/browser (playwright-core driving Debian's chromium); screenshots
#                      of the main views go to build/browser-shots/
#   make fuzz-replay   builds each tests/fuzz/fuzz_<name>.c as a libFuzzer binary (clang, ASan+UBSan)
#                      in build/fuzz/ and replays tests/fuzz/corpus/<name>/ once (-runs=0); part of
#                      make test. Every target must have a corpus.
#   make fuzz          fuzzes each target in turn for FUZZ_SECONDS (default 600) under nice, one
#                      process at a time, starting from its corpus; what it finds new goes to
#                      build/fuzz/grown/<name>/, a crash to build/fuzz/<name>-crash-*, and the run's
#                      log (its last lines: execs, cov, ft) to build/fuzz/<name>.fuzz.log. Not part
#                      of make test. FUZZ_TARGETS="sse ws" picks targets.
#   make fuzz-merge    merges build/fuzz/grown/<name>/ into tests/fuzz/corpus/<name>/, minimized
#                      (libFuzzer -merge=1 into a fresh directory): inputs named by hand (seeds,
#                      regressions) stay as they are, the rest is what adds coverage.

conformance: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) tests/conformance/run.sh

# The same with the registry in 64 shards (serve's test-only --shards, SQLite): a fork's source is in
# another shard most of the time (doc/SHARDING-PLAN.md §2.3).
conformance-shards: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) AGENTD_ARGS="--shards 64" tests/conformance/run.sh

# The same suite against agentd on a PostgreSQL of its own (initdb in a temporary dir, a loopback port).
conformance-pg: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) tests/integ/pg.py run -- tests/conformance/run.sh

# Every request goes to the next node in turn, so most reach a follower that forwards to the owner.
CLUSTER_NODES ?= 3
conformance-cluster: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) tests/integ/cluster.py run --nodes $(CLUSTER_NODES) -- \
	    sh -c 'cd tests/conformance && timeout --kill-after=10 900 node_modules/.bin/vitest run --config vitest.config.js'

.PHONY: browser
browser: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) tests/browser/run.sh

# ---- libFuzzer targets --------------------------------------------------------------------------
# The fuzz build is independent of MODE: its own objects, compiled by clang with coverage
# instrumentation (fuzzer-no-link) and sanitizers, under build/fuzz/.
FUZZ_CC := clang
FUZZ_DIR := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(BASE_CFLAGS) -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) -DAGENTD_FUZZ=1
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
# Keep the objects between runs (make would delete them as intermediates of the chained rules).
.SECONDARY: $(FUZZ_LIB_OBJ) $(FUZZ_SRC:%.c=$(FUZZ_DIR)/obj/%.o)

$(FUZZ_DIR)/obj/%.o: %.c | pkg-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

.PHONY: fuzz-build fuzz-replay fuzz fuzz-merge
# Only the build (make test builds it beside the release build, two jobs at a time).
fuzz-build: $(FUZZ_BIN)
fuzz-replay: $(FUZZ_BIN)
	@set -e; for bin in $(FUZZ_BIN); do \
	    name=$${bin##*/fuzz_}; corpus=tests/fuzz/corpus/$$name; \
	    [ -d "$$corpus" ] || { echo "fuzz-replay: $$name has no corpus at $$corpus"; exit 1; }; \
	    echo "fuzz-replay: $$name ($$(find "$$corpus" -type f | wc -l) inputs)"; \
	    "$$bin" -runs=0 -artifact_prefix=$(FUZZ_DIR)/ "$$corpus" 2>"$(FUZZ_DIR)/$$name.log" || \
	        { tail -n 40 "$(FUZZ_DIR)/$$name.log"; echo "fuzz-replay: $$name FAILED"; exit 1; }; \
	done

FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
fuzz: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	@set -e; for name in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/grown/$$name; \
	    echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
	    nice -n 15 $(FUZZ_DIR)/fuzz_$$name -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -rss_limit_mb=1024 \
	        -artifact_prefix=$(FUZZ_DIR)/$$name- $(FUZZ_DIR)/grown/$$name tests/fuzz/corpus/$$name \
	        2>$(FUZZ_DIR)/$$name.fuzz.log || { tail -n 60 $(FUZZ_DIR)/$$name.fuzz.log; \
	        echo "fuzz: $$name found something: $(FUZZ_DIR)/$$name-crash-* (fix it, keep the input)"; exit 1; }; \
	    grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' $(FUZZ_DIR)/$$name.fuzz.log | sed "s/^/  $$name: /"; \
	done

fuzz-merge: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	@set -e; for name in $(FUZZ_TARGETS); do \
	    corpus=tests/fuzz/corpus/$$name; fresh=$(FUZZ_DIR)/merged/$$name; \
	    rm -rf $$fresh; mkdir -p $$fresh $(FUZZ_DIR)/grown/$$name; \
	    $(FUZZ_DIR)/fuzz_$$name -merge=1 $$fresh $$corpus $(FUZZ_DIR)/grown/$$name 2>$(FUZZ_DIR)/$$name.merge.log; \
	    for f in $$corpus/*; do case "$${f##*/}" in \
	        [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) ;; \
	        *) cp "$$f" $$fresh/; rm -f $$fresh/$$(sha1sum < "$$f" | cut -c1-40) ;; esac; done; \
	    rm -rf $$corpus && mv $$fresh $$corpus; \
	    echo "fuzz-merge: $$name: $$(ls $$corpus | wc -l) inputs"; \
	done

.PHONY: conformance-shards
