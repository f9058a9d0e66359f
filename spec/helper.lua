-- spec/helper.lua: black-box test support for the bayeux server.
--
--   local H = require "spec.helper"
--   local srv = H.start_server{ "--timeout", "2" }   -- srv.port, srv.url, srv:stop(), srv:kill()
--   local st, hdrs, body = H.request(srv.port, "POST", "/faye", { ["Content-Type"] = "application/json" }, "[]")
--   local b = H.bayeux(srv.port); local cid = b:handshake(); local replies = b:post{ ... }
--
-- The server command comes from $BAYEUX_CMD (default `lua5.4 bin/bayeux`) and
-- is run from the repository root. Every wait has a deadline so a missing or
-- hung server makes the tests fail, never hang.

local socket = require "socket"
local cjson = require "cjson"

local H = {}

H.now = socket.gettime
H.sleep = socket.sleep

-- ---------------------------------------------------------------- paths

local function dirname(p) return (p:match("^(.*)/[^/]*$")) or "." end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD")
  if not pwd then
    local f = io.popen("pwd"); pwd = f:read("l"); f:close()
  end
  return pwd .. "/" .. p
end

do
  local src = debug.getinfo(1, "S").source
  local file = src:sub(1, 1) == "@" and src:sub(2) or "spec/helper.lua"
  local root = dirname(dirname(abspath(file)))
  root = root:gsub("/%./", "/"):gsub("/%.$", "")
  H.ROOT = root
end

H.CMD = os.getenv("BAYEUX_CMD")
if not H.CMD or H.CMD == "" then H.CMD = "lua5.4 bin/bayeux" end

function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = H.q

function H.readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a"); f:close()
  return s
end

function H.writefile(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data); f:close()
end

function H.tmpdir()
  local f = io.popen("mktemp -d /tmp/bayeux-spec.XXXXXX")
  local d = f:read("l"); f:close()
  assert(d and d ~= "", "mktemp -d failed")
  return d
end

local function pid_alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

-- ---------------------------------------------------------------- processes

local Proc = {}
Proc.__index = Proc

-- Start `$BAYEUX_CMD <args>` (args: list of strings, shell-quoted here) from
-- the repo root, stdout/stderr to files in a temp dir. Returns a Proc.
-- bash `set -m` keeps SIGINT/SIGQUIT un-ignored in the background child.
function H.spawn(args, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local argv = {}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = q(a) end
  local p = {
    dir = dir,
    out = dir .. "/out",
    err = dir .. "/err",
    rcfile = dir .. "/rc",
  }
  local inner = string.format(
    "set -m; cd %s || exit 1; ( %s %s >%s 2>%s </dev/null & echo $!; exec >/dev/null; wait $!; echo $? >%s.tmp; mv %s.tmp %s ) &",
    q(opts.cwd or H.ROOT), opts.cmd or H.CMD, table.concat(argv, " "),
    q(p.out), q(p.err), q(p.rcfile), q(p.rcfile), q(p.rcfile))
  local f = assert(io.popen("bash -c " .. q(inner) .. " 2>/dev/null"))
  local line = f:read("l")
  f:close()
  p.pid = tonumber(line)
  assert(p.pid, "could not start server process: " .. tostring(line))
  return setmetatable(p, Proc)
end

function Proc:stdout() return self.out_text or H.readfile(self.out) or "" end
function Proc:stderr() return self.err_text or H.readfile(self.err) or "" end

-- after exit: keep the output in memory and remove the temp dir
function Proc:cleanup()
  if self.cleaned then return end
  self.out_text, self.err_text = self:stdout(), self:stderr()
  os.execute("rm -rf " .. q(self.dir))
  self.cleaned = true
end

-- exit code if the process has finished (bash reports 128+N for signal N)
function Proc:exit_code()
  if self.rc then return self.rc end
  local s = H.readfile(self.rcfile)
  if s and s:match("%d") then return tonumber(s:match("%d+")) end
  return nil
end

-- wait up to `timeout` seconds for exit; returns the exit code or nil
function Proc:wait(timeout)
  local deadline = H.now() + (timeout or 10)
  repeat
    local rc = self:exit_code()
    if rc then self.rc = rc; self:cleanup(); return rc end
    H.sleep(0.01)
  until H.now() > deadline
  return nil
end

function Proc:signal(sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig, self.pid))
end

-- SIGTERM, wait for the exit (deadline 10 s), return exit code (SIGKILL and nil on timeout)
function Proc:stop(timeout)
  if self.rc then return self.rc end
  self:signal("TERM")
  local rc = self:wait(timeout or 10)
  if not rc then self:kill() end
  return rc
end

-- Stops a server at the end of a spec file and requires a clean exit: a
-- sanitizer run (make check) turns a leak or memory error into a non-zero
-- exit code, which then fails the file instead of passing unseen.
function Proc:finish()
  local rc = self:stop()
  if self.app_dir then
    os.execute("rm -rf " .. H.q(self.app_dir))
    self.app_dir = nil
  end
  if rc ~= 0 then
    error(("server exited %s, not 0; stderr:\n%s"):format(tostring(rc),
      self:stderr():sub(-4000)), 2)
  end
end

function Proc:kill()
  if self.rc then return self.rc end
  self:signal("KILL")
  return self:wait(5)
end

function Proc:alive()
  return self:exit_code() == nil and pid_alive(self.pid)
end

-- Wait until stdout shows the listening line. Returns port, url or nil, err.
function Proc:wait_listening(timeout)
  local deadline = H.now() + (timeout or 10)
  while true do
    local out = self:stdout()
    local url, port = out:match("bayeux: listening on (https?://[^:/%s]+:(%d+)[^%s]*)")
    if url then return tonumber(port), url end
    if self:exit_code() then
      return nil, "server exited (" .. tostring(self:exit_code()) .. ") before listening; stderr: "
        .. self:stderr() .. " stdout: " .. out
    end
    if H.now() > deadline then
      return nil, "server did not print its listening line within the deadline; stderr: " .. self:stderr()
    end
    H.sleep(0.01)
  end
end

-- A loopback port nobody listens on now (bound, then released): for a
-- redis-server a test starts, or a server that must be unreachable.
function H.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

-- One command to the Redis server on `port`, over a fresh connection: the
-- reply's first line ("+PONG", ":3", "$-1", ...), nil if unreachable.
function H.redis_cmd(port, ...)
  local c = socket.connect("127.0.0.1", port)
  if not c then return nil end
  local args = { ... }
  local req = { "*" .. #args .. "\r\n" }
  for _, v in ipairs(args) do
    v = tostring(v)
    req[#req + 1] = "$" .. #v .. "\r\n" .. v .. "\r\n"
  end
  c:settimeout(2)
  c:send(table.concat(req))
  local line = c:receive("*l")
  c:close()
  return line
end

-- A private redis-server on a free loopback port (no persistence, in a
-- folder of its own), answering PING when this returns:
-- { port =, dir =, cmd = function(...) (H.redis_cmd on it), stop = function() }.
function H.redis_server()
  local dir = H.tmpdir()
  local port = H.free_port()
  assert(os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no "
    .. "--daemonize yes --pidfile %s/redis.pid --dir %s --loglevel warning"):format(port, dir, dir)))
  local deadline = H.now() + 10
  while H.redis_cmd(port, "PING") ~= "+PONG" and H.now() < deadline do socket.sleep(0.05) end
  return {
    port = port,
    dir = dir,
    cmd = function(...) return H.redis_cmd(port, ...) end,
    stop = function()
      local pid = tonumber(H.readfile(dir .. "/redis.pid") or "")
      if pid then os.execute("kill " .. pid) end
      os.execute("rm -rf " .. H.q(dir))
    end,
  }
end

-- Deadline for a server to come up: 10 s (BAYEUX_START_TIMEOUT overrides);
-- after one start has hung, later ones only wait 2 s so a broken server
-- cannot stall the whole suite.
function H.start_limit()
  local limit = tonumber(os.getenv("BAYEUX_START_TIMEOUT") or "") or 10
  if H.start_hung then limit = math.min(limit, 2) end
  return limit
end

-- start_server{ "--timeout", "1", "--max-body", "100" }
-- Always passes `serve --host 127.0.0.1 --port 0 --mount /faye`; adds
-- `--timeout 2` unless args has a --timeout. Errors (fast) if it does not come up.
function H.start_server(args)
  args = args or {}
  local argv = { "serve", "--host", "127.0.0.1", "--port", "0", "--mount", "/faye" }
  local has_timeout = false
  for _, a in ipairs(args) do if a == "--timeout" then has_timeout = true end end
  if not has_timeout then argv[#argv + 1] = "--timeout"; argv[#argv + 1] = "2" end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = H.spawn(argv)
  -- 10 s deadline (BAYEUX_START_TIMEOUT overrides); after one start has hung,
  -- later ones only wait 2 s so a broken server cannot stall the suite
  local port, url = p:wait_listening(H.start_limit())
  if not port then
    if p:alive() then H.start_hung = true end
    p:kill()
    error(url, 2)
  end
  p.port, p.url = port, url
  return p
end

-- start_app(src[, opts]): writes `src` (Lua source) to a temporary app.lua
-- and runs it as `bin/bayeux app.lua` until it listens. opts.env is put
-- before the command (`"VAR=x"`). The process has .port, .url and .app_dir;
-- finish() also removes the directory. Errors (fast) if it does not come up.
function H.start_app(src, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  H.writefile(dir .. "/app.lua", src)
  local p = H.spawn({ dir .. "/app.lua" },
    { cmd = opts.env and (opts.env .. " " .. H.CMD) or nil })
  p.app_dir = dir
  local port, url = p:wait_listening(H.start_limit())
  if not port then
    if p:alive() then H.start_hung = true end
    p:kill()
    os.execute("rm -rf " .. H.q(dir))
    error(url, 2)
  end
  p.port, p.url = port, url
  return p
end

-- ---------------------------------------------------------------- JSON

H.json = cjson
H.null = cjson.null

local ARRAY_MT = { __name = "json-array" }
-- H.array{...} forces an array encoding (also for an empty table)
function H.array(t) return setmetatable(t or {}, ARRAY_MT) end
local OBJECT_MT = { __name = "json-object" }
function H.object(t) return setmetatable(t or {}, OBJECT_MT) end

local function is_array(t)
  local mt = getmetatable(t)
  if mt == ARRAY_MT then return true end
  if mt == OBJECT_MT then return false end
  if next(t) == nil then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Compact encoder: '/' not escaped, keys sorted (deterministic), arrays per is_array.
function H.encode(v)
  local t = type(v)
  if v == nil or v == cjson.null then return "null"
  elseif t == "boolean" then return tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then error("cannot encode " .. v) end
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "string" then return encode_string(v)
  elseif t == "table" then
    local parts = {}
    if is_array(v) then
      for i = 1, #v do parts[i] = H.encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local val = v[k]; if val == nil then val = v[tonumber(k)] end
      parts[#parts + 1] = encode_string(k) .. ":" .. H.encode(val)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot encode a " .. t)
end

function H.decode(s)
  return cjson.decode(s)
end

-- ---------------------------------------------------------------- HTTP

local Conn = {}
Conn.__index = Conn

-- Open a TCP connection to 127.0.0.1:port. Errors on failure.
function H.connect(port, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or 5)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then sock:close(); error("connect to port " .. tostring(port) .. " failed: " .. tostring(err), 2) end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, port = port, buf = "", closed = false }, Conn)
end

function Conn:send(raw)
  self.sock:settimeout(5)
  local i = 1
  while i <= #raw do
    local last, err, partial = self.sock:send(raw, i)
    if not last then
      if err == "timeout" then i = partial + 1
      else return nil, err end
    else
      i = last + 1
    end
  end
  return true
end

-- Build request bytes. headers: map (name -> value) or list of {name, value}
-- pairs; Host and Content-Length are added unless present (a value of false
-- suppresses a header).
function H.build_request(port, method, path, headers, body)
  local list, seen = {}, {}
  if headers then
    if headers[1] then
      for _, kv in ipairs(headers) do list[#list + 1] = kv; seen[kv[1]:lower()] = true end
    else
      local names = {}
      for k in pairs(headers) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do
        seen[k:lower()] = true
        if headers[k] ~= false then list[#list + 1] = { k, headers[k] } end
      end
    end
  end
  local lines = { string.format("%s %s HTTP/1.1", method, path) }
  if not seen.host then lines[#lines + 1] = "Host: 127.0.0.1:" .. tostring(port) end
  for _, kv in ipairs(list) do lines[#lines + 1] = kv[1] .. ": " .. tostring(kv[2]) end
  if body and not seen["content-length"] and not seen["transfer-encoding"] then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

function Conn:send_request(method, path, headers, body)
  return self:send(H.build_request(self.port, method, path, headers, body))
end

-- Fill the buffer until it has n bytes (or a line if n == nil) by deadline.
local function fill(self, deadline, want)
  while not want(self.buf) do
    if self.closed then return nil, "closed" end
    -- non-blocking read of whatever is there (receive(n) would wait for n bytes)
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then self.buf = self.buf .. data end
    if err == "closed" then
      self.closed = true
      if not want(self.buf) then return nil, "closed" end
    elseif err and err ~= "timeout" then
      return nil, err
    elseif not data or #data == 0 then
      local remain = deadline - H.now()
      if remain <= 0 then return nil, "timeout" end
      socket.select({ self.sock }, nil, math.min(remain, 0.5))
    end
  end
  return true
end

function Conn:read_line(deadline)
  local ok, err = fill(self, deadline, function(b) return b:find("\r\n", 1, true) end)
  if not ok then return nil, err end
  local i = self.buf:find("\r\n", 1, true)
  local line = self.buf:sub(1, i - 1)
  self.buf = self.buf:sub(i + 2)
  return line
end

function Conn:read_bytes(n, deadline)
  local ok, err = fill(self, deadline, function(b) return #b >= n end)
  if not ok then return nil, err end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

-- Read whatever arrives until the peer closes or the deadline passes.
function Conn:read_until_close(deadline)
  local ok, err = fill(self, deadline, function() return self.closed end)
  local s = self.buf
  self.buf = ""
  return s, (not ok) and err or nil
end

-- Read one response. Returns status, headers (lowercase keys, repeated
-- headers joined with ", "), body, extra {raw_headers=, chunked=, reason=, header_list=}
-- or nil, err on timeout/close. method "HEAD" skips the body.
function Conn:read_response(timeout, method)
  local deadline = H.now() + (timeout or 5)
  local line, err = self:read_line(deadline)
  if not line then return nil, err end
  local status, reason = line:match("^HTTP/1%.[01] (%d%d%d) ?(.*)$")
  if not status then return nil, "bad status line: " .. line end
  status = tonumber(status)
  local headers, list, raw = {}, {}, { line }
  while true do
    local h, e = self:read_line(deadline)
    if not h then return nil, e end
    if h == "" then break end
    raw[#raw + 1] = h
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      list[#list + 1] = { k, v }
      headers[k] = headers[k] and (headers[k] .. ", " .. v) or v
    end
  end
  local extra = { raw_headers = table.concat(raw, "\r\n"), reason = reason, header_list = list }
  local body
  local te = headers["transfer-encoding"]
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    body = ""
  elseif te and te:lower():find("chunked") then
    extra.chunked = true
    local parts = {}
    while true do
      local sz, e = self:read_line(deadline)
      if not sz then return nil, e end
      local n = tonumber(sz:match("^%x+"), 16)
      if not n then return nil, "bad chunk size: " .. sz end
      if n == 0 then
        -- trailers until blank line
        repeat
          local t, e2 = self:read_line(deadline)
          if not t then return nil, e2 end
        until t == ""
        break
      end
      local chunk, e2 = self:read_bytes(n, deadline)
      if not chunk then return nil, e2 end
      parts[#parts + 1] = chunk
      local crlf, e3 = self:read_bytes(2, deadline)
      if not crlf then return nil, e3 end
    end
    body = table.concat(parts)
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"])
    local b, e = self:read_bytes(n, deadline)
    if not b then return nil, e end
    body = b
  else
    local b, e = self:read_until_close(deadline)
    if e then return nil, e end
    body = b
  end
  return status, headers, body, extra
end

function Conn:request(method, path, headers, body, timeout)
  local ok, err = self:send_request(method, path, headers, body)
  if not ok then return nil, err end
  return self:read_response(timeout, method)
end

-- true if the peer has closed (EOF seen) within `timeout` seconds
function Conn:wait_closed(timeout)
  local deadline = H.now() + (timeout or 2)
  local ok = fill(self, deadline, function() return self.closed end)
  return ok == true
end

function Conn:close()
  if self.sock then self.sock:close() end
  self.closed = true
end

-- one-shot request on a fresh connection
function H.request(port, method, path, headers, body, timeout)
  local c = H.connect(port)
  local status, h, b, extra = c:request(method, path, headers, body, timeout)
  c:close()
  return status, h, b, extra
end

-- ---------------------------------------------------------------- Bayeux

local Bayeux = {}
Bayeux.__index = Bayeux

H.JSON_CT = "application/json"

-- b = H.bayeux(port[, mount]) — keeps one keep-alive connection for requests.
function H.bayeux(port, mount)
  return setmetatable({ port = port, mount = mount or "/faye", n = 0 }, Bayeux)
end

function Bayeux:next_id()
  self.n = self.n + 1
  return "m" .. self.n
end

function Bayeux:conn()
  if not self.c or self.c.closed then self.c = H.connect(self.port) end
  return self.c
end

-- POST a body (Lua value encoded with H.encode, or a raw string) and return
-- status, headers, raw body (no decoding). Reconnects once if the kept
-- connection was closed by the server.
function Bayeux:post_raw(body, headers, timeout, path)
  if type(body) ~= "string" then body = H.encode(body) end
  local hdrs = { ["Content-Type"] = H.JSON_CT }
  for k, v in pairs(headers or {}) do hdrs[k] = v end
  for attempt = 1, 2 do
    local c = self:conn()
    local st, h, b, extra = c:request("POST", path or self.mount, hdrs, body, timeout)
    if st then
      if h.connection and h.connection:lower():find("close") then c:close() end
      return st, h, b, extra
    end
    c:close()
    if attempt == 2 or h ~= "closed" then return nil, h end
  end
end

-- POST messages, decode the JSON array reply (errors if status is not 200).
function Bayeux:post(msgs, headers, timeout, path)
  local st, h, b = self:post_raw(msgs, headers, timeout, path)
  assert(st, "no response: " .. tostring(h))
  assert(st == 200, "expected HTTP 200, got " .. tostring(st) .. ": " .. tostring(b))
  local ok, v = pcall(H.decode, b)
  assert(ok, "reply is not JSON: " .. tostring(b))
  return v, h, b
end

-- first reply (decoded) for a single message
function Bayeux:post1(msg, headers, timeout)
  local r = self:post({ msg }, headers, timeout)
  return r[1], r
end

function Bayeux:handshake(extra)
  local m = { channel = "/meta/handshake", version = "1.0",
              supportedConnectionTypes = { "long-polling" }, id = self:next_id() }
  for k, v in pairs(extra or {}) do m[k] = v end
  local r = self:post1(m)
  assert(r and r.successful == true and type(r.clientId) == "string",
    "handshake failed: " .. H.encode(r or {}))
  return r.clientId, r
end

function Bayeux:subscribe(cid, sub)
  local r = self:post1{ channel = "/meta/subscribe", clientId = cid, subscription = sub, id = self:next_id() }
  assert(r and r.successful == true, "subscribe failed: " .. H.encode(r or {}))
  return r
end

function Bayeux:unsubscribe(cid, sub)
  return self:post1{ channel = "/meta/unsubscribe", clientId = cid, subscription = sub, id = self:next_id() }
end

function Bayeux:publish(cid, channel, data, extra)
  local m = { channel = channel, data = data, clientId = cid, id = self:next_id() }
  for k, v in pairs(extra or {}) do m[k] = v end
  return self:post1(m)
end

function Bayeux:disconnect(cid)
  return self:post1{ channel = "/meta/disconnect", clientId = cid, id = self:next_id() }
end

-- connect message table
function H.connect_msg(cid, id, advice_timeout)
  local m = { channel = "/meta/connect", clientId = cid, connectionType = "long-polling", id = id or "c" }
  if advice_timeout then m.advice = { timeout = advice_timeout } end
  return m
end

-- Synchronous connect on the shared connection; returns decoded reply list and elapsed seconds.
function Bayeux:connect(cid, advice_timeout, timeout)
  local t0 = H.now()
  local r = self:post({ H.connect_msg(cid, self:next_id(), advice_timeout) }, nil, timeout or 10)
  return r, H.now() - t0
end

-- Start a long-poll on its own connection; returns a handle with
-- :result(timeout) -> decoded replies, elapsed-since-send (or nil, err).
local Pending = {}
Pending.__index = Pending

function Bayeux:start_connect(cid, advice_timeout, id)
  local c = H.connect(self.port)
  local body = H.encode{ H.connect_msg(cid, id or self:next_id(), advice_timeout) }
  local t0 = H.now()
  assert(c:send_request("POST", self.mount, { ["Content-Type"] = H.JSON_CT }, body))
  return setmetatable({ conn = c, t0 = t0 }, Pending)
end

function Pending:result(timeout)
  local st, h, b = self.conn:read_response(timeout or 5)
  if not st then return nil, h end
  self.status, self.headers, self.body = st, h, b
  self.elapsed = H.now() - self.t0
  assert(st == 200, "connect got HTTP " .. tostring(st) .. ": " .. tostring(b))
  return H.decode(b), self.elapsed
end

function Pending:close() self.conn:close() end

-- helpers for reply lists
function H.find(replies, pred)
  for _, r in ipairs(replies) do
    local ok = true
    for k, v in pairs(pred) do if r[k] ~= v then ok = false; break end end
    if ok then return r end
  end
end

function H.count(replies, pred)
  local n = 0
  for _, r in ipairs(replies) do
    local ok = true
    for k, v in pairs(pred) do if r[k] ~= v then ok = false; break end end
    if ok then n = n + 1 end
  end
  return n
end

-- sorted list of the keys of a table (for exact field-set assertions)
function H.keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- percent-encode for query strings / form bodies
function H.urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

H.SERVER_TYPES = { "long-polling", "cross-origin-long-polling", "callback-polling",
                   "websocket", "eventsource", "in-process" }

return H
