-- /meta/subscribe and /meta/unsubscribe (bayeux-faye.md §3.3, §3.4, §5)
local H = require "spec.helper"

describe("/meta/subscribe", function()
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

  local function sub(subscription, client, id)
    return b:post{ { channel = "/meta/subscribe", clientId = client, subscription = subscription, id = id or "s" } }[1]
  end

  -- messages queued for `client` (connect with advice.timeout 0)
  local function drain(client)
    local r = b:connect(client, 0)
    assert.is_true(r[1].successful)
    local out = {}
    for i = 2, #r do out[#out + 1] = r[i] end
    return out
  end

  it("subscribes a string with exactly the reply fields", function()
    local r = sub("/foo", cid)
    assert.are.same({ "channel", "clientId", "id", "subscription", "successful" }, H.keys(r))
    assert.are.equal("s", r.id)
    assert.are.equal(cid, r.clientId)
    assert.are.equal("/meta/subscribe", r.channel)
    assert.is_true(r.successful)
    assert.are.equal("/foo", r.subscription)
    assert.is_nil(r.advice)
  end)

  it("echoes an array subscription as an array", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/subscribe","clientId":"' .. cid
      .. '","subscription":["/foo","/bar/*","/baz/**"],"id":"s"}]')
    local r = H.decode(raw)[1]
    assert.is_true(r.successful)
    assert.are.same({ "/foo", "/bar/*", "/baz/**" }, r.subscription)
    -- one-element arrays stay arrays
    _, _, raw = b:post_raw('[{"channel":"/meta/subscribe","clientId":"' .. cid
      .. '","subscription":["/one"],"id":"s"}]')
    assert.truthy(raw:find('"subscription":["/one"]', 1, true) or raw:find('"subscription":[ "/one" ]', 1, true), raw)
  end)

  it("accepts an empty subscription array", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/subscribe","clientId":"' .. cid
      .. '","subscription":[],"id":"s"}]')
    local r = H.decode(raw)[1]
    assert.is_true(r.successful)
    assert.truthy(raw:find('"subscription":[]', 1, true), raw)
  end)

  it("accepts wildcards and every allowed segment character", function()
    for _, ch in ipairs{ "/*", "/**", "/a/*", "/a/b/**", "/a-_!~()$@/B9" } do
      assert.is_true(sub(ch, cid).successful, ch)
    end
  end)

  it("is idempotent and delivers once", function()
    assert.is_true(sub("/twice", cid).successful)
    assert.is_true(sub("/twice", cid).successful)
    b:publish(nil, "/twice", 1)
    local msgs = drain(cid)
    assert.are.equal(1, #msgs)
  end)

  it("rejects an unknown client with 401 but keeps clientId and subscription", function()
    local r = sub("/foo", "nosuchclient", "5")
    assert.are.same({ "channel", "clientId", "error", "id", "subscription", "successful" }, H.keys(r))
    assert.are.equal("5", r.id)
    assert.are.equal("nosuchclient", r.clientId)
    assert.is_false(r.successful)
    assert.are.equal("401:nosuchclient:Unknown client", r.error)
    assert.are.equal("/foo", r.subscription)
    assert.is_nil(r.advice)
  end)

  it("checks the client before the channel", function()
    local r = sub("bad", "nope")
    assert.are.equal("401:nope:Unknown client", r.error)
    assert.are.equal("bad", r.subscription)
  end)

  it("rejects a missing clientId with 402", function()
    local r = sub("/foo", nil, "h")
    assert.are.same({ "channel", "error", "id", "subscription", "successful" }, H.keys(r))
    assert.are.equal("402:clientId:Missing required parameter", r.error)
    assert.are.equal("/foo", r.subscription)
  end)

  it("rejects a missing subscription with 402 and echoes []", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/subscribe","clientId":"' .. cid .. '","id":"g"}]')
    local r = H.decode(raw)[1]
    assert.are.same({ "channel", "clientId", "error", "id", "subscription", "successful" }, H.keys(r))
    assert.is_false(r.successful)
    assert.are.equal(cid, r.clientId)
    assert.are.equal("402:subscription:Missing required parameter", r.error)
    assert.truthy(raw:find('"subscription":[]', 1, true), raw)
    -- neither clientId nor subscription: the later check wins
    local r2 = b:post{ { channel = "/meta/subscribe", id = "h2" } }[1]
    assert.are.equal("402:subscription:Missing required parameter", r2.error)
  end)

  it("forbids /meta and /service channels with 403", function()
    for _, ch in ipairs{ "/meta/x", "/service/x", "/meta/**", "/service/**", "/meta/subscribe" } do
      local r = sub(ch, cid)
      assert.is_false(r.successful, ch)
      assert.are.equal("403:" .. ch .. ":Forbidden channel", r.error)
      assert.are.equal(cid, r.clientId)
      assert.are.equal(ch, r.subscription)
    end
  end)

  it("rejects invalid channels with 405", function()
    for _, ch in ipairs{ "bad", "/", "/foo/", "/foo/*/bar", "/a*", "/a/***", "/foo bar", "//x", "/a.b", "/caf\195\169" } do
      local r = sub(ch, cid)
      assert.is_false(r.successful, ch)
      assert.are.equal("405:" .. ch .. ":Invalid channel", r.error)
      assert.are.equal(ch, r.subscription)
    end
  end)

  it("stops at the first bad channel but keeps the earlier ones", function()
    local r = sub({ "/ok", "/meta/x", "/ok2" }, cid)
    assert.is_false(r.successful)
    assert.are.equal("403:/meta/x:Forbidden channel", r.error)
    assert.are.same({ "/ok", "/meta/x", "/ok2" }, r.subscription)
    b:publish(nil, "/ok", "first")
    b:publish(nil, "/ok2", "second")
    local msgs = drain(cid)
    assert.are.equal(1, #msgs)
    assert.are.equal("/ok", msgs[1].channel)
    assert.are.equal("first", msgs[1].data)
  end)

  it("reports a 405 in an array after valid entries", function()
    local r = sub({ "/a-_!~()$@", "/*", "/**", "/foo/*/bar" }, cid)
    assert.are.equal("405:/foo/*/bar:Invalid channel", r.error)
  end)

  it("echoes an error carried by the message itself", function()
    local r = b:post{ { channel = "/meta/subscribe", clientId = cid, subscription = "/x", error = "boom", id = "x" } }[1]
    assert.is_false(r.successful)
    assert.are.equal("boom", r.error)
    assert.are.equal("/x", r.subscription)
  end)
end)

describe("/meta/unsubscribe", function()
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

  local function unsub(subscription, client, id)
    return b:post{ { channel = "/meta/unsubscribe", clientId = client, subscription = subscription, id = id or "u" } }[1]
  end

  it("succeeds with exactly the reply fields, also for a channel never subscribed", function()
    local r = unsub("/never", cid)
    assert.are.same({ "channel", "clientId", "id", "subscription", "successful" }, H.keys(r))
    assert.are.equal("/meta/unsubscribe", r.channel)
    assert.is_true(r.successful)
    assert.are.equal("/never", r.subscription)
  end)

  it("stops delivery", function()
    b:subscribe(cid, { "/un/a", "/un/b" })
    assert.is_true(unsub("/un/a", cid).successful)
    b:publish(nil, "/un/a", 1)
    b:publish(nil, "/un/b", 2)
    local r = b:connect(cid, 0)
    assert.are.equal(2, #r)
    assert.are.equal("/un/b", r[2].channel)
  end)

  it("uses the subscribe error rules", function()
    local r = unsub("/meta/x", cid)
    assert.are.equal("403:/meta/x:Forbidden channel", r.error)
    assert.are.equal(cid, r.clientId)
    r = unsub("/service/x", cid)
    assert.are.equal("403:/service/x:Forbidden channel", r.error)
    r = unsub("bad", cid)
    assert.are.equal("405:bad:Invalid channel", r.error)
    assert.are.equal("bad", r.subscription)
    r = unsub("/x", "nope")
    assert.are.equal("401:nope:Unknown client", r.error)
    assert.are.equal("nope", r.clientId)
    r = unsub("/x", nil)
    assert.are.equal("402:clientId:Missing required parameter", r.error)
    local _, _, raw = b:post_raw('[{"channel":"/meta/unsubscribe","clientId":"' .. cid .. '","id":"l5"}]')
    r = H.decode(raw)[1]
    assert.are.equal("402:subscription:Missing required parameter", r.error)
    assert.truthy(raw:find('"subscription":[]', 1, true), raw)
  end)
end)
