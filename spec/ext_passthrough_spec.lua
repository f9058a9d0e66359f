-- An incoming extension that only reads a message hands it on as it came:
-- the message keeps its JSON (lbx_json_same in core/lua/lbx_json.c), so
-- the keys of its data reach subscribers in the order the publisher sent
-- them, as with Faye, where a JavaScript object keeps its key order.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
server:add_extension {
  incoming = function(m, _, cb)
    if m.channel == "/keys" and m.data.k01 ~= 1 then m.error = "403::unexpected" end
    cb(m)
  end,
}
server:add_extension {
  incoming = function(m, cb)
    if m.channel == "/changed" then m.data.added = true end
    cb(m)
  end,
}
server:listen(0, "127.0.0.1")
]]

describe("an incoming extension that only reads", function()
  local srv, dir, b

  lazy_setup(function()
    dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", APP)
    srv = H.spawn{ dir .. "/app.lua" }
    local port, err = srv:wait_listening(10)
    if not port then srv:kill(); error(err) end
    b = H.bayeux(port)
  end)

  lazy_teardown(function()
    if srv then
      local rc = srv:stop()
      assert.are.equal(0, rc, "server exit: " .. srv:stderr())
    end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  -- publishes `data_json` (raw) on `ch` and returns the raw body of the
  -- subscriber's next connect
  local function round_trip(ch, data_json)
    local sub = b:handshake()
    b:subscribe(sub, ch)
    local pub = b:handshake()
    local st, _, body = b:post_raw(('[{"channel":"%s","clientId":"%s","id":"p1","data":%s}]')
                                   :format(ch, pub, data_json))
    assert.are.equal(200, st)
    assert.matches('"successful":true', body)
    st, _, body = b:post_raw(H.encode{ H.connect_msg(sub, "c1", 0) })
    assert.are.equal(200, st)
    return body
  end

  it("delivers the data's keys in the order they were published", function()
    local parts = {}
    for i = 1, 24 do parts[#parts + 1] = ('"k%02d":%d'):format(i, i) end
    local data = "{" .. table.concat(parts, ",") .. "}"
    local body = round_trip("/keys", data)
    assert.truthy(body:find(data, 1, true), body)
  end)

  it("delivers a changed message with the change", function()
    local body = round_trip("/changed", '{"n":1}')
    local got = H.decode(body)
    local m = H.find(got, { channel = "/changed" })
    assert.truthy(m, body)
    assert.are.equal(1, m.data.n)
    assert.are.equal(true, m.data.added)
  end)
end)
