-- Presence: server:track_presence(pattern), server:presence(channel),
-- server:presence_count(channel), join/leave on /presence/<channel>; the
-- same with the state in Redis (a redis-server started here; across
-- processes: spec/presence_redis_spec.lua).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"

local SECRET = "0123456789abcdef0123456789abcdef-presence"
local server = bayeux.server { mount = "/faye", timeout = 2,
                               engine = os.getenv("BX_SPEC_ENGINE") or "memory" }
server:add_extension(jwt { secret = SECRET, required = false })
server:track_presence("/room/*")
server:track_presence("/big/*", { list = 2 })
server:route("POST", "/mint", function(req, res)
  local c = assert(req:json())
  c.exp = os.time() + 600
  res:json { token = jwt.sign(c, { secret = SECRET }) }
end)
server:route("GET", "/presence/*ch", function(req, res)
  local ch = "/" .. req.params.ch
  server:presence(ch, function(p)
    if not p then return res:json { tracked = false } end
    server:presence_count(ch, function(users, conns)
      p.clients = bayeux.object(p.clients)
      p.users = bayeux.array(p.users)
      p.counted = { users, conns }
      res:json(p)
    end)
  end)
end)
server:route("GET", "/now/*ch", function(req, res)
  -- the answer without a callback: this process's, memory engine only
  local ok, p = pcall(server.presence, server, "/" .. req.params.ch)
  if not ok then return res:json { error = tostring(p) } end
  local users, conns = server:presence_count("/" .. req.params.ch)
  res:json { users = bayeux.array(p and p.users or {}), counted = { users, conns } }
end)
server:route("GET", "/user/:id", function(req, res)
  local u = server:user(req.params.id)
  res:json { user = u and u.id or bayeux.null }
end)
server:listen(0, "127.0.0.1")
]]

for _, engine in ipairs { "memory", "redis" } do
describe("presence (" .. engine .. " engine)", function()
  local app, rs

  setup(function()
    if engine == "memory" then
      app = H.start_app(APP)
      return
    end
    rs = H.redis_server()
    app = H.start_app(APP, { env = "BX_SPEC_ENGINE=" .. H.q("redis://127.0.0.1:" .. rs.port .. "/0") })
  end)
  teardown(function()
    if app then app:finish() end
    if rs then rs.stop() end
  end)

  local function get(path)
    local st, _, text = H.request(app.port, "GET", path)
    assert.are.equal(200, st, text)
    return H.decode(text)
  end

  local function session(sub)
    local b = H.bayeux(app.port)
    if not sub then return b, b:handshake() end
    local st, _, text = H.request(app.port, "POST", "/mint", { ["Content-Type"] = "application/json" },
      H.encode { sub = sub })
    assert.are.equal(200, st, text)
    return b, b:handshake { ext = { token = H.decode(text).token } }
  end

  -- Collects what `cid` receives on `ch` until there are `n` messages.
  local function collect(b, cid, ch, n, got)
    got = got or {}
    local deadline = H.now() + 10
    while #got < n and H.now() < deadline do
      for _, m in ipairs(b:post { H.connect_msg(cid, b:next_id(), 0) }) do
        if m.channel == ch then got[#got + 1] = m.data end
      end
      if #got < n then H.sleep(0.05) end
    end
    assert.are.equal(n, #got, "messages on " .. ch .. ": " .. H.encode(got))
    return got
  end

  -- Waits until the room's presence satisfies fn.
  local function wait_presence(ch, fn)
    local deadline, p = H.now() + 10
    repeat
      p = get("/presence" .. ch)
      if fn(p) then return p end
      H.sleep(0.05)
    until H.now() > deadline
    error("presence of " .. ch .. " never as wanted: " .. H.encode(p))
  end

  it("tracks users and their clients, and publishes join and leave once per user", function()
    local bw, watcher = session("carol")
    bw:subscribe(watcher, "/presence/room/a")
    local b1, tab1 = session("alice")
    local b2, tab2 = session("alice")
    local b3, bob = session("bob")
    b1:subscribe(tab1, "/room/a")
    local got = collect(bw, watcher, "/presence/room/a", 1)
    b2:subscribe(tab2, "/room/a")      -- alice's second tab: no second join
    b3:subscribe(bob, "/room/a")
    collect(bw, watcher, "/presence/room/a", 2, got)
    assert.are.same({ event = "join", channel = "/room/a", user = "alice", count = 1, users = { "alice" } },
      got[1])
    assert.are.same({ event = "join", channel = "/room/a", user = "bob", count = 2,
                      users = { "alice", "bob" } }, got[2])
    local p = wait_presence("/room/a", function(x) return x.connections == 3 end)
    assert.are.same({ "alice", "bob" }, p.users)
    assert.are.same({ [tab1] = "alice", [tab2] = "alice", [bob] = "bob" }, p.clients)
    assert.are.same({ 2, 3 }, p.counted)
    -- one tab leaves: alice is still there
    b1:unsubscribe(tab1, "/room/a")
    wait_presence("/room/a", function(x) return x.connections == 2 end)
    -- the other tab's session ends: alice leaves
    b2:disconnect(tab2)
    collect(bw, watcher, "/presence/room/a", 3, got)
    assert.are.same({ event = "leave", channel = "/room/a", user = "alice", count = 1, users = { "bob" } },
      got[3])
    b3:disconnect(bob)
    collect(bw, watcher, "/presence/room/a", 4, got)
    assert.are.same({ event = "leave", channel = "/room/a", user = "bob", count = 0, users = {} }, got[4])
    -- no client id ever went out
    local text = H.encode(got)
    for _, id in ipairs { tab1, tab2, bob } do assert.is_nil(text:find(id, 1, true)) end
    assert.are.same({ 0, 0 }, wait_presence("/room/a", function(x) return x.count == 0 end).counted)
  end)

  it("answers without a callback with the memory engine only", function()
    local b, cid = session("gina")
    b:subscribe(cid, "/room/n")
    wait_presence("/room/n", function(x) return x.connections == 1 end)
    local r = get("/now/room/n")
    if engine == "memory" then
      assert.are.same({ users = { "gina" }, counted = { 1, 1 } }, r)
    else
      assert.matches("with a Redis engine the answer comes to fn", r.error)
    end
    b:disconnect(cid)
  end)

  it("counts an anonymous client as a user of its own, and ignores wildcard subscriptions", function()
    local ba, anon = session(nil)
    local bd, dave = session("dave")
    bd:subscribe(dave, "/room/*")
    ba:subscribe(anon, "/room/b")
    local p = wait_presence("/room/b", function(x) return x.connections == 1 end)
    assert.are.same({ 1, 1 }, p.counted)
    assert.are.same({}, p.users)
    assert.are.same({ [anon] = false }, p.clients)
    assert.are.same({ tracked = false }, get("/presence/other"))
    ba:disconnect(anon)
    bd:disconnect(dave)
  end)

  it("lists users in events only while the room is small", function()
    local bw, watcher = session("watcher")
    bw:subscribe(watcher, "/presence/big/hall")
    local got = {}
    for i, name in ipairs { "u1", "u2", "u3" } do
      local b, cid = session(name)
      b:subscribe(cid, "/big/hall")
      collect(bw, watcher, "/presence/big/hall", i, got)
    end
    assert.are.same({ "u1", "u2" }, got[2].users)
    assert.are.same({ event = "join", channel = "/big/hall", user = "u3", count = 3 }, got[3])
  end)

  it("lets a session that expires leave, and forget its user", function()
    local bw, watcher = session("watcher2")
    bw:subscribe(watcher, "/presence/room/e")
    local b, gone = session("frank")
    b:subscribe(gone, "/room/e")
    local got = collect(bw, watcher, "/presence/room/e", 1)
    assert.are.same({ user = "frank" }, get("/user/" .. gone))
    -- frank never connects: his session expires (2 x timeout, 4 s here);
    -- the watcher keeps connecting meanwhile
    local deadline = H.now() + 30
    while #got < 2 and H.now() < deadline do
      for _, m in ipairs(bw:post({ H.connect_msg(watcher, bw:next_id()) }, nil, 10)) do
        if m.channel == "/presence/room/e" then got[#got + 1] = m.data end
      end
    end
    assert.are.same({ event = "leave", channel = "/room/e", user = "frank", count = 0, users = {} }, got[2])
    assert.are.same({ user = H.null }, get("/user/" .. gone))
  end)

  it("refuses clients' publishes on /presence/**", function()
    local b, cid = session("mallory")
    local r = b:publish(cid, "/presence/room/a", { event = "join", user = "alice" })
    assert.is_false(r.successful)
    assert.are.equal("403:/presence/room/a:Forbidden channel", r.error)
  end)
end)
end
