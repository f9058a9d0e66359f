-- server:stats(): live clients, connected clients, TCP connections and the
-- messages dropped when a client's queue overflows (queue_limit).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2, queue_limit = 2 }
server:route("GET", "/stats", function(_, res) res:json(server:stats()) end)
local inproc
server:route("GET", "/inproc", function(_, res)
  inproc = server:client()
  inproc:subscribe("/inproc", function() end, function() res:json{ ok = true } end)
end)
server:route("GET", "/inproc/off", function(_, res)
  inproc:disconnect(function() res:json{ ok = true } end)
end)
server:listen(0, "127.0.0.1")
]]

describe("server:stats()", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(APP)
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

  -- polls stats() until field == want (the server counts on its own loop)
  local function wait_stat(field, want)
    local deadline = H.now() + 5
    local st = stats()
    while st[field] ~= want and H.now() < deadline do
      H.sleep(0.02)
      st = stats()
    end
    assert.are.equal(want, st[field])
  end

  it("counts connected clients: held connects and bound in-process clients", function()
    wait_stat("connected", 0)
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/c")
    local pending = b:start_connect(cid, 3000)
    wait_stat("connected", 1)
    b:publish(nil, "/c", 1)
    assert(pending:result(5))
    pending:close()
    wait_stat("connected", 0)

    assert.are.equal(200, (H.request(srv.port, "GET", "/inproc")))
    wait_stat("connected", 1)
    assert.are.equal(200, (H.request(srv.port, "GET", "/inproc/off")))
    wait_stat("connected", 0)
  end)
end)

describe("in-process clients and expiry", function()
  local srv
  local APP2 = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 0.5 }
server:route("GET", "/stats", function(_, res) res:json(server:stats()) end)
local c = server:client()
c:subscribe("/kept", function() end)
server:listen(0, "127.0.0.1")
]]

  lazy_setup(function()
    srv = H.start_app(APP2)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("keeps an in-process client alive and forgets a silent HTTP one", function()
    local b = H.bayeux(srv.port)
    b:handshake()
    local st, _, body = H.request(srv.port, "GET", "/stats")
    assert.are.equal(200, st)
    assert.are.equal(2, H.decode(body).clients)
    -- expiry is 2 x timeout = 1 s after the last connect; wait twice that
    H.sleep(2)
    st, _, body = H.request(srv.port, "GET", "/stats")
    assert.are.equal(200, st)
    local stats = H.decode(body)
    assert.are.equal(1, stats.clients)          -- the in-process one
    assert.are.equal(1, stats.connected)
  end)
end)
