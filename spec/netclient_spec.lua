-- bayeux.client(url): the network client, in separate Lua processes
-- (`bin/bayeux script.lua`), against `bin/bayeux serve` and Node Faye 1.4.3;
-- and the `bayeux publish` / `bayeux subscribe` commands.
local H = require "spec.helper"

local FAYE = "node test/interop/faye-ref-server.js"

local function start(kind, port)
  local argv = { "serve", "--host", "127.0.0.1", "--port", tostring(port or 0),
                 "--mount", "/faye", "--timeout", "2" }
  local p = H.spawn(argv, { cmd = kind == "faye" and FAYE or H.CMD })
  local got, url = p:wait_listening(H.start_limit())
  if not got then p:kill(); error(url, 2) end
  p.port, p.url = got, url
  return p
end

-- Runs a Lua script (its text) with bin/bayeux; returns the process.
local function script(src, args)
  local dir = H.tmpdir()
  local path = dir .. "/s.lua"
  H.writefile(path, src)
  local argv = { path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local p = H.spawn(argv)
  p.script_dir = dir
  return p
end

-- Waits until `pattern` appears in the process's stdout.
local function wait_out(p, pattern, timeout)
  local deadline = H.now() + (timeout or 15)
  repeat
    if p:stdout():find(pattern) then return true end
    if p:exit_code() then break end
    H.sleep(0.02)
  until H.now() > deadline
  return p:stdout():find(pattern) ~= nil
end

local function finish(p, timeout)
  local rc = p:wait(timeout or 15)
  if not rc then p:kill() end
  return rc, p:stdout(), p:stderr()
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Two clients in one process: A subscribes (with a wildcard), B publishes;
-- then B subscribes and A publishes. Prints what arrives.
local PUBSUB = [[
local bayeux = require "bayeux"
local url = arg[1]
local a = bayeux.client(url, { timeout = 10, retry = 0.2 })
local b = bayeux.client(url, { timeout = 10, retry = 0.2 })
if arg[2] == "long-polling" then a:disable("websocket") b:disable("websocket") end
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
local function done()
  print("TRANSPORT " .. a:get_transport() .. " " .. b:get_transport())
  a:disconnect(function() b:disconnect(function() print("END") bayeux.stop() end) end)
end
a:subscribe("/chat/*", function(data, ch)
  print("A got " .. ch .. " " .. bayeux.encode(data))
  b:subscribe("/back", function(d2, ch2)
    print("B got " .. ch2 .. " " .. bayeux.encode(d2))
    bayeux.timer(0.3, done)     -- one copy only: a second would print before
  end, function(ok)
    a:publish("/back", { n = 2 }, function(ok2, err) print("A pub", ok2, err) end)
  end)
end, function(ok, err)
  print("A ack", ok, err)
  b:publish("/chat/room", { text = "hi" }, function(ok2, err) print("B pub", ok2, err) end)
end)
]]

local ERRORS = [[
local bayeux = require "bayeux"
local c = bayeux.client(arg[1], { timeout = 10, retry = 0.2 })
if arg[2] == "long-polling" then c:disable("websocket") end
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
c:publish("/meta/nope", 1, function(ok, err)
  print("PUB", ok, err)
  c:subscribe("/invalid channel", function() end, function(ok2, err2)
    print("SUB", ok2, err2)
    c:disconnect(function() bayeux.stop() end)
  end)
end)
]]

-- Extensions both ways: the outgoing one stamps every publish's data,
-- the incoming one every delivered message's.
local EXT = [[
local bayeux = require "bayeux"
local c = bayeux.client(arg[1], { timeout = 10, retry = 0.2 })
if arg[2] == "long-polling" then c:disable("websocket") end
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
local metas = {}
c:add_extension {
  outgoing = function(_, m, cb)
    if m.channel == "/x" then m.data.out = true end
    m.ext = { token = "s3cret" }
    cb(m)
  end,
  incoming = function(_, m, cb)
    if m.channel == "/x" and m.data then m.data.inc = true end
    if m.channel:sub(1, 6) == "/meta/" then metas[m.channel] = true end
    cb(m)
  end,
}
c:subscribe("/x", function(data)
  print("GOT", data.v, data.out, data.inc, metas["/meta/handshake"], metas["/meta/subscribe"])
  c:disconnect(function() bayeux.stop() end)
end, function(ok, err)
  print("ACK", ok, err)
  c:publish("/x", { v = 7 })
end)
]]

-- cancel() stops one callback, unsubscribe() the channel; the session
-- goes on (a later subscription still gets its messages).
local CANCEL = [[
local bayeux = require "bayeux"
local c = bayeux.client(arg[1], { timeout = 10, retry = 0.2 })
if arg[2] == "long-polling" then c:disable("websocket") end
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
local s1 = c:subscribe("/u", function(d) print("ONE " .. d) end)
c:subscribe("/u", function(d)
  print("TWO " .. d)
  c:unsubscribe("/u")
  c:publish("/u", 2, function()
    c:subscribe("/v", function(d2)
      print("V " .. d2)
      c:disconnect(function() bayeux.stop() end)
    end, function() c:publish("/v", 3) end)
  end)
end, function()
  s1:cancel()
  c:publish("/u", 1)
end)
]]

-- Subscribes, then prints every message until told to stop by one.
local RESTORE = [[
local bayeux = require "bayeux"
local c = bayeux.client(arg[1], { timeout = 30, retry = 0.2 })
if arg[2] == "long-polling" then c:disable("websocket") end
bayeux.timer(40, function() print("TIMEOUT") bayeux.stop() end)
c:on("transport:down", function() print("DOWN") end)
c:on("transport:up", function() print("UP") end)
c:subscribe("/r", function(data)
  print("GOT " .. tostring(data.n) .. " " .. c:get_transport())
  if data.n == 3 then c:disconnect(function() bayeux.stop() end) end
end, function(ok) print("READY", ok) end)
]]

for _, case in ipairs{ { "bayeux", "websocket" }, { "bayeux", "long-polling" },
                      { "faye", "websocket" }, { "faye", "long-polling" } } do
  local kind, transport = case[1], case[2]
  describe("bayeux.client against " .. kind .. " over " .. transport, function()
    local srv
    setup(function() srv = start(kind) end)
    teardown(function() if srv then srv:stop() end end)

    it("publishes and subscribes both ways, wildcards, one copy each", function()
      local p = script(PUBSUB, { srv.url, transport })
      local rc, out, err = finish(p, 25)
      assert.are.equal(0, rc, out .. err)
      assert.truthy(out:find("A ack\ttrue", 1, true), out)
      assert.truthy(out:find('A got /chat/room {"text":"hi"}', 1, true), out)
      assert.truthy(out:find('B got /back {"n":2}', 1, true), out)
      assert.truthy(out:find("B pub\ttrue", 1, true), out)
      assert.truthy(out:find("A pub\ttrue", 1, true), out)
      assert.are.equal(1, count(out, "A got"), out)
      assert.are.equal(1, count(out, "B got"), out)
      assert.truthy(out:find("END", 1, true), out)
      assert.truthy(out:find("TRANSPORT " .. transport .. " " .. transport, 1, true), out)
    end)

    it("hands the server's errors to the callbacks", function()
      local rc, out, err = finish(script(ERRORS, { srv.url, transport }), 25)
      assert.are.equal(0, rc, out .. err)
      assert.truthy(out:find("PUB\tfalse\t403:/meta/nope:Forbidden channel", 1, true), out)
      assert.truthy(out:find("SUB\tfalse\t405:/invalid channel:Invalid channel", 1, true), out)
    end)

    it("runs messages through incoming and outgoing extensions", function()
      local rc, out, err = finish(script(EXT, { srv.url, transport }), 25)
      assert.are.equal(0, rc, out .. err)
      assert.truthy(out:find("ACK\ttrue", 1, true), out)
      assert.truthy(out:find("GOT\t7\ttrue\ttrue\ttrue\ttrue", 1, true), out)
    end)

    it("cancels one callback, unsubscribes a channel", function()
      local rc, out, err = finish(script(CANCEL, { srv.url, transport }), 25)
      assert.are.equal(0, rc, out .. err)
      assert.are.equal("TWO 1\nV 3\n", out)
    end)

    it("restores its subscriptions when the server is restarted", function()
      local p = script(RESTORE, { srv.url, transport })
      assert.is_true(wait_out(p, "READY\ttrue"), p:stdout() .. p:stderr())
      local b = H.bayeux(srv.port)
      local cid = b:handshake()
      local r = b:publish(cid, "/r", { n = 1 })
      assert.is_true(r.successful)
      assert.is_true(wait_out(p, "GOT 1"), p:stdout())
      local port = srv.port
      srv:kill()
      assert.is_true(wait_out(p, "DOWN"), p:stdout() .. p:stderr())
      srv = start(kind, port)
      -- the client comes back, handshakes again and subscribes again; a
      -- publisher keeps publishing until it hears it (nothing is queued
      -- for a subscriber that is not back yet)
      local deadline = H.now() + 20
      b = H.bayeux(srv.port)
      cid = b:handshake()
      repeat
        b:publish(cid, "/r", { n = 2 })
        H.sleep(0.2)
      until p:stdout():find("GOT 2") or H.now() > deadline
      assert.truthy(p:stdout():find("GOT 2"), p:stdout() .. p:stderr())
      b:publish(cid, "/r", { n = 3 })
      local rc, out, err = finish(p, 15)
      assert.are.equal(0, rc, out .. err)
      assert.truthy(out:find("UP", 1, true), out)
      assert.truthy(out:find("GOT 3 " .. transport, 1, true), out)
    end)
  end)
end

describe("bayeux.client while the server is away", function()
  it("sends a message published offline once the server is there", function()
    local probe = start("bayeux")
    local port = probe.port
    probe:stop()
    local p = script([[
      local bayeux = require "bayeux"
      local c = bayeux.client(arg[1], { timeout = 30, retry = 0.2 })
      bayeux.timer(40, function() print("TIMEOUT") bayeux.stop() end)
      c:on("transport:down", function() print("DOWN") end)
      c:publish("/late", { n = 1 }, function(ok, err)
        print("PUB", ok, err)
        c:disconnect(function() bayeux.stop() end)
      end)
    ]], { "http://127.0.0.1:" .. port .. "/faye" })
    assert.is_true(wait_out(p, "DOWN"), p:stdout() .. p:stderr())
    local srv = start("bayeux", port)
    local rc, out, err = finish(p, 30)
    srv:stop()
    assert.are.equal(0, rc, out .. err)
    assert.truthy(out:find("PUB\ttrue", 1, true), out)
  end)

  it("fails a publish with a clear error after its timeout", function()
    local probe = start("bayeux")
    local port = probe.port
    probe:stop()
    local rc, out, err = finish(script([[
      local bayeux = require "bayeux"
      local c = bayeux.client(arg[1], { timeout = 1, retry = 0.2 })
      c:publish("/late", 1, function(ok, err)
        print("PUB", ok, err)
        c:disconnect(function() bayeux.stop() end)
      end)
    ]], { "http://127.0.0.1:" .. port .. "/faye" }), 20)
    assert.are.equal(0, rc, out .. err)
    assert.truthy(out:find("PUB\tfalse\t408::No answer from the server within 1 s", 1, true), out)
  end)
end)

describe("bayeux publish / subscribe", function()
  local srv
  setup(function() srv = start("bayeux") end)
  teardown(function() if srv then srv:stop() end end)

  it("publish exits 0 once acknowledged; subscribe prints one JSON line per message", function()
    local sub = H.spawn{ "subscribe", srv.url, "/cli/*", "/other" }
    -- publish until the subscriber is there (its subscribe is asynchronous)
    local deadline = H.now() + 15
    repeat
      local pub = H.spawn{ "publish", srv.url, "/cli/a", '{"text":"hello","n":[1,2]}' }
      assert.are.equal(0, finish(pub, 20))
      H.sleep(0.1)
    until sub:stdout():find("/cli/a", 1, true) or H.now() > deadline
    local pub = H.spawn{ "publish", srv.url, "/other", "42" }
    assert.are.equal(0, finish(pub, 20))
    assert.is_true(wait_out(sub, '"data":42'), sub:stdout() .. sub:stderr())
    sub:signal("INT")
    local rc, out, err = finish(sub, 10)
    assert.are.equal(0, rc, err)
    for line in out:gmatch("[^\n]+") do
      local m = H.decode(line)
      assert.truthy(m.channel == "/cli/a" or m.channel == "/other", line)
    end
    assert.truthy(out:find('{"channel":"/cli/a","data":', 1, true), out)
    assert.truthy(out:find('{"channel":"/other","data":42}', 1, true), out)
  end)

  it("subscribe ends its session on the server when interrupted", function()
    local app = script([[
      local bayeux = require "bayeux"
      local server = bayeux.server{ mount = "/faye", timeout = 60 }
      server:on("subscribe", function(id, ch) print("SUB", id, ch) end)
      server:on("disconnect", function(id) print("DISC", id) end)
      server:listen(0, "127.0.0.1")
      bayeux.run()
    ]])
    local port, url = app:wait_listening(H.start_limit())
    assert.truthy(port, app:stdout() .. app:stderr())
    local sub = H.spawn{ "subscribe", url, "/bye" }
    assert.is_true(wait_out(app, "SUB\t[^\t]+\t/bye"), app:stdout() .. sub:stderr())
    local id = app:stdout():match("SUB\t([^\t]+)\t/bye")
    sub:signal("INT")
    local rc, _, err = finish(sub, 10)
    assert.are.equal(0, rc, err)
    -- the disconnect came from the client, long before the 60 s timeout
    assert.is_true(wait_out(app, "DISC\t" .. id, 10), app:stdout())
    app:kill()
  end)

  it("publish exits 1 with the Bayeux error on stderr when refused", function()
    local rc, out, err = finish(H.spawn{ "publish", srv.url, "/meta/x", "{}" }, 20)
    assert.are.equal(1, rc, out .. err)
    assert.truthy(err:find("403:/meta/x:Forbidden channel", 1, true), err)
  end)

  it("publish exits 1 when no server answers within --timeout", function()
    local probe = start("bayeux")
    local port = probe.port
    probe:stop()
    local rc, _, err = finish(H.spawn{ "publish", "--timeout", "1",
      "http://127.0.0.1:" .. port .. "/faye", "/a", "1" }, 20)
    assert.are.equal(1, rc)
    assert.truthy(err:find("408:", 1, true), err)
  end)

  it("rejects bad JSON and missing arguments with exit 2", function()
    local rc, _, err = finish(H.spawn{ "publish", srv.url, "/a", "{" }, 10)
    assert.are.equal(2, rc)
    assert.truthy(err:find("bad JSON", 1, true), err)
    rc = finish(H.spawn{ "subscribe", srv.url }, 10)
    assert.are.equal(2, rc)
  end)

  it("are listed in --help", function()
    local rc, out = finish(H.spawn{ "--help" }, 10)
    assert.are.equal(0, rc)
    assert.truthy(out:find("bayeux publish", 1, true))
    assert.truthy(out:find("bayeux subscribe", 1, true))
  end)
end)

describe("examples/remote_publish.lua", function()
  it("reports progress to a running server and reads the reply", function()
    local srv = start("bayeux")
    local sub = H.spawn{ "subscribe", srv.url, "/jobs/progress" }
    local ex
    local deadline = H.now() + 20
    -- the watcher's subscribe is asynchronous: run the example until the
    -- watcher saw a whole job
    repeat
      if ex then ex:kill() end
      ex = H.spawn{ "examples/remote_publish.lua", srv.url, "job-7" }
      assert.is_true(wait_out(ex, "sent step 3/3"), ex:stdout() .. ex:stderr())
    until sub:stdout():find('"step":3', 1, true) or H.now() > deadline
    local pub = H.spawn{ "publish", srv.url, "/jobs/job-7/replies", '{"text":"thanks"}' }
    assert.are.equal(0, finish(pub, 20))
    local rc, out, err = finish(ex, 20)
    assert.are.equal(0, rc, out .. err)
    assert.truthy(out:find('reply: {"text":"thanks"}', 1, true), out)
    assert.truthy(sub:stdout():find('{"channel":"/jobs/progress","data":{', 1, true), sub:stdout())
    sub:signal("INT")
    assert.are.equal(0, finish(sub, 10))
    srv:stop()
  end)
end)

describe("bayeux.client set_header", function()
  it("sends the header with every request, over both transports", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", [[
      local bayeux = require "bayeux"
      local server = bayeux.server { mount = "/faye", timeout = 2 }
      server:add_extension { incoming = function(message, request, callback)
        if message.channel:sub(1, 6) ~= "/meta/" and
           not (request and request.headers["x-app-token"] == "t1") then
          message.error = "403::no header"
        end
        callback(message)
      end }
      server:listen(0, "127.0.0.1")
    ]])
    local srv = H.spawn{ dir .. "/app.lua" }
    local port, url = srv:wait_listening(H.start_limit())
    assert.truthy(port, url)
    url = "http://127.0.0.1:" .. port .. "/faye"
    local rc, out, err = finish(script([[
      local bayeux = require "bayeux"
      local n = 0
      local function run(transport, header, next_fn)
        local c = bayeux.client(arg[1], { timeout = 10, retry = 0.2 })
        if transport == "long-polling" then c:disable("websocket") end
        if header then c:set_header("X-App-Token", "t1") end
        local function go()
          c:publish("/h", 1, function(ok, e)
            print(transport, header and "with" or "without", ok, ok and "-" or e,
                  c:get_transport())
            c:disconnect(next_fn)
          end)
        end
        c:subscribe("/h", function() end, function()
          if transport == "long-polling" then return go() end
          -- the subscribe may be answered over HTTP before the socket is
          -- open: publish once it is (or after 10 s, and the check fails)
          local waited, t = 0, nil
          t = bayeux.interval(0.02, function()
            waited = waited + 0.02
            if c:get_transport() == "websocket" or waited > 10 then
              t:cancel()
              go()
            end
          end)
        end)
      end
      run("websocket", true, function()
        run("websocket", false, function()
          run("long-polling", true, function()
            run("long-polling", false, function() bayeux.stop() end)
          end)
        end)
      end)
    ]], { url }), 30)
    srv:stop()
    assert.are.equal(0, rc, out .. err)
    assert.truthy(out:find("websocket\twith\ttrue\t-\twebsocket", 1, true), out)
    assert.truthy(out:find("websocket\twithout\tfalse\t403::no header", 1, true), out)
    assert.truthy(out:find("long-polling\twith\ttrue\t-\tlong-polling", 1, true), out)
    assert.truthy(out:find("long-polling\twithout\tfalse\t403::no header", 1, true), out)
  end)
end)
