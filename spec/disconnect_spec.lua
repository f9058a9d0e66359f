-- /meta/disconnect (bayeux-faye.md §3.5)
local H = require "spec.helper"

describe("/meta/disconnect", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("succeeds with exactly id, clientId, channel, successful", function()
    local cid = b:handshake()
    local r = b:post{ { channel = "/meta/disconnect", clientId = cid, id = "6", ext = { a = 1 } } }
    assert.are.same({ { id = "6", clientId = cid, channel = "/meta/disconnect", successful = true } }, r)
  end)

  it("rejects an unknown client with 401 and no clientId or advice", function()
    local r = b:post{ { channel = "/meta/disconnect", clientId = "nope", id = "q2" } }
    assert.are.same({ { id = "q2", channel = "/meta/disconnect", successful = false,
                        error = "401:nope:Unknown client" } }, r)
  end)

  it("rejects a missing clientId with 402", function()
    local r = b:post{ { channel = "/meta/disconnect", id = "q" } }
    assert.are.same({ { id = "q", channel = "/meta/disconnect", successful = false,
                        error = "402:clientId:Missing required parameter" } }, r)
  end)

  it("destroys the session", function()
    local cid = b:handshake()
    assert.is_true(b:disconnect(cid).successful)
    local r = b:post{
      { channel = "/meta/disconnect", clientId = cid, id = "d2" },
      { channel = "/meta/subscribe", clientId = cid, subscription = "/x", id = "s" },
      { channel = "/meta/connect", clientId = cid, connectionType = "long-polling", id = "c" },
    }
    local err = "401:" .. cid .. ":Unknown client"
    assert.are.same({ id = "d2", channel = "/meta/disconnect", successful = false, error = err },
      H.find(r, { id = "d2" }))
    assert.are.same({ id = "s", clientId = cid, channel = "/meta/subscribe", successful = false, error = err,
                      subscription = "/x" }, H.find(r, { id = "s" }))
    assert.are.same({ id = "c", channel = "/meta/connect", successful = false, error = err,
                      advice = { reconnect = "handshake" } }, H.find(r, { id = "c" }))
  end)

  it("drops the subscriptions and the queue", function()
    local pub = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/gone")
    pub:publish(nil, "/gone", "queued")
    assert.is_true(b:disconnect(cid).successful)
    -- a new client on the same channel gets only what is published after it subscribed
    local cid2 = b:handshake()
    b:subscribe(cid2, "/gone")
    pub:publish(nil, "/gone", "fresh")
    local r = b:connect(cid2, 0)
    assert.are.equal(2, #r)
    assert.are.equal("fresh", r[2].data)
  end)

  it("still lets a disconnected id publish", function()
    local cid = b:handshake()
    b:disconnect(cid)
    local r = b:publish(cid, "/after", 1)
    assert.is_true(r.successful)
  end)

  it("answers a held connect with a successful connect reply", function()
    local cid = b:handshake()
    -- held for 60 s unless the disconnect answers it
    local p = b:start_connect(cid, 60000, "held")
    H.sleep(0.1)
    assert.is_true(b:disconnect(cid).successful)
    local r = p:result(15)
    p:close()
    assert.truthy(r, "held connect not answered after disconnect")
    assert.are.equal("held", r[1].id)
    assert.are.equal("/meta/connect", r[1].channel)
    assert.is_true(r[1].successful)
  end)
end)
