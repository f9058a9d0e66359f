-- Identity and presence across processes on the Redis engine: a real
-- redis-server started here on a free port, two bayeux processes sharing
-- it (no sticky sessions: a client handshaken on A sends its other
-- messages to B). The identity bound at A's handshake decides B's ACL and
-- stamps B's publishes; presence answers and join/leave events are the
-- same on both processes, once per user; a killed process's clients leave
-- when they expire.
local H = require "spec.helper"
local APP = [[
local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"
local acl = require "bayeux.ext.acl"

local SECRET = "0123456789abcdef0123456789abcdef-presence-redis"
local server = bayeux.server { mount = "/faye", timeout = 3, engine = os.getenv("BX_SPEC_REDIS") }
server:add_extension(acl {
  subscribe = { allow = { "/room/{rooms}", "/presence/**" } },
  publish = { allow = { "/room/{rooms}" } },
})
server:add_extension(jwt { secret = SECRET })
server:track_presence("/room/*")

local events, published, delivered = {}, {}, {}
local watcher = server:client()
-- the test starts once both processes' watchers are subscribed (on Redis
-- too): an event published before would not reach them
local waiting = 2
local function ready(ok, err)
  assert(ok, err)
  waiting = waiting - 1
  if waiting == 0 then server:listen(0, "127.0.0.1") end
end
watcher:subscribe("/presence/**", function(data) events[#events + 1] = data end, ready)
watcher:subscribe("/room/*", function(data) delivered[#delivered + 1] = data end, ready)
server:on("publish", function(_, ch, data, user)
  if ch ~= "/room/a" then return end
  published[#published + 1] = { channel = ch, from = data.from, user = user and user.id or bayeux.null }
end)

server:route("POST", "/mint", function(req, res)
  local c = assert(req:json())
  c.exp = os.time() + 600
  res:json { token = jwt.sign(c, { secret = SECRET }) }
end)
server:route("GET", "/presence/:room", function(req, res)
  local ch = "/room/" .. req.params.room
  server:presence(ch, function(p, err)
    if not p then return res:json({ error = tostring(err) }, 500) end
    server:presence_count(ch, function(users, conns)
      p.clients = bayeux.object(p.clients)
      p.users = bayeux.array(p.users)
      p.counted = { users, conns }
      res:json(p)
    end)
  end)
end)
server:route("GET", "/seen", function(req, res)
  res:json { events = bayeux.array(events), published = bayeux.array(published),
             delivered = bayeux.array(delivered) }
end)
]]

for _, mode in ipairs { "bayeux", "faye" } do
describe("identity and presence across processes (Redis engine, " .. mode .. " mode)", function()
  local rs, rport, a, b
  local clients = {}      -- { bayeux, cid } kept alive with connects

  local function redis(...) return rs.cmd(...) end

  setup(function()
    rs = H.redis_server()
    rport = rs.port
    local env = "BX_SPEC_REDIS=" .. H.q("redis://127.0.0.1:" .. rport .. "/0?namespace=pr&mode=" .. mode)
    a = H.start_app(APP, { env = env })
    b = H.start_app(APP, { env = env })
  end)

  teardown(function()
    if a then a:finish() end
    if b and b:alive() then b:kill() end
    if rs then rs.stop() end
  end)

  local function get(p, path)
    local st, _, text = H.request(p.port, "GET", path)
    assert.are.equal(200, st, text)
    return H.decode(text)
  end

  -- A session of user `sub` handshaken on process `p`.
  local function session(p, sub, rooms)
    local st, _, text = H.request(p.port, "POST", "/mint", { ["Content-Type"] = "application/json" },
      H.encode { sub = sub, rooms = rooms })
    assert.are.equal(200, st, text)
    local bx = H.bayeux(p.port)
    local cid = bx:handshake { ext = { token = H.decode(text).token } }
    clients[#clients + 1] = { bx, cid }
    return cid
  end

  local function through(p) return H.bayeux(p.port) end

  -- every session made so far connects once (advice timeout 0): none
  -- expires while the test runs
  local function keep_alive()
    for _, c in ipairs(clients) do
      if not c.gone then pcall(c[1].post, c[1], { H.connect_msg(c[2], c[1]:next_id(), 0) }) end
    end
  end

  local function sub(p, cid, ch)
    return through(p):post1 { channel = "/meta/subscribe", clientId = cid, subscription = ch, id = "s" }
  end

  -- Waits until fn(value of GET path on p) holds; returns that value.
  local function wait_for(p, path, fn, what)
    local deadline = H.now() + 20
    local v
    repeat
      v = get(p, path)
      if fn(v) then return v end
      H.sleep(0.05)
    until H.now() > deadline
    error("waited for " .. what .. " on port " .. p.port .. ": " .. H.encode(v), 2)
  end

  local function events_of(p, user, event)
    local n = 0
    for _, e in ipairs(get(p, "/seen").events) do
      if e.user == user and e.event == event and e.channel == "/room/a" then n = n + 1 end
    end
    return n
  end

  it("binds the identity at A's handshake; B checks the ACL and stamps the sender with it", function()
    local alice = session(a, "alice", { "a" })
    local r = sub(b, alice, "/room/a")
    assert.is_true(r.successful, H.encode(r))
    r = sub(b, alice, "/room/b")
    assert.is_false(r.successful, H.encode(r))
    assert.are.equal("403:/room/b:Forbidden channel", r.error)
    r = through(b):publish(alice, "/room/a", { from = "mallory", text = "hi" },
      { ext = { user = "mallory" } })
    assert.is_true(r.successful, H.encode(r))
    -- B saw alice as the sender (its publish event), and the message every
    -- process delivers carries her name, not the spoofed one
    local seen = wait_for(b, "/seen", function(v) return #v.published >= 1 end, "the publish event")
    assert.are.same({ channel = "/room/a", from = "alice", user = "alice" }, seen.published[1])
    for _, p in ipairs { a, b } do
      local d = wait_for(p, "/seen", function(v) return #v.delivered >= 1 end, "the delivery")
      assert.are.same({ from = "alice", text = "hi" }, d.delivered[1])
    end
  end)

  it("gives the same presence on both processes, and joins/leaves once per user", function()
    keep_alive()
    -- bob: one client handshaken on B, subscribed through A; one on A
    -- subscribed through B; carol on B, through B
    local bob1 = session(b, "bob", { "a" })
    local bob2 = session(a, "bob", { "a" })
    local carol = session(b, "carol", { "a" })
    assert.is_true(sub(a, bob1, "/room/a").successful)
    assert.is_true(sub(b, bob2, "/room/a").successful)
    assert.is_true(sub(b, carol, "/room/a").successful)
    for _, p in ipairs { a, b } do
      local pr = wait_for(p, "/presence/a", function(v) return v.connections == 4 end, "4 clients")
      assert.are.same({ "alice", "bob", "carol" }, pr.users)
      assert.are.same({ 3, 4 }, pr.counted)
      assert.are.equal("bob", pr.clients[bob1])
      assert.are.equal("bob", pr.clients[bob2])
    end
    keep_alive()
    -- bob leaves from one client (disconnect through A): no leave yet
    assert.is_true(through(a):disconnect(bob1).successful)
    clients[3].gone = true
    wait_for(b, "/presence/a", function(v) return v.connections == 3 end, "3 clients")
    -- then from the other (unsubscribe through A): one leave
    local r = through(a):unsubscribe(bob2, "/room/a")
    assert.is_true(r.successful, H.encode(r))
    for _, p in ipairs { a, b } do
      local pr = wait_for(p, "/presence/a", function(v) return v.count == 2 end, "2 users")
      assert.are.same({ "alice", "carol" }, pr.users)
      wait_for(p, "/seen", function() return events_of(p, "bob", "leave") >= 1 end, "bob's leave")
    end
    H.sleep(0.5)        -- a second event, if any, would be in by now
    for _, p in ipairs { a, b } do
      assert.are.equal(1, events_of(p, "alice", "join"))
      assert.are.equal(1, events_of(p, "bob", "join"))
      assert.are.equal(1, events_of(p, "carol", "join"))
      assert.are.equal(1, events_of(p, "bob", "leave"))
      assert.are.equal(0, events_of(p, "alice", "leave"))
    end
  end)

  it("makes a killed process's clients leave once they expire", function()
    keep_alive()
    assert.is_true(b:alive())
    b:kill()
    -- carol was held by B and is silent now; alice keeps connecting to A
    local deadline = H.now() + 30
    local pr
    repeat
      keep_alive()
      pr = get(a, "/presence/a")
      if pr.count == 1 then break end
      H.sleep(0.2)
    until H.now() > deadline
    assert.are.same({ "alice" }, pr.users, H.encode(pr))
    assert.are.same({ 1, 1 }, pr.counted)
    wait_for(a, "/seen", function() return events_of(a, "carol", "leave") >= 1 end, "carol's leave")
    H.sleep(0.5)
    assert.are.equal(1, events_of(a, "carol", "leave"))
    assert.are.equal(0, events_of(a, "alice", "leave"))
    -- her identity went with her session
    local key = mode == "faye" and "pr/clients/" .. clients[#clients][2] .. "/user"
      or "pr/c/" .. clients[#clients][2] .. "/u"
    assert.are.equal("$-1", redis("GET", key))
  end)
end)
end
