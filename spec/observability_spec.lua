-- Logs and metrics (docs/operations.md, "Logs" and "Metrics"): the JSON
-- log lines of `bayeux serve --log-format json`, and the Prometheus
-- exposition at --metrics after a known workload, checked line by line
-- against the text format 0.0.4 (and by promtool when it is installed).
local H = require "spec.helper"
local WS = require "spec.ws_client"
local socket = require "socket"

-- Every stderr line decoded as JSON (a line that is not JSON fails).
local function json_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local ok, v = pcall(H.decode, line)
    assert(ok and type(v) == "table", "not a JSON log line: " .. line)
    out[#out + 1] = v
  end
  return out
end

local function find_line(lines, pred)
  for _, l in ipairs(lines) do if pred(l) then return l end end
end

-- Waits until `pred` holds for the server's stderr lines (bounded by count
-- of attempts, not by a timing threshold on the server).
local function wait_lines(srv, pred)
  for _ = 1, 100 do
    local lines = json_lines(srv:stderr())
    local l = find_line(lines, pred)
    if l then return l, lines end
    socket.sleep(0.05)
  end
  return nil, json_lines(srv:stderr())
end

local TS = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

describe("JSON logs", function()
  it("one JSON object per line for a handshake, an error and the access log", function()
    local srv = H.start_server{ "--log-format", "json", "--log-level", "debug", "--access-log" }
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    local r = b:publish(cid, "no-slash", 1)
    assert.are.equal("405:no-slash:Invalid channel", r.error)

    local hs, lines = wait_lines(srv, function(l) return l.msg == "handshake" end)
    assert.is_truthy(hs, "no handshake line in " .. srv:stderr())
    assert.are.same({ "client", "component", "level", "msg", "ts" }, H.keys(hs))
    assert.are.equal(cid, hs.client)
    assert.are.equal("debug", hs.level)
    assert.are.equal("bayeux", hs.component)
    assert.matches(TS, hs.ts)

    local err = find_line(lines, function(l) return l.msg == "error" end)
    assert.is_truthy(err, "no error line in " .. srv:stderr())
    assert.are.same({ channel = "no-slash", error = "405:no-slash:Invalid channel",
                      client = cid, component = "bayeux", level = "debug", msg = "error",
                      ts = err.ts }, err)

    local access = wait_lines(srv, function(l) return l.component == "access" end)
    assert.is_truthy(access)
    assert.are.equal("POST", access.method)
    assert.are.equal("/faye", access.path)
    assert.are.equal("200", access.status)
    assert.are.equal("127.0.0.1", access.peer)
    assert.matches("^%d+$", access.bytes)
    srv:finish()
  end)

  it("at the default level (info) neither handshakes nor per-request lines are logged", function()
    local srv = H.start_server{ "--log-format", "json" }
    local b = H.bayeux(srv.port)
    local cid = b:handshake()
    for i = 1, 20 do b:publish(cid, "/x", i) end
    b:publish(cid, "no-slash", 1)
    srv:finish()
    assert.are.equal("", srv:stderr())
  end)

  it("says once, as a warn line with the shard, that Redis is unreachable", function()
    local port = H.free_port()
    local srv = H.start_server{ "--engine", "redis://127.0.0.1:" .. port, "--log-format", "json" }
    local l = wait_lines(srv, function(x) return x.component == "redis" end)
    assert.is_truthy(l, "no redis line in " .. srv:stderr())
    assert.are.equal("warn", l.level)
    assert.are.equal("127.0.0.1:" .. port .. "/0", l.shard)
    assert.matches("unreachable", l.msg)
    assert.is_string(l.error)
    srv:finish()
  end)

  it("refuses a bad --log-level or --log-format", function()
    for _, args in ipairs{ { "--log-level", "loud" }, { "--log-format", "xml" } } do
      local p = H.spawn{ "serve", "--port", "0", args[1], args[2] }
      p:wait(10)
      p:cleanup()
      assert.are.equal(2, p:exit_code())
      assert.matches("log", p:stderr())
    end
  end)

  it("bayeux.log writes the app's lines with its fields", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", [[
local bayeux = require "bayeux"
bayeux.server{ log = { format = "json", level = "info" } }
bayeux.log("info", "started", { workers = 2, component = "myapp" })
bayeux.log("debug", "not shown")
bayeux.log("warn", "a \"quoted\"\nline")
bayeux.log_config{ format = "plain" }
bayeux.log("error", "plain now", { k = "two words" })
os.exit(0)
]])
    local p = H.spawn{ dir .. "/app.lua" }
    p:wait(10)
    p:cleanup()
    local lines = {}
    for line in p:stderr():gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(3, #lines, p:stderr())
    local a, b = H.decode(lines[1]), H.decode(lines[2])
    assert.are.same({ "component", "level", "msg", "ts", "workers" }, H.keys(a))
    assert.are.equal("myapp", a.component)
    assert.are.equal("2", a.workers)
    assert.are.equal("a \"quoted\"\nline", b.msg)
    assert.are.equal("app", b.component)
    assert.matches("^%d[-%d]+T[:%d.]+Z error app: plain now k=\"two words\"$", lines[3])
  end)
end)

-- ------------------------------------------------------------- metrics

-- Parses a text exposition strictly (format 0.0.4): every sample belongs to
-- the family of the last TYPE line (its name, or name_sum/_count for a
-- summary), HELP and TYPE come once per family before its samples, names
-- and labels are well formed, values are numbers, counters end in _total,
-- no series repeats. Returns { [series] = value }.
local function parse_exposition(text)
  local NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*"
  local series, seen_family, typ, family = {}, {}, nil, nil
  local helped = {}
  assert(text:sub(-1) == "\n", "the exposition must end with a newline")
  for line in text:gmatch("([^\n]*)\n") do
    if line:match("^# HELP ") then
      local name = line:match("^# HELP (" .. NAME .. ") %S")
      assert(name, "bad HELP line: " .. line)
      assert(not helped[name], "HELP twice for " .. name)
      helped[name] = true
    elseif line:match("^# TYPE ") then
      local name, t = line:match("^# TYPE (" .. NAME .. ") (%a+)$")
      assert(name, "bad TYPE line: " .. line)
      assert(({ counter = 1, gauge = 1, summary = 1, histogram = 1, untyped = 1 })[t],
        "bad type: " .. line)
      assert(not seen_family[name], "TYPE twice for " .. name)
      assert(helped[name], "TYPE before HELP for " .. name)
      if t == "counter" then assert(name:match("_total$"), "counter without _total: " .. name) end
      seen_family[name], typ, family = true, t, name
    else
      assert(line ~= "" and not line:match("^#"), "unexpected line: '" .. line .. "'")
      local name, rest = line:match("^(" .. NAME .. ")(.*)$")
      assert(name, "bad sample: " .. line)
      local labels, value = rest:match("^(%b{}) (%S+)$")
      if not labels then labels, value = "", rest:match("^ (%S+)$") end
      assert(value and tonumber(value), "bad value: " .. line)
      if labels ~= "" then
        local inner = labels:sub(2, -2)
        for pair in (inner .. ","):gmatch("([^,]*),") do
          assert(pair:match("^[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\]*\"$"), "bad label: " .. line)
        end
      end
      local ok = name == family or (typ == "summary"
        and (name == family .. "_sum" or name == family .. "_count"))
      assert(ok, "sample " .. name .. " outside its family (" .. tostring(family) .. ")")
      local key = name .. labels
      assert(series[key] == nil, "series twice: " .. key)
      series[key] = tonumber(value)
    end
  end
  return series
end

local function scrape(port, path)
  local st, h, body = H.request(port, "GET", path or "/metrics")
  assert.are.equal(200, st)
  assert.are.equal("text/plain; version=0.0.4; charset=utf-8", h["content-type"])
  return body
end

local function promtool_check(body)
  if not os.execute("command -v promtool >/dev/null 2>&1") then return nil end
  local dir = H.tmpdir()
  H.writefile(dir .. "/m.txt", body)
  local f = io.popen("promtool check metrics < " .. H.q(dir .. "/m.txt") .. " 2>&1; echo rc=$?")
  local out = f:read("a")
  f:close()
  return out
end

describe("Prometheus metrics", function()
  it("the exposition after a known workload: exact counts, a well-formed text", function()
    local srv = H.start_server{ "--metrics", "/metrics" }
    local b = H.bayeux(srv.port)
    local a_id = b:handshake()
    local b_id = b:handshake()
    b:subscribe(a_id, "/obs/a")
    b:subscribe(b_id, "/obs/*")
    for i = 1, 3 do assert.is_true(b:publish(b_id, "/obs/a", i).successful) end
    assert.are.equal("405:no-slash:Invalid channel", b:publish(b_id, "no-slash", 0).error)
    local r = b:post1{ channel = "/meta/handshake", supportedConnectionTypes = { "long-polling" } }
    assert.are.equal("402:version:Missing required parameter", r.error)
    r = b:post1(H.connect_msg("unknown", "c0"))
    assert.matches("^401:", r.error)
    -- both receive the three messages (pulled with long-polls)
    local sent, requests = 10, 10
    for _, id in ipairs{ a_id, b_id } do
      local got = 0
      for _ = 1, 5 do
        local replies = b:connect(id)
        sent, requests = sent + 1, requests + 1
        got = got + H.count(replies, { channel = "/obs/a" })
        if got == 3 then break end
      end
      assert.are.equal(3, got)
    end
    -- a WebSocket open while we scrape
    local ws = assert(WS.open(srv.port, "/faye"))
    requests = requests + 1

    local body = scrape(srv.port)
    requests = requests + 1
    local m = parse_exposition(body)
    assert.are.equal(2, m.bayeux_handshakes_total)
    assert.are.equal(2, m.bayeux_sessions)
    assert.are.equal(2, m.bayeux_subscriptions)
    assert.are.equal(2, m.bayeux_channels)
    assert.are.equal(3, m.bayeux_messages_in_total)
    assert.are.equal(6, m.bayeux_messages_out_total)
    assert.are.equal(sent, m.bayeux_messages_received_total)
    assert.are.equal(requests, m.bayeux_http_requests_total)
    assert.are.equal(1, m['bayeux_errors_total{kind="publish",code="405"}'])
    assert.are.equal(1, m['bayeux_errors_total{kind="handshake",code="402"}'])
    assert.are.equal(1, m['bayeux_errors_total{kind="connect",code="401"}'])
    assert.are.equal(1, m['bayeux_connections{transport="websocket"}'])
    assert.are.equal(0, m['bayeux_connections{transport="eventsource"}'])
    assert.are.equal(1, m['bayeux_sockets_opened_total{transport="websocket"}'])
    assert.are.equal(0, m.bayeux_queue_dropped_total)
    assert.are.equal(0, m.bayeux_slow_readers_total)
    assert.are.equal(0, m.bayeux_extension_calls_total)
    assert.is_true(m.bayeux_bytes_in_total > 0 and m.bayeux_bytes_out_total > 0)
    assert.is_true(m.bayeux_event_loop_lag_seconds_count >= 0)
    assert.is_nil(m.bayeux_redis_reconnects_total)        -- memory engine
    local out = promtool_check(body)
    if out then assert.matches("rc=0", out, 1, true) end
    ws:close()

    -- a second scrape: counters only grow, the scrape itself counted
    local m2 = parse_exposition(scrape(srv.port))
    assert.are.equal(m.bayeux_http_requests_total + 1, m2.bayeux_http_requests_total)
    assert.is_true(m2.bayeux_bytes_out_total > m.bayeux_bytes_out_total)
    srv:finish()
  end)

  it("counts queue drops and extension calls and errors", function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", [[
local bayeux = require "bayeux"
local srv = bayeux.server{ mount = "/faye", metrics = "/m", queue_limit = 2 }
srv:add_extension{ incoming = function(msg, cb)
  if msg.channel == "/boom" then error("boom") end
  cb(msg)
end }
srv:listen(0, "127.0.0.1")
]])
    local p = H.spawn{ dir .. "/app.lua" }
    local port = assert(p:wait_listening(H.start_limit()))
    local b = H.bayeux(port)
    local cid = b:handshake()
    b:subscribe(cid, "/q")
    for i = 1, 5 do assert.is_true(b:publish(cid, "/q", i).successful) end
    assert.are.equal("500::Internal server error", b:publish(cid, "/boom", 1).error)
    local m = parse_exposition(scrape(port, "/m"))
    assert.are.equal(3, m.bayeux_queue_dropped_total)
    assert.are.equal(8, m.bayeux_extension_calls_total)
    assert.are.equal(1, m.bayeux_extension_errors_total)
    assert.is_true(m.bayeux_extension_seconds_total > 0)
    p:stop()
    p:cleanup()
  end)

  it("with the Redis engine: latency, reconnects and shards down", function()
    local srv = H.start_server{ "--metrics", "/metrics", "--engine",
                                "redis://127.0.0.1:" .. H.free_port() }
    local m
    for _ = 1, 100 do
      m = parse_exposition(scrape(srv.port))
      if m.bayeux_redis_shards_down == 1 then break end
      socket.sleep(0.05)
    end
    assert.are.equal(1, m.bayeux_redis_shards_down)
    assert.are.equal(0, m.bayeux_redis_reconnects_total)
    assert.is_number(m.bayeux_redis_latency_seconds_count)
    assert.is_number(m.bayeux_redis_latency_seconds_sum)
    srv:finish()
  end)

  it("only GET and HEAD; other paths are the application's", function()
    local srv = H.start_server{ "--metrics", "/metrics" }
    assert.are.equal(405, (H.request(srv.port, "POST", "/metrics", {}, "x")))
    assert.are.equal(404, (H.request(srv.port, "GET", "/metrics/x")))
    srv:finish()
    local plain = H.start_server{}
    assert.are.equal(404, (H.request(plain.port, "GET", "/metrics")))
    plain:finish()
  end)
end)
