-- server:static(prefix, folder): content types, ETag / Last-Modified / 304,
-- HEAD, and no way out of the folder (lua/bayeux/init.lua, core/lua/lbx_fs.c).
local H = require "spec.helper"

describe("static files", function()
  local srv, dir, pub

  lazy_setup(function()
    dir = H.tmpdir()
    pub = dir .. "/public"
    assert(os.execute("mkdir -p " .. H.q(pub .. "/sub") .. " " .. H.q(pub .. "/docs")))
    H.writefile(pub .. "/index.html", "<h1>home</h1>")
    H.writefile(pub .. "/app.js", "console.log(1)")
    H.writefile(pub .. "/style.css", "body{}")
    H.writefile(pub .. "/data.json", "{}")
    H.writefile(pub .. "/logo.png", "\137PNG\r\n")
    H.writefile(pub .. "/blob.weird", "???")
    H.writefile(pub .. "/sub/page.html", "<p>sub</p>")
    H.writefile(pub .. "/docs/index.html", "<p>docs</p>")
    H.writefile(pub .. "/a b.txt", "space")
    H.writefile(dir .. "/secret.txt", "TOP-SECRET")
    assert(os.execute("ln -s " .. H.q(dir .. "/secret.txt") .. " " .. H.q(pub .. "/leak.txt")))
    assert(os.execute("ln -s " .. H.q(dir) .. " " .. H.q(pub .. "/up")))
    assert(os.execute("ln -s " .. H.q(pub .. "/app.js") .. " " .. H.q(pub .. "/inside.js")))
    -- a sibling folder whose name starts like the served one
    assert(os.execute("mkdir -p " .. H.q(dir .. "/public2")))
    H.writefile(dir .. "/public2/x.txt", "TOP-SECRET-2")
    assert(os.execute("ln -s " .. H.q(dir .. "/public2/x.txt") .. " " .. H.q(pub .. "/sib.txt")))
    H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye" }
server:static("/static", %q)
server:listen(0, "127.0.0.1")
]]):format(pub))
    srv = H.spawn{ dir .. "/app.lua" }
    local port, err = srv:wait_listening(10)
    if not port then srv:kill(); error(err) end
    srv.port = port
  end)

  lazy_teardown(function()
    if srv then
      local rc = srv:stop()
      assert.are.equal(0, rc, "server exit: " .. srv:stderr())
    end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  local function get(path, headers, method)
    return H.request(srv.port, method or "GET", path, headers)
  end

  it("serves files with a content type by extension", function()
    local cases = {
      { "/static/app.js", "text/javascript", "console.log(1)" },
      { "/static/style.css", "text/css", "body{}" },
      { "/static/data.json", "application/json", "{}" },
      { "/static/logo.png", "image/png", "\137PNG\r\n" },
      { "/static/blob.weird", "application/octet-stream", "???" },
      { "/static/sub/page.html", "text/html", "<p>sub</p>" },
      { "/static/a%20b.txt", "text/plain", "space" },
    }
    for _, c in ipairs(cases) do
      local st, h, b = get(c[1])
      assert.are.equal(200, st, c[1])
      assert.are.equal(c[2], h["content-type"]:match("^[^;]+"), c[1])
      assert.are.equal(c[3], b, c[1])
    end
  end)

  it("serves index.html for the folder and its subfolders", function()
    local st, _, b = get("/static/")
    assert.are.equal(200, st)
    assert.are.equal("<h1>home</h1>", b)
    st, _, b = get("/static/docs")
    assert.are.equal(200, st)
    assert.are.equal("<p>docs</p>", b)
    local st2, h = get("/static")
    assert.are.equal(301, st2)
    assert.are.equal("/static/", h.location)
  end)

  it("follows a symlink that stays inside the folder", function()
    local st, _, b = get("/static/inside.js")
    assert.are.equal(200, st)
    assert.are.equal("console.log(1)", b)
  end)

  it("answers 404 for a missing file", function()
    assert.are.equal(404, (get("/static/nope.txt")))
    assert.are.equal(404, (get("/static/sub/nope/deeper")))
  end)

  it("sends ETag and Last-Modified, and 304 on If-None-Match", function()
    local st, h = get("/static/app.js")
    assert.are.equal(200, st)
    assert.truthy(h.etag)
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h["last-modified"])
    local st2, h2, b2 = get("/static/app.js", { ["If-None-Match"] = h.etag })
    assert.are.equal(304, st2)
    assert.are.equal("", b2)
    assert.is_nil(h2["content-length"])   -- a 304 has no body length (RFC 9110)
    assert.are.equal(tostring(#select(3, get("/static/app.js"))), h["content-length"])
    local st3 = get("/static/app.js", { ["If-None-Match"] = '"other", ' .. h.etag })
    assert.are.equal(304, st3)
    local st4, _, b4 = get("/static/app.js", { ["If-None-Match"] = '"not-it"' })
    assert.are.equal(200, st4)
    assert.are.equal("console.log(1)", b4)
  end)

  it("answers 304 on If-Modified-Since not older than the file, 200 otherwise", function()
    local _, h = get("/static/style.css")
    local st = get("/static/style.css", { ["If-Modified-Since"] = h["last-modified"] })
    assert.are.equal(304, st)
    st = get("/static/style.css", { ["If-Modified-Since"] = "Fri, 01 Jan 2100 00:00:00 GMT" })
    assert.are.equal(304, st)
    local st2, _, b = get("/static/style.css",
      { ["If-Modified-Since"] = "Thu, 01 Jan 1970 00:00:01 GMT" })
    assert.are.equal(200, st2)
    assert.are.equal("body{}", b)
    -- a stale date loses to a non-matching ETag (If-None-Match wins)
    st = get("/static/style.css", { ["If-None-Match"] = '"x"',
                                    ["If-Modified-Since"] = h["last-modified"] })
    assert.are.equal(200, st)
  end)

  it("answers HEAD with the length and no body", function()
    local st, h, b = get("/static/app.js", nil, "HEAD")
    assert.are.equal(200, st)
    assert.are.equal("", b)
    assert.are.equal(#"console.log(1)", tonumber(h["content-length"]))
  end)

  it("refuses other methods", function()
    assert.are.equal(405, (H.request(srv.port, "POST", "/static/app.js", nil, "x")))
  end)

  it("never serves a file outside the folder", function()
    local attempts = {
      "/static/../secret.txt",
      "/static/sub/../../secret.txt",
      "/static/%2e%2e/secret.txt",
      "/static/%2E%2E/secret.txt",
      "/static/.%2e/secret.txt",
      "/static/sub/%2e%2e/%2e%2e/secret.txt",
      "/static/..%2fsecret.txt",
      "/static/%2e%2e%2fsecret.txt",
      "/static/sub%2f..%2f..%2fsecret.txt",
      "/static/..%5csecret.txt",
      "/static/%252e%252e/secret.txt",
      "/static/leak.txt",
      "/static/up/secret.txt",
      "/static/sib.txt",
      "/static/app.js%00.png",
      "/static/%00",
      "/static//" .. dir:sub(2) .. "/secret.txt",
      "/static/./../secret.txt",
    }
    for _, path in ipairs(attempts) do
      local st, _, b = get(path)
      assert.is_true(st == 403 or st == 404 or st == 400,
        path .. " answered " .. tostring(st))
      assert.is_nil(b:find("TOP-SECRET", 1, true), path .. " leaked the file")
    end
    -- the plain traversal and the symlink out are refused as forbidden
    assert.are.equal(403, (get("/static/../secret.txt")))
    assert.are.equal(403, (get("/static/%2e%2e/secret.txt")))
    assert.are.equal(403, (get("/static/..%2fsecret.txt")))
    assert.are.equal(403, (get("/static/leak.txt")))
    assert.are.equal(403, (get("/static/sib.txt")))
    assert.is_true(srv:alive())
  end)
end)
