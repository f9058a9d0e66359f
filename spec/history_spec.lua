-- Channel history with recovery (core/bayeux/history.c, docs/delivery.md):
-- the messages of a history channel carry ext.history = { offset, epoch };
-- a subscribe naming the last position a client saw gets what it missed,
-- in order and once, or a reason why it cannot ("too old", "epoch
-- changed"); channels without history, and servers without it, unchanged.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server {
  mount = "/faye", timeout = 60,
  history = { ["/chat/**"] = { size = 100, ttl = 300 }, ["/small/*"] = { size = 3 } },
}
server:history("/short/*", { size = 10, ttl = 0.3 })
server:history("/brief/*", { size = 10, ttl = 0.2, keep = 0.3 })
server:listen(0, "127.0.0.1")
]]

describe("channel history", function()
  local srv, b

  local function start() srv = H.start_app(APP); b = H.bayeux(srv.port) end

  lazy_setup(start)
  lazy_teardown(function() if srv then srv:finish() end end)

  -- the deliveries of a long-poll connect's answer (not its reply)
  local function deliveries(cid)
    local out = {}
    for _, m in ipairs(b:connect(cid, 0, 30)) do
      if m.channel ~= "/meta/connect" then out[#out + 1] = m end
    end
    return out
  end

  local function offsets(msgs)
    local out = {}
    for _, m in ipairs(msgs) do
      out[#out + 1] = m.ext and m.ext.history and m.ext.history.offset or false
    end
    return out
  end

  local function publish_n(ch, n)
    for i = 1, n do assert.is_true(b:publish(nil, ch, { i = i }).successful) end
  end

  -- a subscribe with positions (ext.history); returns the reply
  local function subscribe_from(cid, sub, positions)
    return b:post1{ channel = "/meta/subscribe", clientId = cid, subscription = sub,
                    id = b:next_id(), ext = { history = positions } }
  end

  -- a listener's view of a channel: the epoch and top offset now
  local function position(ch)
    local cid = b:handshake()
    local r = subscribe_from(cid, ch, H.object())
    assert.is_true(r.successful)
    b:disconnect(cid)
    return r.ext.history[ch]
  end

  it("stamps each message of a history channel with an increasing offset", function()
    local cid = b:handshake()
    b:subscribe(cid, "/chat/o")
    publish_n("/chat/o", 3)
    local got = deliveries(cid)
    assert.are.same({ 1, 2, 3 }, offsets(got))
    assert.is_string(got[1].ext.history.epoch)
    assert.are.equal(got[1].ext.history.epoch, got[3].ext.history.epoch)
  end)

  it("leaves a channel without history unaffected, and drops a forged position", function()
    local cid = b:handshake()
    b:subscribe(cid, "/plain")
    assert.is_true(b:publish(nil, "/plain", { a = 1 }, { ext = { history = { offset = 9 },
                                                                 other = 1 } }).successful)
    local got = deliveries(cid)
    assert.are.equal(1, #got)
    assert.are.same({ other = 1 }, got[1].ext)
  end)

  it("replays what a new session missed, in order, before what is newer", function()
    publish_n("/chat/r", 2)
    local seen = position("/chat/r")
    assert.are.equal(2, seen.offset)
    publish_n("/chat/r", 3)                     -- 3, 4, 5: missed
    local cid = b:handshake()
    local r = subscribe_from(cid, "/chat/r", { ["/chat/r"] = seen })
    assert.is_true(r.successful)
    assert.are.same({ offset = 5, epoch = seen.epoch, recovered = true },
                    r.ext.history["/chat/r"])
    publish_n("/chat/r", 1)                     -- 6: live
    local got = deliveries(cid)
    assert.are.same({ 3, 4, 5, 6 }, offsets(got))
    assert.are.same({ 1, 2, 3, 1 }, { got[1].data.i, got[2].data.i, got[3].data.i,
                                      got[4].data.i })
  end)

  it("sends no message twice when a publish follows the subscribe in one batch", function()
    publish_n("/chat/d", 2)
    local seen = position("/chat/d")
    publish_n("/chat/d", 2)                     -- 3, 4
    local cid = b:handshake()
    local replies = b:post{
      { channel = "/meta/subscribe", clientId = cid, subscription = "/chat/d", id = "s",
        ext = { history = { ["/chat/d"] = { offset = 1, epoch = seen.epoch } } } },
      { channel = "/chat/d", clientId = cid, data = { i = 5 }, id = "p" },
    }
    assert.are.equal(2, #replies)
    assert.are.same({ 2, 3, 4, 5 }, offsets(deliveries(cid)))
    -- and nothing more is queued
    publish_n("/chat/d", 1)
    assert.are.same({ 6 }, offsets(deliveries(cid)))
  end)

  it("answers 'too old' past the size limit, and replays what is still kept", function()
    publish_n("/small/a", 5)                    -- keeps 3, 4, 5
    local epoch = position("/small/a").epoch
    local cid = b:handshake()
    local r = subscribe_from(cid, "/small/a", { ["/small/a"] = { offset = 1, epoch = epoch } })
    assert.is_true(r.successful)
    assert.are.same({ offset = 5, epoch = epoch, recovered = false, reason = "too old" },
                    r.ext.history["/small/a"])
    local cid2 = b:handshake()
    r = subscribe_from(cid2, "/small/a", { ["/small/a"] = { offset = 2, epoch = epoch } })
    assert.is_true(r.ext.history["/small/a"].recovered)
    assert.are.same({ 3, 4, 5 }, offsets(deliveries(cid2)))
  end)

  it("forgets messages after the ttl", function()
    publish_n("/short/t", 2)
    local epoch = position("/short/t").epoch
    H.sleep(1.2)                                -- four times the 0.3 s ttl
    local cid = b:handshake()
    local r = subscribe_from(cid, "/short/t", { ["/short/t"] = { offset = 1, epoch = epoch } })
    assert.are.equal("too old", r.ext.history["/short/t"].reason)
    -- a client that saw the last one missed nothing: recovered, empty
    local cid2 = b:handshake()
    r = subscribe_from(cid2, "/short/t", { ["/short/t"] = { offset = 2, epoch = epoch } })
    assert.is_true(r.ext.history["/short/t"].recovered)
    publish_n("/short/t", 1)
    assert.are.same({ 3 }, offsets(deliveries(cid2)))
  end)

  it("covers the channels of a wildcard subscription, each from its own offset", function()
    publish_n("/chat/w/a", 3)
    publish_n("/chat/w/b", 2)
    publish_n("/chat/w/c", 1)
    local ea = position("/chat/w/a").epoch
    local cid = b:handshake()
    local r = subscribe_from(cid, "/chat/w/*", {
      ["/chat/w/a"] = { offset = 1, epoch = ea },
      ["/chat/w/b"] = { offset = 2, epoch = ea },
      ["/chat/x/y"] = { offset = 0, epoch = ea },   -- outside the subscription: ignored
    })
    assert.is_true(r.successful)
    local h = r.ext.history
    assert.is_true(h["/chat/w/a"].recovered)
    assert.is_true(h["/chat/w/b"].recovered)
    assert.are.same({ offset = 1, epoch = ea }, h["/chat/w/c"])   -- a starting point
    assert.is_nil(h["/chat/x/y"])
    local got = deliveries(cid)
    local by = {}
    for _, m in ipairs(got) do
      by[m.channel] = by[m.channel] or {}
      table.insert(by[m.channel], m.ext.history.offset)
    end
    assert.are.same({ ["/chat/w/a"] = { 2, 3 } }, by)
  end)

  it("answers 'no history' for a channel without it", function()
    local cid = b:handshake()
    local r = subscribe_from(cid, "/plain", { ["/plain"] = { offset = 0, epoch = "x" } })
    assert.is_true(r.successful)
    assert.are.equal("no history", r.ext.history["/plain"].reason)
  end)

  it("answers a bad position with a clear error and keeps serving", function()
    local cid = b:handshake()
    local bad = {
      "x", 3, H.array{ 1 },
      { ["/chat/a"] = "x" },
      { ["/chat/a"] = { offset = -1, epoch = "e" } },
      { ["/chat/a"] = { offset = "3", epoch = "e" } },
      { ["/chat/a"] = { offset = 1.5, epoch = "e" } },
      { ["/chat/a"] = { offset = 1 } },
    }
    for _, v in ipairs(bad) do
      local r = subscribe_from(cid, "/chat/a", v)
      assert.is_false(r.successful)
      assert.are.equal("400:ext.history:Bad history position", r.error)
    end
    -- an offset past the top, in this epoch: not a crash, a reason
    local epoch = position("/chat/a").epoch
    local r = subscribe_from(cid, "/chat/a", { ["/chat/a"] = { offset = 1e15, epoch = epoch } })
    assert.is_true(r.successful)
    assert.are.equal("unknown offset", r.ext.history["/chat/a"].reason)
    assert.is_true(b:publish(nil, "/chat/a", { ok = true }).successful)
  end)

  it("forgets a quiet channel after keep; an old offset is then too old", function()
    publish_n("/brief/a", 2)
    local seen = position("/brief/a")
    assert.are.equal(2, seen.offset)
    H.sleep(1.2)                                -- past ttl + keep, and the 1 s sweep
    publish_n("/plain", 1)                      -- a publish sweeps
    local cid = b:handshake()
    local r = subscribe_from(cid, "/brief/a", { ["/brief/a"] = seen })
    assert.are.equal("too old", r.ext.history["/brief/a"].reason)
    -- published on again: its offsets start above the forgotten ones
    local cid2 = b:handshake()
    b:subscribe(cid2, "/brief/a")
    publish_n("/brief/a", 1)
    assert.are.same({ 3 }, offsets(deliveries(cid2)))
  end)

  it("answers 'epoch changed' after a restart (history lost)", function()
    publish_n("/chat/e", 2)
    local seen = position("/chat/e")
    srv:finish()
    start()
    publish_n("/chat/e", 1)
    local cid = b:handshake()
    local r = subscribe_from(cid, "/chat/e", { ["/chat/e"] = seen })
    assert.is_true(r.successful)
    local h = r.ext.history["/chat/e"]
    assert.are.equal("epoch changed", h.reason)
    assert.are_not.equal(seen.epoch, h.epoch)
    assert.are.equal(1, h.offset)
  end)
end)

describe("channel history options", function()
  local function run(src)
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", src)
    local p = H.spawn({ dir .. "/app.lua" })
    assert.are.equal(1, p:wait(20))
    local err = p:stderr()
    os.execute("rm -rf " .. H.q(dir))
    return err
  end

  it("refuses history with faye mode or Redis shards, and bad sizes and patterns", function()
    assert.matches("history needs the memory engine, or the Redis engine in native mode", run [[
      require("bayeux").server { engine = "redis://127.0.0.1:1?mode=faye",
                                 history = { ["/a/*"] = {} } }
    ]])
    assert.matches("history needs the memory engine, or the Redis engine in native mode", run [[
      require("bayeux").server { engine = { shards = { "redis://127.0.0.1:1",
                                                       "redis://127.0.0.1:2" } },
                                 history = { ["/a/*"] = {} } }
    ]])
    assert.matches("size = messages", run [[
      require("bayeux").server { history = { ["/a/*"] = { size = 0 } } }
    ]])
    assert.matches("not a channel name or pattern", run [[
      require("bayeux").server { history = { ["a b"] = { size = 1 } } }
    ]])
  end)

  it("is an option of bayeux serve", function()
    local srv = H.start_server { "--history", "/chat/**:2:300", "--history", "/x:5:1.5" }
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    b:subscribe(cid, "/chat/a")
    for i = 1, 3 do assert.is_true(b:publish(nil, "/chat/a", { i = i }).successful) end
    local offs = {}
    for _, m in ipairs(b:connect(cid, 0, 30)) do
      if m.channel == "/chat/a" then offs[#offs + 1] = m.ext.history.offset end
    end
    assert.are.same({ 1, 2, 3 }, offs)
    local cid2 = b:handshake()
    local r = b:post1{ channel = "/meta/subscribe", clientId = cid2, subscription = "/chat/a",
                       id = "s", ext = { history = H.object() } }
    local epoch = r.ext.history["/chat/a"].epoch
    r = b:post1{ channel = "/meta/subscribe", clientId = cid2, subscription = "/chat/a",
                 id = "s2", ext = { history = { ["/chat/a"] = { offset = 0, epoch = epoch } } } }
    assert.are.equal("too old", r.ext.history["/chat/a"].reason)   -- size 2 kept 2, 3
    srv:finish()
  end)

  it("changes nothing for a server without history", function()
    local srv = H.start_app [[
      local server = require("bayeux").server { mount = "/faye" }
      server:listen(0, "127.0.0.1")
    ]]
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    local r = b:post1{ channel = "/meta/subscribe", clientId = cid, subscription = "/chat/a",
                       id = "s", ext = { history = "not even looked at" } }
    assert.is_true(r.successful)
    assert.is_nil(r.ext)
    srv:finish()
  end)
end)
