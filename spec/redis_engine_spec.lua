-- The Redis engine's configuration and its answers while Redis is out of
-- reach (docs/operations.md, "Several processes: the Redis engine"). The
-- cross-process behaviour is in test/interop/redis.test.js and
-- core/test/test_redis_engine.c, against a real redis-server.
local H = require "spec.helper"
local socket = require "socket"

describe("redis engine", function()
  it("bayeux.server takes a Redis URL as its engine, and refuses what is not one", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local srv = bayeux.server{ engine = "redis://127.0.0.1:%d/0?namespace=spec" }
print("made", srv ~= nil)
srv:close()
print(pcall(bayeux.server, { engine = "mysql://x" }))
print(pcall(bayeux.server, { engine = "redis://host:notaport" }))
os.exit(0)
]]):format(H.free_port()))
    local p = H.spawn{ dir .. "/app.lua" }
    p:wait(10)
    local out = p:stdout()
    p:cleanup()
    assert.are.equal("", p:stderr())
    assert.matches("made\ttrue", out)
    assert.matches("false\t[^\n]*option 'engine' must be \"memory\" or a Redis URL", out)
    assert.matches("false\t[^\n]*bad port in 'redis://host:notaport'", out)
  end)

  it("takes the engine as a table: url or shards, and a namespace for them all", function()
    local rs = H.redis_server()
    local dir, port, down = rs.dir, rs.port, H.free_port()
    local redis = rs.cmd
    local ok, err = pcall(function()
      H.writefile(dir .. "/app.lua", ([[
local bayeux = require "bayeux"
local srv = bayeux.server{ engine = { shards = { "redis://127.0.0.1:%d/0", "redis://127.0.0.1:%d/0" },
                                      namespace = "tbl" } }
local c = srv:client()
c:subscribe("/t", function() end)
bayeux.timer(1, function() print("done"); io.stdout:flush(); os.exit(0) end)
for _, bad in ipairs{ { url = "mysql://x" }, { shards = "redis://x" }, { namespace = "x" },
                      { url = "redis://x", namespace = "a b" }, { url = "redis://x", db = 1 } } do
  print(pcall(bayeux.server, { engine = bad }))
end
bayeux.run()
]]):format(port, down))
      local p = H.spawn{ dir .. "/app.lua" }
      p:wait(10)
      local out, errout = p:stdout(), p:stderr()
      p:cleanup()
      assert.matches("done", out)
      assert.matches("engine%.url must be a Redis URL", out)
      assert.matches("engine%.shards must be a list of Redis URLs", out)
      assert.matches("option 'engine' needs url or shards", out)
      assert.matches("engine%.namespace must be", out)
      assert.matches("option 'engine' has no field 'db'", out)
      -- the second shard is one: it is tried (and logged unreachable)
      assert.matches("redis: unreachable[^\n]* shard=127%.0%.0%.1:" .. down .. "/0", errout)
      -- the client is registered under the namespace given
      assert.are.equal(":1", redis("ZCARD", "tbl/clients"))
    end)
    rs.stop()
    assert(ok, err)
  end)

  it("bayeux serve --help documents --engine", function()
    local p = H.spawn{ "serve", "--help" }
    p:wait(10)
    local out = p:stdout() .. p:stderr()
    p:cleanup()
    assert.matches("%-%-engine E", out)
    assert.matches("redis://%[:password@%]host%[:port%]%[/db%]%[%?namespace=NS%]", out)
    assert.matches("{ url = URL, shards = { URL, ... }, namespace = NS }", out, 1, true)
    assert.matches("%-%-workers N", out)
  end)

  describe("with Redis unreachable", function()
    local srv, b

    lazy_setup(function()
      srv = H.start_server{ "--engine", "redis://127.0.0.1:" .. H.free_port() }
      b = H.bayeux(srv.port)
    end)

    lazy_teardown(function()
      if srv then srv:finish() end
    end)

    it("starts, says so once, refuses a publish with 503 and retry advice, and answers the rest", function()
      local cid = b:handshake()
      assert.is_truthy(cid)
      local r = b:post{ { channel = "/meta/subscribe", subscription = "/x", clientId = cid, id = "s" } }
      assert.is_true(r[1].successful)
      for i = 1, 3 do
        r = b:post{ { channel = "/x", data = i, clientId = cid, id = "p" .. i } }
        assert.are.same({ { id = "p" .. i, clientId = cid, channel = "/x", successful = false,
                            error = "503::Engine unavailable",
                            advice = { reconnect = "retry", interval = 1000 } } }, r)
      end
      socket.sleep(0.3)   -- reconnection attempts meanwhile: still one line
      local _, n = srv:stderr():gsub("redis: unreachable[^\n]* shard=127%.0%.0%.1:%d+/0", "")
      assert.are.equal(1, n)
    end)
  end)
end)
