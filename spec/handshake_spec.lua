-- /meta/handshake (bayeux-faye.md §3.1, §6.1, §6.7, §18.4-5)
local H = require "spec.helper"

describe("/meta/handshake", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function hs(fields)
    local m = { channel = "/meta/handshake", id = "h1" }
    for k, v in pairs(fields or {}) do m[k] = v end
    return b:post{ m }
  end

  it("succeeds with the exact reply fields", function()
    local r = hs{ version = "1.0", supportedConnectionTypes = { "long-polling" } }
    assert.are.equal(1, #r)
    r = r[1]
    assert.are.same({ "advice", "channel", "clientId", "id", "successful", "supportedConnectionTypes", "version" },
      H.keys(r))
    assert.are.equal("h1", r.id)
    assert.are.equal("/meta/handshake", r.channel)
    assert.is_true(r.successful)
    assert.are.equal("1.0", r.version)
    assert.are.same(H.SERVER_TYPES, r.supportedConnectionTypes)
    assert.are.same({ reconnect = "retry", interval = 0, timeout = 2000 }, r.advice)
  end)

  it("hands out 31-character [0-9a-z] client ids, all different", function()
    local seen = {}
    for _ = 1, 20 do
      local cid = b:handshake()
      assert.are.equal(31, #cid)
      assert.truthy(cid:match("^[0-9a-z]+$"), cid)
      assert.is_nil(seen[cid])
      seen[cid] = true
    end
  end)

  it("does not echo ext, minimumVersion or client advice", function()
    local r = hs{ version = "1.0", minimumVersion = "0.9", supportedConnectionTypes = { "long-polling" },
                  ext = { auth = "x" }, advice = { timeout = 0 } }
    r = r[1]
    assert.is_true(r.successful)
    assert.is_nil(r.ext)
    assert.is_nil(r.minimumVersion)
    assert.is_nil(r.timestamp)
    assert.is_nil(r.authSuccessful)
    assert.are.same({ reconnect = "retry", interval = 0, timeout = 2000 }, r.advice)
  end)

  it("accepts any truthy version value", function()
    local r = hs{ version = "banana", supportedConnectionTypes = { "long-polling" } }[1]
    assert.is_true(r.successful)
    assert.are.equal("1.0", r.version)
    r = hs{ version = 2, supportedConnectionTypes = { "callback-polling" } }[1]
    assert.is_true(r.successful)
  end)

  it("succeeds when at least one offered type is supported", function()
    local r = hs{ version = "1.0", supportedConnectionTypes = { "foo", "callback-polling" } }[1]
    assert.is_true(r.successful)
    assert.are.same(H.SERVER_TYPES, r.supportedConnectionTypes)
    r = hs{ version = "1.0", supportedConnectionTypes = { "in-process" } }[1]
    assert.is_true(r.successful)
  end)

  it("rejects a missing version with 402", function()
    local r = hs{ supportedConnectionTypes = { "long-polling" } }[1]
    assert.are.same({ "advice", "channel", "error", "id", "successful", "supportedConnectionTypes", "version" },
      H.keys(r))
    assert.is_false(r.successful)
    assert.are.equal("402:version:Missing required parameter", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
    assert.are.equal("1.0", r.version)
    assert.are.same(H.SERVER_TYPES, r.supportedConnectionTypes)
    assert.is_nil(r.clientId)
  end)

  it("rejects unsupported connection types with 301 listing the client's types", function()
    local r = hs{ version = "1.0", supportedConnectionTypes = { "iframe", "flash" } }[1]
    assert.is_false(r.successful)
    assert.are.equal("301:iframe,flash:Connection types not supported", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
    assert.are.equal("1.0", r.version)
    assert.are.same(H.SERVER_TYPES, r.supportedConnectionTypes)
    assert.is_nil(r.clientId)
    r = hs{ version = "1.0", supportedConnectionTypes = { "foo" } }[1]
    assert.are.equal("301:foo:Connection types not supported", r.error)
  end)

  it("rejects an empty supportedConnectionTypes list with 301 and empty params", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":[],"id":"e"}]')
    local r = H.decode(raw)[1]
    assert.is_false(r.successful)
    assert.are.equal("301::Connection types not supported", r.error)
  end)

  it("rejects a missing supportedConnectionTypes with 402", function()
    local r = hs{ version = "1.0" }[1]
    assert.is_false(r.successful)
    assert.are.equal("402:supportedConnectionTypes:Missing required parameter", r.error)
    assert.are.same({ reconnect = "handshake" }, r.advice)
    assert.is_nil(r.clientId)
  end)

  it("lets the later check win when several fail", function()
    -- version missing AND no common type -> 301 overwrites 402:version
    local r = hs{ supportedConnectionTypes = { "foo" } }[1]
    assert.are.equal("301:foo:Connection types not supported", r.error)
    -- version missing AND types missing -> 402:supportedConnectionTypes
    r = hs{}[1]
    assert.are.equal("402:supportedConnectionTypes:Missing required parameter", r.error)
  end)

  it("echoes a clientId sent on a failed handshake", function()
    local r = hs{ clientId = "abc", supportedConnectionTypes = { "foo" }, version = "1.0" }[1]
    assert.is_false(r.successful)
    assert.are.equal("abc", r.clientId)
  end)

  it("gives a fresh id even when the request carries a clientId", function()
    local r = hs{ clientId = "abc", supportedConnectionTypes = { "long-polling" }, version = "1.0" }[1]
    assert.is_true(r.successful)
    assert.are_not.equal("abc", r.clientId)
    assert.are.equal(31, #r.clientId)
  end)

  it("echoes only truthy ids", function()
    local _, _, raw = b:post_raw('[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":0},'
      .. '{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":""},'
      .. '{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]},'
      .. '{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":7}]')
    local r = H.decode(raw)
    assert.are.equal(4, #r)
    local ids = 0
    for _, x in ipairs(r) do
      assert.is_true(x.successful)
      if x.id ~= nil then ids = ids + 1; assert.are.equal(7, x.id) end
    end
    assert.are.equal(1, ids)
    assert.falsy(raw:find('"id":0', 1, true))
    assert.falsy(raw:find('"id":""', 1, true))
  end)

  it("processes the other messages of a batch with a handshake", function()
    local r = b:post{
      { channel = "/meta/handshake", version = "1.0", supportedConnectionTypes = { "long-polling" }, id = "a" },
      { channel = "/hs/batch", data = "x", id = "b" },
    }
    assert.are.equal(2, #r)
    assert.is_true(H.find(r, { id = "a" }).successful)
    local p = H.find(r, { id = "b" })
    assert.is_true(p.successful)
    assert.are.equal("/hs/batch", p.channel)
  end)

  it("gives a client that works immediately", function()
    local cid = b:handshake()
    local r = b:connect(cid, 0)
    assert.is_true(r[1].successful)
    assert.are.equal(cid, r[1].clientId)
  end)
end)
