-- The client_script option (core/transport/longpoll.c): each server reads its file once,
-- when it is made, and keeps it; a file that cannot be read is an error then,
-- not a 404 later.
local H = require "spec.helper"

describe("client_script", function()
  local dir

  lazy_setup(function()
    dir = H.tmpdir()
  end)

  lazy_teardown(function()
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  -- Runs `app` (Lua source) with bin/bayeux; returns the process once it
  -- has printed `n` listening lines, and their ports in order.
  local function start(app, n)
    local path = dir .. "/app" .. math.random(1e9) .. ".lua"
    H.writefile(path, app)
    local p = H.spawn{ path }
    local deadline = H.now() + H.start_limit()
    while true do
      local ports = {}
      for port in p:stdout():gmatch("listening on http://[^:]+:(%d+)") do
        ports[#ports + 1] = tonumber(port)
      end
      if #ports >= n then return p, ports end
      if p:exit_code() or H.now() > deadline then
        p:kill()
        error("the app did not start: " .. p:stderr())
      end
      H.sleep(0.01)
    end
  end

  it("is kept per server: two servers serve their own files, read once", function()
    H.writefile(dir .. "/a.js", "/* client A */")
    H.writefile(dir .. "/b.js", "/* client B */")
    local p, ports = start(([[
local bayeux = require "bayeux"
local a = bayeux.server { mount = "/faye", client_script = %q }
local b = bayeux.server { mount = "/faye", client_script = %q }
a:listen(0)
b:listen(0)
]]):format(dir .. "/a.js", dir .. "/b.js"), 2)
    local function get(port)
      local st, h, body = H.request(port, "GET", "/faye/client.js")
      assert.are.equal(200, st)
      return body, h.etag
    end
    local a1, etag_a = get(ports[1])
    local b1 = get(ports[2])
    assert.are.equal("/* client A */", a1)
    assert.are.equal("/* client B */", b1)
    -- what a server serves was read when it was made: a change on disk
    -- (a deploy in progress) does not mix into a running server, whichever
    -- server was asked last
    H.writefile(dir .. "/a.js", "/* changed A */")
    H.writefile(dir .. "/b.js", "/* changed B */")
    local a2, etag_a2 = get(ports[1])
    local b2 = get(ports[2])
    local a3 = get(ports[1])
    assert.are.equal("/* client A */", a2)
    assert.are.equal(etag_a, etag_a2)
    assert.are.equal("/* client B */", b2)
    assert.are.equal("/* client A */", a3)
    p:finish()
  end)

  it("that cannot be read makes bayeux.server fail with a clear error", function()
    local missing = dir .. "/missing.js"
    local path = dir .. "/fail.lua"
    H.writefile(path, ([[
local bayeux = require "bayeux"
local ok, err = pcall(bayeux.server, { client_script = %q })
print(ok, err)
local ok2, err2 = pcall(bayeux.server, { client_script = %q })
print(ok2, err2)
]]):format(missing, dir))
    local p = H.spawn{ path }
    assert.are.equal(0, p:wait(10))
    local out = p:stdout()
    assert.is_truthy(out:find("false\tbayeux.server: cannot read client_script '" .. missing
      .. "': No such file or directory", 1, true), out)
    assert.is_truthy(out:find("false\tbayeux.server: client_script '" .. dir
      .. "' is not a regular file", 1, true), out)
  end)

  it("that cannot be read stops `bayeux serve` at start", function()
    local p = H.spawn{ "serve", "--port", "0", "--client-script", dir .. "/missing.js" }
    local rc = p:wait(10)
    assert.are_not.equal(0, rc)
    assert.is_truthy(p:stderr():find("cannot read client_script", 1, true), p:stderr())
  end)
end)
