-- HTTP/1.1 layer: keep-alive, pipelining, chunked bodies, mount routing,
-- limits (413/431), malformed requests, idle timeout (bayeux-faye.md §7.1, §7.7;
-- toolchain.md §3.5 for the cometd client's chunked bodies and URL suffixes)
local H = require "spec.helper"

local HS = '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]'

describe("HTTP layer", function()
  local srv, port

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2", "--max-body", "4096", "--idle-timeout", "1" }
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local JSON = { ["Content-Type"] = "application/json" }

  it("serves several requests on one keep-alive connection", function()
    local c = H.connect(port)
    for i = 1, 3 do
      local st, _, body = c:request("POST", "/faye", JSON, '[{"channel":"/ka","data":' .. i .. ',"id":"k' .. i .. '"}]')
      assert.are.equal(200, st)
      assert.are.equal("k" .. i, H.decode(body)[1].id)
    end
    assert.is_false(c.closed)
    c:close()
  end)

  it("answers pipelined requests in order", function()
    local c = H.connect(port)
    local raw = H.build_request(port, "POST", "/faye", JSON, HS)
      .. H.build_request(port, "POST", "/faye", JSON, '[{"channel":"/pipe","data":1,"id":"second"}]')
      .. H.build_request(port, "GET", "/faye?message=" .. H.urlencode('[{"channel":"/pipe","data":2,"id":"third"}]')
        .. "&jsonp=cb", {})
    assert.is_true(c:send(raw))
    local st1, _, b1 = c:read_response(3)
    local st2, _, b2 = c:read_response(3)
    local st3, _, b3 = c:read_response(3)
    c:close()
    assert.are.equal(200, st1)
    assert.are.equal(200, st2)
    assert.are.equal(200, st3)
    local r1 = H.decode(b1)[1]
    assert.are.equal("1", r1.id)
    assert.are.equal("/meta/handshake", r1.channel)
    assert.are.equal("second", H.decode(b2)[1].id)
    assert.truthy(b3:find('"id":"third"', 1, true), b3)
  end)

  it("accepts a chunked request body as the cometd client sends it", function()
    local body = '[{"id":"1","version":"1.0","minimumVersion":"1.0","channel":"/meta/handshake",'
      .. '"supportedConnectionTypes":["long-polling","callback-polling"],"advice":{"timeout":60000,"interval":0}}]'
    local raw = "POST /faye/handshake HTTP/1.1\r\nContent-Type: application/json\r\nHost: 127.0.0.1:" .. port
      .. "\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. string.format("%x", #body) .. "\r\n" .. body .. "\r\n0\r\n\r\n"
    local c = H.connect(port)
    assert.is_true(c:send(raw))
    local st, _, resp = c:read_response(3)
    assert.are.equal(200, st)
    local r = H.decode(resp)[1]
    assert.is_true(r.successful)
    assert.are.equal("1", r.id)
    -- the connection is still usable afterwards
    st = c:request("POST", "/faye/connect", JSON,
      '[{"channel":"/meta/connect","clientId":"' .. r.clientId .. '","connectionType":"long-polling","advice":{"timeout":0},"id":"2"}]')
    assert.are.equal(200, st)
    c:close()
  end)

  it("accepts a chunked body split over several chunks and writes", function()
    local c = H.connect(port)
    assert.is_true(c:send("POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"))
    H.sleep(0.05)
    local parts = { '[{"channel":', '"/chunk","data"', ':1,"id":"ch"}]' }
    for _, p in ipairs(parts) do
      assert.is_true(c:send(string.format("%X\r\n", #p)))
      H.sleep(0.02)
      assert.is_true(c:send(p .. "\r\n"))
      H.sleep(0.02)
    end
    assert.is_true(c:send("0\r\n\r\n"))
    local st, _, body = c:read_response(3)
    c:close()
    assert.are.equal(200, st)
    assert.are.same({ { id = "ch", channel = "/chunk", successful = true } }, H.decode(body))
  end)

  it("handles a request that arrives a few bytes at a time", function()
    local raw = H.build_request(port, "POST", "/faye", JSON, '[{"channel":"/slow","data":1,"id":"sl"}]')
    local c = H.connect(port)
    for i = 1, #raw, 7 do
      assert.is_true(c:send(raw:sub(i, i + 6)))
      if i % 35 == 1 then H.sleep(0.01) end
    end
    local st, _, body = c:read_response(3)
    c:close()
    assert.are.equal(200, st)
    assert.are.equal("sl", H.decode(body)[1].id)
  end)

  it("accepts any path under the mount", function()
    for _, path in ipairs{ "/faye", "/faye/", "/faye/handshake", "/faye/connect", "/faye/a/b/c", "/faye//x",
                           "/faye?x=1", "/faye.json" } do
      local st, _, body = H.request(port, "POST", path, JSON, HS)
      assert.are.equal(200, st, path)
      assert.is_true(H.decode(body)[1].successful, path)
    end
  end)

  it("answers 404 outside the mount", function()
    for _, path in ipairs{ "/other", "/fayex", "/foo/faye", "/FAYE", "/" } do
      local st = H.request(port, "POST", path, JSON, HS)
      assert.are.equal(404, st, path)
      st = H.request(port, "GET", path)
      assert.are.equal(404, st, path)
    end
  end)

  it("accepts a body up to --max-body", function()
    local msg = '[{"channel":"/big","data":"x","id":"big"}]'
    local body = msg .. string.rep(" ", 4096 - #msg)
    assert.are.equal(4096, #body)
    local st, _, resp = H.request(port, "POST", "/faye", JSON, body)
    assert.are.equal(200, st)
    assert.are.equal("big", H.decode(resp)[1].id)
  end)

  it("answers 413 for a body larger than --max-body", function()
    local msg = '[{"channel":"/big","data":"x","id":"big"}]'
    local body = msg .. string.rep(" ", 5000 - #msg)
    local c = H.connect(port)
    c:send(H.build_request(port, "POST", "/faye", JSON, body))
    local st = c:read_response(3)
    c:close()
    assert.are.equal(413, st)
  end)

  it("answers 413 for a chunked body larger than --max-body", function()
    local c = H.connect(port)
    local chunk = string.rep(" ", 1000)
    local raw = "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    for _ = 1, 6 do raw = raw .. string.format("%x\r\n", #chunk) .. chunk .. "\r\n" end
    raw = raw .. "0\r\n\r\n"
    c:send(raw)
    local st = c:read_response(3)
    c:close()
    assert.are.equal(413, st)
  end)

  it("answers 431 for huge request headers", function()
    local c = H.connect(port)
    c:send("GET /faye?message=%5B%5D HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("a", 40000) .. "\r\n\r\n")
    local st = c:read_response(3)
    c:close()
    assert.are.equal(431, st)
  end)

  it("answers a malformed request with 400 and closes the connection", function()
    local c = H.connect(port)
    c:send("GARBAGE\r\n\r\n")
    local st = c:read_response(3)
    assert.are.equal(400, st)
    assert.is_true(c:wait_closed(2), "connection not closed after a malformed request")
    c:close()
  end)

  it("answers a bad header line with 400", function()
    local c = H.connect(port)
    c:send("POST /faye HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
    local st = c:read_response(3)
    assert.are.equal(400, st)
    assert.is_true(c:wait_closed(2))
    c:close()
  end)

  it("closes after a response when the client sends Connection: close", function()
    local c = H.connect(port)
    local st = c:request("POST", "/faye", { ["Content-Type"] = "application/json", Connection = "close" }, "[]")
    assert.are.equal(200, st)
    assert.is_true(c:wait_closed(2))
    c:close()
  end)

  it("answers an HTTP/1.0 request and closes", function()
    local c = H.connect(port)
    c:send("POST /faye HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]")
    local st, _, body = c:read_response(3)
    assert.are.equal(200, st)
    assert.are.equal("[]", body)
    assert.is_true(c:wait_closed(2))
    c:close()
  end)

  it("handles Expect: 100-continue", function()
    local c = H.connect(port)
    local body = '[{"channel":"/exp","data":1,"id":"ex"}]'
    c:send(H.build_request(port, "POST", "/faye",
      { ["Content-Type"] = "application/json", Expect = "100-continue", ["Content-Length"] = #body }))
    local st, _, resp
    st = c:read_response(1)
    if st == 100 then
      c:send(body)
      st, _, resp = c:read_response(3)
    else
      -- no interim response: the client sends the body anyway (curl does after 1 s)
      assert.is_nil(st)
      c:send(body)
      st, _, resp = c:read_response(3)
    end
    c:close()
    assert.are.equal(200, st)
    assert.are.equal("ex", H.decode(resp)[1].id)
  end)

  it("closes an idle connection after --idle-timeout", function()
    local c = H.connect(port)
    local t0 = H.now()
    assert.is_true(c:wait_closed(4), "idle connection not closed")
    local el = H.now() - t0
    assert.is_true(el >= 0.5, "closed too early: " .. el)
    c:close()
    -- also idle after a completed request
    c = H.connect(port)
    assert.are.equal(200, (c:request("POST", "/faye", JSON, "[]")))
    assert.is_true(c:wait_closed(4), "idle keep-alive connection not closed")
    c:close()
  end)

  it("does not cut a held connect at the idle timeout", function()
    local b = H.bayeux(port)
    local cid = b:handshake()
    local p = b:start_connect(cid, nil, "held")
    local r, elapsed = p:result(4)
    p:close()
    assert.truthy(r, "held connect was cut")
    assert.is_true(elapsed > 1.8, "answered after " .. tostring(elapsed))
    assert.is_true(r[1].successful)
  end)

  it("is still healthy after all of this", function()
    local st, _, body = H.request(port, "POST", "/faye", JSON, HS)
    assert.are.equal(200, st)
    assert.is_true(H.decode(body)[1].successful)
  end)
end)
