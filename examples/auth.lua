-- examples/auth.lua - subscribes and publishes need a token: clients put it
-- in every message's ext as ext.token (bayeux.ext.token); without the right
-- one the server answers "403::Forbidden" and nothing is subscribed. The
-- server publishes {n = <count>} on /secret every 2 seconds.
--
-- Try it (from the repository root):
--   TOKEN=s3cret lua5.4 bin/bayeux examples/auth.lua     (PORT=8080 for another port)
-- then open http://127.0.0.1:8000/?token=s3cret (and ?token=wrong to be refused),
-- or with the npm faye client:
--   node -e "const f=require('./test/node/node_modules/faye');
--     const c=new f.Client('http://127.0.0.1:8000/faye');
--     c.addExtension({outgoing:(m,cb)=>{m.ext=Object.assign(m.ext||{},{token:'s3cret'});cb(m)}});
--     c.subscribe('/secret',m=>console.log(m))
--      .then(()=>console.log('subscribed'),e=>console.log('refused:',e.message))"
-- or with curl (handshake, then subscribe with the clientId it returns):
--   curl -s http://127.0.0.1:8000/faye -H 'Content-Type: application/json' \
--     -d '[{"channel":"/meta/handshake","version":"1.0",
--           "supportedConnectionTypes":["long-polling"]}]'
--   curl -s http://127.0.0.1:8000/faye -H 'Content-Type: application/json' \
--     -d '[{"channel":"/meta/subscribe","clientId":"<id>","subscription":"/secret"}]'
--     → [{..."error":"403::Forbidden","successful":false...}]
--   curl -s http://127.0.0.1:8000/faye -H 'Content-Type: application/json' \
--     -d '[{"channel":"/meta/subscribe","clientId":"<id>","subscription":"/secret",
--           "ext":{"token":"s3cret"}}]'
--     → [{..."successful":true...}]

local bayeux = require "bayeux"
local token = require "bayeux.ext.token"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"
local secret = os.getenv("TOKEN") or "s3cret"

local server = bayeux.server { mount = "/faye", timeout = 45 }
server:add_extension(token { token = secret })

server:on("subscribe", function(client_id, channel)
  print(("auth: %s subscribed to %s"):format(client_id, channel))
end)

-- the server's own client is trusted (no request, no token needed)
local client = server:client()
local n = 0
bayeux.interval(2, function()
  n = n + 1
  client:publish("/secret", { n = n })
end)

local PAGE = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>bayeux auth</title></head>
<body>
<h1>Token authentication</h1>
<p>Token from the URL (<code>?token=...</code>): <code id="token"></code></p>
<p id="status">connecting…</p>
<ul id="log"></ul>
<script src="/faye/client.js"></script>
<script>
(function () {
  'use strict';
  // (a global named `status` would be the browser's window.status)
  var statusLine = document.getElementById('status');
  var token = new URLSearchParams(location.search).get('token') || '';
  document.getElementById('token').textContent = token || '(none)';
  var client = new Faye.Client('/faye');
  client.addExtension({ outgoing: function (m, cb) {
    m.ext = m.ext || {}; m.ext.token = token; cb(m);
  } });
  client.subscribe('/secret', function (m) {
    var li = document.createElement('li');
    li.textContent = 'tick ' + m.n;
    document.getElementById('log').appendChild(li);
  }).then(function () { statusLine.textContent = 'subscribed to /secret'; },
          function (e) { statusLine.textContent = 'refused: ' + e.message; });
})();
</script>
</body></html>
]]

server:route("GET", "/", function(_, res) res:html(PAGE) end)

server:listen(port, host)
