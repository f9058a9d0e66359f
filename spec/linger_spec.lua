-- The lingering close (core/net/conn.c): after a final answer such as a 413 the
-- server keeps reading and discarding the client's input for a bounded time,
-- so a client still uploading gets the answer instead of a connection reset.
local H = require "spec.helper"

describe("lingering close", function()
  local srv

  lazy_setup(function()
    srv = H.start_server{ "--max-body", "1024" }
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  -- Sends `total` bytes of body in pieces; returns nil or the first error.
  local function upload(c, total)
    local piece = string.rep("x", 65536)
    local sent = 0
    while sent < total do
      local ok, err = c:send(piece)
      if not ok then return err end
      sent = sent + #piece
    end
  end

  -- More than the kernel can buffer for a socket that is gone (tcp_wmem's
  -- largest send buffer is 4 MiB): without lingering the upload must fail.
  local BODY = 16 * 1024 * 1024

  it("lets a client finish uploading, then answers 413 and closes", function()
    local c = H.connect(srv.port)
    assert(c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      .. "Content-Length: " .. BODY .. "\r\n\r\n"))
    local err = upload(c, BODY)
    assert.is_nil(err, "the upload was cut: " .. tostring(err))
    local st, h, body = c:read_response(10)
    assert.are.equal(413, st, tostring(h))
    assert.are.equal("close", h.connection)
    assert.are.equal("Payload Too Large", body)
    -- the client neither sends nor closes: the server ends the linger itself
    assert.is_true(c:wait_closed(30))
    c:close()
  end)

  it("does the same for a chunked upload that grows past the limit", function()
    local c = H.connect(srv.port)
    assert(c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n" .. string.format("%x\r\n", BODY)))
    local err = upload(c, BODY)
    assert.is_nil(err, "the upload was cut: " .. tostring(err))
    local st = c:read_response(10)
    assert.are.equal(413, st)
    assert.is_true(c:wait_closed(30))
    c:close()
  end)

  it("closes at once when the client closes its side", function()
    local c = H.connect(srv.port)
    assert(c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"))
    assert.is_nil(upload(c, 65536))
    assert.are.equal(413, (c:read_response(10)))
    c.sock:shutdown("send")
    assert.is_true(c:wait_closed(30))
    c:close()
  end)

  it("keeps serving other clients", function()
    local st = H.request(srv.port, "GET", "/faye?message=%5B%5D")
    assert.are.equal(200, st)
  end)
end)
