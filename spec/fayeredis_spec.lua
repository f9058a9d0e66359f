-- The Redis engine's faye-redis mode (&mode=faye): its configuration from
-- Lua and the command line, and its answers while Redis is out of reach
-- (every operation: the state lives there). Sharing with Node Faye is in
-- test/interop/fayeredis.test.js, the engine in core/test/test_fayeredis.c
-- and the contract suite (core/test/test_engine.c), against a real
-- redis-server.
local H = require "spec.helper"
local socket = require "socket"

describe("redis engine, faye mode", function()
  it("bayeux.server takes &mode=faye, and refuses another mode", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local srv = bayeux.server{ engine = "redis://127.0.0.1:%d/0?namespace=spec&mode=faye" }
print("made", srv ~= nil)
srv:close()
print(pcall(bayeux.server, { engine = "redis://127.0.0.1/0?mode=node" }))
print(pcall(bayeux.server, { engine = "redis://a?mode=faye,redis://b?mode=faye" }))
os.exit(0)
]]):format(H.free_port()))
    local p = H.spawn{ dir .. "/app.lua" }
    p:wait(10)
    local out = p:stdout()
    p:cleanup()
    assert.are.equal("", p:stderr())
    assert.matches("made\ttrue", out)
    assert.matches("false\t[^\n]*bad mode 'node' %(faye or bayeux%)", out)
    assert.matches("false\t[^\n]*mode=faye takes one Redis URL", out)
  end)

  describe("with Redis unreachable", function()
    local srv, b

    lazy_setup(function()
      srv = H.start_server{ "--engine", "redis://127.0.0.1:" .. H.free_port() .. "?mode=faye" }
      b = H.bayeux(srv.port)
    end)

    lazy_teardown(function()
      if srv then srv:finish() end
    end)

    it("starts, says so once, and answers a handshake with 503 and retry advice", function()
      for _ = 1, 3 do
        local r = b:post{ { channel = "/meta/handshake", version = "1.0", id = "h",
                            supportedConnectionTypes = { "long-polling" } } }
        assert.is_false(r[1].successful)
        assert.are.equal("503::Engine unavailable", r[1].error)
        assert.are.same({ reconnect = "retry", interval = 1000 }, r[1].advice)
      end
      socket.sleep(0.3)   -- reconnection attempts meanwhile: still one line
      local _, n = srv:stderr():gsub("redis engine %(faye mode%): 127%.0%.0%.1:%d+/0 unreachable", "")
      assert.are.equal(1, n)
    end)
  end)
end)
