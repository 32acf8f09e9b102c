# agentd build. GNU Make + pkg-config.
#   make [MODE=release|debug|asan]   builds build/$(MODE)/agentd (with the dashboard; UI=0: without)
#   make run                         installs missing packages, builds, serves on 127.0.0.1:4437
#   make test                        installs test tools, runs layout and size checks, unit, integration,
#                                    fuzz replay, conformance (on SQLite and on PostgreSQL)
#   make unit | integ | conformance  one part of it (make unit-build: only build the unit tests)
#   make format-check | lint-size    the layout and size checks alone (make format fixes the layout)
#   make conformance-pg              the conformance suite against agentd on PostgreSQL
#   make conformance-cluster         the same through a round-robin proxy to three nodes on one PostgreSQL
#   make bench                       benchmarks against the peers (bench/*), prints ratios
MODE ?= release
ifeq ($(filter $(MODE),release debug asan),)
$(error MODE must be release, debug or asan, not '$(MODE)')
endif
BUILD := build/$(MODE)
PKGS := libuv libh2o jansson sqlite3 libpq libcurl libsodium openssl zlib
# The Debian package that provides each (scripts/deps.sh installs them), for the error below.
DEB_libuv := libuv1-dev
DEB_libh2o := libh2o-dev
DEB_jansson := libjansson-dev
DEB_sqlite3 := libsqlite3-dev
DEB_libpq := libpq-dev
DEB_libcurl := libcurl4-openssl-dev
DEB_libsodium := libsodium-dev
DEB_openssl := libssl-dev
DEB_zlib := zlib1g-dev
PKG_MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p))))

CC ?= cc
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
        -Wformat=2 -Wno-unused-parameter -Wvla -Wundef -Werror=implicit-function-declaration
CFLAGS_release := -O2 -g
CFLAGS_debug := -O0 -g3
CFLAGS_asan := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS_asan := -fsanitize=address,undefined
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libcurl is compiled against but not linked: src/curlx dlopen()s it on first use (see curlx.h).
PKG_LIBS := $(shell pkg-config --libs $(filter-out libcurl,$(PKGS)) 2>/dev/null)
# What every C file is compiled with, in every mode and in the fuzz build (tests/tests.mk).
BASE_CFLAGS := -std=gnu17 -DH2O_USE_LIBUV=1 -D_GNU_SOURCE -Isrc $(PKG_CFLAGS) -MMD -MP
CFLAGS += $(BASE_CFLAGS) $(WARN) $(CFLAGS_$(MODE))
LDLIBS += $(PKG_LIBS) -lwslay -lpthread -lm -ldl
LDFLAGS += $(LDFLAGS_$(MODE))

# Every module is src/<module>/*.c; src/main.c holds only main(). Tests and benches link the library.
LIB_SRC := $(sort $(wildcard src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB := $(BUILD)/libagentd.a
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(sort $(wildcard bench/*/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# Keep the objects of tests and benches (make would delete them as intermediates of the link rules).
.SECONDARY: $(UNIT_SRC:%.c=$(BUILD)/obj/%.o) $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)

# The dashboard (web/). UI=1: web/dist is rebuilt by npm when a file under web/ (or the client
# library's source it compiles) changed
# (scripts/web-build.sh; it says why when it cannot, and offers UI=0), and its files go into the
# agentd binary gzip-compressed, as a table generated into $(BUILD)/gen/ (scripts/ui-embed.sh;
# never committed). Only the binary links the table (src/ui references it weakly), so tests and
# fuzz targets build without npm. UI=0: no dashboard; `/` serves one page saying so.
UI ?= 1
ifeq ($(UI),1)
# web/ compiles the client library from its source (clients/typescript/src), so both trigger it.
WEB_SRC := $(shell find web clients/typescript/src -name node_modules -prune -o -name dist -prune -o \
                        -type f -print 2>/dev/null)
UI_OBJ := $(BUILD)/gen/ui_assets.o
endif

.PHONY: all run test unit unit-build integ fuzz-build fuzz-replay conformance conformance-pg conformance-cluster bench deps test-deps clean \
        benches format format-check lint-size pkg-check FORCE
all: $(BUILD)/agentd
# Builds the unit test binaries without running them (`make unit` runs them).
unit-build: $(UNIT_BIN)
benches: $(BENCH_BIN)

# A missing -dev package would otherwise surface as a confusing compile error: stop first, naming it
# (wslay has no pkg-config file: its header is looked for).
pkg-check:
	@missing="$(foreach p,$(PKG_MISSING),$(DEB_$(p)))"; \
	echo '#include <wslay/wslay.h>' | $(CC) -E -x c - >/dev/null 2>&1 || missing="$$missing libwslay-dev"; \
	if [ -n "$${missing# }" ]; then \
	    echo "make: missing build packages:$${missing:+ }$${missing# } (pkg-config or the compiler cannot find them); make deps installs them, as root" >&2; \
	    exit 1; \
	fi

$(BUILD)/obj/%.o: %.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/agentd: $(BUILD)/obj/src/main.o $(LIB) $(UI_OBJ) $(BUILD)/ui.$(UI)
	$(CC) $(LDFLAGS) -o $@ $(filter-out $(BUILD)/ui.$(UI),$^) $(LDLIBS)
# Which UI the binary was linked with: switching UI=0 <-> 1 relinks it (a UI=0 binary would otherwise
# survive a later plain `make`, and the dashboard tests would meet a page saying there is none).
$(BUILD)/ui.$(UI):
	@mkdir -p $(dir $@) && rm -f $(BUILD)/ui.0 $(BUILD)/ui.1 && touch $@

# One web/dist for every MODE. Rebuilt when web/ changed, when web/dist lost its index.html, and
# always when web/ is missing (so the build says so instead of embedding a stale copy).
build/web.stamp: $(WEB_SRC) $(if $(and $(wildcard web/package.json),$(wildcard web/dist/index.html)),,FORCE)
	@scripts/web-build.sh
	@touch $@
$(BUILD)/gen/ui_assets.c: build/web.stamp scripts/ui-embed.sh
	@mkdir -p $(dir $@)
	scripts/ui-embed.sh web/dist $@
$(BUILD)/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	$(CC) $(CFLAGS) -c $< -o $@
FORCE:
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Set-up: packages are installed only when something is missing (root needed then).
deps:
	@scripts/deps.sh build
test-deps:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory MODE=release all
	@mkdir -p $${AGENTD_DATA:-./data}
	@echo "agentd: dashboard at http://127.0.0.1:4437/"
	@exec build/release/agentd serve --listen 127.0.0.1:4437 --data $${AGENTD_DATA:-./data}

unit: unit-build
	prove -f --exec '' $(UNIT_BIN)

# Integration tests. Most files spend their time waiting (on a lease, a timeout, an agent's turn:
# 0.1-2 s of CPU in 3-35 s), so they run two at a time (-j2: each has its own ports, data dir and
# PostgreSQL); INTEG_FIRST, the longest of them (session_agents, 35-45 s, ui_nodes, 33 s), start
# first so that both lanes end together. INTEG_ALONE run one at a time after them: busy on the CPU
# (32 writers, 8 writers through a hand-off, restarts in a loop, real agent CLIs) or bounding a
# take-over by lease + 1 s, a ramp by 1 s or a warm agent's latency by half a cold one's
# (agents_hitl: 1 ms short in 1 of 6 paired runs), and pg_async_reads (flaky under load in session
# 8). Both groups run even when the first fails. A new file goes in the first group unless it is
# listed here. Measured on 2 shared cores with agents_hitl paired: one file at a time, release 536 s
# and ASan 571 s; this way 281-303 s and 337-351 s (make test 21 min -> 15.6 min; agents_hitl alone
# adds about 40 s a mode). Every file runs in both modes.
INTEG_ALONE := agents_hitl.t kill9.t kill9_many.t pg_async_reads.t pg_balance.t pg_balance_start.t pg_cluster.t \
               pg_rebalance.t
INTEG_FIRST := session_agents.t ui_nodes.t
INTEG_PAIRED := $(addprefix tests/integ/,$(INTEG_FIRST)) \
                $(filter-out $(addprefix tests/integ/,$(INTEG_ALONE) $(INTEG_FIRST)),$(sort $(wildcard tests/integ/*.t)))
integ: all
	rc=0; export AGENTD_BIN=$(abspath $(BUILD)/agentd); \
	prove -f --timer -j2 $(INTEG_PAIRED) || rc=1; \
	prove -f --timer $(addprefix tests/integ/,$(INTEG_ALONE)) || rc=1; \
	exit $$rc

# The README's test command. The release build runs everything; the ASan+UBSan build reruns the
# unit and integration tests (leaks and undefined behaviour fail the run). The builds come first,
# two jobs at a time; then the tests, one make goal at a time.
test: test-deps
	@$(MAKE) --no-print-directory format-check lint-size
	@$(MAKE) --no-print-directory -j2 MODE=release all unit-build fuzz-build
	@$(MAKE) --no-print-directory -j2 MODE=asan all unit-build
	@$(MAKE) --no-print-directory MODE=release unit integ browser fuzz-replay conformance conformance-pg \
	    conformance-cluster
	@$(MAKE) --no-print-directory MODE=asan unit integ

-include tests/tests.mk
-include bench/bench.mk

# The house layout is .clang-format (Debian 12's clang-format 14). `make format` rewrites the C
# sources in place; `make format-check` lists every file that differs and fails.
FORMAT_SRC = $(sort $(wildcard src/*.c src/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch] bench/*/*.c))
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@bad=$$(for f in $(FORMAT_SRC); do clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "format-check: not in the house layout (run make format):" $$bad >&2; exit 1; fi; \
	echo "format-check: $(words $(FORMAT_SRC)) files in the house layout"

# The size limits of the house style: no file in src/ over 1,000 lines, no function over 80 lines
# without a "long because" comment above it (scripts/lint-size.sh says how it measures).
lint-size:
	@scripts/lint-size.sh

clean:
	rm -rf build

# Dependency files of this mode's objects only (and the fuzz build's, which has its own objects).
-include $(wildcard $(BUILD)/obj/src/*.d $(BUILD)/obj/src/*/*.d $(BUILD)/obj/tests/unit/*.d \
                    $(BUILD)/obj/bench/*/*.d $(BUILD)/gen/*.d build/fuzz/obj/src/*/*.d build/fuzz/obj/tests/fuzz/*.d)
