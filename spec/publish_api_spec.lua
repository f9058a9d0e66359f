-- server:publish_api{}: an HTTP endpoint that publishes, with a bearer
-- token (lua/bayeux/init.lua).
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
server:publish_api { path = "/publish", token = "s3cret" }
server:listen(0, "127.0.0.1")
]]

describe("publish API", function()
  local srv, b

  lazy_setup(function()
    srv = H.start_app(APP)
    b = H.bayeux(srv.port)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local AUTH = "Bearer s3cret"

  local function post(body, ctype, auth)
    local st, h, raw = H.request(srv.port, "POST", "/publish",
      { ["Content-Type"] = ctype or "application/json",
        Authorization = (auth == nil) and AUTH or auth }, body)
    assert.truthy(st, "no answer")
    assert.matches("^application/json", h["content-type"] or "")
    return st, H.decode(raw), h
  end

  -- a subscriber that drains its queue with a zero-timeout connect
  local function subscriber(ch)
    local cid = b:handshake()
    b:subscribe(cid, ch)
    return cid
  end
  local function drain(cid)
    local r = b:connect(cid, 0)
    local out = {}
    for i = 2, #r do out[#out + 1] = r[i] end
    return out
  end

  it("publishes a JSON body and answers 200 ok", function()
    local cid = subscriber("/api/json")
    local st, r = post(H.encode{ channel = "/api/json", data = { text = "hi", n = 1 } })
    assert.are.equal(200, st)
    assert.is_true(r.ok)
    assert.are.equal("/api/json", r.channel)
    local got = drain(cid)
    assert.are.equal(1, #got)
    assert.are.equal("/api/json", got[1].channel)
    assert.are.same({ text = "hi", n = 1 }, got[1].data)
  end)

  it("publishes a form body, data as JSON text or else as a string", function()
    local cid = subscriber("/api/form")
    local st, r = post("channel=%2Fapi%2Fform&data=" .. H.urlencode('{"text":"from form"}'),
      "application/x-www-form-urlencoded")
    assert.are.equal(200, st)
    assert.is_true(r.ok)
    st = post("channel=/api/form&data=just+words", "application/x-www-form-urlencoded")
    assert.are.equal(200, st)
    local got = drain(cid)
    assert.are.equal(2, #got)
    assert.are.same({ text = "from form" }, got[1].data)
    assert.are.equal("just words", got[2].data)
  end)

  it("delivers to a held long-poll at once", function()
    local cid = subscriber("/api/live")
    -- held for 60 s unless the publish answers it
    local p = b:start_connect(cid, 60000, "live")
    H.sleep(0.1)
    local st = post(H.encode{ channel = "/api/live", data = { text = "now" } })
    assert.are.equal(200, st)
    local r = p:result(15)
    p:close()
    assert.truthy(r, "the long-poll was not answered")
    local m = H.find(r, { channel = "/api/live" })
    assert.truthy(m, "no delivery in " .. H.encode(r))
    assert.are.same({ text = "now" }, m.data)
  end)

  it("answers 401 without a token and with a wrong one, and publishes nothing", function()
    local cid = subscriber("/api/auth")
    local body = H.encode{ channel = "/api/auth", data = "x" }
    local st, r, h = post(body, nil, false)
    assert.are.equal(401, st)
    assert.is_false(r.ok)
    assert.matches("token", r.error)
    assert.matches("^Bearer", h["www-authenticate"])
    for _, auth in ipairs{ "Bearer wrong", "Bearer s3cre", "Bearer s3cretX", "s3cret",
                           "Basic czNjcmV0", "Bearer " } do
      st, r = post(body, nil, auth)
      assert.are.equal(401, st, auth)
      assert.is_false(r.ok)
    end
    assert.are.same({}, drain(cid))
  end)

  it("answers 400 on bad JSON", function()
    local st, r = post('{"channel": "/a", "data": ')
    assert.are.equal(400, st)
    assert.is_false(r.ok)
    assert.matches("invalid JSON", r.error)
    st, r = post('[1,2]')
    assert.are.equal(400, st)
    assert.matches("object", r.error)
  end)

  it("answers 400 on a missing channel or data", function()
    local st, r = post(H.encode{ data = "x" })
    assert.are.equal(400, st)
    assert.matches("channel", r.error)
    st, r = post(H.encode{ channel = "/a" })
    assert.are.equal(400, st)
    assert.matches("data", r.error)
    st, r = post("data=1", "application/x-www-form-urlencoded")
    assert.are.equal(400, st)
    assert.matches("channel", r.error)
  end)

  it("answers 400 with the Bayeux error on an invalid channel", function()
    local st, r = post(H.encode{ channel = "/a/*", data = "x" })
    assert.are.equal(400, st)
    assert.are.equal("405:/a/*:Invalid channel", r.error)
    st, r = post(H.encode{ channel = "no-slash", data = "x" })
    assert.are.equal(400, st)
    assert.are.equal("405:no-slash:Invalid channel", r.error)
    st, r = post(H.encode{ channel = "/meta/disconnect", data = "x" })
    assert.are.equal(400, st)
    assert.matches("^403:/meta/disconnect:", r.error)
  end)

  it("only takes POST", function()
    local st = H.request(srv.port, "GET", "/publish", { Authorization = AUTH })
    assert.are.equal(405, st)
  end)
end)
