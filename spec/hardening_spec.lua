-- Hardening (issue 14): strict request heads (RFC 9112), deadlines for a
-- request's head and body, shedding at max_conns, idle upgraded sockets and
-- the small WebSocket and error-text cases. docs/security.md lists each bad
-- input with the spec here that proves its answer.
local H = require "spec.helper"

local JSON = { ["Content-Type"] = "application/json" }
local PUBLISH = '[{"channel":"/h","data":1,"id":"p"}]'

-- The status a raw request gets, and whether the connection then closes.
local function answer(port, raw)
  local c = H.connect(port)
  assert.is_true(c:send(raw))
  local st, _, body = c:read_response(3)
  local closed = c:wait_closed(3)
  c:close()
  return st, body, closed
end

describe("strict request heads", function()
  local srv, port

  lazy_setup(function()
    srv = H.start_server{}
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function post(head_lines, sep)
    sep = sep or "\r\n"
    return "POST /faye HTTP/1.1" .. sep .. table.concat(head_lines, sep) .. sep .. sep
  end

  it("answers a well-formed request (the control case)", function()
    local st = answer(port, post{ "Host: x", "Content-Type: application/json",
      "Content-Length: " .. #PUBLISH, "Connection: close" } .. PUBLISH)
    assert.are.equal(200, st)
  end)

  it("refuses a blank between a field name and its colon with 400", function()
    local st, _, closed = answer(port, post{ "Host: x", "Content-Type: application/json",
      "Content-Length : " .. #PUBLISH } .. PUBLISH)
    assert.are.equal(400, st)
    assert.is_true(closed)
  end)

  it("refuses an obs-folded field line with 400", function()
    local st, _, closed = answer(port, post{ "Host: x", "Content-Type: application/json",
      "X-Long: a", " b", "Content-Length: " .. #PUBLISH } .. PUBLISH)
    assert.are.equal(400, st)
    assert.is_true(closed)
  end)

  it("refuses a request whose lines end in a bare LF with 400", function()
    local st, _, closed = answer(port, post({ "Host: x", "Content-Type: application/json",
      "Content-Length: " .. #PUBLISH }, "\n") .. PUBLISH)
    assert.are.equal(400, st)
    assert.is_true(closed)
  end)

  it("refuses one bare LF among CRLF lines with 400", function()
    local st = answer(port, "POST /faye HTTP/1.1\r\nHost: x\nContent-Type: application/json\r\n"
      .. "Content-Length: " .. #PUBLISH .. "\r\n\r\n" .. PUBLISH)
    assert.are.equal(400, st)
  end)

  it("refuses a control byte in a field value with 400", function()
    local st = answer(port, post{ "Host: x", "X-A: a\0b", "Content-Type: application/json",
      "Content-Length: " .. #PUBLISH } .. PUBLISH)
    assert.are.equal(400, st)
  end)

  it("checks every head of a pipeline, the second one split across writes", function()
    local c = H.connect(port)
    local good = H.build_request(port, "POST", "/faye", JSON, PUBLISH)
    assert.is_true(c:send(good .. "POST /faye HTTP/1.1\r\nHost: x\r\nX-Fold: a\r"))
    H.sleep(0.05)
    assert.is_true(c:send("\n\tb\r\nContent-Length: 2\r\n\r\n[]"))
    local st1 = c:read_response(3)
    local st2 = c:read_response(3)
    c:close()
    assert.are.equal(200, st1)
    assert.are.equal(400, st2)
  end)

  it("still skips empty lines before a request line", function()
    local st = answer(port, "\r\n\r\n" .. post{ "Host: x", "Content-Type: application/json",
      "Content-Length: " .. #PUBLISH, "Connection: close" } .. PUBLISH)
    assert.are.equal(200, st)
  end)
end)

describe("request deadlines", function()
  local srv, port

  lazy_setup(function()
    srv = H.start_server{ "--head-timeout", "0.5", "--body-timeout", "0.5",
                          "--idle-timeout", "60", "--max-conns", "20" }
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  -- Sends `raw` one byte at a time every `gap` seconds for at most `max`
  -- bytes, reading what comes back; returns the status line's code, if any.
  local function trickle(c, raw, gap, max)
    for i = 1, math.min(#raw, max) do
      if not c:send(raw:sub(i, i)) then break end
      H.sleep(gap)
      c.sock:settimeout(0)
      local data, _, partial = c.sock:receive(64)
      data = data or partial
      if data and #data > 0 then c.buf = c.buf .. data end
      if c.buf:find("\r\n", 1, true) then break end
    end
    return tonumber(c.buf:match("^HTTP/1%.1 (%d+)"))
  end

  it("answers 408 to a head trickled byte by byte", function()
    local c = H.connect(port)
    local st = trickle(c, "POST /faye HTTP/1.1\r\nHost: x\r\nX-Slow: " .. ("a"):rep(200), 0.05, 200)
    -- 200 bytes at 20 per second would take 10 s; the deadline is 0.5 s
    assert.are.equal(408, st)
    c:close()
  end)

  it("answers 408 to a body that does not arrive", function()
    local c = H.connect(port)
    assert.is_true(c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      .. "Content-Length: 100\r\n\r\n[{"))
    local st = trickle(c, ('"a":1,'):rep(20), 0.05, 100)
    assert.are.equal(408, st)
    c:close()
  end)

  it("sheds slow connections at max_conns so a healthy client is served", function()
    local slow = {}
    for i = 1, 20 do
      slow[i] = H.connect(port)
      assert.is_true(slow[i]:send("POST /faye HTTP/1.1\r\n"))
    end
    H.sleep(0.1)
    -- every slot holds an unfinished head; the healthy client still gets in
    for _ = 1, 3 do
      local st, _, body = H.request(port, "POST", "/faye", JSON, PUBLISH, 3)
      assert.are.equal(200, st)
      assert.are.equal("p", H.decode(body)[1].id)
    end
    for _, c in ipairs(slow) do c:close() end
  end)

  it("does not cut a request that arrives within its deadlines", function()
    local c = H.connect(port)
    assert.is_true(c:send("POST /faye HTTP/1.1\r\nHost: x\r\n"))
    H.sleep(0.1)
    assert.is_true(c:send("Content-Type: application/json\r\nContent-Length: " .. #PUBLISH .. "\r\n\r\n"))
    H.sleep(0.1)
    assert.is_true(c:send(PUBLISH))
    local st = c:read_response(3)
    assert.are.equal(200, st)
    -- idle, then a second request: the head deadline starts anew
    H.sleep(0.7)
    st = c:request("POST", "/faye", JSON, PUBLISH)
    assert.are.equal(200, st)
    c:close()
  end)
end)

describe("small holes", function()
  local WS = require "spec.ws_client"
  local srv, port

  lazy_setup(function()
    srv = H.start_server{ "--max-frame", "4096", "--max-body", "4096" }
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("closes 1009 on a frame header declaring 2^62 bytes, before any payload", function()
    local ws = assert(WS.open(port, "/faye"))
    -- FIN + text, masked, 64-bit length 2^62, mask key; no payload at all
    assert.is_true(ws:send_raw(string.char(0x81, 0xff) .. string.pack(">I8", 1 << 62) .. "abcd"))
    assert.are.equal(1009, ws:recv_close(3))
    assert.is_true(ws:wait_eof(3))
    ws:close()
  end)

  it("closes 1009 on fragments whose declared lengths pass max_frame", function()
    local ws = assert(WS.open(port, "/faye"))
    assert.is_true(ws:send_frame(WS.TEXT, ("a"):rep(3000), { fin = false }))
    -- the continuation's header alone says 3000 + 3000 > 4096
    assert.is_true(ws:send_raw(string.char(0x80, 0xfe) .. string.pack(">I2", 3000) .. "abcd"))
    assert.are.equal(1009, ws:recv_close(3))
    ws:close()
  end)

  it("closes 1002 on a close frame with a 1-byte payload", function()
    local ws = assert(WS.open(port, "/faye"))
    assert.is_true(ws:send_frame(WS.CLOSE, "x"))
    assert.are.equal(1002, ws:recv_close(3))
    ws:close()
  end)

  it("sends the 413 of an over-limit body written at once, not a reset", function()
    local body = ("x"):rep(200000)
    for _ = 1, 3 do
      local c = H.connect(port)
      local ok = c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
      assert.is_true(ok)
      local st, err = c:read_response(3)
      c:close()
      assert.are.equal(413, st, err)
    end
  end)

  it("names a channel holding a NUL whole in its error", function()
    local st, _, body = H.request(port, "POST", "/faye", JSON,
      '[{"channel":"/a\\u0000b","data":1,"id":"n"}]')
    assert.are.equal(200, st)
    local r = H.decode(body)[1]
    assert.is_false(r.successful)
    assert.are.equal("405:/a\0b:Invalid channel", r.error)
  end)
end)

describe("idle upgraded sockets", function()
  local WS = require "spec.ws_client"
  local srv, port

  lazy_setup(function()
    srv = H.start_server{ "--idle-timeout", "0.4" }
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("pings a silent WebSocket, then closes it when nothing answers", function()
    local ws = assert(WS.open(port, "/faye"))
    local op = ws:recv(5)
    assert.are.equal(WS.PING, op)
    assert.are.equal(1001, ws:recv_close(5))
    assert.is_true(ws:wait_eof(3))
    ws:close()
  end)

  it("keeps a WebSocket that answers its pings", function()
    local ws = assert(WS.open(port, "/faye"))
    for _ = 1, 3 do
      local op, payload = ws:recv(5)
      assert.are.equal(WS.PING, op)
      assert.is_true(ws:send_frame(WS.PONG, payload))
    end
    -- still usable: an empty batch is answered with []
    assert.is_true(ws:send_text("[]"))
    local v = ws:recv_json(3)
    assert.are.same({}, v)
    ws:close()
  end)

  -- The status of an EventSource request for `cid`, and the connection.
  local function open_stream(cid)
    local c = H.connect(port)
    c:send("GET /faye/" .. cid .. " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    local line = c:read_line(H.now() + 3)
    return line, c
  end

  it("ends an EventSource stream for a client nobody handshook", function()
    local line, c = open_stream("nosuchclient0000")
    assert.are.equal("HTTP/1.1 200 OK", line)
    assert.is_true(c:wait_closed(5), "stream for an unknown client left open")
    c:close()
  end)

  it("keeps an EventSource stream for a live client past the idle timeout", function()
    local b = H.bayeux(port)
    local cid = b:handshake()
    local line, c = open_stream(cid)
    assert.are.equal("HTTP/1.1 200 OK", line)
    -- three idle periods; the session lives 2 x timeout (4 s) after its handshake
    assert.is_false(c:wait_closed(1.2))
    c:close()
  end)

  it("closes a WebSocket whose fragmented message never ends", function()
    local ws = assert(WS.open(port, "/faye"))
    assert.is_true(ws:send_frame(WS.TEXT, "[", { fin = false }))
    local code
    -- keep answering pings: the unfinished message alone must end it
    for _ = 1, 10 do
      local op, payload = ws:recv(5)
      if op == WS.PING then
        ws:send_frame(WS.PONG, payload)
      elseif op == WS.CLOSE then
        code = string.unpack(">I2", payload)
        break
      else
        break
      end
    end
    assert.are.equal(1001, code)
    ws:close()
  end)
end)

describe("session binding", function()
  local WS = require "spec.ws_client"
  local srv, port, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "1" }
    port = srv.port
    b = H.bayeux(port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function connect_msg(cid, id)
    return { channel = "/meta/connect", clientId = cid, connectionType = "websocket", id = id,
             advice = { timeout = 0 } }
  end

  -- Data of the deliveries read from `ws` within `t` seconds.
  local function drain(ws, t)
    local got = {}
    local deadline = H.now() + t
    while H.now() < deadline do
      local r = ws:recv_json(math.max(0.05, deadline - H.now()))
      if not r then break end
      for _, m in ipairs(r) do
        if m.data ~= nil then got[#got + 1] = m.data end
      end
    end
    return got
  end

  local function owner(sub)
    local ws = assert(WS.open(port, "/faye"))
    ws:send_json{ { channel = "/meta/handshake", version = "1.0",
                    supportedConnectionTypes = { "websocket" }, id = "h" } }
    local cid = assert(ws:recv_json(2))[1].clientId
    ws:send_json{ { channel = "/meta/subscribe", clientId = cid, subscription = sub, id = "s" } }
    assert(ws:recv_json(2))
    ws:send_json{ connect_msg(cid, "c") }
    assert(ws:recv_json(2))
    return ws, cid
  end

  it("refuses a second WebSocket claiming a bound clientId; the owner keeps its deliveries", function()
    local victim, cid = owner("/bind/ws")
    local thief = assert(WS.open(port, "/faye"))
    thief:send_json{ connect_msg(cid, "x") }
    local r = assert(thief:recv_json(2))
    assert.are.equal("/meta/connect", r[1].channel)
    assert.is_false(r[1].successful)
    assert.truthy(r[1].error:find("^409:"), r[1].error)
    for i = 1, 5 do b:publish(nil, "/bind/ws", i) end
    assert.are.same({ 1, 2, 3, 4, 5 }, drain(victim, 1))
    assert.are.same({}, drain(thief, 0.3))
    victim:close()
    thief:close()
  end)

  it("refuses an EventSource claiming a clientId bound to a WebSocket", function()
    local victim, cid = owner("/bind/es")
    local st = H.request(port, "GET", "/faye/" .. cid, { Accept = "text/event-stream" }, nil, 3)
    assert.are.equal(409, st)
    b:publish(nil, "/bind/es", "mine")
    assert.are.same({ "mine" }, drain(victim, 0.5))
    victim:close()
  end)

  it("lets the owner bind a new socket once its old one closed", function()
    local old, cid = owner("/bind/again")
    old:close()
    H.sleep(0.1)
    b:publish(nil, "/bind/again", "missed")
    local ws = assert(WS.open(port, "/faye"))
    ws:send_json{ connect_msg(cid, "c2") }
    local got = drain(ws, 0.5)
    assert.are.same({ "missed" }, got)
    ws:close()
  end)
end)
