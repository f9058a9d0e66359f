-- Subscriptions per client (max_subscriptions, issue 14): on by default
-- (1000), enforced for what comes from the network on every engine (the
-- memory engine, the Redis engine across processes, its faye-redis mode),
-- and not for the server's own in-process client, which subscribes for the
-- application and may need more than any one user.
local H = require "spec.helper"
local socket = require "socket"

local function sub_msg(b, cid, sub)
  return { channel = "/meta/subscribe", clientId = cid, subscription = sub, id = b:next_id() }
end

-- A loopback port nobody listens on (bound, then released).
-- An app whose in-process client subscribes to 5 channels with
-- max_subscriptions = 2, then serves GET /inproc with what it was told.
local function inproc_app(engine)
  return ([[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", max_subscriptions = 2, timeout = 2,
                               engine = %s }
local c = server:client()
local told = {}
for i = 1, 5 do
  c:subscribe("/in/" .. i, function() end, function(ok, err)
    told[#told + 1] = ok and "ok" or tostring(err)
  end)
end
server:route("GET", "/inproc", function(_, res) res:json{ told = bayeux.array(told) } end)
server:listen(0, "127.0.0.1")
]]):format(engine and ("%q"):format(engine) or "nil")
end

-- What the app's in-process client was told, once all 5 are answered.
local function inproc_told(port)
  local deadline = H.now() + 10
  local body
  repeat
    local status, _, text = H.request(port, "GET", "/inproc")
    body = status == 200 and H.decode(text)
    if body and #body.told == 5 then return body.told end
    socket.sleep(0.05)
  until H.now() > deadline
  return body and body.told
end

-- The checks every engine passes: a network client past the limit gets
-- 403, changes nothing, and works on; the in-process client is not held
-- to it. `port2` (may be nil) is another process of the same engine.
local function check_engine(port, port2)
  local b = H.bayeux(port)
  local cid = b:handshake()
  b:subscribe(cid, "/a")
  b:subscribe(cid, "/b")
  local r = b:post1(sub_msg(b, cid, "/c"))
  assert.is_false(r.successful)
  assert.are.equal("403:/c:Too many subscriptions", r.error)
  b:subscribe(cid, "/a")     -- one it has is no new one
  if port2 then
    -- asked of another process than the one holding the client
    local b2 = H.bayeux(port2)
    local r2 = b2:post1(sub_msg(b2, cid, "/d"))
    assert.is_false(r2.successful)
    assert.are.equal("403:/d:Too many subscriptions", r2.error)
    b2:subscribe(cid, "/b")
    -- nothing was added by the refusals: one freed, one more allowed
    assert.is_true(b2:unsubscribe(cid, "/a").successful)
    b2:subscribe(cid, "/d")
    assert.are.equal("403:/e:Too many subscriptions", b2:post1(sub_msg(b2, cid, "/e")).error)
  else
    assert.is_true(b:unsubscribe(cid, "/a").successful)
    b:subscribe(cid, "/d")
  end
  assert.are.equal("403:/e:Too many subscriptions", b:post1(sub_msg(b, cid, "/e")).error)
end

describe("subscriptions per client by default", function()
  local srv

  lazy_setup(function() srv = H.start_server{} end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("are 1000 for a network client: the 1001st is refused with 403", function()
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    local list = {}
    for i = 1, 1000 do list[i] = "/many/" .. i end
    assert.is_true(b:post1(sub_msg(b, cid, list)).successful)
    local r = b:post1(sub_msg(b, cid, "/many/1001"))
    assert.is_false(r.successful)
    assert.are.equal("403:/many/1001:Too many subscriptions", r.error)
    -- another client has its own thousand
    local c2 = b:handshake()
    b:subscribe(c2, "/many/1001")
  end)
end)

describe("subscriptions per client, memory engine", function()
  local srv, app

  lazy_setup(function()
    srv = H.start_server{ "--max-subscriptions", "2" }
    app = H.start_app(inproc_app(nil))
  end)
  lazy_teardown(function()
    if srv then srv:finish() end
    if app then app:finish() end
  end)

  it("refuses a network client past the limit", function()
    check_engine(srv.port)
  end)

  it("does not limit the server's in-process client", function()
    assert.are.same({ "ok", "ok", "ok", "ok", "ok" }, inproc_told(app.port))
  end)
end)

describe("subscriptions per client, Redis engine", function()
  local redis, a, b, app

  lazy_setup(function()
    redis = H.redis_server()
    local url = ("redis://127.0.0.1:%d/0?namespace=sublim"):format(redis.port)
    a = H.start_server{ "--engine", url, "--max-subscriptions", "2" }
    b = H.start_server{ "--engine", url, "--max-subscriptions", "2" }
    app = H.start_app(inproc_app(url .. "app"))
  end)
  lazy_teardown(function()
    for _, p in ipairs{ a, b, app } do if p then p:finish() end end
    if redis then redis.stop() end
  end)

  it("refuses a network client past the limit, asked of any process", function()
    check_engine(a.port, b.port)
  end)

  it("does not limit the server's in-process client", function()
    assert.are.same({ "ok", "ok", "ok", "ok", "ok" }, inproc_told(app.port))
  end)
end)

describe("subscriptions per client, Redis engine in faye mode", function()
  local redis, a, b, app

  lazy_setup(function()
    redis = H.redis_server()
    local url = ("redis://127.0.0.1:%d/0?mode=faye&namespace="):format(redis.port)
    a = H.start_server{ "--engine", url .. "fl", "--max-subscriptions", "2" }
    b = H.start_server{ "--engine", url .. "fl", "--max-subscriptions", "2" }
    app = H.start_app(inproc_app(url .. "flapp"))
  end)
  lazy_teardown(function()
    for _, p in ipairs{ a, b, app } do if p then p:finish() end end
    if redis then redis.stop() end
  end)

  it("refuses a network client past the limit, asked of any process", function()
    check_engine(a.port, b.port)
  end)

  it("does not limit the server's in-process client", function()
    assert.are.same({ "ok", "ok", "ok", "ok", "ok" }, inproc_told(app.port))
  end)
end)
