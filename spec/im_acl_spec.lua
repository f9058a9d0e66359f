-- bayeux.ext.acl with identity (bayeux.ext.jwt): a user's own channels,
-- rooms from a claim, a publish reserved to a role; wildcard subscriptions
-- cannot read other users' private channels; the sender is stamped.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"
local acl = require "bayeux.ext.acl"

local SECRET = "0123456789abcdef0123456789abcdef-acl"
local server = bayeux.server { mount = "/faye", timeout = 2 }
server:add_extension(acl {
  private = { "/user/{sub}/**", "/dm/{sub}/*", "/dm/*/{sub}" },
  subscribe = { allow = { "/user/{sub}/**", "/room/{rooms}", "/announce/**", "/dm/{sub}/*",
                          "/dm/*/{sub}" } },
  publish = { allow = { "/user/*/inbox", "/room/{rooms}",
                        { "/announce/**", claims = { role = "admin" } } },
              deny = { { "/room/*", unless = { verified = true } } } },
})
-- the ACL was added first: it sees message.user all the same
server:add_extension(jwt { secret = SECRET })
server:route("POST", "/mint", function(req, res)
  local c = assert(req:json())
  c.exp = os.time() + 600
  res:json { token = jwt.sign(c, { secret = SECRET }) }
end)
server:listen(0, "127.0.0.1")
]]

describe("acl rules from identity", function()
  local app

  setup(function() app = H.start_app(APP) end)
  teardown(function() if app then app:finish() end end)

  local function session(claims)
    local st, _, text = H.request(app.port, "POST", "/mint", { ["Content-Type"] = "application/json" },
      H.encode(claims))
    assert.are.equal(200, st, text)
    local b = H.bayeux(app.port)
    local cid = b:handshake { ext = { token = H.decode(text).token } }
    return b, cid
  end

  local function sub(b, cid, s)
    return b:post1 { channel = "/meta/subscribe", clientId = cid, subscription = s, id = "s" }
  end

  local function ok(r) assert.is_true(r.successful, H.encode(r)) end
  local function forbidden(r, ch)
    assert.is_false(r.successful, H.encode(r))
    assert.are.equal("403:" .. ch .. ":Forbidden channel", r.error)
  end

  it("lets a user read their own channels only, whatever the wildcard", function()
    local b, alice = session { sub = "alice", rooms = { "a" } }
    ok(sub(b, alice, "/user/alice/inbox"))
    ok(sub(b, alice, "/user/alice/**"))
    ok(sub(b, alice, "/user/alice/*"))
    for _, s in ipairs { "/user/bob/inbox", "/user/*/inbox", "/user/**", "/user/*", "/**", "/*",
                         "/user/bob/**", "/user/*/**" } do
      forbidden(sub(b, alice, s), s)
    end
    -- an array is refused as a whole when one element is
    local r = sub(b, alice, { "/user/alice/inbox", "/user/bob/inbox" })
    assert.is_false(r.successful)
  end)

  it("keeps a conversation /dm/<a>/<b> to its two members", function()
    local ba, alice = session { sub = "alice" }
    local bb, bob = session { sub = "bob" }
    local bc, carol = session { sub = "carol" }
    ok(sub(ba, alice, "/dm/alice/bob"))
    ok(sub(bb, bob, "/dm/alice/bob"))
    ok(sub(ba, alice, "/dm/alice/*"))
    for _, s in ipairs { "/dm/alice/bob", "/dm/alice/*", "/dm/*/bob", "/dm/**", "/dm/*/*" } do
      forbidden(sub(bc, carol, s), s)
    end
    forbidden(sub(ba, alice, "/dm/*/*"), "/dm/*/*")
  end)

  it("opens the rooms listed in a claim, and only those", function()
    local b, alice = session { sub = "alice", rooms = { "a", "b" }, verified = true }
    ok(sub(b, alice, "/room/a"))
    ok(sub(b, alice, "/room/b"))
    forbidden(sub(b, alice, "/room/c"), "/room/c")
    forbidden(sub(b, alice, "/room/*"), "/room/*")
    ok(b:publish(alice, "/room/a", { text = "hi" }))
    forbidden(b:publish(alice, "/room/c", { text = "hi" }), "/room/c")
    -- a claim value that is not a plain segment opens nothing
    local b2, eve = session { sub = "eve", rooms = { "*", "a/../c", "" }, verified = true }
    for _, s in ipairs { "/room/*", "/room/c" } do forbidden(sub(b2, eve, s), s) end
    -- a sub holding a slash or a star owns nothing
    local b3, odd = session { sub = "*" }
    forbidden(sub(b3, odd, "/user/*/inbox"), "/user/*/inbox")
    -- deny ... unless: an unverified member may read but not write
    local b4, dan = session { sub = "dan", rooms = { "a" } }
    ok(sub(b4, dan, "/room/a"))
    forbidden(b4:publish(dan, "/room/a", { text = "hi" }), "/room/a")
  end)

  it("lets only role admin publish on /announce/**", function()
    local b1, admin = session { sub = "root", role = "admin" }
    local b2, bob = session { sub = "bob", role = "user" }
    local b3, multi = session { sub = "carol", role = { "user", "admin" } }
    ok(b1:publish(admin, "/announce/news", { text = "hello all" }))
    ok(b3:publish(multi, "/announce/news", { text = "me too" }))
    forbidden(b2:publish(bob, "/announce/news", { text = "me?" }), "/announce/news")
    ok(sub(b2, bob, "/announce/**"))
  end)

  it("delivers to an inbox with the sender stamped, not the name the sender wrote", function()
    local ba, alice = session { sub = "alice" }
    local bb, bob = session { sub = "bob" }
    ok(sub(ba, alice, "/user/alice/inbox"))
    ok(bb:publish(bob, "/user/alice/inbox", { from = "carol", text = "guess who" },
      { ext = { user = "carol" } }))
    local got = ba:post { H.connect_msg(alice, "c", 0) }
    local m
    for _, x in ipairs(got) do if x.channel == "/user/alice/inbox" then m = x end end
    assert.is_truthy(m, H.encode(got))
    assert.are.same({ from = "bob", text = "guess who" }, m.data)
    assert.are.same({ user = "bob" }, m.ext)
    -- bob cannot listen in on alice's inbox
    forbidden(sub(bb, bob, "/user/alice/inbox"), "/user/alice/inbox")
  end)
end)
