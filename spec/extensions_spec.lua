-- Faye-style server extensions written in Lua, and server events
-- (lua/bayeux/init.lua chain runner, core/lua/lbx_ext.c; bayeux-faye.md §10, §11.2).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
-- a tenth of the default budget: the loop test's hook is stopped in well
-- under a second even on a loaded machine under ASan
require("bayeux.core").budget(20000000)
local server = bayeux.server { mount = "/faye", timeout = 2, extension_deadline = 0.5 }

-- two extensions that mark publishes on /order: incoming and outgoing run
-- in the order added (2-argument form for outgoing)
local function trail(tag)
  return {
    incoming = function(m, _, cb)
      if m.channel == "/order" then m.data.trail = (m.data.trail or "") .. tag end
      cb(m)
    end,
    outgoing = function(m, cb)
      if m.channel == "/order" and type(m.data) == "table" then
        m.data.out = (m.data.out or "") .. tag
      end
      cb(m)
    end,
  }
end
server:add_extension(trail("a"))
server:add_extension(trail("b"))

server:add_extension {
  incoming = function(m, req, cb)
    local ch = m.channel
    if ch == "/slow" then
      bayeux.timer(0.3, function() m.data.slow = true; cb(m) end)
    elseif ch == "/drop" then
      cb(nil)
    elseif ch == "/reject" then
      m.error = "403::Nope"
      cb(m)
    elseif ch == "/fail" then
      error("extension failed on purpose")
    elseif ch == "/loop" then
      while true do end
    elseif ch == "/never" then
      -- never calls back
    elseif ch == "/twice" then
      cb(m)
      cb(m)
    elseif ch == "/req" then
      if req then
        m.data = { method = req.method, path = req.path, remote = req.remote,
                   agent = req.headers["x-agent"], ctype = req.headers["content-type"] }
      else
        m.data = { in_process = true }
      end
      cb(m)
    else
      cb(m)
    end
  end,
}

-- outgoing sees every reply and every delivered message
server:add_extension {
  outgoing = function(m, req, cb)
    m.ext = m.ext or {}
    m.ext.seen = (m.ext.seen or 0) + 1
    m.ext.has_request = req ~= nil
    m.ext.path = req and req.path
    cb(m)
  end,
}

-- removable: refuses /removable until removed; added/removed hooks report
local removable = {
  incoming = function(m, cb)
    if m.channel == "/removable" then m.error = "403::Still here" end
    cb(m)
  end,
  added = function(s) io.stderr:write("ADDED ", tostring(s == server), "\n") end,
  removed = function(s) io.stderr:write("REMOVED ", tostring(s == server), "\n") end,
}
server:add_extension(removable)
server:route("POST", "/remove", function(_, res)
  server:remove_extension(removable)
  res:send("removed")
end)

local events = {}
for _, name in ipairs { "handshake", "subscribe", "unsubscribe", "publish", "disconnect" } do
  server:on(name, function(...)
    events[#events + 1] = { name = name, n = select("#", ...), args = bayeux.array { ... } }
  end)
end
server:route("GET", "/events", function(_, res) res:json(bayeux.array(events)) end)

local local_client = server:client()
server:route("POST", "/local", function(_, res)
  local_client:publish("/req", "x", function(ok, err)
    res:json { ok = ok, err = err }
  end)
end)

server:listen(0, "127.0.0.1")
]]

describe("extensions", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_app(APP)
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function subscribe(ch)
    local cid = b:handshake()
    b:subscribe(cid, ch)
    return cid
  end

  local function drain(cid)
    local r = b:connect(cid, 0)
    local out = {}
    for i = 2, #r do out[#out + 1] = r[i] end
    return out
  end

  local function publish(ch, data, id)
    local r = b:post{ { channel = ch, data = data, id = id or b:next_id() } }
    return r, r[1]
  end

  it("runs incoming and outgoing in the order added", function()
    local cid = subscribe("/order")
    local _, reply = publish("/order", { n = 1 })
    assert.is_true(reply.successful)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.equal(1, got[1].data.n)
    assert.are.equal("ab", got[1].data.trail)
    assert.are.equal("ab", got[1].data.out)
  end)

  it("continues asynchronously after a timer while the server keeps serving", function()
    local cid = subscribe("/slow")
    local c = H.connect(srv.port)
    local t0 = H.now()
    assert(c:send_request("POST", "/faye", { ["Content-Type"] = H.JSON_CT },
      H.encode{ { channel = "/slow", data = { n = 2 }, id = "s1" } }))
    -- meanwhile, another client is served at once
    local other = H.bayeux(srv.port)
    local t1 = H.now()
    other:handshake()
    assert.is_true(H.now() - t1 < 0.2, "the server was blocked by the pending extension")
    local st, _, body = c:read_response(3)
    c:close()
    assert.are.equal(200, st)
    assert.is_true(H.now() - t0 >= 0.25, "answered before the timer")
    local r = H.decode(body)
    assert.is_true(H.find(r, { id = "s1" }).successful)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.same(true, got[1].data.slow)
  end)

  it("drops a message on callback(nil): no reply, no delivery", function()
    local cid = subscribe("/drop")
    local r = publish("/drop", { n = 3 }, "d1")
    assert.is_nil(H.find(r, { id = "d1" }))
    assert.are.same({}, drain(cid))
  end)

  it("rejects with message.error", function()
    local cid = subscribe("/reject")
    local _, reply = publish("/reject", { n = 4 }, "r1")
    assert.are.equal("r1", reply.id)
    assert.is_false(reply.successful)
    assert.are.equal("403::Nope", reply.error)
    assert.are.same({}, drain(cid))
  end)

  it("answers a Lua error with 500 and keeps serving", function()
    local cid = subscribe("/fail")
    local _, reply = publish("/fail", { n = 5 }, "f1")
    assert.is_false(reply.successful)
    assert.are.equal("500::Internal server error", reply.error)
    assert.are.same({}, drain(cid))
    assert.matches("extension failed on purpose", srv:stderr())
    local _, ok = publish("/fine", { n = 6 })
    assert.is_true(ok.successful)
    assert.is_true(srv:alive())
  end)

  it("stops a hook stuck in a loop", function()
    -- a hook the budget did not stop would never answer (the read times out)
    local _, reply = publish("/loop", { n = 7 }, "l1")
    assert.is_false(reply.successful)
    assert.are.equal("500::Internal server error", reply.error)
    assert.matches("instruction budget", srv:stderr())
    local _, ok = publish("/fine", { n = 8 })
    assert.is_true(ok.successful)
  end)

  it("fails a message whose callback is never called after extension_deadline", function()
    local t0 = H.now()
    local _, reply = publish("/never", { n = 9 }, "n1")
    local elapsed = H.now() - t0
    assert.is_false(reply.successful)
    assert.are.equal("500::Internal server error", reply.error)
    -- not before the deadline (no upper bound: a loaded machine is slow)
    assert.is_true(elapsed >= 0.45, "answered after " .. elapsed)
  end)

  it("ignores a second callback", function()
    local cid = subscribe("/twice")
    local r = publish("/twice", { n = 10 }, "t1")
    assert.are.equal(1, H.count(r, { id = "t1" }))
    H.sleep(0.05)
    assert.are.equal(1, #drain(cid))
    assert.matches("twice", srv:stderr())
  end)

  it("gives incoming hooks the HTTP request, and nil for in-process clients", function()
    local cid = subscribe("/req")
    local r = b:post({ { channel = "/req", data = 0, id = "q1" } }, { ["X-Agent"] = "spec" })
    assert.is_true(H.find(r, { id = "q1" }).successful)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.same({ method = "POST", path = "/faye", remote = "127.0.0.1", agent = "spec",
                      ctype = H.JSON_CT }, got[1].data)
    -- the next request is another table (the request table is cached per
    -- request, not per connection)
    r = b:post({ { channel = "/req", data = 0, id = "q2" } }, { ["X-Agent"] = "spec2" })
    assert.is_true(H.find(r, { id = "q2" }).successful)
    got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.equal("spec2", got[1].data.agent)
    local st, _, body = H.request(srv.port, "POST", "/local", nil, "")
    assert.are.equal(200, st)
    assert.is_true(H.decode(body).ok)
    got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.same({ in_process = true }, got[1].data)
  end)

  it("runs outgoing on replies and on delivered messages", function()
    local cid, hs = b:handshake()
    assert.are.equal(1, hs.ext.seen)
    assert.is_true(hs.ext.has_request)
    local sr = b:subscribe(cid, "/out")
    assert.are.equal(1, sr.ext.seen)
    local _, pr = publish("/out", { n = 11 })
    assert.are.equal(1, pr.ext.seen)
    local r = b:connect(cid, 0)
    assert.are.equal(1, r[1].ext.seen)       -- the connect reply
    assert.are.equal(2, #r)
    assert.are.equal("/out", r[2].channel)
    assert.are.equal(1, r[2].ext.seen)       -- the delivered message
    -- a delivery shows the request of the connect that carries it, as Faye
    assert.is_true(r[2].ext.has_request)
    assert.are.equal("/faye", r[2].ext.path)
  end)

  it("removes an extension (every occurrence) and calls added/removed", function()
    local _, reply = publish("/removable", 1)
    assert.are.equal("403::Still here", reply.error)
    assert.matches("ADDED true", srv:stderr())
    local st = H.request(srv.port, "POST", "/remove", nil, "")
    assert.are.equal(200, st)
    _, reply = publish("/removable", 2)
    assert.is_true(reply.successful)
    assert.matches("REMOVED true", srv:stderr())
  end)
end)

describe("events", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(APP)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("fire with Faye's arguments", function()
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/ev")
    assert.is_true(b:publish(cid, "/ev", { text = "hello" }).successful)
    assert.is_true(b:unsubscribe(cid, "/ev").successful)
    assert.is_true(b:disconnect(cid).successful)
    local st, _, body = H.request(srv.port, "GET", "/events")
    assert.are.equal(200, st)
    local mine = {}
    for _, e in ipairs(H.decode(body)) do
      if e.args[1] == cid then mine[#mine + 1] = e end
    end
    assert.are.same({
      { name = "handshake", n = 1, args = { cid } },
      { name = "subscribe", n = 2, args = { cid, "/ev" } },
      { name = "publish", n = 3, args = { cid, "/ev", { text = "hello" } } },
      { name = "unsubscribe", n = 2, args = { cid, "/ev" } },
      { name = "disconnect", n = 1, args = { cid } },
    }, mine)
  end)
end)

-- The core reports only the events a listener wants; one added later, for
-- a name nobody listened to, starts receiving from then on.
local LATE_APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local got = { subscribe = 0, publish = 0 }
server:on("subscribe", function() got.subscribe = got.subscribe + 1 end)
server:route("POST", "/late", function(_, res)
  server:on("publish", function(_, _, data) got.publish = got.publish + data.n end)
  res:send("ok")
end)
server:route("GET", "/got", function(_, res) res:json(got) end)
server:listen(0, "127.0.0.1")
]]

describe("events added while serving", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(LATE_APP)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function got()
    H.sleep(0.05)               -- events fire on a later loop turn
    local st, _, body = H.request(srv.port, "GET", "/got")
    assert.are.equal(200, st)
    return H.decode(body)
  end

  it("start at the first listener of their name, and the others keep firing", function()
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/late")
    assert.is_true(b:publish(cid, "/late", { n = 1 }).successful)
    assert.are.same({ subscribe = 1, publish = 0 }, got())
    assert.are.equal(200, (H.request(srv.port, "POST", "/late", nil, "")))
    assert.is_true(b:publish(cid, "/late", { n = 10 }).successful)
    b:subscribe(cid, "/late2")
    assert.are.same({ subscribe = 2, publish = 10 }, got())
  end)
end)
