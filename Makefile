# bayeux - the one build description.
#
#   make          build lua/bayeux/core.so in place (bin/bayeux runs from here)
#   make run      install what is missing, build, serve the examples on :8000
#   make test     install what is missing, build, run every suite (C units,
#                 busted specs, interop, sanitizers); ends "N passed, N failed"
#   make check    C units and protocol specs under ASan + UBSan
#   make bench    side-by-side benchmark against Node faye
#   make install  luarocks make (system-wide module, Lua files, command)

CC      ?= cc
PKG     := lua5.4 libuv jansson
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wno-comment
CFLAGS  += -std=c11 -D_GNU_SOURCE -fPIC $(OPT) $(WARN) -Icore \
           $(shell pkg-config --cflags $(PKG) 2>/dev/null)
LIBS    := $(shell pkg-config --libs libuv jansson 2>/dev/null) -lhttp_parser -lwslay -lcrypto -lm

SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CORE_SRC := $(sort $(filter-out core/lbx_%.c,$(wildcard core/*.c)))
LBX_SRC  := $(sort $(wildcard core/lbx_*.c))
TEST_SRC := $(sort $(wildcard core/test/test_*.c))

B        := build
CORE_OBJ := $(CORE_SRC:core/%.c=$(B)/obj/%.o)
LBX_OBJ  := $(LBX_SRC:core/%.c=$(B)/obj/%.o)
TESTS    := $(TEST_SRC:core/test/%.c=$(B)/test/%)
SCORE_OBJ:= $(CORE_SRC:core/%.c=$(B)/san/obj/%.o)
# The browser client, client/bayeux.js, embedded as C (tools/embed.sh).
GEN_JS   := $(B)/gen/client_js.c
CORE_OBJ += $(B)/obj/gen/client_js.o
SCORE_OBJ+= $(B)/san/obj/gen/client_js.o
SLBX_OBJ := $(LBX_SRC:core/%.c=$(B)/san/obj/%.o)
STESTS   := $(TEST_SRC:core/test/%.c=$(B)/san/test/%)

SO       := lua/bayeux/core.so
SAN_SO   := $(B)/san/lua/bayeux/core.so

.PHONY: all deps run test check units bench install clean lint rock-install
all: $(SO)

# ---- Build ----

$(B)/obj/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/san/obj/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(GEN_JS): client/bayeux.js tools/embed.sh
	@mkdir -p $(@D)
	sh tools/embed.sh client/bayeux.js $@

$(B)/obj/gen/%.o: $(B)/gen/%.c core/client_js.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/san/obj/gen/%.o: $(B)/gen/%.c core/client_js.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(SO): $(CORE_OBJ) $(LBX_OBJ)
	$(CC) -shared -o $@ $^ $(LIBS)

$(SAN_SO): $(SCORE_OBJ) $(SLBX_OBJ)
	@mkdir -p $(@D)
	$(CC) $(SAN) -shared -o $@ $^ $(LIBS)

# A unit test #includes nothing of Lua; it links every non-Lua core object.
$(B)/test/%: core/test/%.c $(CORE_OBJ) core/test/bx_test.h core/test/bx_client.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(CORE_OBJ) $(LIBS)

$(B)/san/test/%: core/test/%.c $(SCORE_OBJ) core/test/bx_test.h core/test/bx_client.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $< $(SCORE_OBJ) $(LIBS)

-include $(CORE_OBJ:.o=.d) $(LBX_OBJ:.o=.d) $(SCORE_OBJ:.o=.d) $(SLBX_OBJ:.o=.d)

# ---- Set-up ----

deps:
	@sh tools/deps.sh

# ---- Use ----

run: deps all
	@sh tools/npm-deps.sh
	lua5.4 bin/bayeux examples/chat/app.lua

units: $(TESTS)
	@sh tools/run-units.sh $(TESTS)

check: $(STESTS) $(SAN_SO)
	@sh tools/check.sh $(STESTS)

test: deps all $(TESTS) $(STESTS) $(SAN_SO)
	@sh tools/npm-deps.sh
	@sh tools/test.sh

bench: deps all
	@sh tools/npm-deps.sh
	@sh bench/run.sh

install: deps
	luarocks --lua-version 5.4 make --deps-mode=none bayeux-scm-1.rockspec

lint:
	luacheck lua bin/bayeux spec examples

clean:
	rm -rf $(B) $(SO)

# Called by luarocks (rockspec build.install_target) with the rock's dirs.
rock-install: $(SO)
	mkdir -p $(INST_LIBDIR)/bayeux $(INST_LUADIR)/bayeux/ext $(INST_BINDIR)
	cp $(SO) $(INST_LIBDIR)/bayeux/core.so
	cp lua/bayeux/*.lua $(INST_LUADIR)/bayeux/
	if ls lua/bayeux/ext/*.lua >/dev/null 2>&1; then cp lua/bayeux/ext/*.lua $(INST_LUADIR)/bayeux/ext/; fi
	cp bin/bayeux $(INST_BINDIR)/bayeux
