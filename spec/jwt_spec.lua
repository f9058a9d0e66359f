-- bayeux.ext.jwt: per-user identity from a JSON Web Token (HS256, RS256),
-- bound to the session; server:enable_users, message.user, events' user,
-- stamping of the sender into forwarded publishes.
local H = require "spec.helper"

-- Two servers in one process: HS256 (first listening line) and RS256
-- (second). Tokens are made by the app (/mint), which owns the keys; the
-- spec forges the bad ones by hand or through /forge.
local APP = [[
local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"

local SECRET = "0123456789abcdef0123456789abcdef-spec"
local function read(p) local f = assert(io.open(p)); local s = f:read("a"); f:close(); return s end
local PRIV, PUB = read(os.getenv("PRIV")), read(os.getenv("PUB"))
local skew = 0
local function clock() return os.time() + skew end

local events = {}
local function record(name)
  return function(...)
    local args = { ... }
    local user = args[#args]
    events[#events + 1] = { ev = name, client_id = args[1],
      channel = type(args[2]) == "string" and args[2] or nil,
      user = type(user) == "table" and user.id or bayeux.null }
  end
end

local s1 = bayeux.server { mount = "/faye", timeout = 2 }
s1:add_extension(jwt { secret = SECRET, issuer = "spec", audience = "im", clock = clock })
-- an extension after jwt sees message.user
s1:add_extension { incoming = function(m, cb)
  if m.channel == "/whoami" and type(m.data) == "table" then
    m.data.seen = m.user and m.user.id or "nobody"
    m.data.role = m.user and m.user.claims.role or bayeux.null
  end
  cb(m)
end }
for _, ev in ipairs { "handshake", "subscribe", "unsubscribe", "publish", "disconnect" } do
  s1:on(ev, record(ev))
end
s1:route("POST", "/mint", function(req, res)
  local b = assert(req:json())
  local c = b.claims
  if c.exp == "soon" then c.exp = clock() + 60 end
  if b.key == "rs" then
    res:json { token = jwt.sign(c, { private_key = PRIV }) }
  else
    res:json { token = jwt.sign(c, { secret = b.secret or SECRET }) }
  end
end)
-- HS256 with the RSA public key as the secret (the classic confusion)
s1:route("POST", "/forge", function(req, res)
  res:json { token = jwt.sign(assert(req:json()).claims, { secret = PUB }) }
end)
s1:route("GET", "/user/:id", function(req, res)
  local u = s1:user(req.params.id)
  res:json { user = u and u.id or bayeux.null }
end)
s1:route("GET", "/events", function(_, res) res:json(bayeux.array(events)) end)
s1:route("POST", "/skew/:s", function(req, res)
  skew = tonumber(req.params.s); res:json { ok = true }
end)
s1:route("GET", "/now", function(_, res) res:json { now = clock() } end)
s1:listen(0, "127.0.0.1")

local s2 = bayeux.server { mount = "/faye", timeout = 2 }
s2:add_extension(jwt { public_key = PUB, required = false, leeway = 0 })
s2:route("GET", "/user/:id", function(req, res)
  local u = s2:user(req.params.id)
  res:json { user = u and u.id or bayeux.null }
end)
s2:listen(0, "127.0.0.1")
]]

local function b64url(s)
  local A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = A:sub((n >> 18) + 1, (n >> 18) + 1) .. A:sub((n >> 12 & 63) + 1, (n >> 12 & 63) + 1)
    if b then out[#out + 1] = A:sub((n >> 6 & 63) + 1, (n >> 6 & 63) + 1) end
    if c then out[#out + 1] = A:sub((n & 63) + 1, (n & 63) + 1) end
  end
  return table.concat(out)
end

describe("bayeux.ext.jwt", function()
  local app, port2, keys

  local function json_req(port, method, path, body)
    local st, _, text = H.request(port, method, path,
      body and { ["Content-Type"] = "application/json" } or nil, body and H.encode(body) or nil)
    assert.are.equal(200, st, text)
    return H.decode(text)
  end

  local function now() return json_req(app.port, "GET", "/now").now end

  local function mint(claims, key, secret)
    return json_req(app.port, "POST", "/mint", { claims = claims, key = key, secret = secret }).token
  end

  local function good(sub, extra)
    local c = { sub = sub, iss = "spec", aud = "im", exp = "soon" }
    for k, v in pairs(extra or {}) do c[k] = v end
    return mint(c)
  end

  -- the handshake reply for a token (nil: no ext at all)
  local function handshake(port, token, extra)
    local b = H.bayeux(port)
    local m = { channel = "/meta/handshake", version = "1.0",
                supportedConnectionTypes = { "long-polling" }, id = "h1" }
    if token then m.ext = { token = token } end
    for k, v in pairs(extra or {}) do m[k] = v end
    return b:post1(m), b
  end

  local function refused(port, token, err)
    local r = handshake(port, token)
    assert.is_false(r.successful)
    assert.are.equal(err, r.error)
    assert.is_nil(r.clientId)
  end

  setup(function()
    keys = H.tmpdir()
    assert(os.execute(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/priv.pem"
      .. " 2>/dev/null && openssl pkey -in %s/priv.pem -pubout -out %s/pub.pem"):format(keys, keys, keys)),
      "openssl could not make a key")
    app = H.start_app(APP, { env = ("PRIV=%s/priv.pem PUB=%s/pub.pem"):format(keys, keys) })
    local ports = {}
    for p in app:stdout():gmatch("listening on http://[^:]+:(%d+)") do ports[#ports + 1] = tonumber(p) end
    local deadline = H.now() + 10
    while #ports < 2 and H.now() < deadline do
      H.sleep(0.05)
      ports = {}
      for p in app:stdout():gmatch("listening on http://[^:]+:(%d+)") do ports[#ports + 1] = tonumber(p) end
    end
    port2 = assert(ports[2], "second server did not listen")
  end)

  teardown(function()
    if app then app:finish() end
    if keys then os.execute("rm -rf " .. H.q(keys)) end
  end)

  it("refuses a handshake without a token", function()
    refused(app.port, nil, "401::Authentication required")
  end)

  it("binds the token's sub to the session; extensions and events see it", function()
    local r, b = handshake(app.port, good("alice", { role = "admin" }))
    assert.is_true(r.successful, H.encode(r))
    local cid = r.clientId
    assert.are.same({ user = "alice" }, json_req(app.port, "GET", "/user/" .. cid))
    b:subscribe(cid, "/whoami")
    local p = b:publish(cid, "/whoami", { text = "hi" })
    assert.is_true(p.successful, H.encode(p))
    local got = b:post{ H.connect_msg(cid, "c1", 0) }
    local delivered
    for _, m in ipairs(got) do if m.channel == "/whoami" then delivered = m end end
    assert.is_truthy(delivered, H.encode(got))
    assert.are.same({ text = "hi", seen = "alice", role = "admin", from = "alice" }, delivered.data)
    assert.are.same({ user = "alice" }, delivered.ext)
    b:disconnect(cid)
    -- events carry the user; the identity goes with the session
    local deadline, evs = H.now() + 5
    repeat
      evs = json_req(app.port, "GET", "/events")
      local done = false
      for _, e in ipairs(evs) do if e.ev == "disconnect" and e.client_id == cid then done = true end end
      if done then break end
      H.sleep(0.05)
    until H.now() > deadline
    local seen = {}
    for _, e in ipairs(evs) do
      if e.client_id == cid then seen[#seen + 1] = e.ev .. ":" .. tostring(e.user) end
    end
    assert.are.same({ "handshake:alice", "subscribe:alice", "publish:alice", "unsubscribe:alice",
                      "disconnect:alice" }, seen)
    assert.are.same({ user = H.null }, json_req(app.port, "GET", "/user/" .. cid))
  end)

  it("stamps the sender into what it forwards: names cannot be spoofed", function()
    local r1, b1 = handshake(app.port, good("alice"))
    local r2, b2 = handshake(app.port, good("mallory"))
    b1:subscribe(r1.clientId, "/room/x")
    local p = b2:publish(r2.clientId, "/room/x", { from = "alice", text = "it is me, alice" },
      { ext = { user = "alice" }, user = { id = "alice" } })
    assert.is_true(p.successful, H.encode(p))
    local got = b1:post{ H.connect_msg(r1.clientId, "c1", 0) }
    local m
    for _, x in ipairs(got) do if x.channel == "/room/x" then m = x end end
    assert.is_truthy(m, H.encode(got))
    assert.are.equal("mallory", m.data.from)
    assert.are.equal("mallory", m.ext.user)
    assert.is_nil(m.user)
    -- a `user` sent in the handshake itself binds nothing
    local r3 = handshake(port2, nil, { user = { id = "alice" } })
    assert.is_true(r3.successful)
    assert.are.same({ user = H.null }, json_req(port2, "GET", "/user/" .. r3.clientId))
  end)

  it("refuses an expired token, accepts one within the leeway", function()
    local t = now()
    refused(app.port, mint { sub = "a", iss = "spec", aud = "im", exp = t - 31 }, "401::Token expired")
    assert.is_true(handshake(app.port, mint { sub = "a", iss = "spec", aud = "im", exp = t - 5 }).successful)
    refused(app.port, mint { sub = "a", iss = "spec", aud = "im", exp = t + 60, nbf = t + 120 },
      "401::Token not yet valid")
    -- a token without exp is refused (require_exp)
    refused(app.port, mint { sub = "a", iss = "spec", aud = "im" }, "401::Invalid token")
  end)

  it("refuses subscribes and publishes once the session's token expired", function()
    local r, b = handshake(app.port, good("alice"))
    assert.is_true(r.successful)
    json_req(app.port, "POST", "/skew/120")
    local ok, err = pcall(function()
      local s = b:post1 { channel = "/meta/subscribe", clientId = r.clientId, subscription = "/a", id = "s" }
      assert.are.equal("401::Token expired", s.error)
      local p = b:publish(r.clientId, "/a", { x = 1 })
      assert.are.equal("401::Token expired", p.error)
      -- a fresh token in ext lets it through; another user's is refused
      local s2 = b:post1 { channel = "/meta/subscribe", clientId = r.clientId, subscription = "/a",
                           ext = { token = good("alice") } }
      assert.is_true(s2.successful, H.encode(s2))
      local s3 = b:post1 { channel = "/meta/subscribe", clientId = r.clientId, subscription = "/b",
                           ext = { token = good("bob") } }
      assert.are.equal("401::Token subject mismatch", s3.error)
    end)
    json_req(app.port, "POST", "/skew/0")
    assert(ok, err)
  end)

  it("refuses a bad signature, a wrong alg, alg none and non-canonical base64url", function()
    local tok = good("alice")
    local h, p, s = tok:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    -- one signature byte changed (a middle character: still canonical)
    local i = 10
    local c = s:sub(i, i) == "A" and "B" or "A"
    refused(app.port, h .. "." .. p .. "." .. s:sub(1, i - 1) .. c .. s:sub(i + 1), "401::Invalid token")
    -- the payload changed (sub), the signature kept
    local forged = b64url(H.encode { sub = "bob", iss = "spec", aud = "im", exp = now() + 60 })
    refused(app.port, h .. "." .. forged .. "." .. s, "401::Invalid token")
    -- alg none, with and without a signature
    local none = b64url('{"alg":"none","typ":"JWT"}')
    refused(app.port, none .. "." .. forged .. ".", "401::Invalid token")
    refused(app.port, none .. "." .. forged .. "." .. s, "401::Invalid token")
    -- HS512 / hs256 in the header
    refused(app.port, b64url('{"alg":"HS512"}') .. "." .. p .. "." .. s, "401::Invalid token")
    refused(app.port, b64url('{"alg":"hs256"}') .. "." .. p .. "." .. s, "401::Invalid token")
    -- padding, standard base64 characters, blanks, a fourth part
    refused(app.port, h .. "." .. p .. "." .. s .. "=", "401::Invalid token")
    refused(app.port, h .. "=." .. p .. "." .. s, "401::Invalid token")
    refused(app.port, h .. "." .. p:gsub("_", "/"):gsub("-", "+") .. "." .. s .. "+", "401::Invalid token")
    refused(app.port, tok .. ".x", "401::Invalid token")
    refused(app.port, " " .. tok, "401::Invalid token")
    refused(app.port, "not a token", "401::Invalid token")
    -- the right token signed with another secret
    refused(app.port, mint({ sub = "a", iss = "spec", aud = "im", exp = "soon" }, nil,
      "another secret of at least 32 bytes!!"), "401::Invalid token")
    -- unused bits set in the signature's last character: the same bytes
    -- to a lax decoder, so only the canonical check refuses it
    local A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    local last = A:find(s:sub(-1), 1, true) - 1
    assert.are.equal(0, last % 4)     -- 32 bytes: two unused bits, zero
    refused(app.port, h .. "." .. p .. "." .. s:sub(1, -2) .. A:sub(last + 2, last + 2),
      "401::Invalid token")
    -- a crit header, rightly signed: an extension we do not know is refused
    local crit = b64url('{"alg":"HS256","typ":"JWT","crit":["exp"]}') .. "." .. p
    local f = H.tmpdir()
    H.writefile(f .. "/in", crit)
    local pipe = io.popen(("openssl dgst -sha256 -binary -hmac %s %s/in"):format(
      H.q("0123456789abcdef0123456789abcdef-spec"), f))
    local sig = pipe:read("a")
    pipe:close()
    os.execute("rm -rf " .. H.q(f))
    assert.are.equal(32, #sig)
    refused(app.port, crit .. "." .. b64url(sig), "401::Invalid token")
    -- the token as a number, an object
    local r = handshake(app.port, 42)
    assert.are.equal("401::Invalid token", r.error)
  end)

  it("accepts tokens signed by another implementation (openssl dgst), HS256 and RS256", function()
    local function openssl_sign(input, args)
      local f = H.tmpdir()
      H.writefile(f .. "/in", input)
      local p = io.popen(("openssl dgst -sha256 -binary %s %s/in"):format(args, f))
      local sig = p:read("a")
      p:close()
      os.execute("rm -rf " .. H.q(f))
      return sig
    end
    local t = now()
    local input = b64url('{"alg":"HS256","typ":"JWT"}') .. "."
      .. b64url(('{"sub":"dave","iss":"spec","aud":"im","exp":%d}'):format(t + 60))
    local sig = openssl_sign(input, "-hmac " .. H.q("0123456789abcdef0123456789abcdef-spec"))
    assert.are.equal(32, #sig)
    local r = handshake(app.port, input .. "." .. b64url(sig))
    assert.is_true(r.successful, H.encode(r))
    assert.are.same({ user = "dave" }, json_req(app.port, "GET", "/user/" .. r.clientId))
    input = b64url('{"alg":"RS256"}') .. "." .. b64url(('{"sub":"erin","exp":%d}'):format(t + 60))
    sig = openssl_sign(input, "-sign " .. H.q(keys .. "/priv.pem"))
    assert.are.equal(256, #sig)
    r = handshake(port2, input .. "." .. b64url(sig))
    assert.is_true(r.successful, H.encode(r))
    assert.are.same({ user = "erin" }, json_req(port2, "GET", "/user/" .. r.clientId))
  end)

  it("checks iss and aud", function()
    refused(app.port, mint { sub = "a", iss = "other", aud = "im", exp = "soon" }, "401::Invalid token")
    refused(app.port, mint { sub = "a", aud = "im", exp = "soon" }, "401::Invalid token")
    refused(app.port, mint { sub = "a", iss = "spec", aud = "web", exp = "soon" }, "401::Invalid token")
    assert.is_true(handshake(app.port,
      mint { sub = "a", iss = "spec", aud = { "web", "im" }, exp = "soon" }).successful)
    refused(app.port, mint { iss = "spec", aud = "im", exp = "soon" }, "401::Invalid token")
    refused(app.port, mint { sub = 7, iss = "spec", aud = "im", exp = "soon" }, "401::Invalid token")
  end)

  it("verifies RS256 with the public key, and refuses HS256 made with it (alg confusion)", function()
    local claims = { sub = "carol", exp = now() + 60 }
    local tok = mint(claims, "rs")
    local r = handshake(port2, tok)
    assert.is_true(r.successful, H.encode(r))
    assert.are.same({ user = "carol" }, json_req(port2, "GET", "/user/" .. r.clientId))
    local h, p, s = tok:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local i = 20
    local c = s:sub(i, i) == "A" and "B" or "A"
    refused(port2, h .. "." .. p .. "." .. s:sub(1, i - 1) .. c .. s:sub(i + 1), "401::Invalid token")
    local confused = json_req(app.port, "POST", "/forge", { claims = claims }).token
    refused(port2, confused, "401::Invalid token")
    -- an HS256 token of the first server is no RS256 token
    refused(port2, good("carol"), "401::Invalid token")
    -- required = false: no token is an anonymous session, stamped as nobody
    local a, b = handshake(port2, nil)
    assert.is_true(a.successful)
    local r2, b2 = handshake(port2, tok)
    b2:subscribe(r2.clientId, "/x")
    assert.is_true(b:publish(a.clientId, "/x", { from = "carol" }, { ext = { user = "carol" } }).successful)
    local got = b2:post{ H.connect_msg(r2.clientId, "c", 0) }
    local m
    for _, x in ipairs(got) do if x.channel == "/x" then m = x end end
    assert.is_truthy(m, H.encode(got))
    assert.is_nil(m.data.from)
    assert.is_nil(m.ext)
  end)
end)
