-- bayeux.ext.history (docs/delivery.md) on the network client: a client
-- whose session the server ended gets what it missed when it handshakes
-- again, once each and in order; after a restart of the server (memory
-- engine: history lost) it is told "epoch changed" and goes on. The server
-- is test/browser/history_app.lua (history on /h/**, POST /expire and
-- POST /open hooks); the client runs in its own process.
local H = require "spec.helper"

local CLIENT = [[
local bayeux = require "bayeux"
local c = bayeux.client(arg[1], { timeout = 3, retry = 0.2 })
c:add_extension(require "bayeux.ext.history" {
  on_reset = function(ch, why) print("RESET " .. ch .. " " .. why) end,
})
bayeux.timer(60, function() print("TIMEOUT") bayeux.stop() end)
c:subscribe("/h/a", function(data)
  print("GOT " .. data.i)
  if data.i == 7 then c:disconnect(function() bayeux.stop() end) end
end, function(ok) print("READY " .. tostring(ok) .. " " .. c:get_client_id()) end)
]]

local function wait_out(p, pattern, timeout)
  local deadline = H.now() + (timeout or 20)
  repeat
    if p:stdout():find(pattern) then return true end
    if p:exit_code() then break end
    H.sleep(0.02)
  until H.now() > deadline
  return p:stdout():find(pattern) ~= nil
end

describe("bayeux.ext.history on the network client", function()
  local srv, app

  lazy_setup(function() app = H.readfile("test/browser/history_app.lua") end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("recovers what it missed, then is told the epoch changed after a restart", function()
    srv = H.start_app(app)
    local port = srv.port
    local b = H.bayeux(port)
    local dir = H.tmpdir()
    H.writefile(dir .. "/c.lua", CLIENT)
    local p = H.spawn({ dir .. "/c.lua", "http://127.0.0.1:" .. port .. "/faye" })
    assert.is_true(wait_out(p, "READY true %w+"), p:stdout() .. p:stderr())
    local cid = p:stdout():match("READY true (%w+)")
    for i = 1, 2 do assert.is_true(b:publish(nil, "/h/a", { i = i }).successful) end
    assert.is_true(wait_out(p, "GOT 2\n"), p:stdout())
    -- the server ends its session; handshakes wait while the test publishes
    assert.are.equal(200, (H.request(port, "POST", "/expire?client=" .. cid)))
    for i = 3, 5 do assert.is_true(b:publish(nil, "/h/a", { i = i }).successful) end
    assert.are.equal(200, (H.request(port, "POST", "/open")))
    assert.is_true(wait_out(p, "GOT 5\n"), p:stdout() .. p:stderr())
    assert.is_true(b:publish(nil, "/h/a", { i = 6 }).successful)
    assert.is_true(wait_out(p, "GOT 6\n"), p:stdout())
    -- the restart: history lost
    srv:finish()
    srv = H.start_app(app, { env = "PORT=" .. port })
    assert.is_true(wait_out(p, "RESET /h/a epoch changed"), p:stdout() .. p:stderr())
    b = H.bayeux(srv.port)
    assert.is_true(b:publish(nil, "/h/a", { i = 7 }).successful)
    local rc = p:wait(20)
    if not rc then p:kill() end
    os.execute("rm -rf " .. H.q(dir))
    local got = {}
    for line in p:stdout():gmatch("[^\n]+") do
      if line:match("^GOT") or line:match("^RESET") then got[#got + 1] = line end
    end
    assert.are.same({ "GOT 1", "GOT 2", "GOT 3", "GOT 4", "GOT 5", "GOT 6",
                      "RESET /h/a epoch changed", "GOT 7" }, got)
    assert.are.equal(0, rc, p:stdout() .. p:stderr())
  end)
end)
