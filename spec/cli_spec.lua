-- The `bayeux` command: options, exit codes, signals, Lua app scripts
local H = require "spec.helper"

local function run(args, timeout)
  local p = H.spawn(args)
  local rc = p:wait(timeout or (H.start_hung and 2 or 5))
  if not rc then H.start_hung = true; p:kill() end
  return rc, p:stdout(), p:stderr()
end

describe("bayeux command", function()
  it("rejects an unknown option with usage on stderr and exit 2", function()
    local rc, out, err = run{ "serve", "--host", "127.0.0.1", "--port", "0", "--bogus" }
    assert.are.equal(2, rc)
    assert.truthy(err:lower():find("usage"), "stderr: " .. err)
    assert.falsy(out:find("listening", 1, true))
  end)

  it("rejects an option without its value with exit 2", function()
    local rc, out, err = run{ "serve", "--host", "127.0.0.1", "--port" }
    assert.are.equal(2, rc)
    assert.truthy(err:lower():find("usage"), "stderr: " .. err)
    assert.falsy(out:find("listening", 1, true))
  end)

  it("rejects a non-numeric port with exit 2", function()
    local rc, _, err = run{ "serve", "--host", "127.0.0.1", "--port", "abc" }
    assert.are.equal(2, rc)
    assert.truthy(err:lower():find("usage"), "stderr: " .. err)
  end)

  it("exits 1 with one line on stderr when the port is in use", function()
    local srv = H.start_server()
    local rc, out, err = run{ "serve", "--host", "127.0.0.1", "--port", tostring(srv.port), "--mount", "/faye" }
    srv:stop()
    assert.are.equal(1, rc)
    assert.falsy(out:find("listening", 1, true))
    local trimmed = err:gsub("%s+$", "")
    assert.is_true(#trimmed > 0, "no message on stderr")
    assert.falsy(trimmed:find("\n", 1, true), "more than one line on stderr: " .. err)
  end)

  it("refuses --workers 2 with the memory engine, saying why, exit 2", function()
    local rc, out, err = run{ "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2" }
    assert.are.equal(2, rc)
    assert.truthy(err:find("--workers 2 needs a shared engine", 1, true), "stderr: " .. err)
    assert.falsy(out:find("listening", 1, true))
  end)

  it("--help exits 0 and prints something", function()
    local rc, out, err = run{ "--help" }
    assert.are.equal(0, rc)
    assert.is_true(#(out .. err) > 0)
  end)

  it("--version exits 0 and prints something", function()
    local rc, out, err = run{ "--version" }
    assert.are.equal(0, rc)
    assert.is_true(#(out .. err) > 0)
  end)

  it("prints the listening line and exits 0 on SIGTERM", function()
    local srv = H.start_server()
    assert.are.equal("http://127.0.0.1:" .. srv.port .. "/faye", srv.url)
    assert.are.equal(0, srv:stop())
  end)

  it("exits 0 on SIGINT", function()
    local srv = H.start_server()
    srv:signal("INT")
    local rc = srv:wait(10)
    if not rc then srv:kill() end
    assert.are.equal(0, rc)
  end)

  it("honours --mount and --timeout", function()
    local p = H.spawn{ "serve", "--host", "127.0.0.1", "--port", "0", "--mount", "/bayeux", "--timeout", "3" }
    local port, url = p:wait_listening(H.start_limit())
    local ok, e = pcall(function()
      assert.truthy(port, url)
      assert.are.equal("http://127.0.0.1:" .. port .. "/bayeux", url)
      local b = H.bayeux(port, "/bayeux")
      local _, r = b:handshake()
      assert.are.same({ reconnect = "retry", interval = 0, timeout = 3000 }, r.advice)
      assert.are.equal(404, (H.request(port, "POST", "/faye", { ["Content-Type"] = "application/json" }, "[]")))
    end)
    p:stop()
    assert(ok, e)
  end)

  it("runs a Lua app script", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.writefile(app, [[
local bayeux = require "bayeux"
local s = bayeux.server{ mount = "/faye", timeout = 2 }
s:listen(0, "127.0.0.1")
]])
    local p = H.spawn{ app }
    local port, url = p:wait_listening(H.start_limit())
    local ok, e = pcall(function()
      assert.truthy(port, url)
      local b = H.bayeux(port)
      local _, r = b:handshake()
      assert.are.equal(2000, r.advice.timeout)
    end)
    p:stop()
    os.execute("rm -rf " .. H.q(dir))
    assert(ok, e)
  end)
end)
