# sfvopi: the only build entry. GNU make + pkg-config.
#   make            build build/sfvopi
#   make run        install what is missing, build, set up a demo database, serve on 127.0.0.1:8080
#   make test       install what is missing, build, run every test suite
#   make check SAN=1  unit and API suites under ASan+UBSan (build-san/)
#   make unit-pg    the store suite on a throwaway PostgreSQL cluster (api-pg runs it too)
#   make fmt | fmt-check | lint

SAN ?= 0
FUZZ ?= 0
FUZZ_SECONDS ?= 30
TEST_FUZZ_SECONDS ?= 20
FUZZ_JOBS ?= 2
WERROR ?= 0
V ?= 0

ifeq ($(FUZZ),1)
BUILD ?= build-fuzz
CC := clang
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
       -fno-sanitize-recover=all
LDOPT := -fsanitize=address,undefined
else ifeq ($(SAN),1)
BUILD ?= build-san
CC := clang
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDOPT := -fsanitize=address,undefined
else
BUILD ?= build
CC ?= cc
OPT := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
LDOPT := -pie -Wl,-z,relro,-z,now
endif

PKGS := libmicrohttpd gnutls jansson sqlite3 libsodium libpq libcurl libre libwebsockets speexdsp openssl libsrtp2
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
        -Wimplicit-fallthrough
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS := -std=c17 -D_GNU_SOURCE -DHAVE_INTTYPES_H -DHAVE_STDBOOL_H $(OPT) $(WARN) -Isrc -pthread $(EXTRA_CFLAGS)
LDFLAGS := $(LDOPT) -pthread $(EXTRA_LDFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

SRC := $(filter-out src/main.c,$(wildcard src/*/*.c))
MIGRATIONS_SQLITE := $(sort $(wildcard src/store/migrations/sqlite/*.sql))
GEN := $(BUILD)/gen/migrations_sqlite.c
MIGRATIONS_PG := $(sort $(wildcard src/store/migrations/postgresql/*.sql))
GEN_PG := $(BUILD)/gen/migrations_pg.c
OBJ := $(SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/migrations_sqlite.o \
       $(BUILD)/obj/gen/migrations_pg.o $(BUILD)/obj/gen/openapi.o
LIB := $(BUILD)/libsfvopi.a
BIN := $(BUILD)/sfvopi
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PYTEST := /usr/bin/python3 -m pytest

ifeq ($(V),0)
Q := @
endif

.PHONY: all run bench deps deps-test test unit unit-pg api api-pg check fuzz fuzz-build fuzz-run fmt fmt-check lint clean

all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(GEN): $(MIGRATIONS_SQLITE) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	$(Q)sh scripts/embed-sql.sh migrations_sqlite $(MIGRATIONS_SQLITE) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/migrations_sqlite.o: $(GEN)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(GEN_PG): $(MIGRATIONS_PG) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	$(Q)sh scripts/embed-sql.sh migrations_pg $(MIGRATIONS_PG) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/migrations_pg.o: $(GEN_PG)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/openapi.c: docs/openapi.json scripts/embed-text.sh
	@mkdir -p $(dir $@)
	$(Q)sh scripts/embed-text.sh openapi_json docs/openapi.json > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/openapi.o: $(BUILD)/gen/openapi.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(BUILD)/obj/src/main.o $(LIB)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)
	@echo "built $@"

# A unit test that needs a library the program does not: test_srtp checks
# libsrtp2's output against AES and HMAC-SHA1 computed by OpenSSL's libcrypto.
TEST_PKGS_test_srtp := libcrypto

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) $(shell pkg-config --cflags cmocka $(TEST_PKGS_$*)) -o $@ $< \
		$(LIB) $(LDFLAGS) $(PKG_LIBS) $(shell pkg-config --libs cmocka $(TEST_PKGS_$*))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

# make fuzz [FUZZ_SECONDS=N] [FUZZ_JOBS=J]: every harness for N seconds on
# its committed seed corpus, J at a time (each harness is one process on one
# core); new inputs go to a scratch directory, not into the tree.
fuzz:
	$(MAKE) --no-print-directory FUZZ=1 fuzz-build
	$(MAKE) --no-print-directory FUZZ=1 -j$(FUZZ_JOBS) --output-sync=target fuzz-run

fuzz-build: $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)

fuzz-run: $(FUZZ_NAMES:%=fuzz-run-%)
	@test -n "$(FUZZ_NAMES)" || { echo "no fuzz harnesses found" >&2; exit 1; }

# One harness; its lines come out together when it ends (--output-sync).
fuzz-run-%: $(BUILD)/fuzz/%
	@work=$$(mktemp -d); \
	echo "== $* ($(FUZZ_SECONDS) s)"; \
	if $(BUILD)/fuzz/$* -max_total_time=$(FUZZ_SECONDS) -max_len=70000 -print_final_stats=1 \
		$$work tests/fuzz/corpus/$* 2>$$work.log; then \
		grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)" $$work.log || true; \
		rm -rf $$work $$work.log; \
	else \
		tail -60 $$work.log; rm -rf $$work $$work.log; exit 1; \
	fi

$(BUILD)/bench/seed: bench/seed.c $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

# The streamed-call load generator (bench/calls.py runs it): one process, libcrypto for the
# WebSocket handshake's SHA-1 only.
$(BUILD)/bench/loadgen: bench/loadgen.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(shell pkg-config --cflags libcrypto) -o $@ $< $(LDFLAGS) \
		$(shell pkg-config --libs libcrypto)

# make bench: the benchmark suite, by hand, never in CI: the control plane
# against nginx (bench/run.py, which appends to bench/RESULTS.md), then
# streamed calls and the call set-up rate under the load generator
# (bench/calls.py, printed).
bench: $(BIN) $(BUILD)/bench/seed $(BUILD)/bench/loadgen
	/usr/bin/python3 bench/run.py
	/usr/bin/python3 bench/calls.py --calls 100,250,500 --phases 20
	/usr/bin/python3 bench/calls.py --setup-rate 200

deps:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh build test

run: deps
	$(MAKE) --no-print-directory all
	$(BIN) demo
	$(BIN) serve

unit: $(UNIT_BIN)
	@test -n "$(UNIT_BIN)" || { echo "no unit tests found" >&2; exit 1; }
	@failed=""; for t in $(UNIT_BIN); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "unit tests failed:$$failed" >&2; exit 1; fi

api: $(BIN) $(BUILD)/bench/loadgen
	SFVOPI_BIN=$(abspath $(BIN)) $(PYTEST) -q tests/api

# The PostgreSQL runs start a throwaway cluster on a loopback port, stopped
# and removed however the tests end; the recipe's commands see its URL as
# $$url. A cluster start costs seconds, so one recipe shares it.
PG_CLUSTER = dir=$$(mktemp -d /tmp/sfvopi-pg.XXXXXX) || exit 1; \
	trap 'sh scripts/pg.sh stop "$$dir"' EXIT; trap 'exit 130' INT TERM HUP; \
	url=$$(sh scripts/pg.sh start "$$dir") || exit 1
STORE_TEST := $(BUILD)/tests/test_store
STORE_PG = echo "== SFVOPI_TEST_STORE_URL=$$url $(STORE_TEST)"; \
	SFVOPI_TEST_STORE_URL=$$url $(STORE_TEST)

# The store interface suite (make unit runs it on SQLite) on PostgreSQL.
unit-pg: $(STORE_TEST)
	@$(PG_CLUSTER); $(STORE_PG)

# The store suite, then the API suite (plus the multi-node tests), on one
# PostgreSQL cluster; a failing store suite does not keep the API suite from
# running.
api-pg: $(BIN) $(STORE_TEST) $(BUILD)/bench/loadgen
	@$(PG_CLUSTER); \
	store_failed=; $(STORE_PG) || store_failed=1; \
	echo "SFVOPI_TEST_PG_URL=$$url SFVOPI_BIN=$(abspath $(BIN)) $(PYTEST) -q tests/api"; \
	SFVOPI_TEST_PG_URL=$$url SFVOPI_BIN=$(abspath $(BIN)) $(PYTEST) -q tests/api || exit 1; \
	if [ -n "$$store_failed" ]; then echo "unit tests failed: $(STORE_TEST) on PostgreSQL" >&2; exit 1; fi

# Every suite: unit and API tests on the normal build (the store and API
# suites on SQLite and on PostgreSQL), all again under ASan+UBSan, then each
# fuzz harness for a short while.
test: deps-test
	$(MAKE) --no-print-directory all unit api api-pg
	$(MAKE) --no-print-directory check SAN=1
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)

check:
	$(MAKE) --no-print-directory SAN=$(SAN) unit api api-pg

fmt:
	clang-format -i src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c bench/loadgen.c

fmt-check:
	clang-format --dry-run --Werror src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c \
		bench/loadgen.c

lint: $(LIB) $(BIN)
	@sh scripts/lint.sh
	@sh scripts/symbols.sh $(LIB) $(BIN)

clean:
	rm -rf build build-san build-fuzz

-include $(OBJ:.o=.d) $(BUILD)/obj/src/main.d

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary and the systemd unit.
PREFIX ?= /usr/local
install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/sfvopi
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/sfvopi|$(PREFIX)/bin/sfvopi|' contrib/sfvopi.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/sfvopi.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/sfvopi.service
.PHONY: install
