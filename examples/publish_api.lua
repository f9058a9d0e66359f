-- examples/publish_api.lua - "pub/sub as a service": anything that can send
-- an HTTP POST publishes to the browsers subscribed to /messages.
--
-- Try it (from the repository root):
--   TOKEN=s3cret lua5.4 bin/bayeux examples/publish_api.lua   (PORT=8080 for another port)
-- open http://127.0.0.1:8000/ in a browser, then publish from a shell:
--   curl -s http://127.0.0.1:8000/publish -H 'Authorization: Bearer s3cret' \
--     -H 'Content-Type: application/json' \
--     -d '{"channel":"/messages","data":{"text":"hello from curl"}}'
--     → {"channel":"/messages","ok":true}
-- or as a form (data is JSON text, or else taken as a plain string):
--   curl -s http://127.0.0.1:8000/publish -H 'Authorization: Bearer s3cret' \
--     --data-urlencode channel=/messages --data-urlencode 'data={"text":"form post"}'
-- A wrong token answers 401, bad input 400 with the reason, an invalid
-- channel 400 with the Bayeux error ("405:/a/*:Invalid channel").

local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"
local secret = os.getenv("TOKEN") or "s3cret"

local server = bayeux.server { mount = "/faye", timeout = 45 }
server:publish_api { path = "/publish", token = secret }

server:on("publish", function(client_id, channel, data)
  print(("publish_api: %s on %s: %s"):format(client_id or "-", channel, bayeux.encode(data)))
end)

local PAGE = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>bayeux publish API</title></head>
<body>
<h1>Messages published over HTTP</h1>
<p id="status">connecting…</p>
<ul id="log"></ul>
<script src="/faye/client.js"></script>
<script>
(function () {
  'use strict';
  // (a global named `status` would be the browser's window.status)
  var statusLine = document.getElementById('status');
  var client = new Faye.Client('/faye');
  client.subscribe('/messages', function (m) {
    var li = document.createElement('li');
    li.textContent = (m && m.text !== undefined) ? m.text : JSON.stringify(m);
    document.getElementById('log').appendChild(li);
  }).then(function () {
    statusLine.textContent = 'subscribed to /messages: now run the curl line';
  }, function (e) {
    statusLine.textContent = 'subscribe failed: ' + e.message;
  });
})();
</script>
</body></html>
]]

server:route("GET", "/", function(_, res) res:html(PAGE) end)

server:listen(port, host)
