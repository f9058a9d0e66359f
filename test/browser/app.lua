-- test/browser/app.lua - the server test/browser/*.test.js run: a Bayeux
-- mount at /faye (bayeux's own client at /faye/client.js) and the test page
-- at /page.
--
--   PORT=0 TIMEOUT=3 lua5.4 bin/bayeux test/browser/app.lua
--
-- Prints "bayeux: listening on http://127.0.0.1:<port>/faye".
--
-- Test hooks; each acts only on the client or channels a test names, so the
-- clients of other tests see a plain server:
--   POST /advise?client=ID&reconnect=R&interval=MS
--        every reply to that client's /meta/connect from then on carries
--        this advice (reconnect and/or interval); a later POST replaces it
--        (not once only: a reply the client gave up waiting for would take
--        it away)
--   GET  /subscriptions?client=ID
--        { subscribe = {channels...}, unsubscribe = {channels...},
--          connects = n, publishes = n } as the server saw them for that client
--   a publish to /headers/** arrives with data.authorization set to the
--        Authorization header of the HTTP request that carried it (or false)
--   the first /meta/subscribe to a channel /doomed/** destroys the session
--        that sent it (as its own /meta/disconnect would: a held connect is
--        answered, the next is answered 401 with advice "handshake"), and
--        is itself answered 1 s later (401 then)
--   a /meta/subscribe to a channel /refused401/** is refused with
--        "401::Unauthorized", as an auth extension may refuse it (the
--        session stays alive)
local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 0
local timeout = tonumber(os.getenv("TIMEOUT")) or 3
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local server = bayeux.server { mount = "/faye", timeout = timeout }

server:route("GET", "/page", function(_, res)
  local f = assert(io.open(here .. "/page.html"))
  local html = f:read("a")
  f:close()
  res:html(html)
end)

-- ---- test hooks

local advise = {}        -- client id -> advice for its connect replies
local seen = {}          -- client id -> { subscribe, unsubscribe, connects }
local doomed = {}        -- /doomed/** channels whose first subscribe came

local function record(id)
  local r = seen[id]
  if not r then
    r = { subscribe = bayeux.array {}, unsubscribe = bayeux.array {}, connects = 0, publishes = 0 }
    seen[id] = r
  end
  return r
end

server:on("subscribe", function(id, channel)
  local list = record(id).subscribe
  list[#list + 1] = channel
end)
server:on("publish", function(id)
  if id then
    local r = record(id)
    r.publishes = r.publishes + 1
  end
end)
server:on("unsubscribe", function(id, channel)
  local list = record(id).unsubscribe
  list[#list + 1] = channel
end)

server:add_extension {
  incoming = function(message, request, callback)
    local ch = message.channel
    if ch == "/meta/connect" and type(message.clientId) == "string" then
      local r = record(message.clientId)
      r.connects = r.connects + 1
    elseif type(ch) == "string" and ch:match("^/headers/") and type(message.data) == "table" then
      message.data.authorization = request and request.headers.authorization or false
    elseif ch == "/meta/subscribe" and type(message.subscription) == "string"
        and message.subscription:match("^/refused401/") then
      message.error = "401::Unauthorized"
    elseif ch == "/meta/subscribe" and type(message.subscription) == "string"
        and message.subscription:match("^/doomed/") and not doomed[message.subscription] then
      doomed[message.subscription] = true
      server.core:process({ { channel = "/meta/disconnect", clientId = message.clientId } },
                          function() end)
      bayeux.timer(1, function() callback(message) end)
      return
    end
    callback(message)
  end,
  outgoing = function(message, callback)
    local id = message.clientId
    if message.channel == "/meta/connect" and id and advise[id] then
      message.advice = message.advice or {}
      for k, v in pairs(advise[id]) do message.advice[k] = v end
    end
    callback(message)
  end,
}

server:route("POST", "/advise", function(req, res)
  local q = req.query_params
  if not q.client then return res:status(400):json { error = "client?" } end
  local a = {}
  if q.reconnect then a.reconnect = q.reconnect end
  if q.interval then a.interval = tonumber(q.interval) end
  advise[q.client] = a
  res:json { ok = true }
end)

server:route("GET", "/subscriptions", function(req, res)
  res:json(record(req.query_params.client or ""))
end)

-- TLS_CERT and TLS_KEY (PEM files): the same over HTTPS (test/browser/tls.test.js)
local tls_cert, tls_key = os.getenv("TLS_CERT"), os.getenv("TLS_KEY")
assert(server:listen(port, "127.0.0.1", tls_cert and { tls = { cert = tls_cert, key = tls_key } }
                                        or nil))
io.stdout:flush()
