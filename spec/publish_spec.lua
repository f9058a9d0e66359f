-- Publishing, batch envelope and non-routable /meta channels
-- (bayeux-faye.md §1, §3.6, §3.7, §4, §18.4, §18.9)
local H = require "spec.helper"

describe("publish", function()
  local srv, b, cid

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  before_each(function()
    cid = b:handshake()
  end)

  it("acks with exactly id, clientId, channel, successful (no data, no ext)", function()
    local r = b:post{ { channel = "/foo", data = { text = "hi" }, clientId = cid, id = "p1", ext = { a = 1 } } }
    assert.are.equal(1, #r)
    assert.are.same({ id = "p1", clientId = cid, channel = "/foo", successful = true }, r[1])
  end)

  it("accepts a publish without clientId", function()
    local r = b:post{ { channel = "/foo", data = 1, id = "6" } }
    assert.are.same({ { id = "6", channel = "/foo", successful = true } }, r)
  end)

  it("accepts a publish with an unknown clientId, echoing it", function()
    local r = b:post{ { channel = "/foo", data = 1, clientId = "zzz", id = "7" } }
    assert.are.same({ { id = "7", clientId = "zzz", channel = "/foo", successful = true } }, r)
  end)

  it("accepts null data", function()
    local _, _, raw = b:post_raw('[{"channel":"/foo","data":null,"id":"r"}]')
    assert.are.same({ { id = "r", channel = "/foo", successful = true } }, H.decode(raw))
  end)

  it("rejects missing data with 402", function()
    local r = b:post{ { channel = "/foo", clientId = "zzz", id = "r5" } }
    assert.are.same({ { id = "r5", clientId = "zzz", channel = "/foo", successful = false,
                        error = "402:data:Missing required parameter" } }, r)
  end)

  it("rejects publishing to patterns and invalid names with 405", function()
    for _, ch in ipairs{ "/foo/*", "/foo/**", "/*", "/**", "foo", "/foo/", "/", "/a b" } do
      local r = b:post{ { channel = ch, data = 1, id = "x" } }
      assert.are.same({ { id = "x", channel = ch, successful = false, error = "405:" .. ch .. ":Invalid channel" } }, r)
    end
  end)

  it("lets the missing-data check overwrite the channel check", function()
    local r = b:post{ { channel = "/foo/*", id = "x" } }
    assert.are.equal("402:data:Missing required parameter", r[1].error)
  end)

  it("rejects a message without channel with 405 and empty params", function()
    local r = b:post{ { data = 1, id = "p9" } }
    assert.are.same({ { id = "p9", successful = false, error = "405::Invalid channel" } }, r)
  end)

  it("publishes to /service channels", function()
    local r = b:post{ { channel = "/service/x", data = 1, id = "r4" } }
    assert.are.same({ { id = "r4", channel = "/service/x", successful = true } }, r)
  end)

  it("forbids non-routable /meta channels with 403 and no advice", function()
    for _, ch in ipairs{ "/meta/foo", "/meta/subscribe/x", "/meta", "/meta/handshake/x" } do
      local r = b:post{ { channel = ch, data = 1, clientId = cid, id = "k" } }
      assert.are.same({ { id = "k", clientId = cid, channel = ch, successful = false,
                          error = "403:" .. ch .. ":Forbidden channel" } }, r)
    end
    -- without data too
    local r = b:post{ { channel = "/meta/foo", id = "k3" } }
    assert.are.same({ { id = "k3", channel = "/meta/foo", successful = false,
                        error = "403:/meta/foo:Forbidden channel" } }, r)
  end)

  it("echoes only truthy ids, and numeric ids as numbers", function()
    local _, _, raw = b:post_raw('[{"channel":"/foo","data":1,"id":0},{"channel":"/foo","data":1,"id":""},'
      .. '{"channel":"/foo","data":1,"id":false},{"channel":"/foo","data":1,"id":5}]')
    local r = H.decode(raw)
    assert.are.same({ { channel = "/foo", successful = true }, { channel = "/foo", successful = true },
                      { channel = "/foo", successful = true }, { id = 5, channel = "/foo", successful = true } }, r)
  end)

  it("echoes an error carried by the message and does not deliver it", function()
    b:subscribe(cid, "/err")
    local r = b:post{ { channel = "/err", data = 1, error = "boom", id = "x" } }
    assert.are.same({ { id = "x", channel = "/err", successful = false, error = "boom" } }, r)
    local c = b:connect(cid, 0)
    assert.are.equal(1, #c)
  end)

  it("answers every message of a batch", function()
    local r = b:post{
      { channel = "/meta/subscribe", clientId = cid, subscription = "/m", id = "23" },
      { channel = "/m", data = "x", clientId = cid, id = "24" },
      { channel = "/m/*", data = "x", id = "25" },
    }
    assert.are.equal(3, #r)
    assert.is_true(H.find(r, { id = "23" }).successful)
    assert.are.same({ id = "24", clientId = cid, channel = "/m", successful = true }, H.find(r, { id = "24" }))
    assert.is_false(H.find(r, { id = "25" }).successful)
  end)
end)

describe("batch envelope", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function raw(body)
    local st, h, bd = b:post_raw(body)
    assert.are.equal(200, st, bd)
    assert.are.equal("application/json; charset=utf-8", h["content-type"])
    return bd
  end

  it("answers [] with []", function()
    assert.are.equal("[]", raw("[]"))
  end)

  it("answers null with []", function()
    assert.are.equal("[]", raw("null"))
  end)

  it("answers [null] with []", function()
    assert.are.equal("[]", raw("[null]"))
  end)

  it("answers {} with 402:data", function()
    assert.are.same({ { successful = false, error = "402:data:Missing required parameter" } }, H.decode(raw("{}")))
  end)

  it("treats [1] like {}", function()
    assert.are.same({ { successful = false, error = "402:data:Missing required parameter" } }, H.decode(raw("[1]")))
  end)

  it("accepts a single object and answers with an array", function()
    local body = raw('{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}')
    assert.are.equal("[", body:sub(1, 1))
    local r = H.decode(body)
    assert.are.equal(1, #r)
    assert.is_true(r[1].successful)
    assert.are.equal("1", r[1].id)
  end)

  it("drops null entries inside a batch", function()
    local r = H.decode(raw('[null,{"channel":"/foo","data":1,"id":"a"},null]'))
    assert.are.same({ { id = "a", channel = "/foo", successful = true } }, r)
  end)

  it("answers non-container JSON with 400", function()
    for _, body in ipairs{ '"x"', "1", "true", "", "[", "{\"channel\":", "nul" } do
      local st, h, bd = b:post_raw(body)
      assert.are.equal(400, st, "body " .. body)
      assert.are.equal("Bad request", bd)
      assert.are.equal("text/plain; charset=utf-8", h["content-type"])
    end
  end)

  it("serializes UTF-8 raw and does not escape '/'", function()
    local body = raw('[{"channel":"/foo/bar","data":"x","id":"caf\195\169"}]')
    assert.truthy(body:find('"channel":"/foo/bar"', 1, true), body)
    local r = H.decode(body)
    assert.are.equal("caf\195\169", r[1].id)
  end)
end)
