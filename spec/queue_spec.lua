-- Messages taken from a client's queue that a connection could not carry go
-- back to the front of the queue, in order (issue 9, items 10-12): a
-- long-poll answer bounded by max_reply, a held connect whose socket closed
-- while an outgoing extension was still at work on its reply, and a socket
-- dropped as a slow reader.
local H = require "spec.helper"
local WS = require "spec.ws_client"

-- The /q data numbers in a reply list, in order.
local function numbers(replies, channel)
  local got = {}
  for _, m in ipairs(replies) do
    if m.channel == (channel or "/q") then got[#got + 1] = m.data.n end
  end
  return got
end

local function range(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = i end
  return t
end

-- Raw JSON for one publish whose data carries a blob of `size` bytes.
local function big_publish(channel, n, size)
  return ('[{"channel":"%s","data":{"n":%d,"blob":"%s"}}]'):format(channel, n,
    string.rep("x", size))
end

describe("max_reply", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--max-reply", "1000" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("bounds a long-poll answer; the next connects get the rest, in order", function()
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    local blob = string.rep("y", 200)
    for i = 1, 20 do b:publish(nil, "/q", { n = i, blob = blob }) end

    -- 20 messages of ~240 bytes: no answer carries more than 1000 bytes of them
    local got, answers = {}, 0
    while #got < 20 and answers < 40 do
      local r, _, raw = b:post{ H.connect_msg(cid, "c" .. answers, 0) }
      answers = answers + 1
      local nums = numbers(r)
      assert.is_true(#nums >= 1, "an answer carried nothing: " .. raw)
      assert.is_true(#nums <= 4, #nums .. " messages in one answer")
      assert.is_true(#raw < 1000 + 300, #raw .. " bytes in one answer")
      for _, n in ipairs(nums) do got[#got + 1] = n end
    end
    assert.are.same(range(1, 20), got)
    assert.is_true(answers >= 5)
    -- and nothing is left
    local r = b:post{ H.connect_msg(cid, "last", 0) }
    assert.are.same({}, numbers(r))
  end)

  it("still sends a message larger than the bound, alone", function()
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    b:publish(nil, "/q", { n = 1, blob = string.rep("z", 3000) })
    b:publish(nil, "/q", { n = 2 })
    local r = b:post{ H.connect_msg(cid, "c1", 0) }
    assert.are.same({ 1 }, numbers(r))
    r = b:post{ H.connect_msg(cid, "c2", 0) }
    assert.are.same({ 2 }, numbers(r))
  end)
end)

-- The outgoing extension holds the reply of one armed /meta/connect until
-- POST /go, so the test can close the socket while it is held.
local GATED_APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 10 }
local armed, held = false, nil
server:add_extension {
  outgoing = function(message, request, callback)
    if armed and message.channel == "/meta/connect" then
      armed = false
      held = function() callback(message) end
      return
    end
    callback(message)
  end,
}
server:route("POST", "/arm", function(_, res) armed = true; res:json { ok = true } end)
server:route("GET", "/state", function(_, res)
  local st = server:stats()
  res:json { held = held ~= nil, connected = st.connected, connections = st.connections }
end)
server:route("POST", "/go", function(_, res)
  local f = held
  held = nil
  if f then f() end
  res:json { ok = f ~= nil }
end)
server:listen(0, "127.0.0.1")
]]

describe("a held connect whose socket closes after its release", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(GATED_APP)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function state()
    local st, _, body = H.request(srv.port, "GET", "/state")
    assert.are.equal(200, st)
    return H.decode(body)
  end

  local function wait_for(what, pred)
    local deadline = H.now() + 5
    while true do
      local s = state()
      if pred(s) then return s end
      assert(H.now() < deadline, "timed out waiting for " .. what .. ": " .. H.encode(s))
      H.sleep(0.01)
    end
  end

  it("gives its messages back: the next connect gets them, in order", function()
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    assert.are.equal(200, (H.request(srv.port, "POST", "/arm", nil, "")))

    local pending = b:start_connect(cid, 10000)
    wait_for("the connect to be held", function(s) return s.connected == 1 end)
    -- the publish releases the hold with both messages; the extension then
    -- keeps the connect's reply
    b:post{ { channel = "/q", data = { n = 1 } }, { channel = "/q", data = { n = 2 } } }
    local s = wait_for("the reply to be held", function(x) return x.held end)
    pending:close()
    -- this request's connection and b's remain
    wait_for("the server to see the close", function(x)
      return x.connections < s.connections
    end)
    local st, _, body = H.request(srv.port, "POST", "/go", nil, "")
    assert.are.equal(200, st)
    assert.is_true(H.decode(body).ok)

    local r = b:post{ H.connect_msg(cid, "again", 0) }
    assert.are.same({ 1, 2 }, numbers(r))
  end)
end)

describe("a slow reader dropped at max_output", function()
  local srv, b

  lazy_setup(function()
    -- any unsent byte makes a socket slow; a 16 MiB message fills what
    -- the kernel buffers for a reader that does not read
    -- (a long timeout: the clients must not expire while 16 MiB go by)
    srv = H.start_server{ "--max-output", "1", "--max-body", tostring(32 << 20),
                          "--timeout", "60" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function flood_then_check(cid, close)
    -- the big one is being written when the next delivery finds the socket
    -- too slow: that delivery, and the ones after, wait for the client
    local drops = select(2, srv:stderr():gsub("%(max_output%)", ""))
    local st = b:post_raw(big_publish("/q", 0, 16 << 20))
    assert.are.equal(200, st)
    b:publish(nil, "/q", { n = 1 })
    b:publish(nil, "/q", { n = 2 })
    local deadline = H.now() + 30     -- only a failure waits this long
    while select(2, srv:stderr():gsub("%(max_output%)", "")) == drops and H.now() < deadline do
      H.sleep(0.01)
    end
    assert.are.equal(drops + 1, select(2, srv:stderr():gsub("%(max_output%)", "")), srv:stderr())
    close()
    -- the same client comes back over long-polling
    local r = b:post{ H.connect_msg(cid, "back", 0) }
    assert.are.same({ 1, 2 }, numbers(r))
  end

  it("WebSocket: the deliveries not written go to the next connection", function()
    local ws = WS.open(srv.port)
    ws:send_json{ { channel = "/meta/handshake", version = "1.0",
                    supportedConnectionTypes = { "websocket" }, id = "h" } }
    local cid = assert(ws:recv_json(2))[1].clientId
    ws:send_json{ { channel = "/meta/subscribe", clientId = cid, subscription = "/q", id = "s" },
                  { channel = "/meta/connect", clientId = cid, connectionType = "websocket",
                    id = "c", advice = { timeout = 0 } } }
    local got = 0
    while got < 2 do
      local r = assert(ws:recv_json(2))
      got = got + #r
    end
    flood_then_check(cid, function() ws:close() end)
  end)

  it("EventSource: likewise", function()
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    local c = H.connect(srv.port)
    c:send("GET /faye/" .. cid .. " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    local line = assert(c:read_line(H.now() + 3))
    assert.are.equal("HTTP/1.1 200 OK", line)
    -- wait until the stream is bound: a delivery arrives on it
    b:publish(nil, "/q", { n = -1 })
    local deadline = H.now() + 3
    repeat
      local l = assert(c:read_line(deadline))
    until l:find('"n":-1', 1, true)
    flood_then_check(cid, function() c:close() end)
  end)
end)
