# hnswflow - build, deps, test, bench, demo.
#
# `make` builds bin/*; `make test` runs C unit tests (cmocka) and bats suites
# and ends with one "N passed, N failed" line; `make demo` builds and queries
# a Fashion-MNIST index. Missing Debian packages are installed by `make deps`,
# which the other targets run first when a library is missing.

BUILD ?= build
BIN ?= bin
CC ?= cc
SAN ?=

PKGS := libmsgpack-dev libzmq3-dev libopenblas-dev libhdf5-dev zlib1g-dev \
        libcmocka-dev bats pkg-config python3-msgpack python3-numpy python3-jsonschema python3-zmq \
        dataset-fashion-mnist clang libclang-rt-14-dev gnuplot-nox \
        libhnswlib-dev libfaiss-dev python3-sklearn linux-doc-6.1

PKG_CFLAGS := $(shell pkg-config --cflags hdf5 libzmq msgpack openblas 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs hdf5 libzmq msgpack openblas 2>/dev/null)

CFLAGS ?= -O2 -g
# Truncating long error messages is intended, hence -Wno-format-truncation.
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation -pthread -Ilibcommon $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -lz -lm -pthread
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC := $(sort $(wildcard libcommon/*.c))
LIB_OBJ := $(LIB_SRC:libcommon/%.c=$(BUILD)/libcommon/%.o)
LIB := $(BUILD)/libhnswflow.a

FILTER_SRC := $(sort $(wildcard filters/*.c))
FILTERS := $(FILTER_SRC:filters/%.c=$(BIN)/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_TOOLS := $(BENCH_SRC:bench/%.c=$(BIN)/%)

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all binaries unit-tests deps test test-unit test-bats test-asan demo bench fuzz fuzz-smoke clean format format-check lint bench-edges bench-route bench-nav bench-stream bench-filter

# Top-level targets check packages first, then build in a fresh make so the
# pkg-config flags are read after any install.
all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(FILTERS) $(BENCH_TOOLS)

# Installs every Debian package the build, tests, demo and bench use that is
# missing (a dpkg query when nothing is).
deps:
	@missing=""; for p in $(PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	fi

$(BUILD)/libcommon/%.o: libcommon/%.c $(wildcard libcommon/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: filters/%.c $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BIN)/%: bench/%.c $(LIB)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

# `make test` = the normal suite + the same suite on the ASan/UBSan build in
# build/asan + a fuzz smoke run (tests/run.sh), summed into one final line.
test: deps
	@$(MAKE) --no-print-directory binaries unit-tests
	@$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin SAN=1 CC=gcc binaries unit-tests
	@BUILD=$(BUILD) BIN=$(BIN) ASAN_BUILD=build/asan ASAN_BIN=build/asan/bin sh tests/run.sh

unit-tests: $(UNIT_BIN)

# the ASan/UBSan suite alone (no fuzz smoke); any sanitizer report fails it
test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan BIN=build/asan/bin SAN=1 CC=gcc binaries unit-tests
	@BUILD=build/asan BIN=build/asan/bin SUITE=asan FUZZ_SMOKE_SECONDS=0 sh tests/run.sh

demo: all
	@sh pipelines/demo.sh

bench: all
	@sh bench/run.sh

# every libFuzzer target for FUZZ_SECONDS (default 600) on a copy of its corpus
fuzz:
	@sh tests/fuzz/run.sh $(or $(FUZZ_SECONDS),600)

fuzz-smoke:
	@sh tests/fuzz/run.sh 5

FORMAT_SRC = libcommon/*.[ch] filters/*.c tests/unit/*.c tests/fuzz/*.c bench/*.c

format:
	clang-format -i $(FORMAT_SRC)

# lint fails on any file `make format` would change
format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)

lint: format-check
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr --suppress=missingIncludeSystem -Ilibcommon libcommon filters

clean:
	rm -rf build bin

bench-edges: all
	@sh bench/edges.sh

bench-route: all
	@sh bench/route.sh

# nav-train against the classic search, ADSampling and the adaptive stop (bench/nav.sh)
bench-nav: all
	@sh bench/nav.sh

# consolidate on the streaming runbooks and the churn run (bench/stream.sh)
bench-stream: all
	@sh bench/stream.sh

# filtered search: planner vs brute force, post-filtering and FAISS with an
# IDSelectorBitmap, random and correlated labels (bench/filter.sh)
bench-filter: all
	@sh bench/filter.sh
