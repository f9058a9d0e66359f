-- test/browser/history_app.lua - the server test/browser/history.test.js
-- runs: a Bayeux mount at /faye with history on /h/** (size 100, ttl 300),
-- the test page at /page; ENGINE=redis://... for the Redis engine.
--
--   PORT=0 TIMEOUT=3 [ENGINE=URL] lua5.4 bin/bayeux test/browser/history_app.lua
--
-- Test hooks:
--   POST /expire?client=ID   the session ID ends as if it had expired: the
--        server destroys it (its WebSocket is closed by the server, its
--        held connect answered), and every /meta/handshake from then on
--        waits until POST /open, so the test publishes while the client
--        has no session
--   POST /open               lets the waiting handshakes go on
local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 0
local timeout = tonumber(os.getenv("TIMEOUT")) or 3
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local server = bayeux.server {
  mount = "/faye", timeout = timeout,
  engine = os.getenv("ENGINE"),         -- a Redis URL, or nil: memory
  history = { ["/h/**"] = { size = 100, ttl = 300 } },
}

local gate_closed, waiting = false, {}

server:route("GET", "/page", function(_, res)
  local f = assert(io.open(here .. "/page.html"))
  local html = f:read("a")
  f:close()
  res:html(html)
end)

server:add_extension {
  incoming = function(message, _, callback)
    if message.channel == "/meta/handshake" and gate_closed then
      waiting[#waiting + 1] = function() callback(message) end
      return
    end
    callback(message)
  end,
}

server:route("POST", "/expire", function(req, res)
  local id = req.query_params.client
  if not id then return res:status(400):json { error = "client?" } end
  gate_closed = true
  server.core:process({ { channel = "/meta/disconnect", clientId = id } }, function()
    res:json { ok = true }
  end)
end)

server:route("POST", "/open", function(_, res)
  gate_closed = false
  local w = waiting
  waiting = {}
  for _, go in ipairs(w) do go() end
  res:json { ok = true, released = #w }
end)

assert(server:listen(port, "127.0.0.1"))
io.stdout:flush()
