-- What a new user hits first (issue 16): a failed listen stops an app
-- script, data JSON cannot hold is raised at the caller's line, route
-- handlers that answer twice or raise are logged with their route and a
-- traceback, a route that never answers gets a 500 after route_deadline,
-- route patterns that could never match are refused.
local H = require "spec.helper"

-- Writes `app` (Lua source) to a temporary app.lua; returns its path and dir.
local function write_app(app)
  local dir = H.tmpdir()
  local path = dir .. "/app.lua"
  H.writefile(path, app)
  return path, dir
end

-- Runs `app` as `bin/bayeux app.lua` (after `env`) until it listens.
local function spawn_app(app, env)
  return H.start_app(app, { env = env })
end

local function finish(p)
  if p then p:finish() end
end

-- Waits until `p`'s stderr matches `patt`; returns the stderr.
local function stderr_shows(p, patt, timeout)
  local deadline = H.now() + (timeout or 10)
  repeat
    local err = p:stderr()
    if err:find(patt) then return err end
    H.sleep(0.02)
  until H.now() > deadline
  error(("stderr never matched %q:\n%s"):format(patt, p:stderr()), 2)
end

-- Waits for a stdout line starting with `tag` and a tab; returns the rest
-- of it, from the tab.
local function line(p, tag, timeout)
  local deadline = H.now() + (timeout or 10)
  tag = tag:gsub("%p", "%%%0")
  repeat
    local rest = ("\n" .. p:stdout()):match("\n" .. tag .. "(\t[^\n]*)\n")
    if rest then return rest end
    if p:exit_code() then break end
    H.sleep(0.02)
  until H.now() > deadline
  error(("no %s line; stdout:\n%s\nstderr:\n%s"):format(tag, p:stdout(), p:stderr()), 2)
end

describe("a listen that fails", function()
  local busy

  lazy_setup(function() busy = H.start_server() end)
  lazy_teardown(function() if busy then busy:finish() end end)

  -- Runs `argv` with PORT set to the busy port; returns rc, stdout, stderr.
  local function run_on_busy_port(argv)
    local p = H.spawn(argv, { cmd = "PORT=" .. busy.port .. " " .. H.CMD })
    local rc = p:wait(10)
    if not rc then p:kill() end
    return rc, p:stdout(), p:stderr()
  end

  it("stops the chat example with a message and a non-zero exit", function()
    local rc, out, err = run_on_busy_port{ "examples/chat/app.lua" }
    assert.is_not_nil(rc, "the app kept running with nothing listening")
    assert.are_not.equal(0, rc)
    assert.falsy(out:find("listening", 1, true))
    assert.matches("examples/chat/app%.lua:%d+: server:listen: .*address already in use", err)
  end)

  it("stops an app with a timer running (it would otherwise run on)", function()
    local rc, _, err = run_on_busy_port{ "examples/server_publish.lua" }
    assert.is_not_nil(rc, "the app kept running with nothing listening")
    assert.are_not.equal(0, rc)
    assert.matches("examples/server_publish%.lua:%d+: server:listen: .*address already in use", err)
  end)

  it("returns nil and the error with { raise = false }", function()
    local path, dir = write_app(([[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye" }
local port, err = server:listen(%d, "127.0.0.1", { raise = false })
print("RESULT", tostring(port), tostring(err))
]]):format(busy.port))
    local p = H.spawn{ path }
    local rc = p:wait(10)
    if not rc then p:kill() end
    os.execute("rm -rf " .. H.q(dir))
    assert.are.equal(0, rc, p:stderr())
    assert.matches("RESULT\tnil\t[^\n]*address already in use", p:stdout())
  end)
end)

describe("bayeux with a missing script", function()
  it("prints one line, ending with a newline, and exits 1", function()
    local p = H.spawn{ "no-such-app.lua" }
    local rc = p:wait(10)
    if not rc then p:kill() end
    assert.are.equal(1, rc)
    assert.matches("^bayeux: cannot open no%-such%-app%.lua[^\n]*\n$", p:stderr())
  end)
end)

describe("publishing what JSON cannot hold", function()
  local srv

  local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local client = server:client()
local cycle = {}
cycle.self = cycle
local BAD = {
  ["function"] = { f = function() end },
  cycle = cycle,
  nan = { x = 0 / 0 },
  utf8 = { text = "\255" },
}
local NAMES = { "function", "cycle", "nan", "utf8" }
client:publish("/ready", { ok = true }, function()
  for _, name in ipairs(NAMES) do
    local called = false
    local ok, err = pcall(function()
      client:publish("/x", BAD[name], function() called = true end)   -- CALLER LINE
    end)
    print("RAISED " .. name, tostring(not ok), tostring(err), "called=" .. tostring(called))
  end
  -- a publish still waiting for the handshake: the error goes to the callback
  client:disconnect(function()
    server:client():publish("/x", BAD["function"], function(ok, err)
      print("QUEUED", tostring(ok), tostring(err))
    end)
  end)
end)
server:listen(0, "127.0.0.1")
]]
  local caller_line
  for n, text in (APP .. "\n"):gmatch("()([^\n]*)\n") do
    if text:find("CALLER LINE", 1, true) then caller_line = select(2, APP:sub(1, n):gsub("\n", "")) + 1 end
  end

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("raises at the caller's line, and the callback is not called", function()
    for _, name in ipairs{ "function", "cycle", "nan", "utf8" } do
      local rest = line(srv, "RAISED " .. name)
      local raised, err, called = rest:match("^\t(%a+)\t(.-)\t(called=%a+)$")
      assert.are.equal("true", raised, rest)
      assert.are.equal("called=false", called, rest)
      assert.matches("app%.lua:" .. caller_line .. ": client:publish: ", err)
      assert.falsy(err:find("init.lua", 1, true), err)
    end
  end)

  it("hands it to the callback when the publish waited for the handshake", function()
    assert.matches("^\tfalse\tcannot encode a function as JSON$", line(srv, "QUEUED"))
  end)
end)

describe("route handlers that misbehave", function()
  local srv

  local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2, route_deadline = 0.5 }
server:route("GET", "/twice/:n", function(_, res)
  res:send("a")
  res:send("b")
end)
server:route("GET", "/json-then-nil", function(_, res)
  res:json { ok = true }
  local t
  return t.field
end)
server:route("GET", "/never/:id", function() end)
server:route("GET", "/late", function(_, res)
  bayeux.timer(1.5, function()
    local ok, err = pcall(res.send, res, "too late")
    print("LATE", tostring(ok), tostring(err))
  end)
end)
server:route("GET", "/in-time", function(_, res)
  bayeux.timer(0.1, function() res:send("in time") end)
end)
server:route("GET", "/fine", function(_, res) res:send("fine") end)
server:route("GET", "/held", function(_, res)
  bayeux.timer(1, function() res:send("held") end)
end, { deadline = 0 })
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("a second answer raises in the handler, is logged with its route and traceback, and the server carries on",
    function()
      local c = H.connect(srv.port)
      for i = 1, 20 do
        local st, _, body = c:request("GET", "/twice/" .. i)
        assert.are.equal(200, st)
        assert.are.equal("a", body)
        st, _, body = c:request("GET", "/json-then-nil")
        assert.are.equal(200, st)
        assert.are.equal('{"ok":true}', body)
      end
      local st, _, body = c:request("GET", "/fine")
      c:close()
      assert.are.same({ 200, "fine" }, { st, body })
      local err = stderr_shows(srv, "route GET /json%-then%-nil raised after answering")
      assert.matches("route GET /twice/:n raised after answering /twice/1: [^\n]*app%.lua:5: "
        .. "response already sent\nstack traceback:", err)
      assert.matches("route GET /json%-then%-nil raised after answering /json%-then%-nil: "
        .. "[^\n]*app%.lua:10: attempt to index a nil value[^\n]*\nstack traceback:", err)
    end)

  it("a route that never answers gets a 500 after route_deadline, logged with its route", function()
    local st, _, body = H.request(srv.port, "GET", "/never/42", nil, nil, 10)
    assert.are.equal(500, st)
    assert.matches("Internal server error", body)
    stderr_shows(srv, "route GET /never/:id did not answer GET /never/42 within 0%.5 s")
    -- a route answering within the deadline is untouched
    st, _, body = H.request(srv.port, "GET", "/in-time")
    assert.are.same({ 200, "in time" }, { st, body })
  end)

  it("a route's own deadline = 0 holds its request as long as it likes", function()
    local st, _, body = H.request(srv.port, "GET", "/held", nil, nil, 10)
    assert.are.same({ 200, "held" }, { st, body })
  end)

  it("an answer after the deadline raises and says why", function()
    local st = H.request(srv.port, "GET", "/late", nil, nil, 10)
    assert.are.equal(500, st)
    assert.matches("^\tfalse\t[^\n]*response already sent %(the route's deadline of 0%.5 s passed",
      line(srv, "LATE"))
  end)

  it("the server exits cleanly", function()
    finish(srv)
    srv = nil
  end)
end)

describe("route patterns", function()
  local srv

  local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local function try(pattern)
  local ok, err = pcall(server.route, server, "GET", pattern, function(req, res)
    res:json(req.params)
  end)
  print("ROUTE " .. pattern, tostring(ok), tostring(err))
end
for _, p in ipairs { "/b/{id}", "/faye", "/faye/x/:id", "/faye.js", "/a?b=1", "/:a:b",
                     "/u/:id/:id", "/d/:id.json", "/r/:from-:to", "/f/*path/edit", "/fayeish" } do
  try(p)
end
local ok, err = pcall(function()
  server:route("GET", "/c/{name}", function() end)   -- CALLER
end)
print("CALLER", tostring(ok), tostring(err))
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  local function refused(pattern, why)
    local rest = line(srv, "ROUTE " .. pattern)
    assert.matches("^\tfalse\t[^\n]*server:route: pattern '[^']*' " .. why, rest)
  end

  it("refuses {braces}, naming the :name form", function()
    refused("/b/{id}", "has a brace: a parameter is written ':name'")
  end)

  it("refuses a route under the Bayeux mount", function()
    refused("/faye", "is under the Bayeux mount '/faye'")
    refused("/faye/x/:id", "is under the Bayeux mount")
    refused("/faye.js", "is under the Bayeux mount")
  end)

  it("refuses a query, adjacent parameters and a repeated name", function()
    refused("/a?b=1", "has a space, '%?' or '#'")
    refused("/:a:b", "has two parameters with nothing between them")
    refused("/u/:id/:id", "uses the name 'id' twice")
  end)

  it("raises at the caller's line", function()
    assert.matches("^\tfalse\t[^\n]*app%.lua:14: server:route: pattern '/c/{name}'", line(srv, "CALLER"))
  end)

  it("matches a :param before a literal suffix, and between literals", function()
    assert.are.equal("\ttrue\tnil", line(srv, "ROUTE /d/:id.json"))
    local function get(path)
      local st, _, body = H.request(srv.port, "GET", path)
      return st, st == 200 and H.decode(body) or body
    end
    assert.are.same({ 200, { id = "42" } }, { get("/d/42.json") })
    assert.are.same({ 200, { id = "a.json" } }, { get("/d/a.json.json") })
    assert.are.equal(404, (get("/d/.json")))
    assert.are.equal(404, (get("/d/42.xml")))
    assert.are.same({ 200, { from = "x-y", to = "z" } }, { get("/r/x-y-z") })
    assert.are.same({ 200, { path = "a/b" } }, { get("/f/a/b/edit") })
    assert.are.same({ 200, {} }, { get("/fayeish") })
  end)

  it("the server exits cleanly", function()
    finish(srv)
    srv = nil
  end)
end)

describe("an extension that misses its deadline", function()
  local srv

  local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2, extension_deadline = 0.3 }
server:add_extension { incoming = function(message, callback) callback(message) end }
server:add_extension {
  name = "slow-auth",
  incoming = function(message, callback)
    if message.channel ~= "/stuck/in" then callback(message) end
  end,
}
server:add_extension {
  outgoing = function(message, callback)
    if message.channel ~= "/stuck/out" then callback(message) end
  end,
}
local client = server:client()
client:publish("/stuck/in", { n = 1 }, function(ok, err)
  print("IN", tostring(ok), tostring(err))
  client:publish("/stuck/out", { n = 2 }, function(ok2, err2)
    print("OUT", tostring(ok2), tostring(err2))
  end)
end)
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("is logged with the extension, its stage and the message's channel", function()
    assert.are.equal("\tfalse\t500::Internal server error", line(srv, "IN"))
    stderr_shows(srv, "incoming extension #2 'slow%-auth' did not call its callback within 0%.3 s "
      .. "%(extension_deadline%) for a message on /stuck/in; message failed")
    assert.are.equal("\tfalse\t500::Internal server error", line(srv, "OUT"))
    stderr_shows(srv, "outgoing extension #3 did not call its callback within 0%.3 s "
      .. "%(extension_deadline%) for a message on /stuck/out; message failed")
  end)

  it("the server exits cleanly", function()
    finish(srv)
    srv = nil
  end)
end)
