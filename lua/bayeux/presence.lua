--- bayeux.presence: who is subscribed to a channel now (server:track_presence,
-- server:presence, server:presence_count in lua/bayeux/init.lua).
--
-- Opt-in per channel pattern ("/room/*", "/room/**", "/lobby"): for every
-- plain channel the pattern matches, the tracker keeps the clients
-- subscribed to it exactly (a wildcard subscription such as "/room/*" is
-- not presence in a room) and, per user (server:enable_users; an anonymous
-- client counts as a user of its own), how many of their clients are
-- there. A user's first client in publishes a join, their last one out
-- (unsubscribe, disconnect, session expiry) a leave, on "/presence" ..
-- channel through the server's in-process client:
--
--   { event = "join" | "leave", channel = "/room/a", user = "alice" | null,
--     count = <users now>, users = { "alice", ... } }
--
-- `users` (sorted) is there while the room holds at most `list` users
-- (default 100); above that only `count` is, so a join in a large room
-- costs O(1) and never a walk over its members. Client ids are never
-- published (a client id is a session's credential).
--
-- Clients may not publish on /presence/** (403); who may subscribe there
-- is the application's rule (bayeux.ext.acl).
--
-- With the memory engine the state is this process's tables. With a Redis
-- engine (either mode) it lives in Redis, so that every process sees
-- every process's subscribes, whichever of them a client's messages reach:
--
--   NS/p/u<channel>   HASH user key -> clients of that user in the room
--                     (HLEN: the users, O(1))
--   NS/p/m<channel>   HASH client id -> its user key (HLEN: the clients)
--   NS/p/c/<id>       SET the tracked channels client <id> is in
--
-- (a user key is "u:" .. user id, or "c:" .. client id for an anonymous
-- client). Each change is one Lua script run by Redis, so two processes
-- racing on one user stay exact, and costs O(1) (a room's user list is
-- read only while it is at most `list` users). The script tells whether the
-- change was a user's first join or last leave anywhere: the process that
-- ran it publishes the event, through the engine, once. A session that
-- ends (disconnect, expiry on any process, or a dead process's clients
-- swept by another) leaves all its rooms through its NS/p/c/<id> set, on
-- the process that reports the disconnect. The answers of
-- server:presence / presence_count then come from Redis: pass a callback.
-- A script names keys it computes (the client's rooms): one Redis server,
-- not Redis Cluster.

local core = require "bayeux.core"
local channel = require "bayeux.channel"

local type, pairs, ipairs, next, error, setmetatable = type, pairs, ipairs, next, error,
    setmetatable
local table_sort, math_max, tostring = table.sort, math.max, tostring

-- The scripts of the shared state (see the header). A user key's count is
-- in KEYS[1] (users hash), a client's membership in KEYS[2] (members
-- hash) and KEYS[3] (the client's set).
local JOIN = [[
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return false end
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('HINCRBY', KEYS[1], ARGV[2], 1) ~= 1 then return false end
local n = redis.call('HLEN', KEYS[1])
if n <= tonumber(ARGV[4]) then return { n, redis.call('HKEYS', KEYS[1]) } end
return { n }
]]
local LEAVE = [[
local k = redis.call('HGET', KEYS[2], ARGV[1])
if not k then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('HINCRBY', KEYS[1], k, -1) > 0 then return false end
redis.call('HDEL', KEYS[1], k)
local n = redis.call('HLEN', KEYS[1])
if n <= tonumber(ARGV[3]) then return { k, n, redis.call('HKEYS', KEYS[1]) } end
return { k, n }
]]
-- KEYS[1]: the client's set; ARGV: client id, users prefix, members
-- prefix, list limit. { { channel, user key, users, [user keys] }, ... }
-- for the rooms the client was its user's last one in.
local GONE = [[
local out = {}
for _, ch in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ku, km = ARGV[2] .. ch, ARGV[3] .. ch
  local k = redis.call('HGET', km, ARGV[1])
  if k then
    redis.call('HDEL', km, ARGV[1])
    if redis.call('HINCRBY', ku, k, -1) <= 0 then
      redis.call('HDEL', ku, k)
      local n = redis.call('HLEN', ku)
      local e = { ch, k, n }
      if n <= tonumber(ARGV[4]) then e[4] = redis.call('HKEYS', ku) end
      out[#out + 1] = e
    end
  end
end
redis.call('DEL', KEYS[1])
return out
]]
local COUNT = "return { redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[2]) }"

local M = {}

local Tracker = {}
Tracker.__index = Tracker

--- A tracker for `server`: installs its event listeners and the guard on
-- /presence/**.
function M.new(server)
    local self = setmetatable({
        server = server,
        patterns = {},          -- tracked pattern -> { list = n, events = bool }
        rooms = {},             -- channel -> room
        of_client = {},         -- client id -> { [channel] = true }
        max_list = 0,           -- the largest `list` of the patterns
    }, Tracker)
    local ns = server.core:store_ns()
    if ns then
        self.keys = { users = ns .. "/p/u", members = ns .. "/p/m", client = ns .. "/p/c/" }
    end
    server:on("subscribe", function(cid, ch, user) self:join(cid, ch, user) end)
    server:on("unsubscribe", function(cid, ch) self:leave(cid, ch) end)
    server:on("disconnect", function(cid) self:gone(cid) end)
    server:add_extension {
        name = "presence",
        incoming = function(message, request, callback)
            local ch = message.channel
            if request ~= nil and type(ch) == "string" and ch:sub(1, 10) == "/presence/" then
                message.error = "403:" .. ch .. ":Forbidden channel"
            end
            callback(message)
        end,
    }
    return self
end

--- Tracks the channels `pattern` matches; opts.list (users listed in
-- events while the room is at most that large, default 100), opts.events
-- (default true: publish join/leave).
function Tracker:track(pattern, opts)
    if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
        error("server:track_presence(pattern[, opts]): pattern must be a channel or pattern", 3)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("server:track_presence(pattern[, opts]): opts must be a table", 3)
    end
    opts = opts or {}
    local list = opts.list or 100
    if type(list) ~= "number" or list < 0 then
        error("server:track_presence: list must be a number of users, 0 or more", 3)
    end
    self.patterns[pattern] = { list = list, events = opts.events ~= false }
    self.max_list = math_max(self.max_list, list)
end

-- The settings of the pattern that tracks plain channel `ch`, or nil.
function Tracker:tracking(ch)
    if ch:find("*", 1, true) then return nil end
    for _, p in ipairs(channel.expand(ch)) do
        local t = self.patterns[p]
        if t then return t end
    end
    return nil
end

local function user_key(cid, user)
    local id = type(user) == "table" and user.id or nil
    if type(id) == "string" then return id, id end
    return "\0" .. cid, nil        -- an anonymous client: a user of its own
end

function Tracker:announce(room, ch, event, user_id)
    if not room.settings.events then return end
    local msg = { event = event, channel = ch, user = user_id or core.null, count = room.n }
    if room.n <= room.settings.list then
        local users = {}
        for key in pairs(room.users) do
            if key:byte(1) ~= 0 then users[#users + 1] = key end
        end
        table_sort(users)
        msg.users = setmetatable(users, core.array_mt)
    end
    self.server:client():publish("/presence" .. ch, msg)
end

-- ---- Shared state (a Redis engine): the scripts above ----

local function log_failure(what, err)
    core.log("warn", "presence", what .. ": " .. tostring(err))
end

-- A user key's public id: the user id, or nil for an anonymous client.
local function public(key)
    return key:sub(1, 2) == "u:" and key:sub(3) or nil
end

-- Publishes an event of the shared state: `keys` the room's user keys when
-- Redis listed them (at most the largest `list`), trimmed to this room's.
function Tracker:announce_shared(settings, ch, event, user_id, n, keys)
    if not settings.events then return end
    local msg = { event = event, channel = ch, user = user_id or core.null, count = n }
    if type(keys) == "table" and n <= settings.list then
        local users = {}
        for _, k in ipairs(keys) do
            local id = public(k)
            if id then users[#users + 1] = id end
        end
        table_sort(users)
        msg.users = setmetatable(users, core.array_mt)
    end
    self.server:client():publish("/presence" .. ch, msg)
end

function Tracker:join_shared(settings, cid, ch, user)
    local id = type(user) == "table" and type(user.id) == "string" and user.id or nil
    local key = id and "u:" .. id or "c:" .. cid
    local k = self.keys
    local ok, err = self.server.core:store({ "EVAL", JOIN, "3", k.users .. ch, k.members .. ch,
        k.client .. cid, cid, key, ch, tostring(self.max_list) }, function(r, e)
            if r == nil then return log_failure("join " .. ch, e) end
            if type(r) ~= "table" then return end  -- not the user's first client here
            self:announce_shared(settings, ch, "join", id, r[1], r[2])
        end)
    if not ok then log_failure("join " .. ch, err) end
end

function Tracker:leave_shared(cid, ch)
    local settings = self:tracking(ch)
    if not settings then return end
    local k = self.keys
    local ok, err = self.server.core:store({ "EVAL", LEAVE, "3", k.users .. ch, k.members .. ch,
        k.client .. cid, cid, ch, tostring(self.max_list) }, function(r, e)
            if r == nil then return log_failure("leave " .. ch, e) end
            if type(r) ~= "table" then return end
            self:announce_shared(settings, ch, "leave", public(r[1]), r[2], r[3])
        end)
    if not ok then log_failure("leave " .. ch, err) end
end

function Tracker:gone_shared(cid)
    local k = self.keys
    local ok, err = self.server.core:store({ "EVAL", GONE, "1", k.client .. cid, cid, k.users,
        k.members, tostring(self.max_list) }, function(r, e)
            if r == nil then return log_failure("disconnect", e) end
            if type(r) ~= "table" then return end
            for _, x in ipairs(r) do
                local ch = x[1]
                local settings = self:tracking(ch)
                if settings then
                    self:announce_shared(settings, ch, "leave", public(x[2]), x[3], x[4])
                end
            end
        end)
    if not ok then log_failure("disconnect", err) end
end

-- ---- This process's state (the memory engine) ----

function Tracker:join(cid, ch, user)
    local settings = self:tracking(ch)
    if not settings then return end
    if self.keys then return self:join_shared(settings, cid, ch, user) end
    local room = self.rooms[ch]
    if not room then
        room = { settings = settings, clients = {}, users = {}, n = 0, nclients = 0 }
        self.rooms[ch] = room
    end
    if room.clients[cid] then return end
    local key, id = user_key(cid, user)
    room.clients[cid] = key
    room.nclients = room.nclients + 1
    local mine = self.of_client[cid]
    if not mine then
        mine = {}
        self.of_client[cid] = mine
    end
    mine[ch] = true
    local k = room.users[key]
    room.users[key] = (k or 0) + 1
    if not k then
        room.n = room.n + 1
        self:announce(room, ch, "join", id)
    end
end

function Tracker:leave(cid, ch)
    if self.keys then return self:leave_shared(cid, ch) end
    local room = self.rooms[ch]
    local key = room and room.clients[cid]
    if not key then return end
    room.clients[cid] = nil
    room.nclients = room.nclients - 1
    local mine = self.of_client[cid]
    if mine then
        mine[ch] = nil
        if next(mine) == nil then self.of_client[cid] = nil end
    end
    local k = room.users[key] - 1
    if k > 0 then
        room.users[key] = k
        return
    end
    room.users[key] = nil
    room.n = room.n - 1
    if room.nclients == 0 then self.rooms[ch] = nil end
    self:announce(room, ch, "leave", key:byte(1) ~= 0 and key or nil)
end

-- A session ended: out of every room it was in (the memory engine reports
-- the unsubscribes first; this covers an engine that does not).
function Tracker:gone(cid)
    if self.keys then return self:gone_shared(cid) end
    local mine = self.of_client[cid]
    if not mine then return end
    local list = {}
    for ch in pairs(mine) do list[#list + 1] = ch end
    for _, ch in ipairs(list) do self:leave(cid, ch) end
end

--- { channel, count = users, connections = clients, users = { sorted ids },
-- clients = { [client_id] = user id | false } }, or nil for a channel not
-- tracked. With fn: fn(that) on a later turn (with a Redis engine, the
-- only way: the answer is Redis's; fn(nil, err) when Redis cannot answer).
function Tracker:list(ch, fn)
    if type(ch) ~= "string" or not self:tracking(ch) then
        if fn then core.timer(0, false, function() fn(nil) end) end
        return nil
    end
    if self.keys then
        if not fn then
            error("server:presence(channel, fn): with a Redis engine the answer comes to fn", 3)
        end
        local ok, err = self.server.core:store({ "HGETALL", self.keys.members .. ch },
            function(r, e)
                if r == nil then return fn(nil, e) end
                local out = { channel = ch, count = 0, connections = 0, users = {},
                              clients = {} }
                local seen = {}
                for i = 1, #r - 1, 2 do
                    local cid, key = r[i], r[i + 1]
                    local id = public(key)
                    out.clients[cid] = id or false
                    out.connections = out.connections + 1
                    if not seen[key] then
                        seen[key] = true
                        out.count = out.count + 1
                        if id then out.users[#out.users + 1] = id end
                    end
                end
                table_sort(out.users)
                fn(out)
            end)
        if not ok then core.timer(0, false, function() fn(nil, err) end) end
        return nil
    end
    local room = self.rooms[ch]
    local out = { channel = ch, count = 0, connections = 0, users = {}, clients = {} }
    if room then
        out.count, out.connections = room.n, room.nclients
        for key in pairs(room.users) do
            if key:byte(1) ~= 0 then out.users[#out.users + 1] = key end
        end
        table_sort(out.users)
        for cid, key in pairs(room.clients) do
            out.clients[cid] = key:byte(1) ~= 0 and key or false
        end
    end
    if fn then core.timer(0, false, function() fn(out) end) end
    return out
end

--- users, clients in channel `ch` now (O(1)); nil for a channel not
-- tracked. With fn: fn(users, clients) on a later turn (with a Redis
-- engine, the only way; fn(nil, err) when Redis cannot answer).
function Tracker:count(ch, fn)
    if type(ch) ~= "string" or not self:tracking(ch) then
        if fn then core.timer(0, false, function() fn(nil) end) end
        return nil
    end
    if self.keys then
        if not fn then
            error("server:presence_count(channel, fn): with a Redis engine the answer "
                  .. "comes to fn", 3)
        end
        local ok, err = self.server.core:store({ "EVAL", COUNT, "2", self.keys.users .. ch,
            self.keys.members .. ch }, function(r, e)
                if r == nil then return fn(nil, e) end
                fn(r[1], r[2])
            end)
        if not ok then core.timer(0, false, function() fn(nil, err) end) end
        return nil
    end
    local room = self.rooms[ch]
    local users, clients = 0, 0
    if room then users, clients = room.n, room.nclients end
    if fn then core.timer(0, false, function() fn(users, clients) end) end
    return users, clients
end

return M
