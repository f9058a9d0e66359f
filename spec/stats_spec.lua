-- server:stats(): live clients, connected clients, TCP connections and the
-- messages dropped when a client's queue overflows (queue_limit).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2, queue_limit = 2 }
server:route("GET", "/stats", function(_, res) res:json(server:stats()) end)
server:listen(0, "127.0.0.1")
]]

describe("server:stats()", function()
  local srv

  lazy_setup(function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", APP)
    srv = H.spawn{ dir .. "/app.lua" }
    local port, err = srv:wait_listening(10)
    if not port then srv:kill(); error(err) end
    srv.port = port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function stats()
    local st, _, body = H.request(srv.port, "GET", "/stats")
    assert.are.equal(200, st)
    return H.decode(body)
  end

  it("counts clients and the messages a full queue dropped", function()
    local before = stats()
    assert.are.equal(0, before.clients)
    assert.are.equal(0, before.dropped)

    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    for i = 1, 5 do b:publish(nil, "/q", { n = i }) end

    local after = stats()
    assert.are.equal(1, after.clients)
    assert.are.equal(3, after.dropped)       -- 5 queued into a limit of 2
    assert.is_true(after.connections >= 1)

    -- the two newest messages survived, in order
    local r = b:post{ { channel = "/meta/connect", clientId = cid, connectionType = "long-polling",
                        advice = { timeout = 0 }, id = "c" } }
    local got = {}
    for _, m in ipairs(r) do if m.channel == "/q" then got[#got + 1] = m.data.n end end
    assert.are.same({ 4, 5 }, got)
  end)
end)
