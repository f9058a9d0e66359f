-- spec/ws_client.lua: a minimal RFC 6455 client for the specs, over the
-- helper's raw connections (luasocket). It masks what it sends (unless told
-- not to), reads frames without assuming anything, and never hides control
-- frames from a caller that wants them.
--
--   local WS = require "spec.ws_client"
--   local ws, status, headers = WS.open(port, "/faye")
--   ws:send_text('[]'); local op, payload = ws:recv(2)
--   local msgs, raw = ws:recv_json(2)          -- skips ping/pong
--   ws:close_frame(1000); local code = ws:recv_close(2)

local H = require "spec.helper"

local WS = {}
WS.__index = WS

WS.TEXT, WS.BINARY, WS.CLOSE, WS.PING, WS.PONG, WS.CONT = 1, 2, 8, 9, 10, 0

WS.KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS.ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

-- Opens a connection and sends the upgrade. `extra` is a list of extra
-- header lines; `headers_override` replaces the standard ones when given.
-- Returns ws, status, headers (lowercase keys).
function WS.open(port, path, extra, headers_override)
  local c = H.connect(port)
  local lines = headers_override or {
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. WS.KEY,
    "Sec-WebSocket-Version: 13",
  }
  local req = { "GET " .. (path or "/faye") .. " HTTP/1.1", "Host: 127.0.0.1:" .. port }
  for _, l in ipairs(lines) do req[#req + 1] = l end
  for _, l in ipairs(extra or {}) do req[#req + 1] = l end
  c:send(table.concat(req, "\r\n") .. "\r\n\r\n")
  local deadline = H.now() + 3
  local line = assert(c:read_line(deadline))
  local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  while true do
    local h = assert(c:read_line(deadline))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  return setmetatable({ c = c }, WS), status, headers
end

local function header(fin, opcode, n, masked)
  local b1 = (fin and 0x80 or 0) | opcode
  local m = masked and 0x80 or 0
  if n < 126 then return string.char(b1, m | n) end
  if n < 65536 then return string.char(b1, m | 126) .. string.pack(">I2", n) end
  return string.char(b1, m | 127) .. string.pack(">I8", n)
end

local function mask(payload, key)
  local out = {}
  local k = { key:byte(1, 4) }
  for i = 1, #payload do
    out[i] = string.char(payload:byte(i) ~ k[(i - 1) % 4 + 1])
  end
  return table.concat(out)
end

-- Encodes one client frame. opts: fin (default true), unmasked.
function WS.encode(opcode, payload, opts)
  opts = opts or {}
  local fin = opts.fin ~= false
  if opts.unmasked then return header(fin, opcode, #payload, false) .. payload end
  local key = string.char(math.random(0, 255), math.random(0, 255), math.random(0, 255),
                          math.random(0, 255))
  return header(fin, opcode, #payload, true) .. key .. mask(payload, key)
end

function WS:send_raw(bytes) return self.c:send(bytes) end
function WS:send_frame(opcode, payload, opts) return self.c:send(WS.encode(opcode, payload, opts)) end
function WS:send_text(s, opts) return self:send_frame(WS.TEXT, s, opts) end
function WS:send_json(v) return self:send_text(H.encode(v)) end

-- Sends a close frame (code optional).
function WS:close_frame(code, reason)
  local p = code and (string.pack(">I2", code) .. (reason or "")) or ""
  return self:send_frame(WS.CLOSE, p)
end

-- Next frame: opcode, payload, fin; or nil, err ("timeout", "closed").
function WS:recv(timeout)
  local deadline = H.now() + (timeout or 3)
  local h, err = self.c:read_bytes(2, deadline)
  if not h then return nil, err end
  local b1, b2 = h:byte(1, 2)
  local n = b2 & 0x7f
  if n == 126 then
    local x, e = self.c:read_bytes(2, deadline); if not x then return nil, e end
    n = string.unpack(">I2", x)
  elseif n == 127 then
    local x, e = self.c:read_bytes(8, deadline); if not x then return nil, e end
    n = string.unpack(">I8", x)
  end
  assert((b2 & 0x80) == 0, "server frames must not be masked")
  local payload = ""
  if n > 0 then
    local e
    payload, e = self.c:read_bytes(n, deadline)
    if not payload then return nil, e end
  end
  return b1 & 0x0f, payload, (b1 & 0x80) ~= 0
end

-- Next text frame decoded (control frames skipped): value, raw; nil, "close"
-- (with the close code as a third value), or nil, err.
function WS:recv_json(timeout)
  local deadline = H.now() + (timeout or 3)
  while true do
    local op, payload = self:recv(math.max(0, deadline - H.now()))
    if not op then return nil, payload end
    if op == WS.TEXT then return H.decode(payload), payload end
    if op == WS.CLOSE then
      return nil, "close", #payload >= 2 and string.unpack(">I2", payload) or nil
    end
  end
end

-- Reads until a close frame; returns its code (or 1005 without one), or nil, err.
function WS:recv_close(timeout)
  local deadline = H.now() + (timeout or 3)
  while true do
    local op, payload = self:recv(math.max(0, deadline - H.now()))
    if not op then return nil, payload end
    if op == WS.CLOSE then
      return #payload >= 2 and string.unpack(">I2", payload) or 1005, payload:sub(3)
    end
  end
end

-- Whether the server closed the TCP connection by `timeout`.
function WS:wait_eof(timeout)
  local deadline = H.now() + (timeout or 3)
  while true do
    local _, err = self.c:read_bytes(#self.c.buf + 1, deadline)
    if err == "closed" then return true end
    if err == "timeout" then return false end
  end
end

function WS:close() self.c:close() end

return WS
