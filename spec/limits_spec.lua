-- Limits (issue 14): subscriptions per client, channels per server, publish
-- rate per client, connections per address, allowed origins for CORS,
-- WebSocket, EventSource and JSONP. Each is a `bayeux serve` flag (and a
-- bayeux.server option); docs/security.md lists them with the answer each
-- gives.
local H = require "spec.helper"
local WS = require "spec.ws_client"

local function start(args)
  return H.start_server(args)
end

-- The messages of a reply list on `channel` (deliveries), in order.
local function deliveries(replies, channel)
  local out = {}
  for _, m in ipairs(replies) do
    if m.channel == channel and m.data ~= nil then out[#out + 1] = m end
  end
  return out
end

local function sub_msg(b, cid, sub)
  return { channel = "/meta/subscribe", clientId = cid, subscription = sub, id = b:next_id() }
end

describe("subscriptions per client (--max-subscriptions)", function()
  local srv, port

  lazy_setup(function() srv = start{ "--max-subscriptions", "3" }; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("refuses the subscription past the limit with 403 Too many subscriptions", function()
    local b = H.bayeux(port)
    local cid = b:handshake()
    for _, ch in ipairs{ "/a", "/b", "/c" } do b:subscribe(cid, ch) end
    local r = b:post1(sub_msg(b, cid, "/d"))
    assert.is_false(r.successful)
    assert.are.equal("403:/d:Too many subscriptions", r.error)
    -- a subscription it already has is no new one
    b:subscribe(cid, "/a")
    -- one freed, one more allowed
    assert.is_true(b:unsubscribe(cid, "/c").successful)
    b:subscribe(cid, "/d")
    -- the refused client still works: it gets what /d carries
    assert.is_true(b:publish(cid, "/d", "x").successful)
    local replies = b:connect(cid, 0)
    assert.are.equal(1, #deliveries(replies, "/d"))
  end)

  it("counts per client: another client has its own", function()
    local b = H.bayeux(port)
    local c1, c2 = b:handshake(), b:handshake()
    for _, ch in ipairs{ "/a", "/b", "/c" } do b:subscribe(c1, ch) end
    for _, ch in ipairs{ "/a", "/b", "/c" } do b:subscribe(c2, ch) end
    assert.are.equal("403:/x:Too many subscriptions", b:post1(sub_msg(b, c2, "/x")).error)
  end)

  it("names the whole list when a list passes the limit", function()
    local b = H.bayeux(port)
    local cid = b:handshake()
    local r = b:post1(sub_msg(b, cid, { "/l1", "/l2", "/l3", "/l4" }))
    assert.is_false(r.successful)
    assert.are.equal("403:/l1,/l2,/l3,/l4:Too many subscriptions", r.error)
  end)
end)

-- the default (1000 for a network client, none for in-process clients) and
-- the other engines: sub_limit_spec.lua

describe("channels per server (--max-channels)", function()
  local srv, port

  lazy_setup(function() srv = start{ "--max-channels", "2" }; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("refuses a new channel past the limit with 403 Too many channels", function()
    local b = H.bayeux(port)
    local c1, c2 = b:handshake(), b:handshake()
    b:subscribe(c1, "/one")
    b:subscribe(c1, "/two/*")
    -- channels already there are open to everyone
    b:subscribe(c2, "/one")
    b:subscribe(c2, "/two/*")
    local r = b:post1(sub_msg(b, c2, "/three"))
    assert.is_false(r.successful)
    assert.are.equal("403:/three:Too many channels", r.error)
    -- a channel nobody subscribes to any more frees its place
    assert.is_true(b:unsubscribe(c1, "/one").successful)
    assert.are.equal("403:/three:Too many channels", b:post1(sub_msg(b, c1, "/three")).error)
    assert.is_true(b:unsubscribe(c2, "/one").successful)
    b:subscribe(c2, "/three")
  end)
end)

describe("publish rate per client (--publish-rate)", function()
  local srv, port

  -- one token every 1000 s: the counts below are exact however slow the box
  lazy_setup(function()
    srv = start{ "--publish-rate", "0.001", "--publish-burst", "3" }
    port = srv.port
  end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("answers publishes past the burst with 429, and the client stays", function()
    local b = H.bayeux(port)
    local sub, pub = b:handshake(), b:handshake()
    b:subscribe(sub, "/rate")
    local batch = {}
    for i = 1, 5 do
      batch[i] = { channel = "/rate", clientId = pub, data = i, id = "p" .. i }
    end
    local replies = b:post(batch)
    local ok, refused = 0, 0
    for _, r in ipairs(replies) do
      if r.successful then
        ok = ok + 1
      else
        refused = refused + 1
        assert.are.equal("429:/rate:Too many publishes", r.error)
      end
    end
    assert.are.equal(3, ok)
    assert.are.equal(2, refused)
    -- exactly the three got through
    local got = deliveries(b:connect(sub, 0), "/rate")
    assert.are.equal(3, #got)
    -- the publisher is still a client: its connect succeeds, other work goes on
    local c = b:connect(pub, 0)
    assert.is_true(c[1].successful)
    b:subscribe(pub, "/other")
    -- another client has a bucket of its own
    assert.is_true(b:publish(sub, "/rate", "mine").successful)
  end)

  it("counts publishes with invented clientIds, or none, in one bucket", function()
    local b = H.bayeux(port)
    local sub = b:handshake()
    b:subscribe(sub, "/anon")
    local batch = {}
    for i = 1, 4 do
      batch[i] = { channel = "/anon", clientId = "invented" .. i, data = i, id = "a" .. i }
    end
    batch[5] = { channel = "/anon", data = 5, id = "a5" }
    local ok = 0
    for _, r in ipairs(b:post(batch)) do
      if r.successful then ok = ok + 1
      else assert.are.equal("429:/anon:Too many publishes", r.error) end
    end
    assert.are.equal(3, ok)
    assert.are.equal(3, #deliveries(b:connect(sub, 0), "/anon"))
  end)

  it("limits a WebSocket client alike", function()
    local b = H.bayeux(port)
    local cid = b:handshake()
    local ws = assert(WS.open(port, "/faye"))
    local batch = {}
    for i = 1, 4 do batch[i] = { channel = "/ws", clientId = cid, data = i, id = "w" .. i } end
    ws:send_json(batch)
    local refused = 0
    local seen = 0
    while seen < 4 do
      local v = assert(ws:recv_json(5))
      for _, r in ipairs(v) do
        seen = seen + 1
        if r.successful == false then
          refused = refused + 1
          assert.are.equal("429:/ws:Too many publishes", r.error)
        end
      end
    end
    assert.are.equal(1, refused)
    ws:close()
  end)
end)

describe("connections per address (--max-conns-per-addr)", function()
  local srv, port

  lazy_setup(function() srv = start{ "--max-conns-per-addr", "2" }; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  local GET = "GET /faye/client.js HTTP/1.1\r\nHost: x\r\n\r\n"

  local function served(c)
    assert.is_true(c:send(GET))
    return (c:read_response(5))
  end

  it("answers a third connection from one address with 429 and closes it", function()
    local a, b = H.connect(port), H.connect(port)
    assert.are.equal(200, served(a))
    assert.are.equal(200, served(b))
    local c = H.connect(port)
    local st, _, body = c:read_response(5)
    assert.are.equal(429, st)
    assert.matches("Too many connections", body)
    assert.is_true(c:wait_closed(5))
    c:close()
    -- one closes: a new one is served once the server has seen it go
    a:close()
    local deadline, st2 = H.now() + 10
    repeat
      local d = H.connect(port)
      d:send(GET)
      st2 = d:read_response(5)
      d:close()
      if st2 ~= 200 then H.sleep(0.05) end
    until st2 == 200 or H.now() > deadline
    assert.are.equal(200, st2)
    b:close()
  end)

  -- A WebSocket, retried while the server has not yet seen earlier
  -- connections of this address close (each refusal is one of those).
  local function open_ws()
    local deadline = H.now() + 10
    repeat
      local w, st = WS.open(port, "/faye")
      if st == 101 then return w end
      if w then w:close() end
      H.sleep(0.05)
    until H.now() > deadline
    error("no WebSocket accepted")
  end

  it("counts WebSockets until they close", function()
    local w1 = open_ws()
    local w2 = open_ws()
    local w3, status = WS.open(port, "/faye")
    assert.are.equal(429, status)
    w3:close()
    -- an upgraded connection still counts for plain requests
    local c = H.connect(port)
    assert.are.equal(429, (c:read_response(5)))
    c:close()
    w1:close()
    w2:close()
    open_ws():close()
  end)
end)

describe("allowed origins (--allowed-origins)", function()
  local srv, port
  local GOOD, EVIL = "https://good.example", "https://evil.example"
  local HS = '[{"channel":"/meta/handshake","version":"1.0",'
    .. '"supportedConnectionTypes":["long-polling","callback-polling"],"id":"h"}]'

  lazy_setup(function()
    srv = start{ "--allowed-origins", GOOD .. ",https://other.example:8443" }
    port = srv.port
  end)
  lazy_teardown(function() if srv then srv:finish() end end)

  local function post(origin)
    local h = { ["Content-Type"] = "application/json" }
    if origin then h.Origin = origin end
    return H.request(port, "POST", "/faye", h, HS)
  end

  local function jsonp(headers)
    return H.request(port, "GET", "/faye?message=" .. H.urlencode(HS) .. "&jsonp=cb", headers)
  end

  it("serves a listed origin, with CORS headers", function()
    local st, h = post(GOOD)
    assert.are.equal(200, st)
    assert.are.equal(GOOD, h["access-control-allow-origin"])
    assert.are.equal(200, (post("https://other.example:8443")))
  end)

  it("refuses another origin with 403 and no CORS headers", function()
    local st, h, body = post(EVIL)
    assert.are.equal(403, st)
    assert.is_nil(h["access-control-allow-origin"])
    assert.matches("Origin not allowed", body)
    -- a listed origin's prefix is not the origin
    assert.are.equal(403, (post(GOOD .. ".evil.example")))
  end)

  it("refuses a preflight from another origin", function()
    local st, h = H.request(port, "OPTIONS", "/faye",
      { Origin = EVIL, ["Access-Control-Request-Method"] = "POST" })
    assert.are.equal(403, st)
    assert.is_nil(h["access-control-allow-origin"])
    st = H.request(port, "OPTIONS", "/faye",
      { Origin = GOOD, ["Access-Control-Request-Method"] = "POST" })
    assert.are.equal(200, st)
  end)

  it("serves requests without an Origin, and the server's own pages", function()
    assert.are.equal(200, (post(nil)))
    assert.are.equal(200, (post("http://127.0.0.1:" .. port)))
  end)

  it("refuses a WebSocket upgrade from another origin", function()
    local _, status = WS.open(port, "/faye", { "Origin: " .. EVIL })
    assert.are.equal(403, status)
    local ws, ok = WS.open(port, "/faye", { "Origin: " .. GOOD })
    assert.are.equal(101, ok)
    ws:close()
  end)

  it("refuses an EventSource from another origin", function()
    local st = H.request(port, "GET", "/faye/someclient",
      { Accept = "text/event-stream", Origin = EVIL })
    assert.are.equal(403, st)
  end)

  it("serves JSONP only to pages of allowed origins", function()
    assert.are.equal(403, (jsonp{}))
    assert.are.equal(403, (jsonp{ Referer = EVIL .. "/page.html" }))
    assert.are.equal(403, (jsonp{ Referer = "https://good.example.evil.example/x" }))
    local st, _, body = jsonp{ Referer = GOOD .. "/app/page.html?x=1" }
    assert.are.equal(200, st)
    assert.matches("^/%*%*/cb%(", body)
  end)

  it("serves the client script to any page", function()
    assert.are.equal(200, (H.request(port, "GET", "/faye/client.js", { Origin = EVIL })))
    assert.are.equal(200, (H.request(port, "GET", "/faye/client.js")))
  end)
end)

describe("origins by default", function()
  local srv, port

  lazy_setup(function() srv = start{}; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("allows any origin, as Faye does", function()
    local st, h = H.request(port, "POST", "/faye",
      { ["Content-Type"] = "application/json", Origin = "https://anywhere.example" }, "[]")
    assert.are.equal(200, st)
    assert.are.equal("https://anywhere.example", h["access-control-allow-origin"])
  end)
end)

describe("limit options in bayeux.server", function()
  it("takes each limit and checks it", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", [[
      local bayeux = require "bayeux"
      local s = bayeux.server{ max_subscriptions = 5, max_channels = 10, publish_rate = 2,
        publish_burst = 4, max_conns_per_addr = 3, allowed_origins = { "https://a.example" },
        browser_cookie = true }
      print("made", s ~= nil)
      local bad = {
        { allowed_origins = { "a.example" } }, { allowed_origins = {} },
        { publish_rate = -1 }, { max_subscriptions = 1.5 }, { browser_cookie = "yes" },
      }
      for i, o in ipairs(bad) do print("refused", i, not pcall(bayeux.server, o)) end
      os.exit(0)
    ]])
    local p = H.spawn{ dir .. "/app.lua" }
    assert.are.equal(0, p:wait(20))
    local out = p:stdout()
    p:finish()
    os.execute("rm -rf " .. H.q(dir))
    assert.matches("made\ttrue", out)
    for i = 1, 5 do assert.matches("refused\t" .. i .. "\ttrue", out) end
  end)
end)
