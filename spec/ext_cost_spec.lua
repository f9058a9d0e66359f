-- What a message costs inside a Lua extension (core/lua/lbx_ext.c,
-- core/lua/lbx_runtime.c): calls run without the per-instruction count hook
-- (a watchdog arms the budget only when a call runs long), and a message
-- waiting in an extension pins nothing in the Lua registry (continuations
-- come from a pool), while a continuation that went stale (its deadline
-- passed, its cont_t reused by another message) still finishes nothing.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
require("bayeux.core").budget(20000000)
local server = bayeux.server { mount = "/faye", timeout = 2, extension_deadline = 0.5 }

local held = {}
server:add_extension {
  incoming = function(m, cb)
    local ch = m.channel
    if ch == "/hook" then
      local _, _, count = debug.gethook()
      m.data.count = count or 0
      cb(m)
    elseif ch == "/hold" then
      held[#held + 1] = function() cb(m) end
    elseif ch == "/late" then
      -- calls back long after its deadline failed it
      bayeux.timer(0.8, function() cb(m) end)
    elseif ch == "/slowok" then
      bayeux.timer(0.35, function() m.data.ok = true; cb(m) end)
    elseif ch == "/loop" then
      while true do end
    elseif ch == "/coloop" then
      -- a coroutine made and resumed inside the call loops: the watchdog
      -- arms the main thread only, the budget must reach it too
      coroutine.wrap(function() while true do end end)()
    elseif ch == "/coloop2" then
      local co = coroutine.create(function() local n = 0; while true do n = n + 1 end end)
      local ok, err = coroutine.resume(co)
      error(err)
    else
      cb(m)
    end
  end,
}

server:route("GET", "/refs", function(_, res)
  local n = 0
  for _ in pairs(debug.getregistry()) do n = n + 1 end
  res:json { n = n, held = #held }
end)
server:route("POST", "/release", function(_, res)
  local list = held
  held = {}
  for _, f in ipairs(list) do f() end
  res:json { released = #list }
end)
server:route("GET", "/spin", function(_, res)
  local t = 0
  while true do t = t + 1 end
  res:json { t = t }
end)

server:listen(0, "127.0.0.1")
]]

describe("a message in a Lua extension", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_app(APP)
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function drain(cid)
    local r = b:connect(cid, 0)
    local out = {}
    for i = 2, #r do out[#out + 1] = r[i] end
    return out
  end

  local function refs()
    local st, _, body = H.request(srv.port, "GET", "/refs")
    assert.are.equal(200, st)
    return H.decode(body)
  end

  it("runs without the per-instruction count hook", function()
    local cid = b:handshake()
    b:subscribe(cid, "/hook")
    local r = b:post { { channel = "/hook", data = { n = 1 }, id = b:next_id() } }
    assert.is_true(r[1].successful)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.equal(0, got[1].data.count)
  end)

  it("is still stopped when stuck in a loop, with the budget's error logged", function()
    local r = b:post { { channel = "/loop", data = { n = 2 }, id = "l1" } }
    assert.is_false(r[1].successful)
    assert.are.equal("500::Internal server error", r[1].error)
    -- and a route handler stuck in a loop as well
    local st, _, body, extra = H.request(srv.port, "GET", "/spin", nil, nil, 30)
    assert.are.equal(500, st, tostring(body) .. tostring(extra))
    local _, n = srv:stderr():gsub("instruction budget exceeded", "")
    assert.is_true(n >= 2, srv:stderr())
    assert.is_true(b:post { { channel = "/fine", data = {}, id = b:next_id() } }[1].successful)
  end)

  it("stops a loop inside a coroutine the extension made", function()
    for i, ch in ipairs { "/coloop", "/coloop2" } do
      local r = b:post { { channel = ch, data = { n = i }, id = "c" .. i } }
      assert.is_false(r[1].successful)
      assert.are.equal("500::Internal server error", r[1].error)
    end
    local _, n = srv:stderr():gsub("instruction budget exceeded", "")
    assert.is_true(n >= 2, srv:stderr())
    assert.is_true(b:post { { channel = "/fine", data = {}, id = b:next_id() } }[1].successful)
  end)

  it("is still stopped after the server was idle (the watchdog's timer slept)", function()
    H.sleep(1.5)    -- over a second without a call: the ticks stop
    local r = b:post { { channel = "/loop", data = { n = 3 }, id = "l2" } }
    assert.is_false(r[1].successful)
    assert.are.equal("500::Internal server error", r[1].error)
    assert.is_true(b:post { { channel = "/fine", data = {}, id = b:next_id() } }[1].successful)
  end)

  it("pins nothing in the Lua registry while it waits", function()
    local before = refs()
    local msgs = {}
    for i = 1, 40 do msgs[i] = { channel = "/hold", data = { n = i }, id = "h" .. i } end
    local c = H.connect(srv.port)
    assert(c:send_request("POST", "/faye", { ["Content-Type"] = H.JSON_CT }, H.encode(msgs)))
    local during
    for _ = 1, 100 do
      during = refs()
      if during.held == 40 then break end
      H.sleep(0.05)
    end
    assert.are.equal(40, during.held)
    -- before the pool: one registry reference per waiting message (+40)
    assert.is_true(during.n - before.n < 5, ("%d -> %d"):format(before.n, during.n))
    local st = H.request(srv.port, "POST", "/release")
    assert.are.equal(200, st)
    local rst, _, body = c:read_response(10)
    assert.are.equal(200, rst)
    local replies = H.decode(body)
    assert.are.equal(40, #replies)
    for _, rep in ipairs(replies) do assert.is_true(rep.successful) end
  end)

  it("keeps a stale continuation from finishing the message that reused it", function()
    local cid = b:handshake()
    b:subscribe(cid, "/slowok")
    -- /late fails at its deadline; /slowok then takes its continuation from
    -- the pool, and /late's callback comes while /slowok still waits
    local r = b:post { { channel = "/late", data = { n = 3 }, id = "x1" } }
    assert.is_false(r[1].successful)
    r = b:post { { channel = "/slowok", data = { n = 4 }, id = "x2" } }
    assert.is_true(r[1].successful)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.equal(4, got[1].data.n)
    assert.is_true(got[1].data.ok)
    for _ = 1, 40 do
      if srv:stderr():find("twice") then break end
      H.sleep(0.05)
    end
    assert.matches("called its callback twice", srv:stderr())
  end)
end)
