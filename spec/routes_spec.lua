-- Routes beside the mount: params, splat, query, JSON and form bodies,
-- responses sent later, 404/405, HEAD (lua/bayeux/init.lua).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }

server:route("GET", "/users/:id", function(req, res)
  res:json { id = req.params.id, method = req.method }
end)
server:route("GET", "/users/:id/posts/:post", function(req, res)
  res:json { id = req.params.id, post = req.params.post }
end)
server:route("GET", "/files/*path", function(req, res)
  res:json { path = req.params.path }
end)
server:route("GET", "/search", function(req, res)
  res:json { raw = req.query, q = req.query_params.q, page = req.query_params.page,
             empty = req.query_params.empty, agent = req.headers["x-agent"] }
end)
server:route("POST", "/echo/json", function(req, res)
  local v, err = req:json()
  if v == nil then return res:status(400):json { error = err } end
  res:json { got = v }
end)
server:route("POST", "/echo/form", function(req, res)
  res:json { form = req:form() }
end)
server:route("GET", "/later", function(_, res)
  bayeux.timer(0.2, function()
    res:header("X-Late", "yes"):html("<p>late</p>")
  end)
end)
server:route("GET", "/twice", function(_, res)
  res:send("first")
  local ok, err = pcall(res.send, res, "second")
  io.stderr:write("SECOND-SEND ", tostring(ok), " ", tostring(err), "\n")
end)
server:route("GET", "/status", function(_, res)
  res:status(201):header("X-Thing", 42):send("made")
end)
server:route("GET", "/boom", function() error("route failed on purpose") end)
server:route("POST", "/only-post", function(_, res) res:send("posted") end)

server:listen(0, "127.0.0.1")
]]

describe("routes", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(APP)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function get_json(path, headers)
    local st, h, b = H.request(srv.port, "GET", path, headers)
    assert.are.equal(200, st, tostring(b))
    assert.matches("^application/json", h["content-type"])
    return H.decode(b)
  end

  it("captures :params", function()
    assert.are.same({ id = "42", method = "GET" }, get_json("/users/42"))
    assert.are.same({ id = "a-b", post = "7" }, get_json("/users/a-b/posts/7"))
  end)

  it("captures a *splat with slashes", function()
    assert.are.same({ path = "a/b/c.txt" }, get_json("/files/a/b/c.txt"))
  end)

  it("gives the raw query, the decoded query_params and lower-case headers", function()
    local r = get_json("/search?q=hello+world%21&page=2&empty=", { ["X-Agent"] = "spec" })
    assert.are.same({ raw = "q=hello+world%21&page=2&empty=", q = "hello world!", page = "2",
                      empty = "", agent = "spec" }, r)
  end)

  it("decodes a JSON body with req:json()", function()
    local st, _, b = H.request(srv.port, "POST", "/echo/json",
      { ["Content-Type"] = "application/json" }, '{"a":[1,2],"b":{"c":null}}')
    assert.are.equal(200, st)
    local r = H.decode(b)
    assert.are.same({ 1, 2 }, r.got.a)
    assert.are.equal(H.null, r.got.b.c)
  end)

  it("req:json() returns nil and an error on bad JSON", function()
    local st, _, b = H.request(srv.port, "POST", "/echo/json",
      { ["Content-Type"] = "application/json" }, '{"a":')
    assert.are.equal(400, st)
    assert.matches("invalid JSON", H.decode(b).error)
  end)

  it("decodes a form body with req:form()", function()
    local st, _, b = H.request(srv.port, "POST", "/echo/form",
      { ["Content-Type"] = "application/x-www-form-urlencoded" }, "a=1&b=x+y%26z&c=%C3%A9")
    assert.are.equal(200, st)
    assert.are.same({ a = "1", b = "x y&z", c = "é" }, H.decode(b).form)
  end)

  it("answers later, from a timer", function()
    local t0 = H.now()
    local st, h, b = H.request(srv.port, "GET", "/later")
    assert.are.equal(200, st)
    assert.is_true(H.now() - t0 >= 0.15)
    assert.are.equal("yes", h["x-late"])
    assert.matches("^text/html", h["content-type"])
    assert.are.equal("<p>late</p>", b)
  end)

  it("raises on a second send and keeps the first answer", function()
    local st, _, b = H.request(srv.port, "GET", "/twice")
    assert.are.equal(200, st)
    assert.are.equal("first", b)
    local deadline = H.now() + 2
    while not srv:stderr():find("SECOND-SEND") and H.now() < deadline do H.sleep(0.02) end
    assert.matches("SECOND%-SEND false [^\n]*already sent", srv:stderr())
  end)

  it("sets status and headers", function()
    local st, h, b = H.request(srv.port, "GET", "/status")
    assert.are.equal(201, st)
    assert.are.equal("42", h["x-thing"])
    assert.are.equal("made", b)
  end)

  it("answers 404 for an unknown path and 405 for a wrong method", function()
    local st, _, b = H.request(srv.port, "GET", "/nowhere")
    assert.are.equal(404, st)
    assert.matches("Not found", b)
    st = H.request(srv.port, "GET", "/only-post")
    assert.are.equal(405, st)
    st = H.request(srv.port, "DELETE", "/users/1")
    assert.are.equal(405, st)
  end)

  it("answers HEAD on a GET route with headers and no body", function()
    local c = H.connect(srv.port)
    local st, h, b = c:request("HEAD", "/users/42")
    assert.are.equal(200, st)
    assert.are.equal("", b)
    assert.are.equal(#'{"id":"42","method":"HEAD"}', tonumber(h["content-length"]))
    -- the connection is still in sync: a GET after the HEAD works
    local st2, _, b2 = c:request("GET", "/users/7")
    c:close()
    assert.are.equal(200, st2)
    assert.are.same({ id = "7", method = "GET" }, H.decode(b2))
  end)

  it("answers 500 when a handler raises, and keeps serving", function()
    local st = H.request(srv.port, "GET", "/boom")
    assert.are.equal(500, st)
    assert.are.same({ id = "1", method = "GET" }, get_json("/users/1"))
    assert.is_true(srv:alive())
  end)
end)
