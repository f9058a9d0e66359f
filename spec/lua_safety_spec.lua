-- Lua at the C boundary: in-process clients that disconnect or bind again
-- from their own message callback, route handlers that answer and then
-- raise, Lua values JSON cannot hold, messages inside an extension when the
-- server closes, and server:client() sharing one session. Each app ends
-- with a clean exit, which under `make check` (ASan, LeakSanitizer) also
-- means no memory error and no leak.
local H = require "spec.helper"

local spawn_app = H.start_app

local function finish(p)
  if p then p:finish() end
end

-- Waits for a stdout line starting with `tag`; returns the rest of it.
local function line(p, tag, timeout)
  local deadline = H.now() + (timeout or 10)
  tag = tag:gsub("%p", "%%%0")
  repeat
    local out = "\n" .. p:stdout()
    local rest = out:match("\n" .. tag .. " ([^\n]*)\n") or out:match("\n" .. tag .. "()\n")
    if rest then return rest end
    if p:exit_code() then break end
    H.sleep(0.02)
  until H.now() > deadline
  error(("no %s line; stdout:\n%s\nstderr:\n%s"):format(tag, p:stdout(), p:stderr()), 2)
end

-- The scenarios run one after the other; each prints its result line.
local PRELUDE = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local function say(tag, text)
  io.stdout:write(tag, " ", text, "\n")
  io.stdout:flush()
end
local function run(list)
  local i = 0
  local function continue()
    i = i + 1
    if list[i] then list[i](continue) else say("DONE", "all") end
  end
  bayeux.timer(0, continue)
end
]]

describe("in-process client callbacks", function()
  local srv

  local APP = PRELUDE .. [[
-- takes one message, then disconnects inside the callback; a second
-- message of the same delivery must not reach it
local function disconnect_in_callback(done)
  local c = server:client()
  local got = {}
  c:subscribe("/once", function(data)
    got[#got + 1] = data.n
    c:disconnect(function()
      say("DISCONNECT", ("got=%s clients=%d"):format(table.concat(got, ","),
        server:stats().clients))
      done()
    end)
  end, function()
    server.core:process({ { channel = "/once", data = { n = 1 } },
                          { channel = "/once", data = { n = 2 } } }, function() end)
  end)
end

-- binds its id to a new function inside the callback
local function rebind_in_callback(done)
  local c = server:client()
  local first = 0
  c:subscribe("/rebind", function()
    first = first + 1
    server.core:bind(c.id, function(msgs)
      for _, m in ipairs(msgs) do
        if m.channel == "/rebind" and m.data.n == 2 then
          say("REBIND", ("first=%d second=%d"):format(first, m.data.n))
          c:disconnect(done)
        end
      end
    end)
    c:publish("/rebind", { n = 2 })
  end, function() c:publish("/rebind", { n = 1 }) end)
end

-- unsubscribes and subscribes again inside the callback
local function resubscribe_in_callback(done)
  local c = server:client()
  local got = {}
  c:subscribe("/re", function(data)
    got[#got + 1] = "a" .. data.n
    c:unsubscribe("/re")
    c:subscribe("/re", function(d2)
      got[#got + 1] = "b" .. d2.n
      say("RESUB", table.concat(got, ","))
      c:disconnect(done)
    end, function() c:publish("/re", { n = 2 }) end)
  end, function() c:publish("/re", { n = 1 }) end)
end

-- disconnects inside the callback, many times over, while messages flow
local function many(done)
  local left = 20
  local function one()
    if left == 0 then
      say("MANY", "clients=" .. server:stats().clients)
      return done()
    end
    left = left - 1
    local c = server:client()
    c:subscribe("/many", function()
      c:disconnect(one)
    end, function()
      for i = 1, 3 do c:publish("/many", { i = i }) end
    end)
  end
  one()
end

run { disconnect_in_callback, rebind_in_callback, resubscribe_in_callback, many }
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("a client that disconnects inside its callback gets no more and leaves", function()
    assert.are.equal("got=1 clients=0", line(srv, "DISCONNECT"))
  end)

  it("a client that binds its id again inside its callback gets the next message there",
    function()
      assert.are.equal("first=1 second=2", line(srv, "REBIND"))
    end)

  it("a client that subscribes again inside its callback", function()
    assert.are.equal("a1,b2", line(srv, "RESUB"))
  end)

  it("repeated disconnects inside callbacks leave no session", function()
    assert.are.equal("clients=0", line(srv, "MANY"))
    assert.are.equal("all", line(srv, "DONE"))
  end)

  it("the server exits cleanly", function()
    finish(srv)
    srv = nil
  end)
end)

describe("server:client()", function()
  local srv

  local APP = PRELUDE .. [[
local function shared(done)
  local acked = 0
  for i = 1, 50 do
    server:client():publish("/x", { i = i }, function(ok)
      acked = acked + (ok and 1 or 0)
      if acked == 50 then
        say("SHARED", ("acked=%d clients=%d same=%s"):format(acked, server:stats().clients,
          tostring(server:client() == server:client())))
        done()
      end
    end)
  end
end

local function after_disconnect(done)
  local old = server:client()
  old:disconnect(function()
    local new = server:client()
    new:publish("/x", { again = true }, function(ok)
      say("AGAIN", ("ok=%s new=%s clients=%d"):format(tostring(ok), tostring(new ~= old),
        server:stats().clients))
      done()
    end)
  end)
end

run { shared, after_disconnect }
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("returns one shared client: N calls make one session, not N", function()
    assert.are.equal("acked=50 clients=1 same=true", line(srv, "SHARED"))
  end)

  it("makes a new client once the shared one is disconnected", function()
    assert.are.equal("ok=true new=true clients=1", line(srv, "AGAIN"))
  end)
end)

describe("Lua values JSON cannot hold", function()
  local srv

  local APP = PRELUDE .. [[
local BAD = "\255"
server:add_extension {
  incoming = function(message, callback)
    if message.channel == "/ext/now" then
      message.data = { [BAD] = { a = 1 } }
      callback(message)
    elseif message.channel == "/ext/later" then
      bayeux.timer(0, function()
        message.data = { list = { { [BAD] = { 1, 2 } } } }
        callback(message)
      end)
    else
      callback(message)
    end
  end,
}

local function encode(done)
  local ok, err = pcall(bayeux.encode, { [BAD] = { a = 1 } })
  say("ENCODE-KEY", tostring(ok) .. " " .. tostring(err))
  ok, err = pcall(bayeux.encode, { x = { { [BAD] = { 1, 2 } } } })
  say("ENCODE-NESTED", tostring(ok) .. " " .. tostring(err))
  ok, err = pcall(bayeux.encode, { [BAD] = 1 })
  say("ENCODE-SCALAR", tostring(ok) .. " " .. tostring(err))
  say("ENCODE-GOOD", bayeux.encode { ["é"] = { a = 1 } })
  done()
end

local function publish(done)
  local c = server:client()
  c:publish("/p", { fine = true }, function()
    -- ready: the mistake is raised to the caller
    local ok, err = pcall(c.publish, c, "/p", { [BAD] = { a = 1 } })
    say("PUBLISH-NOW", tostring(ok) .. " " .. tostring(err))
    c:disconnect(function()
      -- not ready yet: the error goes to the callback
      server:client():publish("/p", { [BAD] = { a = 1 } }, function(ok2, err2)
        say("PUBLISH-QUEUED", tostring(ok2) .. " " .. tostring(err2))
        done()
      end)
    end)
  end)
end

local function extension(done)
  local c = server:client()
  c:publish("/ext/now", { x = 1 }, function(ok, err)
    say("EXT-NOW", tostring(ok) .. " " .. tostring(err))
    c:publish("/ext/later", { x = 1 }, function(ok2, err2)
      say("EXT-LATER", tostring(ok2) .. " " .. tostring(err2))
      done()
    end)
  end)
end

run { encode, publish, extension }
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("bayeux.encode raises a clear error for a non-UTF-8 key, with a table value too", function()
    assert.are.equal("false object key is not valid UTF-8", line(srv, "ENCODE-KEY"))
    assert.are.equal("false object key is not valid UTF-8", line(srv, "ENCODE-NESTED"))
    assert.are.equal("false object key is not valid UTF-8", line(srv, "ENCODE-SCALAR"))
    assert.are.equal('{"é":{"a":1}}', line(srv, "ENCODE-GOOD"))
  end)

  it("client:publish raises it, or hands it to the callback when queued", function()
    assert.matches("^false .*object key is not valid UTF%-8$", line(srv, "PUBLISH-NOW"))
    assert.are.equal("false object key is not valid UTF-8", line(srv, "PUBLISH-QUEUED"))
  end)

  it("an extension's callback with such a message fails the message with a 500", function()
    assert.are.equal("false 500::Internal server error", line(srv, "EXT-NOW"))
    assert.are.equal("false 500::Internal server error", line(srv, "EXT-LATER"))
    assert.matches("not JSON", srv:stderr())
  end)

  it("the server exits cleanly", function()
    assert.are.equal("all", line(srv, "DONE"))
    finish(srv)
    srv = nil
  end)
end)

describe("a route handler that answers and then raises", function()
  local srv

  local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
server:route("GET", "/send-then-raise", function(_, res)
  res:send("sent")
  error("raised after the answer")
end)
server:route("GET", "/json-then-raise", function(_, res)
  res:json { ok = true }
  error("raised after the answer")
end)
server:route("GET", "/raise", function() error("raised before any answer") end)
server:route("GET", "/fine", function(_, res) res:send("fine") end)
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function() finish(srv) end)

  it("keeps its answer, and the connection serves the next request", function()
    local c = H.connect(srv.port)
    for _ = 1, 3 do
      local st, _, body = c:request("GET", "/send-then-raise")
      assert.are.equal(200, st)
      assert.are.equal("sent", body)
      st, _, body = c:request("GET", "/json-then-raise")
      assert.are.equal(200, st)
      assert.are.equal('{"ok":true}', body)
      st = c:request("GET", "/raise")
      assert.are.equal(500, st)
      st, _, body = c:request("GET", "/fine")
      assert.are.equal(200, st)
      assert.are.equal("fine", body)
    end
    -- nothing more was written after the answers
    c.sock:settimeout(0.2)
    local extra = c.sock:receive(1)
    assert.is_nil(extra)
    c:close()
    assert.matches("raised after the answer", srv:stderr())
  end)

  it("the server exits cleanly", function()
    finish(srv)
    srv = nil
  end)
end)

describe("messages inside an extension when the server closes", function()
  local srv, held

  local APP = PRELUDE .. [[
local stuck_in, stuck_out = {}, {}
server:add_extension {
  incoming = function(message, callback)
    if message.channel == "/stuck/in" then
      stuck_in[#stuck_in + 1] = callback     -- never called back
      say("HELD-IN", tostring(#stuck_in))
    else
      callback(message)
    end
  end,
  outgoing = function(message, callback)
    if message.channel == "/stuck/out" then
      stuck_out[#stuck_out + 1] = callback
      say("HELD-OUT", tostring(#stuck_out))
    else
      callback(message)
    end
  end,
}
local function hold(done)
  local c = server:client()
  c:subscribe("/stuck/out", function() end, function()
    c:publish("/stuck/in", { n = 1 }, function(ok, err)
      say("IN-ANSWERED", tostring(ok) .. " " .. tostring(err))
    end)
    c:publish("/stuck/out", { n = 2 }, function(ok, err)
      say("OUT-ANSWERED", tostring(ok) .. " " .. tostring(err))
    end)
    done()
  end)
end
run { hold }
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function() srv = spawn_app(APP) end)
  lazy_teardown(function()
    if held then held:close() end
    finish(srv)
  end)

  it("are completed and freed at close (no leak, clean exit)", function()
    assert.are.equal("all", line(srv, "DONE"))
    -- one over HTTP as well: its batch waits inside the extension
    held = H.connect(srv.port)
    assert(held:send_request("POST", "/faye", { ["Content-Type"] = "application/json" },
      '[{"channel":"/stuck/in","data":{"n":3}}]'))
    line(srv, "HELD-IN 2")
    -- the publish reply and the delivery both wait in the outgoing extension
    line(srv, "HELD-OUT 2")
    finish(srv)
    srv = nil
  end)
end)
