-- examples/chat/app.lua - a small chat room.
--
-- Try it:
--   make run                              (builds, then runs this file on :8000)
--   lua5.4 bin/bayeux examples/chat/app.lua          (from the repository root)
--   PORT=8080 lua5.4 bin/bayeux examples/chat/app.lua   (PORT=0: any free port;
--                                        the "listening on" line names it)
-- then open http://127.0.0.1:8000/ (examples/chat/index.html) in two browser
-- windows: what one types appears in both; /?disable=websocket,eventsource
-- (and so on) forces a transport. test/browser/chat.test.js does exactly
-- this in headless Chromium. Any Faye or CometD client works:
--   node -e "const f=require('./test/node/node_modules/faye');
--            new f.Client('http://127.0.0.1:8000/faye')
--              .publish('/chat/messages',{user:'node',text:'hi'}).then(()=>process.exit())"
--
-- Pages publish {user=..., text=...} to /chat/messages and subscribe to it.
-- The server side joins in with an in-process client: it logs every message
-- and answers "/time" with the server's clock.

local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"

local server = bayeux.server { mount = "/faye", timeout = 45 }
local bot = server:client()

bot:subscribe("/chat/messages", function(data, channel)
  if type(data) ~= "table" or data.user == "server" then return end
  print(string.format("[%s] %s: %s", channel, tostring(data.user), tostring(data.text)))
  if data.text == "/time" then
    bot:publish(channel, { user = "server", text = "it is " .. os.date() }, function(ok, err)
      if not ok then io.stderr:write("chat: publish failed: ", tostring(err), "\n") end
    end)
  end
end)

-- The page: served beside the Bayeux mount by a route.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
server:route("GET", "/", function(_, res)
  local f = assert(io.open(here .. "/index.html"))
  local html = f:read("a")
  f:close()
  res:html(html)
end)

server:listen(port, host)
