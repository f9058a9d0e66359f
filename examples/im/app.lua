-- examples/im/app.lua - instant messaging: log in, group rooms, one-to-one
-- conversations, who is online, who is typing.
--
-- Try it (from the repository root):
--   lua5.4 bin/bayeux examples/im/app.lua        (PORT=8080 for another port)
-- then open http://127.0.0.1:8000/ in two or three browser windows (a
-- private window each) and log in as alice / rabbit, bob / builder and
-- carol / singer. /?disable=websocket,eventsource forces long-polling.
-- test/browser/im.test.js drives it with three users in headless Chromium
-- over every transport.
--
-- Several processes on one Redis (any process serves any request):
--   export IM_SECRET=<64 hex digits> ENGINE=redis://127.0.0.1:6379
--   PORT=8000 lua5.4 bin/bayeux examples/im/app.lua
--   PORT=8001 lua5.4 bin/bayeux examples/im/app.lua
-- identities, presence and messages are then every process's (the history
-- of /api/history is each process's record of what it saw since it
-- started).
--
-- How it holds together:
--   POST /login {user, password}   checks the (fixed, demo) password and
--                                  answers a JWT (HS256, 12 h) whose `sub` is
--                                  the user and `rooms` the rooms they are in
--   bayeux.ext.jwt                 the page sends the token in every
--                                  message's ext.token; the handshake binds
--                                  the user to the session; every publish is
--                                  stamped data.from = <user>
--   bayeux.ext.acl                 who reads and writes where (below)
--   server:track_presence          /online and every room: join/leave on
--                                  /presence/online, /presence/room/<r>
--   GET /api/presence?channel=     who is there now (Bearer token)
--   GET /api/history?channel=      the last 50 messages of a conversation
--
-- Channels:
--   /room/<r>                  a group room (members: the token's `rooms`)
--   /dm/<a>/<b>                the conversation of users a and b (a < b)
--   /typing/room/<r>, /typing/dm/<a>/<b>   "typing" signals, as above
--   /online                    everyone subscribes: the presence list
--   /presence/...              join/leave, published by the server only

local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"
local acl = require "bayeux.ext.acl"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

-- The demo's users. A real application asks its user database here.
local USERS = {
  alice = { password = "rabbit", name = "Alice", rooms = { "general", "dev" }, role = "admin" },
  bob = { password = "builder", name = "Bob", rooms = { "general", "dev", "music" } },
  carol = { password = "singer", name = "Carol", rooms = { "general", "music" } },
}
local ROOMS = {
  general = "Everyone", dev = "Alice and Bob build things", music = "Bob and Carol play",
}
local TOKEN_LIFE = 12 * 3600
local HISTORY = 50

-- A fresh secret per run (tokens die with the process), or IM_SECRET.
local function random_secret()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(32)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local SECRET = os.getenv("IM_SECRET") or random_secret()

local server = bayeux.server { mount = "/faye", timeout = tonumber(os.getenv("TIMEOUT")) or 45,
                               engine = os.getenv("ENGINE") or "memory" }

local private = { "/dm/{sub}/*", "/dm/*/{sub}", "/typing/dm/{sub}/*", "/typing/dm/*/{sub}" }
local conversations = { "/room/{rooms}", "/dm/{sub}/*", "/dm/*/{sub}" }
local typing = { "/typing/room/{rooms}", "/typing/dm/{sub}/*", "/typing/dm/*/{sub}" }
local function list(...)
  local out = {}
  for _, l in ipairs { ... } do for _, p in ipairs(l) do out[#out + 1] = p end end
  return out
end

server:add_extension(jwt { secret = SECRET })
server:add_extension(acl {
  private = private,
  subscribe = { allow = list(conversations, typing, { "/online", "/presence/online",
                                                      "/presence/room/{rooms}" }) },
  publish = { allow = list(conversations, typing) },
})
server:track_presence("/online")
server:track_presence("/room/*")

-- The last messages of each conversation, for a page that opens late.
local history = {}
local recorder = server:client()
local function record(data, channel)
  if type(data) ~= "table" then return end
  local h = history[channel]
  if not h then
    h = {}
    history[channel] = h
  end
  h[#h + 1] = data
  if #h > HISTORY then table.remove(h, 1) end
end
recorder:subscribe("/room/*", record)
recorder:subscribe("/dm/**", record)

-- The user of a request's "Authorization: Bearer <token>", or nil.
local function bearer(req)
  local token = (req.headers.authorization or ""):match("^Bearer%s+(%S+)$")
  return token and jwt.verify(token, { secret = SECRET })
end

-- May `claims` read `channel`? The same question the ACL answers.
local function may_read(claims, channel)
  if channel == "/online" then return true end
  local room = channel:match("^/room/([%w_-]+)$")
  if room then
    for _, r in ipairs(claims.rooms or {}) do if r == room then return true end end
    return false
  end
  local a, b = channel:match("^/dm/([%w_-]+)/([%w_-]+)$")
  return a ~= nil and (a == claims.sub or b == claims.sub)
end

server:route("POST", "/login", function(req, res)
  local body = req:json() or req:form()
  local name, password = tostring(body.user or ""):lower(), tostring(body.password or "")
  local u = USERS[name]
  -- compared in constant time, also for an unknown user
  local good = bayeux.same_secret(password, u and u.password or "\0no such user")
  if not (u and good) then
    return res:status(401):json { error = "Wrong user name or password" }
  end
  local claims = { sub = name, name = u.name, rooms = bayeux.array(u.rooms), role = u.role,
                   iat = os.time(), exp = os.time() + TOKEN_LIFE }
  local people = {}
  for id, p in pairs(USERS) do people[#people + 1] = { id = id, name = p.name } end
  table.sort(people, function(x, y) return x.id < y.id end)
  local rooms = {}
  for _, r in ipairs(u.rooms) do rooms[#rooms + 1] = { id = r, topic = ROOMS[r] } end
  res:json { token = jwt.sign(claims, { secret = SECRET }), user = name, name = u.name,
             rooms = rooms, people = people }
end)

server:route("GET", "/api/presence", function(req, res)
  local claims = bearer(req)
  if not claims then return res:status(401):json { error = "log in first" } end
  local channel = req.query_params.channel or ""
  if not may_read(claims, channel) then return res:status(403):json { error = "not yours" } end
  -- every process's answer with a Redis engine: it comes from Redis
  server:presence(channel, function(p)
    res:json { channel = channel, users = bayeux.array(p and p.users or {}) }
  end)
end)

server:route("GET", "/api/history", function(req, res)
  local claims = bearer(req)
  if not claims then return res:status(401):json { error = "log in first" } end
  local channel = req.query_params.channel or ""
  if not may_read(claims, channel) then return res:status(403):json { error = "not yours" } end
  res:json { channel = channel, messages = bayeux.array(history[channel] or {}) }
end)

server:static("/", here .. "/public")

server:listen(port, host)
