-- bayeux.ack_extension() on the network client (lua/bayeux/client.lua):
-- acknowledged delivery through a relay (test/interop/cut_relay.js) that cuts
-- responses carrying messages in the middle: every message arrives, in
-- order, none twice, over WebSocket and long-polling.
local H = require "spec.helper"

local N = 30

-- A subscriber with the extension through the relay (arg[2]), a publisher
-- straight to the server (arg[1]); six rounds of publishes, each waiting
-- for its last message. Prints "GOT n" per delivery, "HS <ext.ack>" for
-- the handshake answer, "ACKS <ids>" of the connects sent, then "END".
local SCRIPT = [[
local bayeux = require "bayeux"
local direct, relayed, transport, n = arg[1], arg[2], arg[3], tonumber(arg[4])
local sub = bayeux.client(relayed, { timeout = 3, retry = 0.2 })
local pub = bayeux.client(direct, { timeout = 3, retry = 0.2 })
if transport == "long-polling" then sub:disable("websocket") end
pub:disable("websocket")
sub:add_extension(bayeux.ack_extension())
local acks = {}
sub:add_extension {   -- after it: outgoing extensions run in the order added
  outgoing = function(_, m, cb)
    if m.channel == "/meta/connect" then acks[#acks + 1] = tostring(m.ext and m.ext.ack) end
    cb(m)
  end,
  incoming = function(_, m, cb)
    if m.channel == "/meta/handshake" then print("HS", tostring(m.ext and m.ext.ack)) end
    cb(m)
  end,
}
local got = {}
bayeux.timer(40, function() print("TIMEOUT") bayeux.stop() end)
local function round(from)
  if from > n then
    bayeux.timer(0.5, function()
      print("ACKS " .. table.concat(acks, ","))
      print("TRANSPORT " .. tostring(sub:get_transport()))
      print("END")
      bayeux.stop()
    end)
    return
  end
  local to = from + n // 6 - 1
  for i = from, to do pub:publish("/seq/l", { n = i, pad = string.rep("x", 64) }) end
  local function wait()
    if got[to] then return round(to + 1) end
    bayeux.timer(0.05, wait)
  end
  wait()
end
sub:subscribe("/seq/l", function(data)
  got[data.n] = true
  print("GOT " .. data.n)
end, function() round(1) end)
]]

describe("bayeux.ack_extension() through cut responses", function()
  local srv, relay, relay_port

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "3" }
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  before_each(function()
    relay = H.spawn({ "test/interop/cut_relay.js", tostring(srv.port), "2", "1", "6" }, { cmd = "node" })
    local deadline = H.now() + 10
    repeat
      relay_port = relay:stdout():match("RELAY (%d+)")
      if not relay_port then H.sleep(0.05) end
    until relay_port or H.now() > deadline
    assert.truthy(relay_port, "relay: " .. relay:stdout() .. relay:stderr())
  end)

  after_each(function()
    if relay then relay:kill() end
  end)

  for _, transport in ipairs{ "websocket", "long-polling" } do
    it("gets every message once, in order [" .. transport .. "]", function()
      local dir = H.tmpdir()
      H.writefile(dir .. "/s.lua", SCRIPT)
      local p = H.spawn{ dir .. "/s.lua", "http://127.0.0.1:" .. srv.port .. "/faye",
                         "http://127.0.0.1:" .. relay_port .. "/faye", transport, tostring(N) }
      local rc = p:wait(60)
      if not rc then p:kill() end
      local out = p:stdout()
      assert.are.equal(0, rc, out .. p:stderr())
      assert.truthy(out:find("END", 1, true), out)
      assert.truthy(out:find("HS\ttrue", 1, true), out)
      assert.truthy(out:find("TRANSPORT " .. transport, 1, true), out)
      local seq = {}
      for n in out:gmatch("GOT (%d+)") do seq[#seq + 1] = tonumber(n) end
      local want = {}
      for i = 1, N do want[i] = i end
      assert.are.same(want, seq)
      local acks = out:match("ACKS ([^\n]*)")
      assert.truthy(acks and acks:match("^%d[%d,]*$"), "connects carry batch ids: " .. tostring(acks))
      local cuts = select(2, relay:stdout():gsub("CUT %d+", ""))
      assert.is_true(cuts >= 3, cuts .. " responses cut")
    end)
  end
end)
