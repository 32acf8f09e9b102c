# Test rules beyond the Makefile's own; the Makefile -includes this file after defining LIB_SRC,
# BASE_CFLAGS and LDLIBS.
#
#   make conformance   the Durable Streams conformance suite against build/$(MODE)/agentd
#   make browser       the dashboard: clients/typescript's tests (vitest) against the real agentd,
#                      then tests/browser (playwright-core driving Debian's chromium); screenshots
#                      of the main views go to build/browser-shots/
#   make fuzz-replay   builds each tests/fuzz/fuzz_<name>.c as a libFuzzer binary (clang, ASan+UBSan)
#                      in build/fuzz/ and replays tests/fuzz/corpus/<name>/ once (-runs=0)

conformance: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) tests/conformance/run.sh

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

.PHONY: fuzz-replay
fuzz-replay: $(FUZZ_BIN)
ifeq ($(FUZZ_SRC),)
	@echo "no fuzz targets yet"
else
	@set -e; for bin in $(FUZZ_BIN); do \
	    name=$${bin##*/fuzz_}; corpus=tests/fuzz/corpus/$$name; \
	    if [ -d "$$corpus" ]; then \
	        echo "fuzz-replay: $$name ($$(find "$$corpus" -type f | wc -l) inputs)"; \
	        "$$bin" -runs=0 -artifact_prefix=$(FUZZ_DIR)/ "$$corpus" 2>"$(FUZZ_DIR)/$$name.log" || \
	            { tail -n 40 "$(FUZZ_DIR)/$$name.log"; echo "fuzz-replay: $$name FAILED"; exit 1; }; \
	    else \
	        echo "fuzz-replay: $$name has no corpus at $$corpus; running it on the empty input"; \
	        "$$bin" -runs=1 -artifact_prefix=$(FUZZ_DIR)/ 2>"$(FUZZ_DIR)/$$name.log" || \
	            { tail -n 40 "$(FUZZ_DIR)/$$name.log"; echo "fuzz-replay: $$name FAILED"; exit 1; }; \
	    fi; \
	done
endif
