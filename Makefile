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
        libhnswlib-dev libfaiss-dev python3-sklearn linux-doc-6.1 \
        help2man man-db jq python3-pytest \
        slurm-wlm munge iproute2 util-linux

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

.PHONY: install uninstall man FORCE all binaries unit-tests deps test test-asan demo bench fuzz fuzz-smoke clean format format-check lint bench-edges bench-route bench-nav bench-stream bench-filter bench-drift bench-shard

# Top-level targets check packages first, then build in a fresh make so the
# pkg-config flags are read after any install.
all: deps
	@$(MAKE) --no-print-directory binaries

binaries: $(FILTERS) $(BENCH_TOOLS) $(BIN)/hnswflow

VERSION ?= 0.1.0

# the dispatcher: in a checkout bin/hnswflow runs the filters beside it
$(BIN)/hnswflow: pipelines/hnswflow Makefile
	@mkdir -p $(BIN)
	sed 's/@VERSION@/$(VERSION)/' pipelines/hnswflow > $@.tmp && chmod 755 $@.tmp && mv $@.tmp $@

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

# forgetting of the navigation policy under drift (task A then task B: no
# update, fine-tuning, EWC, replay, EWC + replay, distillation) and the
# sleep cycle under query load (bench/drift.py)
bench-drift: all
	@/usr/bin/python3 bench/drift.py

# sharded serving: recall of 1/2/4 shards (fmnist, clustered), fan-out
# overhead, replicas' throughput, SIGKILL faults, CURVE's cost, and
# bench/scale-model's projection to 2-256 shards (bench/shard.sh)
bench-shard: all
	@sh bench/shard.sh

# ---- install -------------------------------------------------------------
# make install PREFIX=/usr/local [DESTDIR=...]:
#   bin/hnswflow                  the dispatcher (hnswflow FILTER ARGS...)
#   libexec/hnswflow/*            the filters and recall
#   share/man/man1/hnswflow*.1    man pages made by help2man from each --help
#   lib/libhnswflow.a, include/hnswflow/*.h, lib/pkgconfig/hnswflow.pc
#   share/hnswflow/pipelines/*.sh the pipeline scripts (BIN set to libexec)
#   $(PYTHONDIR)/hnswflow/        the Python package (pure Python)
# make uninstall (same PREFIX/DESTDIR) removes exactly these files, and the
# hnswflow directories when they are left empty.
PREFIX ?= /usr/local
DESTDIR ?=
PYTHONDIR ?= $(PREFIX)/lib/python3/dist-packages
EXEC_NAMES := $(FILTER_SRC:filters/%.c=%) recall
MAN_PAGES := $(EXEC_NAMES:%=$(BUILD)/man/hnswflow-%.1) $(BUILD)/man/hnswflow.1
HEADERS := $(sort $(wildcard libcommon/*.h))
PIPELINES := $(sort $(wildcard pipelines/*.sh))
PY_SRC := $(sort $(wildcard pipelines/python/hnswflow/*.py))
D := $(DESTDIR)$(PREFIX)

man: $(MAN_PAGES)

# help2man runs FILTER --help through a link named hnswflow-FILTER, so the
# page is titled as it is installed (no clash with other tools' query(1))
$(BUILD)/man/hnswflow-%.1: $(BIN)/% $(BIN)/hnswflow
	@mkdir -p $(BUILD)/man/run
	ln -sf $(abspath $(BIN)/$*) $(BUILD)/man/run/hnswflow-$*
	help2man -N --no-discard-stderr --version-string=$(VERSION) \
	  -n "$$(sh $(BIN)/hnswflow --describe $*)" -o $@.tmp $(BUILD)/man/run/hnswflow-$* && mv $@.tmp $@

$(BUILD)/man/hnswflow.1: $(BIN)/hnswflow
	@mkdir -p $(BUILD)/man
	help2man -N --version-string=$(VERSION) -n "run the hnswflow filters" -o $@.tmp $(BIN)/hnswflow && mv $@.tmp $@

# written at every install: it names PREFIX
$(BUILD)/hnswflow.pc: FORCE
	@mkdir -p $(BUILD)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: hnswflow' 'Description: HNSW vector index (load, build, search) of the hnswflow filters' \
	  'Version: $(VERSION)' 'Requires: msgpack libzmq openblas hdf5' \
	  'Cflags: -I$${includedir}/hnswflow -D_GNU_SOURCE -pthread' \
	  'Libs: -L$${libdir} -lhnswflow -lz -lm -pthread' > $@

install: all
	@$(MAKE) --no-print-directory man $(BUILD)/hnswflow.pc
	install -d $(D)/bin $(D)/libexec/hnswflow $(D)/share/man/man1 $(D)/lib/pkgconfig \
	  $(D)/include/hnswflow $(D)/share/hnswflow/pipelines $(DESTDIR)$(PYTHONDIR)/hnswflow
	install -m 755 $(BIN)/hnswflow $(D)/bin/hnswflow
	install -m 755 $(EXEC_NAMES:%=$(BIN)/%) $(D)/libexec/hnswflow/
	install -m 644 $(MAN_PAGES) $(D)/share/man/man1/
	install -m 644 $(LIB) $(D)/lib/libhnswflow.a
	install -m 644 $(HEADERS) $(D)/include/hnswflow/
	install -m 644 $(BUILD)/hnswflow.pc $(D)/lib/pkgconfig/hnswflow.pc
	for f in $(PIPELINES); do \
	  sed 's|BIN=$${BIN:-.*}|BIN=$${BIN:-$(PREFIX)/libexec/hnswflow}|' $$f > $(D)/share/hnswflow/pipelines/$$(basename $$f) && \
	  chmod 755 $(D)/share/hnswflow/pipelines/$$(basename $$f) || exit 1; done
	install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHONDIR)/hnswflow/
	printf 'EXEC_PATH = "%s"\n' '$(PREFIX)/libexec/hnswflow' > $(DESTDIR)$(PYTHONDIR)/hnswflow/_installed.py

uninstall:
	rm -f $(D)/bin/hnswflow $(EXEC_NAMES:%=$(D)/libexec/hnswflow/%) \
	  $(patsubst %,$(D)/share/man/man1/%,$(notdir $(MAN_PAGES))) $(D)/lib/libhnswflow.a \
	  $(patsubst %,$(D)/include/hnswflow/%,$(notdir $(HEADERS))) $(D)/lib/pkgconfig/hnswflow.pc \
	  $(patsubst %,$(D)/share/hnswflow/pipelines/%,$(notdir $(PIPELINES))) \
	  $(patsubst %,$(DESTDIR)$(PYTHONDIR)/hnswflow/%,$(notdir $(PY_SRC))) $(DESTDIR)$(PYTHONDIR)/hnswflow/_installed.py
	rm -rf $(DESTDIR)$(PYTHONDIR)/hnswflow/__pycache__
	@for d in $(D)/libexec/hnswflow $(D)/include/hnswflow $(D)/share/hnswflow/pipelines \
	  $(D)/share/hnswflow $(DESTDIR)$(PYTHONDIR)/hnswflow; do [ ! -d $$d ] || rmdir $$d 2>/dev/null || true; done
