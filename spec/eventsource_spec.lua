-- EventSource transport (bayeux-faye.md §9, §6.8; issue 3), black box with a
-- raw HTTP client.
local H = require "spec.helper"

-- Opens a stream for `cid`; returns the connection and the response headers
-- after checking the status line and the retry line.
local function open_stream(port, path)
  local c = H.connect(port)
  c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
  local deadline = H.now() + 3
  local status = assert(c:read_line(deadline))
  assert(status == "HTTP/1.1 200 OK", status)
  local h, order = {}, {}
  while true do
    local l = assert(c:read_line(deadline))
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.-)%s*$")
    h[k:lower()] = v
    order[#order + 1] = k
  end
  assert(assert(c:read_line(deadline)) == "retry: 5000")
  assert(assert(c:read_line(deadline)) == "")
  return c, h, order
end

-- Next event: its decoded data, or "comment" for a keep-alive, or nil, err.
local function next_event(c, timeout)
  local deadline = H.now() + (timeout or 2)
  local line, err = c:read_line(deadline)
  if not line then return nil, err end
  local blank = c:read_line(deadline)
  assert(blank == "", "event not followed by a blank line: " .. tostring(blank))
  if line == ":" then return "comment" end
  local json = line:match("^data: (.*)$")
  assert(json, "not a data line: " .. line)
  return H.decode(json), json
end

local function next_data(c, timeout)
  while true do
    local ev, raw = next_event(c, timeout)
    if ev ~= "comment" then return ev, raw end
  end
end

describe("EventSource", function()
  local srv, port, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "1" }
    port = srv.port
    b = H.bayeux(port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("answers with Faye's raw headers, then streams deliveries as data: events", function()
    local cid = b:handshake()
    b:subscribe(cid, "/es")
    local c, h, order = open_stream(port, "/faye/" .. cid)
    assert.are.same({ "Content-Type", "Cache-Control", "Connection" }, order)
    assert.are.equal("text/event-stream", h["content-type"])
    assert.are.equal("no-cache, no-store", h["cache-control"])
    assert.are.equal("close", h.connection)
    -- the eventsource connect returns at once with the eventsource advice,
    -- even when the client asks for a 60 s hold
    local r = b:post({ { channel = "/meta/connect", clientId = cid, connectionType = "eventsource",
                         advice = { timeout = 60000 }, id = "ec" } }, nil, 15)
    assert.is_true(r[1].successful)
    assert.are.same({ reconnect = "retry", interval = 1000, timeout = 0 }, r[1].advice)
    b:publish(nil, "/es", { line = "a\nb" }, { id = "e1" })
    local ev = next_data(c, 1)
    assert.are.same({ { channel = "/es", data = { line = "a\nb" }, id = "e1" } }, ev)
    c:close()
  end)

  it("coalesces what is delivered in one loop iteration into one event", function()
    local cid = b:handshake()
    b:subscribe(cid, "/es/many")
    local c = open_stream(port, "/faye/" .. cid)
    H.sleep(0.05)
    b:post{ { channel = "/es/many", data = 1, id = "a" },
            { channel = "/es/many", data = 2, id = "b" } }
    local ev = next_data(c, 1)
    assert.are.same({ { channel = "/es/many", data = 1, id = "a" },
                      { channel = "/es/many", data = 2, id = "b" } }, ev)
    c:close()
  end)

  it("takes the client id from the last path segment", function()
    local cid = b:handshake()
    b:subscribe(cid, "/es/deep")
    local c = open_stream(port, "/faye/any/thing/" .. cid)
    H.sleep(0.05)
    b:publish(nil, "/es/deep", "x", { id = "d1" })
    assert.are.same({ { channel = "/es/deep", data = "x", id = "d1" } }, next_data(c, 1))
    c:close()
  end)

  it("keeps the session when the stream closes: a new stream gets what was missed", function()
    local cid = b:handshake()
    b:subscribe(cid, "/es/away")
    local c = open_stream(port, "/faye/" .. cid)
    c:close()
    H.sleep(0.1)
    b:publish(nil, "/es/away", "missed", { id = "m" })
    c = open_stream(port, "/faye/" .. cid)
    assert.are.same({ { channel = "/es/away", data = "missed", id = "m" } }, next_data(c, 1))
    c:close()
  end)

  it("refuses a client id no server issues with 400, and keeps serving", function()
    local accept = { Accept = "text/event-stream" }
    local st, _, body = H.request(port, "GET", "/faye/" .. string.rep("a", 40), accept)
    assert.are.equal(400, st)
    assert.are.equal("Bad request", body)
    local cid = b:handshake()
    b:subscribe(cid, "/es/after")
    local c = open_stream(port, "/faye/" .. cid)
    H.sleep(0.05)
    b:publish(nil, "/es/after", 1, { id = "a1" })
    assert.are.same({ { channel = "/es/after", data = 1, id = "a1" } }, next_data(c, 1))
    c:close()
  end)

  it("ends the stream when the session is destroyed", function()
    local cid = b:handshake()
    local c = open_stream(port, "/faye/" .. cid)
    H.sleep(0.05)
    assert.is_true(b:disconnect(cid).successful)
    local _, err = c:read_line(H.now() + 2)
    assert.are.equal("closed", err)
  end)
end)

describe("EventSource keep-alive", function()
  it("sends the ':' comment every --ping seconds", function()
    local srv = H.start_server{ "--ping", "0.2" }
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    local c = open_stream(srv.port, "/faye/" .. cid)
    -- two within 5 s: without --ping the first would come after 10 s
    assert.are.equal("comment", next_event(c, 5))
    assert.are.equal("comment", next_event(c, 5))
    c:close()
    srv:finish()
  end)
end)
