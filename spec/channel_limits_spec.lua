-- Channel caps: a publish, subscribe or unsubscribe naming a channel longer
-- than max_channel_length bytes or deeper than max_channel_depth segments
-- gets Faye's 405, and costs the server no more than reading it
-- (bayeux-faye.md §3.5, §3.7, §4; docs/operations.md "Limits").
local H = require "spec.helper"

local function deep(n) return ("/a"):rep(n) end

describe("channel caps", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "5" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("refuses a huge deep publish with 405 and keeps serving others", function()
    -- a subscriber to everything, so a publish would expand the channel
    local a = b:handshake()
    b:subscribe(a, "/**")
    b:connect(a, 0)
    local pending = b:start_connect(a, 4000)
    -- 20000 segments, 40 kB: every prefix copied and hashed is ~400 MB
    local ch = deep(20000)
    local other = H.bayeux(srv.port)
    local r = other:post1{ channel = ch, data = 1, id = "big" }
    assert.are.same({ id = "big", channel = ch, successful = false,
                      error = "405:" .. ch .. ":Invalid channel" }, r)
    -- the server is still there for everybody, and delivered nothing of it
    local ok = other:post1{ channel = "/after", data = "x", id = "p2" }
    assert.is_true(ok.successful)
    local replies = assert(pending:result(5))
    pending:close()
    local got = {}
    for _, m in ipairs(replies) do
      if m.data ~= nil then got[#got + 1] = m.channel end
    end
    assert.are.same({ "/after" }, got)
  end)

  it("accepts a channel at the caps and refuses one past each", function()
    local at_depth, past_depth = deep(128), deep(129)
    local at_len, past_len = "/" .. ("x"):rep(4095), "/" .. ("x"):rep(4096)
    for _, ch in ipairs{ at_depth, at_len } do
      assert.is_true(b:post1{ channel = ch, data = 1, id = "ok" }.successful)
    end
    for _, ch in ipairs{ past_depth, past_len } do
      local r = b:post1{ channel = ch, data = 1, id = "no" }
      assert.are.equal("405:" .. ch .. ":Invalid channel", r.error)
    end
  end)

  it("refuses subscribing and unsubscribing past the caps with 405", function()
    local cid = b:handshake()
    local pattern = deep(128) .. "/**"                  -- 129 segments
    local r = b:post1{ channel = "/meta/subscribe", clientId = cid, id = "s",
                       subscription = pattern }
    assert.are.same({ id = "s", clientId = cid, channel = "/meta/subscribe",
                      successful = false, subscription = pattern,
                      error = "405:" .. pattern .. ":Invalid channel" }, r)
    r = b:unsubscribe(cid, pattern)
    assert.are.equal("405:" .. pattern .. ":Invalid channel", r.error)
    b:subscribe(cid, deep(127) .. "/**")                -- 128: fine
  end)
end)

describe("channel caps as options", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--max-channel-length", "12", "--max-channel-depth", "2" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("follows --max-channel-length and --max-channel-depth", function()
    assert.is_true(b:post1{ channel = "/abcde/fghij", data = 1 }.successful)   -- 12, 2
    assert.are.equal("405:/abcde/fghijk:Invalid channel",
      b:post1{ channel = "/abcde/fghijk", data = 1 }.error)
    assert.are.equal("405:/a/b/c:Invalid channel",
      b:post1{ channel = "/a/b/c", data = 1 }.error)
    local cid = b:handshake()
    assert.are.equal("405:/a/b/*:Invalid channel",
      b:post1{ channel = "/meta/subscribe", clientId = cid, subscription = "/a/b/*" }.error)
    b:subscribe(cid, "/a/*")
  end)

  it("is a checked option", function()
    local p = H.spawn{ "serve", "--host", "127.0.0.1", "--port", "0", "--max-channel-depth", "0" }
    local rc = p:wait(5)
    if not rc then p:kill() end
    assert.are.equal(2, rc)
    assert.truthy(p:stderr():find("max_channel_depth", 1, true), p:stderr())
    p:cleanup()
  end)
end)
