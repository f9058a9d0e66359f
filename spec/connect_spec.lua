-- /meta/connect replies and errors (bayeux-faye.md §3.2, §6.1, §6.2)
local H = require "spec.helper"

describe("/meta/connect", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local RETRY = { reconnect = "retry", interval = 0, timeout = 2000 }

  it("answers at once with advice.timeout 0, with exactly the reply fields", function()
    local cid = b:handshake()
    local r = b:connect(cid, 0)
    assert.are.equal(1, #r)
    r = r[1]
    assert.are.same({ "advice", "channel", "clientId", "id", "successful" }, H.keys(r))
    assert.are.equal("/meta/connect", r.channel)
    assert.are.equal(cid, r.clientId)
    assert.is_true(r.successful)
    assert.are.same(RETRY, r.advice)
  end)

  it("does not echo ext", function()
    local cid = b:handshake()
    local r = b:post{ { channel = "/meta/connect", clientId = cid, connectionType = "long-polling",
                        advice = { timeout = 0 }, ext = { x = 1 }, id = "e" } }[1]
    assert.is_true(r.successful)
    assert.is_nil(r.ext)
  end)

  it("accepts every server connection type", function()
    local cid = b:handshake()
    for _, t in ipairs{ "long-polling", "cross-origin-long-polling", "callback-polling", "websocket", "in-process" } do
      local r = b:post{ { channel = "/meta/connect", clientId = cid, connectionType = t,
                          advice = { timeout = 0 }, id = t } }[1]
      assert.is_true(r.successful, t)
      assert.are.same(RETRY, r.advice)
    end
  end)

  it("answers an eventsource connect at once with interval = timeout and timeout 0", function()
    local cid = b:handshake()
    -- a client's 60 s hold does not apply to an eventsource connect
    local r = b:post({ { channel = "/meta/connect", clientId = cid, connectionType = "eventsource",
                         advice = { timeout = 60000 }, id = "es" } }, nil, 15)[1]
    assert.is_true(r.successful)
    assert.are.same({ reconnect = "retry", interval = 2000, timeout = 0 }, r.advice)
  end)

  it("rejects an unknown client with 401, no clientId and handshake advice", function()
    local r = b:post{ { channel = "/meta/connect", clientId = "nosuchclient", connectionType = "long-polling", id = "4" } }
    assert.are.equal(1, #r)
    r = r[1]
    assert.are.same({ "advice", "channel", "error", "id", "successful" }, H.keys(r))
    assert.are.equal("4", r.id)
    assert.are.equal("/meta/connect", r.channel)
    assert.is_false(r.successful)
    assert.are.equal("401:nosuchclient:Unknown client", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
  end)

  it("rejects a missing clientId with 402", function()
    local r = b:post{ { channel = "/meta/connect", connectionType = "long-polling", id = "5" } }[1]
    assert.are.same({ "advice", "channel", "error", "id", "successful" }, H.keys(r))
    assert.are.equal("402:clientId:Missing required parameter", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
  end)

  it("rejects an unknown connectionType with 301 and drops the clientId", function()
    local cid = b:handshake()
    local r = b:post{ { channel = "/meta/connect", clientId = cid, connectionType = "foo", id = "6" } }[1]
    assert.are.same({ "advice", "channel", "error", "id", "successful" }, H.keys(r))
    assert.are.equal("301:foo:Connection types not supported", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
  end)

  it("rejects a missing connectionType with 402", function()
    local cid = b:handshake()
    local r = b:post{ { channel = "/meta/connect", clientId = cid, id = "7" } }[1]
    assert.are.same({ "advice", "channel", "error", "id", "successful" }, H.keys(r))
    assert.are.equal("402:connectionType:Missing required parameter", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
  end)

  it("applies the error precedence 401 < 402 clientId < 301 < 402 connectionType", function()
    local r = b:post{
      { channel = "/meta/connect", clientId = "nope", connectionType = "foo", id = "a" },
      { channel = "/meta/connect", clientId = "nope", id = "b" },
      { channel = "/meta/connect", id = "c" },
      { channel = "/meta/connect", connectionType = "foo", id = "d" },
    }
    assert.are.equal(4, #r)
    assert.are.equal("301:foo:Connection types not supported", H.find(r, { id = "a" }).error)
    assert.are.equal("402:connectionType:Missing required parameter", H.find(r, { id = "b" }).error)
    assert.are.equal("402:connectionType:Missing required parameter", H.find(r, { id = "c" }).error)
    assert.are.equal("301:foo:Connection types not supported", H.find(r, { id = "d" }).error)
    for _, x in ipairs(r) do
      assert.is_nil(x.clientId)
      assert.are.same({ reconnect = "handshake" }, x.advice)
    end
  end)

  it("answers a bare connect message without id", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/connect"}]')
    local r = H.decode(raw)
    assert.are.same({ { channel = "/meta/connect", successful = false,
      error = "402:connectionType:Missing required parameter", advice = { reconnect = "handshake" } } }, r)
  end)

  it("rejects a connect after disconnect with 401", function()
    local cid = b:handshake()
    assert.is_true(b:disconnect(cid).successful)
    local r = b:post{ H.connect_msg(cid, "x") }[1]
    assert.is_false(r.successful)
    assert.are.equal("401:" .. cid .. ":Unknown client", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
    assert.is_nil(r.clientId)
  end)

  it("holds a connect without advice for the server timeout", function()
    local cid = b:handshake()
    local p = b:start_connect(cid)
    local r, elapsed = p:result(15)
    p:close()
    assert.truthy(r, "no reply")
    assert.is_true(elapsed > 1.8, "held only " .. tostring(elapsed))
    assert.are.equal(1, #r)
    assert.is_true(r[1].successful)
    assert.are.same(RETRY, r[1].advice)
  end)
end)
