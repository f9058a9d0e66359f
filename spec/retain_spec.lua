-- Retained channels (core/bayeux/retain.c): a channel inside a retained
-- pattern keeps its last message, and a client that subscribes later gets
-- it at once after its subscribe, on every transport; a final message or
-- the ttl ends it.
local H = require "spec.helper"
local WS = require "spec.ws_client"

local APP = [[
local bayeux = require "bayeux"
-- a 60 s connect hold: a connect answered before it came from a message
local server = bayeux.server { mount = "/faye", timeout = 60, retain = { "/jobs/**" } }
server:retain("/short/*", { ttl = 0.3 })

server:route("GET", "/inproc/:id", function(req, res)
  local sub
  sub = server:client():subscribe("/jobs/" .. req.params.id, function(data)
    sub:cancel()
    res:json(data)
  end)
end)
server:listen(0, "127.0.0.1")
]]

describe("retained channels", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_app(APP)
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  -- the data of the deliveries in a long-poll connect's answer
  local function deliveries(replies)
    local out = {}
    for _, m in ipairs(replies) do
      if m.channel ~= "/meta/connect" then out[#out + 1] = { channel = m.channel, data = m.data } end
    end
    return out
  end

  -- subscribes a new long-polling client; returns what its next connect
  -- brings (the client asks for a 60 s hold; the read gives up at 30 s)
  local function late_subscriber(sub, after_subscribe)
    local cid = b:handshake()
    b:subscribe(cid, sub)
    if after_subscribe then after_subscribe() end
    local r = b:connect(cid, 60000, 30)
    return deliveries(r), cid
  end

  it("gives a late long-polling subscriber the last message at once", function()
    assert.is_true(b:publish(nil, "/jobs/1", { progress = 10 }).successful)
    assert.is_true(b:publish(nil, "/jobs/1", { progress = 40 }).successful)
    local got = late_subscriber("/jobs/1")
    assert.are.same({ { channel = "/jobs/1", data = { progress = 40 } } }, got)
  end)

  it("gives a wildcard subscription the last message of each channel it covers", function()
    assert.is_true(b:publish(nil, "/jobs/w/a", { progress = 1 }).successful)
    assert.is_true(b:publish(nil, "/jobs/w/b", { progress = 2 }).successful)
    local got = late_subscriber("/jobs/w/*")
    table.sort(got, function(x, y) return x.channel < y.channel end)
    assert.are.same({ { channel = "/jobs/w/a", data = { progress = 1 } },
                      { channel = "/jobs/w/b", data = { progress = 2 } } }, got)
  end)

  it("keeps nothing after a final message, nor for a channel outside the patterns", function()
    assert.is_true(b:publish(nil, "/jobs/2", { progress = 50 }).successful)
    assert.is_true(b:publish(nil, "/jobs/2", { progress = 100, final = true }).successful)
    assert.is_true(b:publish(nil, "/other", { x = 1 }).successful)
    -- a marker published after the subscribe is all the connect brings
    local got = late_subscriber("/jobs/2", function()
      assert.is_true(b:publish(nil, "/jobs/2", { marker = true }).successful)
    end)
    assert.are.same({ { channel = "/jobs/2", data = { marker = true } } }, got)
    got = late_subscriber("/other", function()
      assert.is_true(b:publish(nil, "/other", { marker = true }).successful)
    end)
    assert.are.same({ { channel = "/other", data = { marker = true } } }, got)
  end)

  it("forgets a message after its pattern's ttl", function()
    assert.is_true(b:publish(nil, "/short/a", { old = true }).successful)
    H.sleep(1.2)                    -- four times the 0.3 s ttl
    local got = late_subscriber("/short/a", function()
      assert.is_true(b:publish(nil, "/short/a", { marker = true }).successful)
    end)
    assert.are.same({ { channel = "/short/a", data = { marker = true } } }, got)
  end)

  it("sends it over a WebSocket after the subscribe's answer", function()
    assert.is_true(b:publish(nil, "/jobs/ws", { progress = 70 }).successful)
    local cid = b:handshake()
    local ws = WS.open(srv.port, "/faye")
    ws:send_json { { channel = "/meta/connect", clientId = cid, connectionType = "websocket",
                     id = "c1", advice = { timeout = 0 } } }
    local seen_ack, data = false, nil
    ws:send_json { { channel = "/meta/subscribe", clientId = cid, subscription = "/jobs/ws",
                     id = "s1" } }
    local deadline = H.now() + 20
    while not data and H.now() < deadline do
      local msgs = ws:recv_json(20)
      assert(msgs, "no frame")
      for _, m in ipairs(msgs) do
        if m.channel == "/meta/subscribe" then
          assert.is_true(m.successful)
          seen_ack = true
        elseif m.channel == "/jobs/ws" then
          assert.is_true(seen_ack, "the message came before the subscribe's answer")
          data = m.data
        end
      end
    end
    ws:close()
    assert.are.same({ progress = 70 }, data)
  end)

  it("sends it over an EventSource stream", function()
    assert.is_true(b:publish(nil, "/jobs/es", { progress = 80 }).successful)
    local cid = b:handshake()
    b:subscribe(cid, "/jobs/es")
    local c = H.connect(srv.port)
    c:send("GET /faye/" .. cid .. " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    local deadline, found = H.now() + 20, nil
    while not found and H.now() < deadline do
      local line = c:read_line(deadline)
      assert(line, "stream ended")
      local json = line:match("^data: (.*)$")
      if json then
        for _, m in ipairs(H.decode(json)) do
          if m.channel == "/jobs/es" then found = m.data end
        end
      end
    end
    c:close()
    assert.are.same({ progress = 80 }, found)
  end)

  it("sends it to an in-process client", function()
    assert.is_true(b:publish(nil, "/jobs/ip", { progress = 90 }).successful)
    local status, _, body = H.request(srv.port, "GET", "/inproc/ip", nil, nil, 20)
    assert.are.equal(200, status, body)
    assert.are.same({ progress = 90 }, H.decode(body))
  end)
end)
