-- Acknowledged delivery (CometD's ack extension, docs/delivery.md): the edges
-- of the protocol over long-polling, on the wire.
local H = require "spec.helper"

local function numbers(replies)
  local got = {}
  for _, m in ipairs(replies) do
    if m.channel == "/a" then got[#got + 1] = m.data.n end
  end
  return got
end

local function connect_reply(replies)
  return H.find(replies, { channel = "/meta/connect" })
end

describe("acknowledged delivery", function()
  local srv, b

  -- a connect answered at once (advice.timeout 0) carrying ext.ack = ack
  -- (nil: no ext; anything else as is)
  local function connect(cid, ack)
    local m = H.connect_msg(cid, b:next_id(), 0)
    if ack ~= nil then m.ext = { ack = ack } end
    local r = b:post{ m }
    local cr = connect_reply(r)
    assert.is_true(cr and cr.successful, "connect failed: " .. H.encode(r))
    return numbers(r), cr.ext and cr.ext.ack, cr
  end

  local function acking_client()
    local cid, r = b:handshake{ ext = { ack = true } }
    assert.are.same({ ack = true }, r.ext)
    b:subscribe(cid, "/a")
    return cid
  end

  local function publish(from, to)
    for i = from, to do b:publish(nil, "/a", { n = i }) end
  end

  lazy_setup(function()
    srv = H.start_server{ "--queue-limit", "5" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("is negotiated at handshake only when asked for", function()
    local _, r = b:handshake()
    assert.is_nil(r.ext)
    _, r = b:handshake{ ext = { ack = false } }
    assert.is_nil(r.ext)
    _, r = b:handshake{ ext = { ack = true } }
    assert.are.same({ ack = true }, r.ext)
  end)

  it("numbers batches and drops one a connect acknowledges", function()
    local cid = acking_client()
    local got, ack = connect(cid, 0)
    assert.are.same({}, got)
    assert.are.equal(0, ack)
    publish(1, 2)
    got, ack = connect(cid, 0)
    assert.are.same({ 1, 2 }, got)
    assert.are.equal(1, ack)
    got, ack = connect(cid, 1)             -- acknowledged: nothing again
    assert.are.same({}, got)
    assert.are.equal(1, ack)
    publish(3, 3)
    got, ack = connect(cid, 1)
    assert.are.same({ 3 }, got)
    assert.are.equal(2, ack)
  end)

  it("re-sends an unacknowledged batch ahead of newer messages", function()
    local cid = acking_client()
    connect(cid, 0)
    publish(1, 2)
    local got, ack = connect(cid, 0)
    assert.are.same({ 1, 2 }, got)
    assert.are.equal(1, ack)
    publish(3, 4)
    got, ack = connect(cid, 0)             -- batch 1 was lost on the way
    assert.are.same({ 1, 2, 3, 4 }, got)
    assert.are.equal(2, ack)
    got = connect(cid, 2)
    assert.are.same({}, got)
  end)

  it("treats an unknown, stale or non-numeric ack, or none, as not acknowledging", function()
    local cid = acking_client()
    connect(cid, 0)
    publish(1, 1)
    local got = connect(cid, 0)
    assert.are.same({ 1 }, got)
    for _, bad in ipairs{ 99, -1, "1", 1.5, false, H.object{} } do
      got = connect(cid, bad)
      assert.are.same({ 1 }, got, "ack " .. H.encode(bad))
    end
    local ack
    got, ack = connect(cid, nil)
    assert.are.same({ 1 }, got, "no ext")
    got = connect(cid, ack)
    assert.are.same({}, got)
  end)

  it("ignores ext.ack on the connects of a client that did not negotiate it", function()
    local cid = b:handshake()
    b:subscribe(cid, "/a")
    connect(cid, 0)
    publish(1, 2)
    local got, ack = connect(cid, 7)
    assert.are.same({ 1, 2 }, got)
    assert.is_nil(ack)
    got, ack = connect(cid, 0)             -- not kept: nothing comes again
    assert.are.same({}, got)
    assert.is_nil(ack)
  end)

  it("counts an unacknowledged batch toward the queue limit", function()
    -- the queue keeps 5: a batch of 5 goes out unacknowledged, 5 more
    -- come; the batch goes back in front and the oldest are dropped
    local cid = acking_client()
    connect(cid, 0)
    publish(1, 5)
    local got = connect(cid, 0)
    assert.are.same({ 1, 2, 3, 4, 5 }, got)
    publish(6, 10)
    got = connect(cid, 0)
    assert.are.same({ 6, 7, 8, 9, 10 }, got)
  end)
end)

describe("acknowledged delivery and expiry", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "1" }
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("drops an unacknowledged batch with its expired client", function()
    local cid = b:handshake{ ext = { ack = true } }
    b:subscribe(cid, "/a")
    b:publish(nil, "/a", { n = 1 })
    local m = H.connect_msg(cid, "c1", 0)
    m.ext = { ack = 0 }
    local r = b:post{ m }
    assert.are.same({ 1 }, numbers(r))
    -- nobody connects again: the client expires with its batch
    H.sleep(4)
    m.id = "c2"
    local cr = connect_reply(b:post{ m })
    assert.is_false(cr.successful)
    assert.are.equal("handshake", cr.advice.reconnect)
    -- and the server goes on (its exit under the sanitizers checks that
    -- the batch was freed)
    local cid2 = b:handshake{ ext = { ack = true } }
    assert.is_string(cid2)
  end)
end)
