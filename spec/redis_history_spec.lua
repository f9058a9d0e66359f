-- Channel history on the Redis engine (core/engine/redis.c, "Channel
-- history"; docs/delivery.md): one history in Redis, shared by every
-- process. Two bayeux processes on one redis-server this spec starts: a
-- message published on A is numbered once and recovered on B, exactly
-- what was missed, in order and once, while publishes go on; size and ttl
-- hold in Redis; a flushed Redis is an "epoch changed".
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server {
  mount = "/faye", timeout = 60, engine = "redis://127.0.0.1:%d/0?namespace=hist",
  queue_limit = 1000000,        -- a slow test client drops nothing (2500 messages a second)
  history = { ["/chat/**"] = { size = 1000, ttl = 300 }, ["/small/*"] = { size = 3 },
              ["/short/*"] = { size = 10, ttl = 0.4, keep = 5 },
              ["/live/*"] = { size = 100000, ttl = 300 } },
}
server:listen(0, "127.0.0.1")
if os.getenv("PUBLISHER") then
  -- /live/n: 1, 2, 3, ..., 5 every 2 ms, for as long as the process runs
  local client, i = server:client(), 0
  bayeux.interval(0.002, function()
    for _ = 1, 5 do
      i = i + 1
      client:publish("/live/n", { i = i })
    end
  end)
end
]]

describe("channel history on the Redis engine", function()
  local rs, rport, a, b, ba, bb

  local function redis(...) return rs.cmd(...) end

  lazy_setup(function()
    rs = H.redis_server()
    rport = rs.port
    a = H.start_app(APP:format(rport), { env = "PUBLISHER=1" })
    b = H.start_app(APP:format(rport))
    ba, bb = H.bayeux(a.port), H.bayeux(b.port)
  end)

  lazy_teardown(function()
    if a then a:finish() end
    if b then b:finish() end
    if rs then rs.stop() end
  end)

  -- the deliveries of a long-poll connect's answer (not its reply)
  local function deliveries(c, cid)
    local out = {}
    for _, m in ipairs(c:connect(cid, 0, 30)) do
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

  local function subscribe_from(c, cid, sub, positions)
    return c:post1{ channel = "/meta/subscribe", clientId = cid, subscription = sub,
                    id = c:next_id(), ext = { history = positions } }
  end

  local function publish_n(c, ch, n)
    for i = 1, n do assert.is_true(c:publish(nil, ch, { i = i }).successful) end
  end

  -- where a channel stands, as a new session on `c` is told
  local function position(c, ch)
    local cid = c:handshake()
    local r = subscribe_from(c, cid, ch, H.object())
    assert.is_true(r.successful)
    c:disconnect(cid)
    return r.ext.history[ch]
  end

  it("numbers a publish once for every process: published on A, delivered on B", function()
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/chat/o", H.object())
    assert.are.same({ offset = 0, epoch = r.ext.history["/chat/o"].epoch },
                    r.ext.history["/chat/o"])
    publish_n(ba, "/chat/o", 2)
    publish_n(bb, "/chat/o", 1)
    local got = {}
    while #got < 3 do
      for _, m in ipairs(deliveries(bb, cid)) do got[#got + 1] = m end
    end
    assert.are.same({ 1, 2, 3 }, offsets(got))
    assert.are.same({ 1, 2, 1 }, { got[1].data.i, got[2].data.i, got[3].data.i })
    assert.are.equal(r.ext.history["/chat/o"].epoch, got[3].ext.history.epoch)
    assert.are.equal(":3", redis("LLEN", "hist/hm/chat/o"))     -- kept once, in Redis
  end)

  it("recovers on B what a session of A missed, in order, then live", function()
    publish_n(ba, "/chat/r", 2)
    local seen = position(ba, "/chat/r")
    assert.are.equal(2, seen.offset)
    publish_n(ba, "/chat/r", 3)                 -- 3, 4, 5: missed
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/chat/r", { ["/chat/r"] = seen })
    assert.is_true(r.successful)
    assert.are.same({ offset = 5, epoch = seen.epoch, recovered = true },
                    r.ext.history["/chat/r"])
    publish_n(ba, "/chat/r", 1)                 -- 6: live
    local got = {}
    while #got < 4 do
      for _, m in ipairs(deliveries(bb, cid)) do got[#got + 1] = m end
    end
    assert.are.same({ 3, 4, 5, 6 }, offsets(got))
  end)

  it("replays exactly what was missed while publishes go on, on either process", function()
    for round = 1, 10 do
      local c = round % 2 == 0 and ba or bb
      -- a session that saw some of the stream, then ended
      local cid = c:handshake()
      local r = subscribe_from(c, cid, "/live/n", H.object())
      assert.is_true(r.successful)
      local epoch = r.ext.history["/live/n"].epoch
      local last
      repeat
        local got = deliveries(c, cid)
        if #got > 0 then last = got[#got].ext.history.offset end
      until last
      c:disconnect(cid)
      H.sleep(0.05)                             -- more published meanwhile
      -- the next session recovers from there, with the stream flowing
      cid = c:handshake()
      r = subscribe_from(c, cid, "/live/n", { ["/live/n"] = { offset = last, epoch = epoch } })
      assert.is_true(r.successful)
      local h = r.ext.history["/live/n"]
      assert.is_true(h.recovered, H.encode(h))
      local got = {}
      repeat
        for _, m in ipairs(deliveries(c, cid)) do got[#got + 1] = m end
      until #got > 0 and got[#got].ext.history.offset >= h.offset + 20
      -- on a failure, the offsets received as ranges ("3-9,12-40")
      local ranges, from = {}, nil
      for i, m in ipairs(got) do
        local o, nexto = m.ext.history.offset, got[i + 1] and got[i + 1].ext.history.offset
        from = from or o
        if nexto ~= o + 1 then
          ranges[#ranges + 1] = from == o and tostring(o) or (from .. "-" .. o)
          from = nil
        end
      end
      local seen = ("round %d: from %d, answer %s, got %s"):format(round, last, H.encode(h),
                                                                  table.concat(ranges, ","))
      for i, m in ipairs(got) do
        assert.are.equal(last + i, m.ext.history.offset, seen)
        assert.are.equal(m.ext.history.offset, m.data.i, seen)   -- one publisher, counting
      end
      c:disconnect(cid)
    end
  end)

  it("keeps `size` messages in Redis, and answers 'too old' before them", function()
    publish_n(ba, "/small/a", 5)                -- keeps 3, 4, 5
    assert.are.equal(":3", redis("LLEN", "hist/hm/small/a"))
    local epoch = position(bb, "/small/a").epoch
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/small/a", { ["/small/a"] = { offset = 1, epoch = epoch } })
    assert.are.same({ offset = 5, epoch = epoch, recovered = false, reason = "too old" },
                    r.ext.history["/small/a"])
    cid = bb:handshake()
    r = subscribe_from(bb, cid, "/small/a", { ["/small/a"] = { offset = 2, epoch = epoch } })
    assert.is_true(r.ext.history["/small/a"].recovered)
    assert.are.same({ 3, 4, 5 }, offsets(deliveries(bb, cid)))
  end)

  it("forgets messages after the ttl; the position stays for keep", function()
    publish_n(ba, "/short/t", 2)
    local epoch = position(bb, "/short/t").epoch
    H.sleep(1.2)                                -- three times the 0.4 s ttl
    assert.are.equal(":0", redis("EXISTS", "hist/hm/short/t"))
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/short/t", { ["/short/t"] = { offset = 1, epoch = epoch } })
    assert.are.equal("too old", r.ext.history["/short/t"].reason)
    -- a client that saw the last one missed nothing: recovered, empty
    cid = bb:handshake()
    r = subscribe_from(bb, cid, "/short/t", { ["/short/t"] = { offset = 2, epoch = epoch } })
    assert.is_true(r.ext.history["/short/t"].recovered)
    publish_n(ba, "/short/t", 1)
    local got = {}
    while #got < 1 do                           -- from A to B: not in the same turn
      for _, m in ipairs(deliveries(bb, cid)) do got[#got + 1] = m end
    end
    assert.are.same({ 3 }, offsets(got))
  end)

  it("answers 'no history' for a channel without it", function()
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/plain", { ["/plain"] = { offset = 0, epoch = "x" } })
    assert.is_true(r.successful)
    assert.are.equal("no history", r.ext.history["/plain"].reason)
  end)

  it("answers 'epoch changed' once Redis lost the history (flushed)", function()
    publish_n(ba, "/chat/e", 2)
    local seen = position(bb, "/chat/e")
    assert.are.equal(2, seen.offset)
    assert.are.equal("+OK", redis("FLUSHALL"))
    publish_n(ba, "/chat/e", 1)
    local cid = bb:handshake()
    local r = subscribe_from(bb, cid, "/chat/e", { ["/chat/e"] = seen })
    assert.is_true(r.successful)
    local h = r.ext.history["/chat/e"]
    assert.are.equal("epoch changed", h.reason)
    assert.are_not.equal(seen.epoch, h.epoch)
    assert.are.equal(1, h.offset)
  end)
end)
