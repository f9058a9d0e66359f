-- Out of memory at the Lua/C boundary: every allocation of a call into the
-- core is made to fail in turn (a Lua state with a failing allocator, in a
-- small host program built here), and the call must raise a clean error:
-- no crash, no C memory left behind (checked by LeakSanitizer under
-- `make check`), no registry reference freed twice.
local H = require "spec.helper"

local HOST = [[
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

static long count, fail_at = -1;
static int hit;

/* From the fail_at-th growing allocation after oom(n) on, every one fails
 * (failing just one would be retried by Lua after an emergency GC). */
static void *alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    if (fail_at >= 0 && (!p || nsize > osize) && ++count >= fail_at) {
        hit = 1;
        return NULL;
    }
    return realloc(p, nsize);
}

static int l_oom(lua_State *L)
{
    count = 0;
    hit = 0;
    fail_at = (long)luaL_checkinteger(L, 1);
    return 0;
}

/* oom_off() -> whether the failure was injected */
static int l_oom_off(lua_State *L)
{
    fail_at = -1;
    lua_pushboolean(L, hit);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = lua_newstate(alloc, NULL);
    int rc;
    if (!L || argc < 2)
        return 2;
    luaL_openlibs(L);
    lua_register(L, "oom", l_oom);
    lua_register(L, "oom_off", l_oom_off);
    rc = luaL_dofile(L, argv[1]);
    if (rc != LUA_OK)
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return rc == LUA_OK ? 0 : 1;
}
]]

local SCRIPT = [[
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. package.path
package.cpath = ROOT .. "/lua/?.so;" .. package.cpath
local extra = os.getenv("BAYEUX_CPATH")
if extra and extra ~= "" then package.cpath = extra .. ";" .. package.cpath end
local bayeux = require "bayeux"
local core = require "bayeux.core"
local server = bayeux.server { mount = "/faye" }
local noop = function() end
-- bind takes a registry reference: enough binds that one of them grows the
-- registry whatever its size at start (else no allocation might fail)
local ids = {}
for i = 1, 40 do ids[i] = "c" .. i end

local ops = {
  timer = function() bayeux.timer(100, noop):cancel() end,
  server = function() core.server({ mount = "/x" }):close() end,
  bind = function()
    for _, id in ipairs(ids) do server.core:bind(id, noop) end
    for _, id in ipairs(ids) do server.core:unbind(id) end
  end,
  process = function()
    server.core:process({ { channel = "/meta/handshake", version = "1.0",
      supportedConnectionTypes = bayeux.array { "in-process" } } }, noop)
  end,
  on_event = function() server.core:on_event(noop, { "publish" }) end,
  encode = function() return bayeux.encode { a = { 1, 2, { b = "c" } }, d = "e" } end,
  decode = function() return bayeux.decode '{"a":[1,2,{"b":"c"}],"d":"e"}' end,
  realpath = function() return core.realpath(ROOT) end,
}
local names = {}
for name in pairs(ops) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local n, failures = 0, 0
  repeat
    n = n + 1
    oom(n)
    local ok = pcall(ops[name])
    local injected = oom_off()
    if not ok then failures = failures + 1 end
    assert(n < 10000, name .. ": never completes")
  until not injected
  print(("%s %d %d"):format(name, n - 1, failures))
end
server:close()
print("OOM-DONE")
]]

describe("out of memory inside core calls", function()
  local dir

  lazy_setup(function() dir = H.tmpdir() end)
  lazy_teardown(function() if dir then os.execute("rm -rf " .. H.q(dir)) end end)

  it("raises cleanly at every allocation (no crash, no leak)", function()
    H.writefile(dir .. "/host.c", HOST)
    H.writefile(dir .. "/run.lua", "local ROOT = " .. ("%q"):format(H.ROOT) .. "\n" .. SCRIPT)
    local flags = io.popen("pkg-config --cflags --libs lua5.4 2>/dev/null"):read("a")
    if not flags or flags == "" then flags = "-I/usr/include/lua5.4 -llua5.4" end
    flags = flags:gsub("%s+$", "")
    local cc = ("cc -O1 -g -o %s %s %s -lm 2>&1"):format(H.q(dir .. "/host"),
      H.q(dir .. "/host.c"), flags)
    local f = io.popen(cc)
    local out = f:read("a")
    assert(f:close(), "cannot build the host program: " .. out)
    -- the host stands in for lua5.4 in $BAYEUX_CMD, so that `make check`
    -- runs it with the sanitized core and LeakSanitizer
    local cmd = H.CMD:gsub("lua5%.4 bin/bayeux$", H.q(dir .. "/host"))
    if cmd == H.CMD then cmd = H.q(dir .. "/host") end
    local p = H.spawn({ dir .. "/run.lua" }, { cmd = cmd })
    local rc = p:wait(120)
    if not rc then p:kill() end
    local stdout, stderr = p:stdout(), p:stderr()
    p:cleanup()
    assert.are.equal(0, rc, "host exit " .. tostring(rc) .. "; stdout:\n" .. stdout ..
      "\nstderr:\n" .. stderr:sub(-6000))
    assert.matches("OOM%-DONE", stdout)
    -- every operation was tried with some allocation failing
    for _, name in ipairs { "bind", "decode", "encode", "on_event", "process", "server",
                            "timer" } do
      local tries = stdout:match("\n" .. name .. " (%d+) %d+\n") or
        stdout:match("^" .. name .. " (%d+) %d+\n")
      assert.is_truthy(tries and tonumber(tries) > 0, name .. ": " .. stdout)
      local failed = stdout:match("\n" .. name .. " %d+ (%d+)\n") or
        stdout:match("^" .. name .. " %d+ (%d+)\n")
      assert.is_truthy(tonumber(failed) > 0, name .. ": " .. stdout)
    end
  end)
end)
