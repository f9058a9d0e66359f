-- Small HTTP rules: dates in one locale-proof format (core/net/http.c), Accept
-- parsed as a list of tokens, the library's default listening address, and
-- the response parts a route may not set (the HTTP layer owns them).
local H = require "spec.helper"

-- Thu, 06 Oct 1994 08:49:37 GMT: a German LC_TIME would say "Do" and "Okt"
local T = 781433377
local T_TEXT = "Thu, 06 Oct 1994 08:49:37 GMT"

describe("HTTP rules", function()
  local srv, dir, locale_ok, url

  lazy_setup(function()
    dir = H.tmpdir()
    assert(os.execute("mkdir -p " .. H.q(dir .. "/pub") .. " " .. H.q(dir .. "/loc")))
    H.writefile(dir .. "/pub/old.txt", "old")
    H.writefile(dir .. "/client.js", "/* client */")
    assert(os.execute(("touch -d @%d %s %s"):format(T, H.q(dir .. "/pub/old.txt"),
      H.q(dir .. "/client.js"))))
    -- a German LC_TIME, built here if the system has the locale sources
    -- (none but C is installed on a minimal machine); only that category,
    -- which is quick (-c: the others are missing on purpose)
    H.writefile(dir .. "/de_time", 'LC_TIME\ncopy "de_DE"\nEND LC_TIME\n')
    os.execute("localedef -c -i " .. H.q(dir .. "/de_time") .. " -f UTF-8 "
      .. H.q(dir .. "/loc/de_DE.UTF-8") .. " >/dev/null 2>&1")
    locale_ok = H.readfile(dir .. "/loc/de_DE.UTF-8/LC_TIME") ~= nil
    H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local core = require "bayeux.core"
local locale = os.setlocale("de_DE.UTF-8", "time")
local server = bayeux.server { mount = "/faye", client_script = %q }
server:static("/static", %q)
server:route("GET", "/locale", function(_, res)
  res:json { locale = locale or false, os_date = os.date("!%%a %%b", %d) }
end)
server:route("GET", "/rules", function(_, res)
  local out = {}
  local function try(name, f, ...)
    local ok, err = pcall(f, ...)
    out[name] = ok and "ok" or tostring(err)
  end
  try("header_cl", res.header, res, "Content-Length", "5")
  try("header_date", res.header, res, "date", "x")
  try("header_conn", res.header, res, "Connection", "close")
  try("header_te", res.header, res, "Transfer-Encoding", "chunked")
  try("status_101", res.status, res, 101)
  try("respond_cl", res.req.respond, res.req, 200, { ["content-length"] = "1" }, "")
  try("respond_101", res.req.respond, res.req, 101, {}, "")
  out.date = core.http_date(%d)
  out.parsed = core.parse_http_date(%q)
  out.bad = core.parse_http_date("Thursday, 06-Oct-94 08:49:37 GMT") or false
  res:json(out)
end)
server:listen(0)
]]):format(dir .. "/client.js", dir .. "/pub", T, T, T_TEXT))
    srv = H.spawn({ dir .. "/app.lua" },
      { cmd = "LOCPATH=" .. H.q(dir .. "/loc") .. " " .. H.CMD })
    local port, u = srv:wait_listening(10)
    if not port then srv:kill(); error(u) end
    srv.port, url = port, u
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  local function rules()
    local st, _, body = H.request(srv.port, "GET", "/rules")
    assert.are.equal(200, st, body)
    return H.decode(body)
  end

  it("listens on 127.0.0.1 when listen() is given no host", function()
    assert.are.equal("http://127.0.0.1:" .. srv.port .. "/faye", url)
  end)

  it("formats and parses HTTP dates with the C helper", function()
    local r = rules()
    assert.are.equal(T_TEXT, r.date)
    assert.are.equal(T, r.parsed)
    assert.are.equal(false, r.bad)
  end)

  it("sends Last-Modified in English whatever LC_TIME says", function()
    local _, _, body = H.request(srv.port, "GET", "/locale")
    local r = H.decode(body)
    if locale_ok then
      -- the locale took: os.date would have written German names
      assert.are.equal("de_DE.UTF-8", r.locale)
      assert.are.equal("Do Okt", r.os_date)
    end
    local st, h = H.request(srv.port, "GET", "/static/old.txt")
    assert.are.equal(200, st)
    assert.are.equal(T_TEXT, h["last-modified"])
    st, h = H.request(srv.port, "GET", "/faye/client.js")
    assert.are.equal(200, st)
    assert.are.equal(T_TEXT, h["last-modified"])
    -- and If-Modified-Since is read back the same way
    st = H.request(srv.port, "GET", "/faye/client.js", { ["If-Modified-Since"] = T_TEXT })
    assert.are.equal(304, st)
    st = H.request(srv.port, "GET", "/static/old.txt", { ["If-Modified-Since"] = T_TEXT })
    assert.are.equal(304, st)
  end)

  it("takes Accept as a list: text/event-streaming is not an EventSource", function()
    local path = "/faye?message=" .. "%5B%5D" .. "&jsonp=cb"
    local st, h, body = H.request(srv.port, "GET", path, { Accept = "text/event-streaming" })
    assert.are.equal(200, st)
    assert.are.equal("text/javascript; charset=utf-8", h["content-type"])
    assert.are.equal("/**/cb([]);", body)
    -- a real EventSource request, one of several types, still is one
    local c = H.connect(srv.port)
    c:send_request("GET", "/faye/someone", { Accept = "text/html, text/event-stream" })
    assert.are.equal("HTTP/1.1 200 OK", c:read_line(H.now() + 5))
    local head = ""
    repeat
      local l = c:read_line(H.now() + 5)
      head = head .. (l or "") .. "\n"
    until not l or l == ""
    c:close()
    assert.is_truthy(head:lower():find("content-type: text/event-stream", 1, true), head)
  end)

  it("refuses the headers and statuses the HTTP layer owns", function()
    local r = rules()
    for _, k in ipairs{ "header_cl", "header_date", "header_conn", "header_te" } do
      assert.is_truthy(r[k]:find("is set by the HTTP layer", 1, true), k .. ": " .. r[k])
    end
    assert.is_truthy(r.status_101:find("code must be an integer from 200 to 999", 1, true),
      r.status_101)
    assert.is_truthy(r.respond_cl:find("header 'content-length' is set by the HTTP layer", 1,
      true), r.respond_cl)
    assert.is_truthy(r.respond_101:find("status 101 is not allowed", 1, true), r.respond_101)
  end)
end)
