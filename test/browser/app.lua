-- test/browser/app.lua - the server test/browser/client.test.js runs: a
-- Bayeux mount at /faye (bayeux's own client at /faye/client.js) and the
-- test page at /page.
--
--   PORT=0 TIMEOUT=3 lua5.4 bin/bayeux test/browser/app.lua
--
-- Prints "bayeux: listening on http://127.0.0.1:<port>/faye".
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

assert(server:listen(port, "127.0.0.1"))
io.stdout:flush()
