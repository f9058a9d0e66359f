-- WebSocket transport (bayeux-faye.md §8, §6.2, §6.8; issue 3), black box
-- with the raw client of spec/ws_client.lua.
local H = require "spec.helper"
local WS = require "spec.ws_client"

local function connect_msg(cid, id, timeout)
  return { channel = "/meta/connect", clientId = cid, connectionType = "websocket", id = id,
           advice = timeout and { timeout = timeout } or nil }
end

-- Handshake over the socket itself (some clients do that).
local function ws_handshake(ws)
  ws:send_json{ { channel = "/meta/handshake", version = "1.0",
                  supportedConnectionTypes = { "websocket" }, id = "h" } }
  local r = assert(ws:recv_json(2))
  assert(r[1].successful == true, H.encode(r))
  return r[1].clientId
end

-- Subscribes `cid` to `sub` and binds the socket with a connect held for
-- `hold` ms (a timeout-0 connect still binds the socket).
local function ws_subscribe(ws, cid, sub, hold)
  ws:send_json{ { channel = "/meta/subscribe", clientId = cid, subscription = sub, id = "s" } }
  local r = assert(ws:recv_json(2))
  assert(r[1].successful == true, H.encode(r))
  ws:send_json{ connect_msg(cid, "c", hold or 0) }
  if (hold or 0) == 0 then
    r = assert(ws:recv_json(2))
    assert(r[1].channel == "/meta/connect", H.encode(r))
  else
    H.sleep(0.05)
  end
end

describe("WebSocket", function()
  local srv, port, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "1", "--max-frame", "4096" }
    port = srv.port
    b = H.bayeux(port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  describe("handshake", function()
    it("upgrades on any path under the mount with the RFC 6455 accept key", function()
      for _, path in ipairs{ "/faye", "/faye/x", "/faye/a/b?x=1" } do
        local ws, st, h = WS.open(port, path)
        assert.are.equal(101, st, path)
        assert.are.equal("websocket", (h.upgrade or ""):lower())
        assert.truthy((h.connection or ""):lower():find("upgrade"))
        assert.are.equal(WS.ACCEPT, h["sec-websocket-accept"])
        assert.is_nil(h["sec-websocket-protocol"])
        ws:close()
      end
    end)

    it("accepts permessage-deflate without context takeover; a short reply goes as it is", function()
      local ws, st, h = WS.open(port, "/faye",
        { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" })
      assert.are.equal(101, st)
      assert.are.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                       h["sec-websocket-extensions"])
      ws:send_text("[]")
      local _, raw = ws:recv_json(2)
      assert.are.equal("[]", raw)
      ws:close()
    end)

    it("declines permessage-deflate with --no-deflate", function()
      local plain = H.start_server{ "--no-deflate" }
      local ok, err = pcall(function()
        local ws, st, h = WS.open(plain.port, "/faye",
          { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" })
        assert.are.equal(101, st)
        assert.is_nil(h["sec-websocket-extensions"])
        ws:send_text("[]")
        local _, raw = ws:recv_json(2)
        assert.are.equal("[]", raw)
        ws:close()
      end)
      plain:finish()
      assert(ok, err)
    end)

    it("refuses a bad upgrade: no key -> 400, another version -> 426", function()
      local _, st = WS.open(port, "/faye", nil,
        { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13" })
      assert.are.equal(400, st)
      local _, st2, h2 = WS.open(port, "/faye", nil,
        { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. WS.KEY,
          "Sec-WebSocket-Version: 8" })
      assert.are.equal(426, st2)
      assert.are.equal("13", h2["sec-websocket-version"])
    end)
  end)

  describe("frames", function()
    it("answers [] with [] and ignores unparsable frames", function()
      local ws = WS.open(port)
      ws:send_text("not json")
      ws:send_text("{\"half\":")
      ws:send_text("[]")
      local r, raw = ws:recv_json(2)
      assert.are.equal("[]", raw)
      assert.are.same({}, r)
      ws:close()
    end)

    it("accepts one object instead of an array and answers with an array", function()
      local ws = WS.open(port)
      ws:send_text(H.encode{ channel = "/meta/handshake", version = "1.0",
                             supportedConnectionTypes = { "websocket" }, id = "1" })
      local r = assert(ws:recv_json(2))
      assert.are.equal(1, #r)
      assert.is_true(r[1].successful)
      assert.are.equal("1", r[1].id)
      ws:close()
    end)

    it("reassembles fragmented messages and answers pings in between", function()
      local ws = WS.open(port)
      ws:send_frame(WS.TEXT, "[", { fin = false })
      ws:send_frame(WS.PING, "abc")
      ws:send_frame(WS.CONT, " ", { fin = false })
      ws:send_frame(WS.CONT, "]")
      local op, payload = ws:recv(2)
      assert.are.equal(WS.PONG, op)
      assert.are.equal("abc", payload)
      op, payload = ws:recv(2)
      assert.are.equal(WS.TEXT, op)
      assert.are.equal("[]", payload)
      ws:close()
    end)

    it("echoes a close with its code, then closes the connection", function()
      local ws = WS.open(port)
      ws:close_frame(1000, "bye")
      assert.are.equal(1000, ws:recv_close(2))
      assert.is_true(ws:wait_eof(3))
      ws:close()
    end)

    it("closes 1002 on an unmasked frame", function()
      local ws = WS.open(port)
      ws:send_text("[]", { unmasked = true })
      assert.are.equal(1002, ws:recv_close(2))
      assert.is_true(ws:wait_eof(3))
      ws:close()
    end)

    it("closes 1007 on invalid UTF-8", function()
      local ws = WS.open(port)
      ws:send_text("[\"\xc3\x28\"]")
      assert.are.equal(1007, ws:recv_close(2))
      assert.is_true(ws:wait_eof(3))
      ws:close()
    end)

    it("closes 1009 on a message above --max-frame, whole or fragmented", function()
      local ws = WS.open(port)
      ws:send_text("[" .. string.rep(" ", 5000) .. "]")
      assert.are.equal(1009, ws:recv_close(2))
      ws:close()
      ws = WS.open(port)
      ws:send_frame(WS.TEXT, "[" .. string.rep(" ", 3000), { fin = false })
      ws:send_frame(WS.CONT, string.rep(" ", 3000) .. "]")
      assert.are.equal(1009, ws:recv_close(2))
      ws:close()
    end)

    it("closes 1002 on random bytes after the upgrade; other clients are still served", function()
      local other = WS.open(port)
      local ws = WS.open(port)
      ws:send_raw("\x8f\xff\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a garbage")
      assert.are.equal(1002, ws:recv_close(2))
      ws:close()
      other:send_text("[]")
      local _, raw = other:recv_json(2)
      assert.are.equal("[]", raw)
      other:close()
      local st = H.request(port, "POST", "/faye", { ["Content-Type"] = H.JSON_CT }, "[]")
      assert.are.equal(200, st)
    end)
  end)

  describe("Bayeux over the socket", function()
    it("pushes deliveries as they happen and answers the connect at the timeout", function()
      local cid = b:handshake()
      local ws = WS.open(port)
      ws:send_json{ { channel = "/meta/subscribe", clientId = cid, subscription = "/ws", id = "2" } }
      local r = ws:recv_json(2)
      assert.are.same({ { id = "2", clientId = cid, channel = "/meta/subscribe",
                          successful = true, subscription = "/ws" } }, r)
      local t0 = H.now()
      ws:send_json{ connect_msg(cid, "3") }
      H.sleep(0.1)
      assert.is_true(b:publish(nil, "/ws", "via-http", { id = "h1" }).successful)
      r = ws:recv_json(0.5)
      assert.are.same({ { channel = "/ws", data = "via-http", id = "h1" } }, r)
      r = assert(ws:recv_json(2), "no connect reply")
      assert.is_true(H.now() - t0 >= 0.8, "connect answered before the timeout")
      assert.are.equal(1, #r)
      assert.are.equal("3", r[1].id)
      assert.are.equal("/meta/connect", r[1].channel)
      assert.is_true(r[1].successful)
      assert.are.same({ reconnect = "retry", interval = 0, timeout = 1000 }, r[1].advice)
      ws:close()
    end)

    it("handshakes, subscribes and publishes over the socket", function()
      local ws = WS.open(port)
      local cid = ws_handshake(ws)
      ws_subscribe(ws, cid, "/self")
      ws:send_json{ { channel = "/self", clientId = cid, data = { n = 1 }, id = "p" } }
      local got_delivery, got_ack = false, false
      for _ = 1, 2 do
        local r = assert(ws:recv_json(2))
        for _, m in ipairs(r) do
          if m.successful == nil and m.channel == "/self" then
            got_delivery = true
            assert.are.same({ n = 1 }, m.data)
          elseif m.id == "p" then
            got_ack = m.successful
          end
        end
      end
      assert.is_true(got_delivery)
      assert.is_true(got_ack)
      ws:close()
    end)

    it("delivers several publishes of one loop iteration in ONE frame", function()
      local ws = WS.open(port)
      local cid = ws_handshake(ws)
      ws_subscribe(ws, cid, "/many")
      -- one POST of three publishes: handled in one iteration
      local r = b:post{ { channel = "/many", data = 1, id = "a" },
                        { channel = "/many", data = 2, id = "b" },
                        { channel = "/many", data = 3, id = "c" } }
      assert.are.equal(3, #r)
      local frame = assert(ws:recv_json(2))
      assert.are.same({ { channel = "/many", data = 1, id = "a" },
                        { channel = "/many", data = 2, id = "b" },
                        { channel = "/many", data = 3, id = "c" } }, frame)
      ws:close()
    end)

    it("keeps the session when the socket closes: a new socket gets what was missed", function()
      local ws = WS.open(port)
      local cid = ws_handshake(ws)
      ws_subscribe(ws, cid, "/away")
      ws:close()
      H.sleep(0.1)
      b:publish(nil, "/away", "missed-1", { id = "m1" })
      b:publish(nil, "/away", "missed-2", { id = "m2" })
      ws = WS.open(port)
      ws:send_json{ connect_msg(cid, "c2", 0) }
      local seen = {}
      for _ = 1, 3 do
        local r = ws:recv_json(2)
        if not r then break end
        for _, m in ipairs(r) do seen[#seen + 1] = m.data or m.channel end
      end
      assert.are.same({ "missed-1", "missed-2", "/meta/connect" }, seen)
      ws:close()
    end)

    it("closes with 1000 after the disconnect reply", function()
      local cid = b:handshake()
      local ws = WS.open(port)
      ws:send_json{ connect_msg(cid, "c") }
      H.sleep(0.05)
      ws:send_json{ { channel = "/meta/disconnect", clientId = cid, id = "d" } }
      local got_disconnect = false
      while true do
        local r, err, code = ws:recv_json(2)
        if not r then
          assert.are.equal("close", err)
          assert.are.equal(1000, code)
          break
        end
        for _, m in ipairs(r) do
          if m.id == "d" then
            got_disconnect = true
            assert.are.same({ id = "d", clientId = cid, channel = "/meta/disconnect",
                              successful = true }, m)
          end
        end
      end
      assert.is_true(got_disconnect, "no disconnect reply")
      assert.is_true(ws:wait_eof(3))
      ws:close()
    end)

    it("closes the socket with 1000 when the session is destroyed elsewhere", function()
      local cid = b:handshake()
      local ws = WS.open(port)
      ws:send_json{ connect_msg(cid, "c", 0) }
      assert(ws:recv_json(2))
      -- the disconnect comes over HTTP
      assert.is_true(b:disconnect(cid).successful)
      assert.are.equal(1000, ws:recv_close(2))
      ws:close()
    end)
  end)
end)

describe("WebSocket ping option", function()
  it("sends ping frames every --ping seconds", function()
    local srv = H.start_server{ "--ping", "0.2" }
    local ws = WS.open(srv.port)
    local op, payload = ws:recv(2)
    assert.are.equal(WS.PING, op)
    assert.are.equal("1", payload)
    op, payload = ws:recv(2)
    assert.are.equal(WS.PING, op)
    assert.are.equal("2", payload)
    ws:close()
    srv:finish()
  end)

  it("sends no pings by default", function()
    local srv = H.start_server{}
    local ws = WS.open(srv.port)
    local op, err = ws:recv(0.5)
    assert.is_nil(op)
    assert.are.equal("timeout", err)
    ws:close()
    srv:finish()
  end)
end)

describe("WebSocket slow reader", function()
  it("cuts off a subscriber that never reads while a normal one keeps receiving", function()
    local srv = H.start_server{ "--max-output", "65536" }
    local port = srv.port
    local b = H.bayeux(port)
    local slow, fast = WS.open(port), WS.open(port)
    local slow_id, fast_id = ws_handshake(slow), ws_handshake(fast)
    ws_subscribe(slow, slow_id, "/flood")
    ws_subscribe(fast, fast_id, "/flood")
    -- from here `slow` never reads; `fast` reads everything
    local blob = string.rep("x", 16000)
    local received, last = 0, nil
    local function drain(t)
      while true do
        local r = fast:recv_json(t)
        if not r then return end
        for _, m in ipairs(r) do
          if m.channel == "/flood" then received = received + 1; last = m.data.n end
        end
      end
    end
    local n = 0
    for _ = 1, 40 do
      local batch = {}
      for _ = 1, 10 do
        n = n + 1
        batch[#batch + 1] = { channel = "/flood", data = { n = n, blob = blob } }
      end
      b:post(batch)
      drain(0.05)
      if srv:stderr():find("max_output", 1, true) then break end
    end
    -- a loaded server may log the cut-off a little after the last post
    local logged = H.now() + 15
    while not srv:stderr():find("max_output", 1, true) and H.now() < logged do
      drain(0.05)
    end
    assert.truthy(srv:stderr():find("bytes not read by the client (max_output)", 1, true),
      "the slow reader was not cut off: " .. srv:stderr())
    -- the fast subscriber got everything, and keeps receiving
    b:post{ { channel = "/flood", data = { n = n + 1 } } }
    local deadline = H.now() + 5
    while last ~= n + 1 and H.now() < deadline do drain(0.2) end
    assert.are.equal(n + 1, last)
    assert.are.equal(n + 1, received)
    slow:close()
    fast:close()
    srv:finish()
  end)
end)
