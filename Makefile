# bayeux - the one build description.
#
#   make          build lua/bayeux/core.so in place (bin/bayeux runs from here)
#   make run      install what is missing, build, serve the chat example on :8000
#   make test     install what is missing, build, run every suite (C units,
#                 busted specs, interop, browser, bench-quick, sanitizers);
#                 ends "N passed, N failed"
#   make check    C units, specs and interop under ASan + UBSan, with -Werror
#   make bench    bayeux beside Node faye and a do-nothing C server, driven
#                 by the C load generator in bench/ (several minutes)
#   make bench-quick   the same, seconds long, checking only that it works
#   make install  luarocks make (module, Lua files, command); as root system-wide,
#                 otherwise into ~/.luarocks
#   make fresh-check   `make test` and `make run` inside a fresh Debian 12 root
#   make fuzz     each libFuzzer target of test/fuzz (clang, ASan + UBSan)
#                 for FUZZ_TIME seconds (default 600); make test runs 10 s
#   make soak     SOAK_SECS (600) s of SOAK_CLIENTS (5000) clients over every
#                 transport (bench/soak.js): lost, duplicated, RSS; make test
#                 runs one minute with 400
#
# The set-up targets (run, test, check, bench, lint, install) first make sure
# the Debian packages their purpose needs are there (tools/deps.sh), then call
# make again for the build, so that the compiler and linker flags are read from
# pkg-config only after the packages exist. A plain `make` never installs
# anything: it stops with the apt-get line when a build package is missing.
#
# Variables: CC, CFLAGS (default -O2 -g), CPPFLAGS, LDFLAGS; LUA (the
# interpreter, default lua5.4), LUA_INCDIR and LIBFLAG (passed by luarocks);
# WERROR=-Werror (set by `make check` and when CI=true).

CC       ?= cc
LUA      ?= lua5.4
LIBFLAG  ?= -shared
CFLAGS   ?= -O2 -g
ifeq ($(CI),true)
WERROR   ?= -Werror
endif
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter -Wno-comment
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

B        := build
SO       := lua/bayeux/core.so
SAN_SO   := $(B)/san/lua/bayeux/core.so

# Goals that only set up, run scripts or recurse: they need no build flags.
SETUP_GOALS := run test check bench bench-quick lint install deps clean fresh-check help rock-install fuzz soak
BUILD_GOALS := $(filter-out $(SETUP_GOALS),$(or $(MAKECMDGOALS),all))

# ---- Build flags, per package, only when something is built ----
#
# Each build dependency is "test:debian-package"; the test is a pkg-config
# name or, for libraries without a .pc file, a header to preprocess.
PC_DEPS  := libuv:libuv1-dev jansson:libjansson-dev hiredis:libhiredis-dev
HDR_DEPS := http_parser.h:libhttp-parser-dev wslay/wslay.h:libwslay-dev \
            openssl/sha.h:libssl-dev zlib.h:zlib1g-dev
ifeq ($(LUA_INCDIR),)
PC_DEPS  += lua5.4:liblua5.4-dev
LUA_CFLAGS = $(shell pkg-config --cflags lua5.4)
else
LUA_CFLAGS = -I$(LUA_INCDIR)
HDR_DEPS += lua.h:liblua5.4-dev
endif

ifneq ($(BUILD_GOALS),)
dep_name = $(word 1,$(subst :, ,$(1)))
dep_pkg  = $(word 2,$(subst :, ,$(1)))
ifeq ($(shell command -v pkg-config),)
MISSING  := pkg-config
else
MISSING  := $(foreach d,$(PC_DEPS),$(if $(shell pkg-config --exists $(call dep_name,$(d)) && echo y),,$(call dep_pkg,$(d))))
endif
# \043 is '#': a literal one would start a make comment.
MISSING  += $(foreach d,$(HDR_DEPS),$(if $(shell printf '\043include <%s>\n' $(call dep_name,$(d)) | \
              $(CC) $(CPPFLAGS) $(LUA_CFLAGS) -E -x c - >/dev/null 2>&1 && echo y),,$(call dep_pkg,$(d))))
MISSING  := $(strip $(MISSING))
ifneq ($(MISSING),)
$(error build packages missing: $(MISSING). Install them with: apt-get install -y $(MISSING)  (or run `make test` / `make run` as root, which installs them))
endif
PKG_CFLAGS := $(LUA_CFLAGS) $(shell pkg-config --cflags libuv jansson hiredis)
PKG_LIBS   := $(shell pkg-config --libs libuv jansson hiredis)
PKG_VERS   := $(shell pkg-config --modversion libuv jansson hiredis)
endif

LIBS      = $(PKG_LIBS) -lhttp_parser -lwslay -lssl -lcrypto -lz -lm
BX_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(WERROR) -Icore $(PKG_CFLAGS)
ALL_CFLAGS = $(BX_CFLAGS) $(CPPFLAGS) $(CFLAGS)

# The levels of core/, lowest first (docs/ARCHITECTURE.md; tools/layers.sh
# checks that each includes only its own level or below). core/lua/ is the
# only one that touches Lua: the unit tests link everything but it.
LEVELS   := base net engine bayeux transport
CORE_SRC := $(sort $(wildcard $(LEVELS:%=core/%/*.c) core/*.c))
LBX_SRC  := $(sort $(wildcard core/lua/*.c))
TEST_SRC := $(sort $(wildcard core/test/test_*.c))

CORE_OBJ := $(CORE_SRC:core/%.c=$(B)/obj/%.o) $(B)/obj/gen/client_js.o
LBX_OBJ  := $(LBX_SRC:core/%.c=$(B)/obj/%.o)
TESTS    := $(TEST_SRC:core/test/%.c=$(B)/test/%)
SCORE_OBJ:= $(CORE_SRC:core/%.c=$(B)/san/obj/%.o) $(B)/san/obj/gen/client_js.o
SLBX_OBJ := $(LBX_SRC:core/%.c=$(B)/san/obj/%.o)
STESTS   := $(TEST_SRC:core/test/%.c=$(B)/san/test/%)
# The browser client, client/bayeux.js, embedded as C (tools/embed.sh).
GEN_JS   := $(B)/gen/client_js.c

# Everything compiled in a tree depends on that tree's flags stamp, which is
# rewritten only when the flags (or the packages' versions) change: a new
# CFLAGS=, a package installed or upgraded, rebuilds what it must.
FLAGS    := $(B)/obj/.flags
SFLAGS   := $(B)/san/.flags
stamp = @mkdir -p $(@D); printf '%s\n' '$(1)' >$@.new; \
        if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi

.PHONY: all units build-tests build-check build-bench build-fuzz $(SETUP_GOALS) rock-install FORCE
all: $(SO)

# ---- Build ----

$(FLAGS): FORCE
	$(call stamp,$(CC) $(ALL_CFLAGS) | $(LDFLAGS) $(LIBFLAG) $(LIBS) | $(PKG_VERS))

$(SFLAGS): FORCE
	$(call stamp,$(CC) $(ALL_CFLAGS) $(SAN) | $(LDFLAGS) $(LIBS) | $(PKG_VERS))

$(B)/obj/%.o: core/%.c $(FLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(B)/san/obj/%.o: core/%.c $(SFLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(GEN_JS): client/bayeux.js tools/embed.sh
	@mkdir -p $(@D)
	sh tools/embed.sh client/bayeux.js $@

$(B)/obj/gen/%.o: $(B)/gen/%.c core/transport/client_js.h $(FLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icore/transport -c $< -o $@

$(B)/san/obj/gen/%.o: $(B)/gen/%.c core/transport/client_js.h $(SFLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) -Icore/transport -c $< -o $@

# The module is linked to a temporary name and loaded once by the Lua
# interpreter before it takes its place: a module with unresolved symbols
# fails the build here, not at the first `require "bayeux.core"`.
smoke = $(LUA) -e 'local f, err = package.loadlib("$(1)", "luaopen_bayeux_core"); \
        if not f then io.stderr:write("smoke test: ", tostring(err), "\n"); os.exit(1) end'

$(SO): $(CORE_OBJ) $(LBX_OBJ) $(FLAGS)
	$(CC) $(LIBFLAG) $(LDFLAGS) -o $@.tmp $(CORE_OBJ) $(LBX_OBJ) $(LIBS)
	@$(call smoke,$@.tmp) || { rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@

$(SAN_SO): $(SCORE_OBJ) $(SLBX_OBJ) $(SFLAGS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -shared $(LDFLAGS) -o $@.tmp $(SCORE_OBJ) $(SLBX_OBJ) $(LIBS)
	@ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	  $(call smoke,$@.tmp) || { rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@

# A unit test #includes nothing of Lua; it links every non-Lua core object.
$(B)/test/%: core/test/%.c $(CORE_OBJ) core/test/bx_test.h core/test/bx_client.h $(FLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(CORE_OBJ) $(LIBS)

$(B)/san/test/%: core/test/%.c $(SCORE_OBJ) core/test/bx_test.h core/test/bx_client.h $(SFLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN) $(LDFLAGS) -o $@ $< $(SCORE_OBJ) $(LIBS)

-include $(CORE_OBJ:.o=.d) $(LBX_OBJ:.o=.d) $(SCORE_OBJ:.o=.d) $(SLBX_OBJ:.o=.d)

# The benchmark's C programs (bench/bxload.c, bench/ceiling.c): one file each.
BENCH_BIN := $(B)/bench/bxload $(B)/bench/ceiling

$(B)/bench/%: bench/%.c $(FLAGS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBS)

# libFuzzer targets (test/fuzz/fuzz_*.c): each is linked with every non-Lua
# core source, compiled by clang with the fuzzer and the sanitizers.
FUZZ_CC   ?= clang
FUZZ_TIME ?= 600
FUZZ_SRC  := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN  := $(FUZZ_SRC:test/fuzz/%.c=$(B)/fuzz/%)

$(B)/fuzz/%: test/fuzz/%.c $(wildcard test/fuzz/*.h) $(CORE_SRC) $(GEN_JS) $(FLAGS)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Icore -Icore/transport $(PKG_CFLAGS) $(CPPFLAGS) \
	  -o $@ $< $(CORE_SRC) $(GEN_JS) $(LDFLAGS) $(LIBS)

build-fuzz: $(FUZZ_BIN)

units: $(TESTS)
	@sh tools/run-units.sh $(TESTS)

build-tests: $(SO) $(TESTS) $(STESTS) $(SAN_SO) $(BENCH_BIN) $(FUZZ_BIN)

build-bench: $(SO) $(BENCH_BIN)

build-check: $(STESTS) $(SAN_SO)

# ---- Set-up and use: packages first, then the build in a new make ----

SUB := $(MAKE) --no-print-directory

deps:
	@sh tools/deps.sh test

run:
	@sh tools/deps.sh run
	@$(SUB) all
	$(LUA) bin/bayeux examples/chat/app.lua

test:
	@sh tools/deps.sh test
	@sh tools/npm-deps.sh
	@$(SUB) build-tests
	@sh tools/test.sh

check:
	@sh tools/deps.sh test
	@sh tools/npm-deps.sh
	@$(SUB) WERROR=-Werror build-check
	@sh tools/check.sh $(STESTS)

bench:
	@sh tools/deps.sh bench
	@sh tools/npm-deps.sh
	@$(SUB) build-bench
	node bench/run.js

bench-quick:
	@sh tools/deps.sh bench
	@sh tools/npm-deps.sh
	@$(SUB) build-bench
	node bench/run.js --quick

lint:
	@sh tools/deps.sh lint
	luacheck lua bin/bayeux spec examples

# luarocks builds with this Makefile (the rockspec's build_target `all`). Not
# root: into the user's tree (~/.luarocks), and nothing is installed with apt.
install:
	@sh tools/deps.sh install
	luarocks --lua-version 5.4 make --deps-mode=none $(if $(filter 0,$(shell id -u)),,--local) bayeux-scm-1.rockspec

fuzz:
	@sh tools/deps.sh test
	@$(SUB) build-fuzz
	@sh tools/fuzz.sh $(FUZZ_TIME)

SOAK_SECS    ?= 600
SOAK_CLIENTS ?= 5000
soak:
	@sh tools/deps.sh bench
	@$(SUB) build-bench
	node bench/soak.js --secs $(SOAK_SECS) --clients $(SOAK_CLIENTS)

fresh-check:
	@sh tools/fresh-check.sh

clean:
	rm -rf $(B) $(SO) $(SO).tmp

help:
	@sed -n '2,28s/^# \{0,1\}//p' Makefile

# Called by luarocks (rockspec build.install_target) with the rock's dirs,
# after its build: it copies, and never rebuilds with other variables.
rock-install:
	@test -f $(SO) || { echo "rock-install: $(SO) not built (make)" >&2; exit 1; }
	mkdir -p $(INST_LIBDIR)/bayeux $(INST_LUADIR)/bayeux/ext $(INST_BINDIR)
	cp $(SO) $(INST_LIBDIR)/bayeux/core.so
	cp lua/bayeux/*.lua $(INST_LUADIR)/bayeux/
	if ls lua/bayeux/ext/*.lua >/dev/null 2>&1; then cp lua/bayeux/ext/*.lua $(INST_LUADIR)/bayeux/ext/; fi
	cp bin/bayeux $(INST_BINDIR)/bayeux
