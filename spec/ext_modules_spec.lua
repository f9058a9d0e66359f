-- The ready-made extensions in lua/bayeux/ext/: token, acl, csrf, logger.
local H = require "spec.helper"

package.path = H.ROOT .. "/lua/?.lua;" .. package.path

-- One process, five servers; the listening lines give their ports in order.
local APP = [[
local bayeux = require "bayeux"
local token = require "bayeux.ext.token"
local acl = require "bayeux.ext.acl"
local csrf = require "bayeux.ext.csrf"
local logger = require "bayeux.ext.logger"

local function new()
  return bayeux.server { mount = "/faye", timeout = 2 }
end

local s1 = new()                     -- token as a string, read from ext.token
s1:add_extension(token { token = "s3cret" })
s1:publish_api { path = "/publish", token = "api" }
s1:listen(0, "127.0.0.1")

local s2 = new()                     -- token as a function, read from ext.auth
s2:add_extension(token {
  field = "auth", error = "401::Who are you",
  token = function(tok, message, request)
    return tok == "u-" .. (request.headers["x-user"] or "?") and message.channel ~= "/closed"
  end,
})
s2:listen(0, "127.0.0.1")

local s3 = new()
s3:add_extension(acl {
  subscribe = { allow = { "/chat/**", "/news", "/users/*/inbox" },
                deny = { "/chat/admin/**" } },
  publish = { allow = { "/chat/*" }, deny = { "/chat/locked" } },
})
s3:listen(0, "127.0.0.1")

local s4 = new()
local check = csrf()
s4:add_extension(check)
s4:route("GET", "/", function(req, res)
  check.issue(req, res)
  res:html("<p>page</p>")
end)
s4:listen(0, "127.0.0.1")

local s5 = new()
s5:add_extension(logger {
  sink = function(line, entry)
    io.stderr:write("LOG ", line, " | ", tostring(entry.client_id), "\n")
  end,
  filter = function(message) return message.channel ~= "/meta/connect" end,
})
local c5 = s5:client()
s5:route("POST", "/local", function(_, res)
  c5:publish("/from-server", 1, function(ok) res:json { ok = ok } end)
end)
s5:listen(0, "127.0.0.1")
]]

local srv, dir
local ports = {}

local function start()
  if srv then return end
  dir = H.tmpdir()
  H.writefile(dir .. "/app.lua", APP)
  srv = H.spawn{ dir .. "/app.lua" }
  local deadline = H.now() + 10
  while H.now() < deadline do
    ports = {}
    for p in srv:stdout():gmatch("listening on http://[^:]+:(%d+)") do
      ports[#ports + 1] = tonumber(p)
    end
    if #ports == 5 or not srv:alive() then break end
    H.sleep(0.02)
  end
  if #ports ~= 5 then
    srv:kill()
    error("app did not start: " .. srv:stderr())
  end
end

local function stop()
  if srv then
    local rc = srv:stop()
    assert.are.equal(0, rc, "server exit: " .. srv:stderr())
  end
  if dir then os.execute("rm -rf " .. H.q(dir)) end
  srv, dir = nil, nil
end

local function drain(b, cid)
  local r = b:connect(cid, 0)
  local out = {}
  for i = 2, #r do out[#out + 1] = r[i] end
  return out
end

describe("bayeux.ext.token", function()
  setup(start)
  teardown(stop)

  local function sub(b, cid, ch, ext)
    return b:post1{ channel = "/meta/subscribe", clientId = cid, subscription = ch, ext = ext }
  end

  it("lets a handshake through without a token", function()
    local b = H.bayeux(ports[1])
    assert.truthy(b:handshake())
  end)

  it("refuses subscribes without the right token, accepts the right one", function()
    local b = H.bayeux(ports[1])
    local cid = b:handshake()
    local r = sub(b, cid, "/t")
    assert.is_false(r.successful)
    assert.are.equal("403::Forbidden", r.error)
    r = sub(b, cid, "/t", { token = "wrong" })
    assert.are.equal("403::Forbidden", r.error)
    r = sub(b, cid, "/t", { token = "s3cre" })
    assert.are.equal("403::Forbidden", r.error)
    r = sub(b, cid, "/t", { auth = "s3cret" })
    assert.are.equal("403::Forbidden", r.error)
    r = sub(b, cid, { "/t", "/u" }, { token = "s3cret" })
    assert.is_true(r.successful)
  end)

  it("refuses publishes without the token and never shows the token to subscribers", function()
    local b = H.bayeux(ports[1])
    local cid = b:handshake()
    assert.is_true(sub(b, cid, "/t2", { token = "s3cret" }).successful)
    local r = b:publish(cid, "/t2", { n = 1 })
    assert.are.equal("403::Forbidden", r.error)
    r = b:publish(cid, "/t2", { n = 2 }, { ext = { token = "s3cret", other = "kept" } })
    assert.is_true(r.successful)
    local _, _, raw = b:post{ H.connect_msg(cid, "c", 0) }
    assert.is_nil(raw:find("s3cret", 1, true), raw)
    local got = H.decode(raw)
    assert.are.equal(2, #got)
    assert.are.same({ n = 2 }, got[2].data)
    assert.are.same({ other = "kept" }, got[2].ext)
  end)

  it("trusts in-process clients (the publish API)", function()
    local b = H.bayeux(ports[1])
    local cid = b:handshake()
    assert.is_true(sub(b, cid, "/t3", { token = "s3cret" }).successful)
    local st = H.request(ports[1], "POST", "/publish",
      { ["Content-Type"] = "application/json", Authorization = "Bearer api" },
      '{"channel":"/t3","data":"via api"}')
    assert.are.equal(200, st)
    local got = drain(b, cid)
    assert.are.equal(1, #got)
    assert.are.equal("via api", got[1].data)
  end)

  it("takes a function and another ext field", function()
    local b = H.bayeux(ports[2])
    local cid = b:handshake()
    local m = { channel = "/meta/subscribe", clientId = cid, subscription = "/f",
                ext = { auth = "u-ann" } }
    local r = b:post1(m, { ["X-User"] = "ann" })
    assert.is_true(r.successful)
    r = b:post1(m, { ["X-User"] = "bob" })
    assert.are.equal("401::Who are you", r.error)
    m.ext = { token = "u-ann" }
    r = b:post1(m, { ["X-User"] = "ann" })
    assert.are.equal("401::Who are you", r.error)
    r = b:post1({ channel = "/closed", clientId = cid, data = 1, ext = { auth = "u-ann" } },
      { ["X-User"] = "ann" })
    assert.are.equal("401::Who are you", r.error)
  end)
end)

describe("bayeux.ext.acl", function()
  setup(start)
  teardown(stop)

  local function try_sub(ch)
    local b = H.bayeux(ports[3])
    local cid = b:handshake()
    return b:post1{ channel = "/meta/subscribe", clientId = cid, subscription = ch }, b, cid
  end

  it("allows subscriptions inside the allow list", function()
    for _, ch in ipairs{ "/chat/room", "/chat/a/b", "/chat/*", "/news", "/users/ann/inbox" } do
      local r = try_sub(ch)
      assert.is_true(r.successful, ch .. ": " .. tostring(r.error))
    end
  end)

  it("refuses subscriptions outside it, and deny wins, also for patterns", function()
    for _, ch in ipairs{ "/other", "/news/x", "/chat", "/chat/admin/x", "/chat/admin/**",
                         "/chat/**", "/**", "/*", "/users/*", "/users/**", "/users/ann/*" } do
      local r = try_sub(ch)
      assert.is_false(r.successful, ch)
      assert.are.equal("403:" .. ch .. ":Forbidden channel", r.error)
    end
  end)

  it("refuses a subscription array as a whole", function()
    local r, b, cid = try_sub{ "/chat/room", "/other" }
    assert.is_false(r.successful)
    assert.are.equal("403:/other:Forbidden channel", r.error)
    local pub = H.bayeux(ports[3])
    assert.is_true(pub:publish(nil, "/chat/room", 1).successful)
    assert.are.same({}, drain(b, cid))
  end)

  it("checks publishes", function()
    local b = H.bayeux(ports[3])
    assert.is_true(b:publish(nil, "/chat/room", 1).successful)
    for _, ch in ipairs{ "/chat/locked", "/chat/a/b", "/news" } do
      local r = b:publish(nil, ch, 1)
      assert.are.equal("403:" .. ch .. ":Forbidden channel", r.error)
    end
  end)

  it("covers/overlaps judge patterns conservatively", function()
    local acl = require "bayeux.ext.acl"
    assert.is_true(acl.covers("/a/**", "/a/b/c"))
    assert.is_true(acl.covers("/a/**", "/a/*"))
    assert.is_true(acl.covers("/a/**", "/a/b/**"))
    assert.is_false(acl.covers("/a/**", "/a"))
    assert.is_false(acl.covers("/a/*", "/a/**"))
    assert.is_false(acl.covers("/a/*/**", "/a/**"))
    assert.is_true(acl.covers("/*/b", "/x/b"))
    assert.is_false(acl.covers("/a/b", "/a/*"))
    assert.is_true(acl.overlaps("/a/b", "/a/*"))
    assert.is_true(acl.overlaps("/a/b/c", "/**"))
    assert.is_true(acl.overlaps("/a/*/c", "/a/x/*"))
    assert.is_false(acl.overlaps("/a/b", "/a/b/*"))
    assert.is_false(acl.overlaps("/a/**", "/b/**"))
    assert.is_false(acl.overlaps("/a/**", "/a"))
  end)
end)

describe("bayeux.ext.csrf", function()
  setup(start)
  teardown(stop)

  local function page_token()
    local st, h = H.request(ports[4], "GET", "/")
    assert.are.equal(200, st)
    local t = (h["set-cookie"] or ""):match("^bayeux_csrf=(%x+);")
    assert.truthy(t, "no cookie: " .. tostring(h["set-cookie"]))
    assert.matches("SameSite=Strict", h["set-cookie"])
    return t
  end

  local function hs(b, ext, cookie)
    return b:post1({ channel = "/meta/handshake", version = "1.0",
                     supportedConnectionTypes = { "long-polling" }, ext = ext },
                   cookie and { Cookie = cookie } or nil)
  end

  it("issues a random token per browser and keeps an existing one", function()
    local t1, t2 = page_token(), page_token()
    assert.are.equal(32, #t1)
    assert.are_not.equal(t1, t2)
    local _, h = H.request(ports[4], "GET", "/", { Cookie = "bayeux_csrf=" .. t1 })
    assert.is_nil(h["set-cookie"])
  end)

  it("accepts messages whose ext.csrf matches the cookie", function()
    local t = page_token()
    local b = H.bayeux(ports[4])
    local cookie = "theme=dark; bayeux_csrf=" .. t
    local r = hs(b, { csrf = t }, cookie)
    assert.is_true(r.successful)
    local cid = r.clientId
    r = b:post1({ channel = "/meta/subscribe", clientId = cid, subscription = "/c",
                  ext = { csrf = t } }, { Cookie = cookie })
    assert.is_true(r.successful)
    r = b:post1({ channel = "/c", clientId = cid, data = 1, ext = { csrf = t } },
      { Cookie = cookie })
    assert.is_true(r.successful)
    local connect = H.connect_msg(cid, "c", 0)
    local _, _, raw = b:post({ connect }, { Cookie = cookie })
    assert.are.equal("403::Forbidden", H.decode(raw)[1].error)   -- every message is checked
    connect.ext = { csrf = t }
    _, _, raw = b:post({ connect }, { Cookie = cookie })
    local got = H.decode(raw)
    assert.is_true(got[1].successful)
    assert.are.equal(2, #got)
    assert.is_nil(raw:find(t, 1, true), "the token was delivered: " .. raw)
  end)

  it("refuses a missing or wrong token, or no cookie", function()
    local t = page_token()
    local b = H.bayeux(ports[4])
    local r = hs(b, nil, "bayeux_csrf=" .. t)
    assert.is_false(r.successful)
    assert.are.equal("403::Forbidden", r.error)
    r = hs(b, { csrf = t:sub(1, 31) .. "0" }, "bayeux_csrf=" .. t)
    if t:sub(32) == "0" then r = hs(b, { csrf = t:sub(1, 31) .. "1" }, "bayeux_csrf=" .. t) end
    assert.are.equal("403::Forbidden", r.error)
    r = hs(b, { csrf = t }, nil)
    assert.are.equal("403::Forbidden", r.error)
    r = hs(b, { csrf = "" }, "bayeux_csrf=")
    assert.are.equal("403::Forbidden", r.error)
  end)
end)

describe("bayeux.ext.logger", function()
  setup(start)
  teardown(stop)

  it("logs channel, clientId and remote through the sink, and passes messages on", function()
    local b = H.bayeux(ports[5])
    local cid = b:handshake()
    b:subscribe(cid, "/logged")
    assert.is_true(b:publish(cid, "/logged", { n = 1 }).successful)
    local got = drain(b, cid)
    assert.are.equal(1, #got)
    assert.are.same({ n = 1 }, got[1].data)
    local st = H.request(ports[5], "POST", "/local", nil, "")
    assert.are.equal(200, st)
    local err = srv:stderr()
    local T = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ"
    assert.matches("LOG " .. T .. " 127%.0%.0%.1 %- /meta/handshake | %-", err)
    local esc = cid:gsub("%p", "%%%0")
    assert.matches("LOG " .. T .. " 127%.0%.0%.1 " .. esc .. " /meta/subscribe /logged | "
      .. esc, err)
    assert.matches("LOG " .. T .. " 127%.0%.0%.1 " .. esc .. " /logged | " .. esc, err)
    assert.matches("LOG " .. T .. " %- %S+ /from%-server", err)
    assert.is_nil(err:find("/meta/connect", 1, true), "the filter let a connect through")
  end)
end)
