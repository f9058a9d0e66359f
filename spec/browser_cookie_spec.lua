-- Opt-in cookie binding for the HTTP transports (issue 14; CometD's way):
-- with --browser-cookie, a handshake over long-polling or callback-polling
-- sets an HttpOnly BAYEUX_BROWSER cookie and binds the new client to it; a
-- request for that clientId without the cookie is refused. Off by default.
local H = require "spec.helper"
local WS = require "spec.ws_client"

local HS = { channel = "/meta/handshake", version = "1.0",
             supportedConnectionTypes = { "long-polling", "callback-polling", "websocket" },
             id = "h" }

-- The browser id a Set-Cookie header gives, and the header.
local function browser_of(h)
  local sc = h["set-cookie"]
  return sc and sc:match("BAYEUX_BROWSER=(%w+)"), sc
end

local function cookie(id) return { Cookie = "theme=dark; BAYEUX_BROWSER=" .. id } end

describe("browser cookie binding (--browser-cookie)", function()
  local srv, port

  lazy_setup(function() srv = H.start_server{ "--browser-cookie" }; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  -- A handshake without a cookie: the client id and the browser id.
  local function handshake(b, headers)
    local r, h = b:post({ HS }, headers)
    assert.is_true(r[1].successful)
    return r[1].clientId, browser_of(h), h
  end

  it("sets an HttpOnly BAYEUX_BROWSER cookie at handshake", function()
    local b = H.bayeux(port)
    local cid, browser, h = handshake(b)
    assert.is_string(cid)
    assert.is_string(browser)
    assert.matches("HttpOnly", h["set-cookie"])
    assert.matches("Path=/", h["set-cookie"])
  end)

  it("serves requests that carry the cookie", function()
    local b = H.bayeux(port)
    local cid, browser = handshake(b)
    local r = b:post({ { channel = "/meta/subscribe", clientId = cid, subscription = "/c",
                         id = "s" } }, cookie(browser))
    assert.is_true(r[1].successful)
    r = b:post({ H.connect_msg(cid, "c1", 0) }, cookie(browser))
    assert.is_true(r[1].successful)
  end)

  it("refuses a request for the clientId without the cookie, or with another", function()
    local b = H.bayeux(port)
    local cid, browser = handshake(b)
    local _, other = handshake(H.bayeux(port))
    assert.are_not.equal(browser, other)
    for _, headers in ipairs{ {}, cookie(other), { Cookie = "BAYEUX_BROWSER=" } } do
      local r = b:post({ H.connect_msg(cid, "c", 0) }, headers)
      assert.is_false(r[1].successful)
      assert.are.equal("409:" .. cid .. ":Client bound to another browser", r[1].error)
      r = b:post({ { channel = "/meta/subscribe", clientId = cid, subscription = "/x",
                     id = "s" } }, headers)
      assert.are.equal("409:" .. cid .. ":Client bound to another browser", r[1].error)
      r = b:post({ { channel = "/meta/disconnect", clientId = cid, id = "d" } }, headers)
      assert.are.equal("409:" .. cid .. ":Client bound to another browser", r[1].error)
    end
    -- the owner is untouched: still a client
    local r = b:post({ H.connect_msg(cid, "c2", 0) }, cookie(browser))
    assert.is_true(r[1].successful)
  end)

  it("refuses callback-polling (JSONP) without the cookie", function()
    local b = H.bayeux(port)
    local cid, browser = handshake(b)
    local msg = H.encode{ H.connect_msg(cid, "j", 0) }
    local path = "/faye?message=" .. H.urlencode(msg) .. "&jsonp=cb"
    local st, _, body = H.request(port, "GET", path)
    assert.are.equal(200, st)
    assert.matches("409:" .. cid .. ":Client bound to another browser", body, 1, true)
    st, _, body = H.request(port, "GET", path, cookie(browser))
    assert.are.equal(200, st)
    assert.matches('"successful":true', body, 1, true)
  end)

  it("binds the clients of a browser that already has its cookie to it", function()
    local b = H.bayeux(port)
    local _, browser = handshake(b)
    local cid2, again = handshake(b, cookie(browser))
    assert.is_nil(again)            -- no new cookie
    assert.is_true(b:post({ H.connect_msg(cid2, "c", 0) }, cookie(browser))[1].successful)
    assert.is_false(b:post({ H.connect_msg(cid2, "c", 0) })[1].successful)
  end)

  it("keeps a stolen clientId from taking the deliveries over a WebSocket", function()
    local b = H.bayeux(port)
    local cid, browser = handshake(b)
    b:post({ { channel = "/meta/subscribe", clientId = cid, subscription = "/v", id = "s" } },
           cookie(browser))
    local ws = assert(WS.open(port, "/faye"))
    ws:send_json{ { channel = "/meta/connect", clientId = cid, connectionType = "websocket",
                    id = "x" } }
    local v = assert(ws:recv_json(5))
    assert.is_false(v[1].successful)
    assert.are.equal("409:" .. cid .. ":Client bound to another browser", v[1].error)
    -- the owner gets what is published
    assert.is_true(H.bayeux(port):publish(nil, "/v", "for the owner").successful)
    local r = b:post({ H.connect_msg(cid, "c", 0) }, cookie(browser))
    local got = 0
    for _, m in ipairs(r) do if m.channel == "/v" then got = got + 1 end end
    assert.are.equal(1, got)
    ws:close()
    -- the owner's own socket, with its cookie, is served
    local mine = assert(WS.open(port, "/faye", { "Cookie: BAYEUX_BROWSER=" .. browser }))
    mine:send_json{ { channel = "/meta/connect", clientId = cid, connectionType = "websocket",
                      id = "y" } }
    v = assert(mine:recv_json(5))
    assert.is_true(v[1].successful)
    mine:close()
  end)

  it("refuses an EventSource for the clientId without the cookie", function()
    local b = H.bayeux(port)
    local cid = handshake(b)
    local c = H.connect(port)
    c:send("GET /faye/" .. cid .. " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    local st, _, body = c:read_response(5)
    assert.are.equal(409, st)
    assert.matches("another browser", body)
    c:close()
  end)
end)

describe("browser cookie binding by default", function()
  local srv, port

  lazy_setup(function() srv = H.start_server{}; port = srv.port end)
  lazy_teardown(function() if srv then srv:finish() end end)

  it("is off: no cookie, and a clientId alone is enough (as Faye)", function()
    local b = H.bayeux(port)
    local r, h = b:post{ HS }
    assert.is_nil(h["set-cookie"])
    local cid = r[1].clientId
    assert.is_true(H.bayeux(port):post({ H.connect_msg(cid, "c", 0) })[1].successful)
  end)
end)
