-- examples/server_publish.lua - the server publishes on its own: every second
-- it sends {time = os.date(), n = <count>} to /time.
--
-- Try it:
--   lua5.4 bin/bayeux examples/server_publish.lua    (from the repository root)
--   PORT=8080 lua5.4 bin/bayeux examples/server_publish.lua
-- then open http://127.0.0.1:8000/ (examples/server_publish.html; the page
-- subscribes to /time and shows each tick), or watch from a terminal:
--   node -e "const f=require('./test/node/node_modules/faye');
--            new f.Client('http://127.0.0.1:8000/faye')
--              .subscribe('/time', m => console.log(m))"

local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"

local server = bayeux.server { mount = "/faye", timeout = 45 }
local client = server:client()

local n = 0
bayeux.interval(1, function()
  n = n + 1
  client:publish("/time", { time = os.date(), n = n }, function(ok, err)
    if not ok then io.stderr:write("server_publish: publish failed: ", tostring(err), "\n") end
  end)
end)

-- The page: served beside the Bayeux mount by a route.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
server:route("GET", "/", function(_, res)
  local f = assert(io.open(here .. "/server_publish.html"))
  local html = f:read("a")
  f:close()
  res:html(html)
end)

server:listen(port, host)
