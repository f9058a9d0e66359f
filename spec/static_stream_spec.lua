-- server:static streams files from disk in chunks (core/net/http.c,
-- bx_http_respond_file): large files arrive intact, HEAD reads nothing, a
-- file above max_size is refused, memory does not grow with the file, and
-- the server keeps answering others while a file is being sent.
local H = require "spec.helper"

describe("static files, streamed", function()
  local srv, dir, pub, big

  -- The server's resident memory in KiB, from /proc.
  local function rss_kib(pid)
    local s = H.readfile("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s*(%d+)"))
  end

  lazy_setup(function()
    dir = H.tmpdir()
    pub = dir .. "/public"
    assert(os.execute("mkdir -p " .. H.q(pub)))
    -- 2.5 MiB of numbered lines: far more than one read chunk, and any
    -- reordering or loss of a chunk shows in the comparison
    local lines, n = {}, 0
    while n < 2621440 do
      local l = ("line %08d abcdefghijklmnopqrstuvwxyz\n"):format(#lines)
      lines[#lines + 1] = l
      n = n + #l
    end
    big = table.concat(lines)
    H.writefile(pub .. "/big.txt", big)
    H.writefile(pub .. "/small.txt", "small")
    H.writefile(pub .. "/empty.txt", "")
    -- sparse: 200 MiB that use no disk; reading them whole would show in
    -- the server's memory
    assert(os.execute("truncate -s 200M " .. H.q(pub .. "/huge.bin")))
    assert(os.execute("truncate -s 301M " .. H.q(pub .. "/toobig.bin")))
    H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye" }
server:static("/static", %q, { max_size = 300 * 1024 * 1024 })
server:listen(0, "127.0.0.1")
]]):format(pub))
    srv = H.spawn{ dir .. "/app.lua" }
    local port, err = srv:wait_listening(10)
    if not port then srv:kill(); error(err) end
    srv.port = port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  it("serves a file much larger than a read chunk intact", function()
    local st, h, body = H.request(srv.port, "GET", "/static/big.txt", nil, nil, 30)
    assert.are.equal(200, st)
    assert.are.equal(tostring(#big), h["content-length"])
    assert.are.equal("text/plain; charset=utf-8", h["content-type"])
    assert.is_true(body == big, "the body differs from the file")
  end)

  it("serves an empty file", function()
    local st, h, body = H.request(srv.port, "GET", "/static/empty.txt")
    assert.are.equal(200, st)
    assert.are.equal("0", h["content-length"])
    assert.are.equal("", body)
  end)

  it("answers HEAD with the length and no body, and the connection stays usable", function()
    local c = H.connect(srv.port)
    local st, h = c:request("HEAD", "/static/big.txt")
    assert.are.equal(200, st)
    assert.are.equal(tostring(#big), h["content-length"])
    -- had any body byte been sent, this response would not parse
    local st2, _, body2 = c:request("GET", "/static/small.txt")
    assert.are.equal(200, st2)
    assert.are.equal("small", body2)
    c:close()
  end)

  it("refuses a file above max_size with 403", function()
    local st, _, body = H.request(srv.port, "GET", "/static/toobig.bin")
    assert.are.equal(403, st)
    assert.are.equal("File too large\n", body)
  end)

  it("answers pipelined requests after a file in order", function()
    local c = H.connect(srv.port)
    c:send(H.build_request(srv.port, "GET", "/static/big.txt")
      .. H.build_request(srv.port, "GET", "/static/small.txt")
      .. H.build_request(srv.port, "GET", "/static/big.txt"))
    local st1, _, b1 = c:read_response(30)
    local st2, _, b2 = c:read_response(30)
    local st3, _, b3 = c:read_response(30)
    c:close()
    assert.are.same({ 200, 200, 200 }, { st1, st2, st3 })
    assert.is_true(b1 == big and b3 == big, "a file body differs")
    assert.are.equal("small", b2)
  end)

  it("sends a huge file without holding it in memory, and keeps serving others", function()
    local before = rss_kib(srv.pid)
    assert.is_number(before, "no /proc/<pid>/status for the server")
    local slow = H.connect(srv.port)
    slow:send(H.build_request(srv.port, "GET", "/static/huge.bin"))
    -- read the head and a little of the body, then stop reading
    local line = slow:read_line(H.now() + 10)
    assert.are.equal("HTTP/1.1 200 OK", line)
    assert.is_truthy(slow:read_bytes(100000, H.now() + 10))
    -- others are answered while that transfer waits for its reader
    for _ = 1, 5 do
      local st, _, body = H.request(srv.port, "GET", "/static/small.txt")
      assert.are.equal(200, st)
      assert.are.equal("small", body)
    end
    local st = H.request(srv.port, "GET", "/faye?message=%5B%5D")
    assert.are.equal(200, st)
    local after = rss_kib(srv.pid)
    -- reading the file whole would add 200 MiB; streaming adds a few chunks
    assert.is_true(after - before < 64 * 1024,
      ("the server grew by %d KiB while sending a 200 MiB file"):format(after - before))
    slow:close()
    -- the abandoned transfer is cleaned up; the server is fine
    local st2 = H.request(srv.port, "GET", "/static/small.txt")
    assert.are.equal(200, st2)
  end)

  it("cuts the connection if the file shrinks while it is sent", function()
    local path = pub .. "/shrinks.bin"
    assert(os.execute("truncate -s 50M " .. H.q(path)))
    local c = H.connect(srv.port)
    c:send(H.build_request(srv.port, "GET", "/static/shrinks.bin"))
    assert.are.equal("HTTP/1.1 200 OK", c:read_line(H.now() + 10))
    assert(os.execute("truncate -s 1M " .. H.q(path)))
    local rest, err = c:read_until_close(H.now() + 30)
    c:close()
    assert.is_nil(err, "the connection stayed open")
    assert.is_true(#rest < 50 * 1024 * 1024)
    assert.are.equal(200, (H.request(srv.port, "GET", "/static/small.txt")))
  end)
end)
