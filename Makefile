# agentd build. GNU Make + pkg-config.
#   make [MODE=release|debug|asan]   builds build/$(MODE)/agentd (with the dashboard; UI=0: without)
#   make run                         installs missing packages, builds, serves on 127.0.0.1:4437
#   make test                        installs test tools, runs unit, integration, fuzz replay, conformance
#   make bench                       benchmarks against the peers (bench/*), prints ratios
MODE ?= release
BUILD := build/$(MODE)
PKGS := libuv libh2o jansson sqlite3 libcurl libsodium openssl zlib

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
CFLAGS += -std=gnu17 $(WARN) $(CFLAGS_$(MODE)) -DH2O_USE_LIBUV=1 -D_GNU_SOURCE -Isrc $(PKG_CFLAGS) -MMD -MP
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

.PHONY: all run test unit integ fuzz-replay conformance bench deps test-deps clean tests benches \
        format format-check FORCE
all: $(BUILD)/agentd
tests: $(UNIT_BIN)
benches: $(BENCH_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/agentd: $(BUILD)/obj/src/main.o $(LIB) $(UI_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

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

unit: tests
	prove -f --exec '' $(UNIT_BIN)

integ: all
	AGENTD_BIN=$(abspath $(BUILD)/agentd) prove -f tests/integ/*.t

# The README's test command. Release build runs everything; the ASan+UBSan build reruns unit and
# integration tests (leaks and undefined behaviour fail the run).
test: test-deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory MODE=release all tests unit integ fuzz-replay conformance
	@$(MAKE) --no-print-directory MODE=asan all tests unit integ

-include tests/tests.mk
-include bench/bench.mk

# The house layout is .clang-format (Debian 12's clang-format 14). `make format` rewrites the C
# sources in place; `make format-check` lists every file that differs and fails.
FORMAT_SRC = $(sort $(wildcard src/*.c src/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c bench/*/*.c))
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@bad=$$(for f in $(FORMAT_SRC); do clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	if [ -n "$$bad" ]; then echo "format-check: not in the house layout (run make format):" $$bad >&2; exit 1; fi; \
	echo "format-check: $(words $(FORMAT_SRC)) files in the house layout"

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
