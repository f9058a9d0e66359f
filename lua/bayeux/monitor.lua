-- luacheck: no max line length
--- bayeux.monitor: a live page of the server's own numbers, fed by the
-- server itself over Bayeux (docs/operations.md, "Monitor page").
--
--   bayeux.server{ monitor = "/monitor", monitor_token = "s3cret" }
--   bayeux serve --monitor /monitor --monitor-token s3cret
--
-- Once a second the server's in-process client publishes a snapshot
-- (server:metrics() plus the busiest channels of the last second) on
-- /bayeux/monitor. The page, GET <path>?token=T, loads the server's own
-- client.js and subscribes with the token in `ext.token`; an extension
-- refuses that subscription (and any pattern that would reach the channel)
-- without the token, and refuses publishes to it from the network. The
-- page draws the numbers as inline SVG charts, no external resources.
--
-- Counting the busiest channels listens to the publish event while the
-- monitor is on: one Lua call per publish (docs/operations.md).

local bayeux_core = require "bayeux.core"

local pairs, ipairs, type, tostring = pairs, ipairs, type, tostring
local table_sort = table.sort

local CHANNEL = "/bayeux/monitor"
local TOP = 8

-- The patterns a subscription may name that reach CHANNEL.
local REACHES = { [CHANNEL] = true, ["/bayeux/*"] = true, ["/bayeux/**"] = true, ["/**"] = true }

local PAGE = [[<!doctype html>
<html><head><meta charset="utf-8"><title>bayeux monitor</title>
<style>
body{font:14px system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:18px;margin:0 0 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card h2{font-size:14px;margin:0 0 4px}
svg{width:100%;height:160px;display:block}
.legend span{margin-right:12px}
#errors li{font-family:monospace;font-size:12px}
#status{color:#666}
</style></head><body>
<h1>bayeux monitor <small id="status">connecting</small></h1>
<div class="grid">
 <div class="card"><h2>messages per second</h2><svg id="rates" viewBox="0 0 400 160" preserveAspectRatio="none"></svg>
  <div class="legend" id="rates-legend"></div></div>
 <div class="card"><h2>connections by transport, sessions</h2><svg id="conns" viewBox="0 0 400 160" preserveAspectRatio="none"></svg>
  <div class="legend" id="conns-legend"></div></div>
 <div class="card"><h2>top channels (publishes in the last second)</h2><svg id="top" viewBox="0 0 400 160" preserveAspectRatio="none"></svg></div>
 <div class="card"><h2>errors per second, recent errors</h2><svg id="errs" viewBox="0 0 400 160" preserveAspectRatio="none"></svg>
  <ul id="errors"></ul></div>
</div>
<script src="MOUNT/client.js"></script>
<script>
(function () {
  var token = new URLSearchParams(location.search).get('token') || '';
  var N = 60, hist = [], last = null;
  var NS = 'http://www.w3.org/2000/svg';
  var COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
  window.monitor = { samples: 0, last: null };
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  function lines(id, series, names) {
    var svg = document.getElementById(id), max = 1;
    clear(svg);
    series.forEach(function (s) { s.forEach(function (v) { if (v > max) max = v; }); });
    series.forEach(function (s, i) {
      var pts = s.map(function (v, j) {
        return (j * 400 / (N - 1)).toFixed(1) + ',' + (150 - v * 140 / max).toFixed(1);
      }).join(' ');
      svg.appendChild(el('polyline', { points: pts, fill: 'none', stroke: COLORS[i], 'stroke-width': 2,
        'class': 'series', 'data-name': names[i] }));
    });
    svg.appendChild(el('text', { x: 2, y: 12, 'font-size': 11 }, String(Math.round(max))));
    var leg = document.getElementById(id + '-legend');
    if (leg) leg.innerHTML = names.map(function (n, i) {
      var v = series[i][series[i].length - 1];
      return '<span style="color:' + COLORS[i] + '">' + n + ': ' + (Math.round(v * 10) / 10) + '</span>';
    }).join('');
  }
  function bars(id, top) {
    var svg = document.getElementById(id), max = 1;
    clear(svg);
    top.forEach(function (t) { if (t.n > max) max = t.n; });
    top.forEach(function (t, i) {
      var y = i * 19 + 2;
      svg.appendChild(el('rect', { x: 0, y: y, height: 15, width: Math.max(1, t.n * 250 / max),
        fill: COLORS[0], 'class': 'bar' }));
      svg.appendChild(el('text', { x: 255, y: y + 12, 'font-size': 11 }, t.channel + ' ' + t.n));
    });
  }
  function col(name) { return hist.map(function (h) { return h[name]; }); }
  function show(s) {
    if (last) {
      var dt = Math.max(0.001, s.t - last.t), err = 0, err0 = 0, k;
      for (k in s.errors) err += s.errors[k];
      for (k in last.errors) err0 += last.errors[k];
      hist.push({ in_: (s.messages_in - last.messages_in) / dt,
                  out: (s.messages_out - last.messages_out) / dt,
                  http: s.connections.http, ws: s.connections.websocket,
                  sse: s.connections.eventsource, sessions: s.sessions,
                  errs: (err - err0) / dt });
      while (hist.length > N) hist.shift();
      while (hist.length < N) hist.unshift({ in_: 0, out: 0, http: 0, ws: 0, sse: 0, sessions: 0, errs: 0 });
      lines('rates', [col('in_'), col('out')], ['in', 'out']);
      lines('conns', [col('http'), col('ws'), col('sse'), col('sessions')],
            ['http', 'websocket', 'eventsource', 'sessions']);
      lines('errs', [col('errs')], ['errors/s']);
      bars('top', s.top || []);
      var ul = document.getElementById('errors');
      ul.innerHTML = '';
      (s.recent || []).forEach(function (r) {
        var li = document.createElement('li'); li.textContent = r; ul.appendChild(li);
      });
    }
    last = s;
    window.monitor.samples++;
    window.monitor.last = s;
    document.getElementById('status').textContent = 'live, ' + s.sessions + ' sessions';
  }
  var client = new Faye.Client(location.origin + 'MOUNT');
  client.addExtension({ outgoing: function (m, cb) {
    if (m.channel === '/meta/subscribe') { m.ext = m.ext || {}; m.ext.token = token; }
    cb(m);
  } });
  client.subscribe('CHANNEL', show).then(function () {
    document.getElementById('status').textContent = 'subscribed';
  }, function (e) {
    document.getElementById('status').textContent = 'refused: ' + (e && e.message || e);
  });
})();
</script></body></html>
]]

-- Constant-time comparison, so the token's length of common prefix does
-- not show in response times.
local function same(a, b)
    if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
    local diff = 0
    for i = 1, #a do
        if a:byte(i) ~= b:byte(i) then diff = diff + 1 end
    end
    return diff == 0
end

return function(server, path, token, bayeux)
    if type(token) ~= "string" or token == "" then
        error("bayeux.server: option 'monitor' needs 'monitor_token' (a non-empty string)", 3)
    end
    local mount = server.mount
    -- the mount goes into the page as it is: only characters that need no
    -- escaping in HTML or in a JavaScript string
    if mount:find("[^%w/_%-%.~]") then
        error("bayeux.server: the monitor page needs a mount of letters, digits and / _ - . ~", 3)
    end
    local page = PAGE:gsub("MOUNT", function() return mount end):gsub("CHANNEL", CHANNEL)

    server:route("GET", path, function(req, res)
        if not same(req.query_params.token, token) then
            return res:status(403):header("Content-Type", "text/plain; charset=utf-8")
                :send("Forbidden\n")
        end
        res:header("Cache-Control", "no-store")
        res:html(page)
    end)

    server:add_extension{
        name = "monitor",
        incoming = function(msg, request, cb)
            if request ~= nil then
                local ch = msg.channel
                if ch == "/meta/subscribe" and REACHES[msg.subscription]
                    and not same(type(msg.ext) == "table" and msg.ext.token or nil, token) then
                    msg.error = "403::Forbidden"
                elseif ch == CHANNEL then
                    msg.error = "403::Forbidden"     -- only the server publishes there
                end
            end
            cb(msg)
        end,
    }

    local counts = {}
    server:on("publish", function(_, ch)
        if ch ~= CHANNEL then counts[ch] = (counts[ch] or 0) + 1 end
    end)

    local client = server:client()
    server.monitor_timer = bayeux.interval(1, function()
        local snap = server.core:metrics()
        snap.t = bayeux_core.now()
        local top = {}
        for ch, n in pairs(counts) do top[#top + 1] = { channel = ch, n = n } end
        table_sort(top, function(a, b) return a.n > b.n or (a.n == b.n and a.channel < b.channel) end)
        for i = #top, TOP + 1, -1 do top[i] = nil end
        snap.top = bayeux.array(top)
        snap.recent = bayeux.array(snap.recent)
        snap.errors = bayeux.object(snap.errors)
        counts = {}
        for _, x in ipairs(top) do x.channel = tostring(x.channel) end
        client:publish(CHANNEL, snap)
    end)
    return CHANNEL
end
