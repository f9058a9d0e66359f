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
-- is the application's rule (bayeux.ext.acl). State is this process's: with
-- the Redis engine, each process sees the subscribes it handled.

local core = require "bayeux.core"
local channel = require "bayeux.channel"

local type, pairs, ipairs, next, error, setmetatable = type, pairs, ipairs, next, error,
    setmetatable
local table_sort = table.sort

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
    }, Tracker)
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

function Tracker:join(cid, ch, user)
    local settings = self:tracking(ch)
    if not settings then return end
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
    local mine = self.of_client[cid]
    if not mine then return end
    local list = {}
    for ch in pairs(mine) do list[#list + 1] = ch end
    for _, ch in ipairs(list) do self:leave(cid, ch) end
end

--- { channel, count = users, connections = clients, users = { sorted ids },
-- clients = { [client_id] = user id | false } }, or nil for a channel not
-- tracked.
function Tracker:list(ch)
    if type(ch) ~= "string" or not self:tracking(ch) then return nil end
    local room = self.rooms[ch]
    local out = { channel = ch, count = 0, connections = 0, users = {}, clients = {} }
    if not room then return out end
    out.count, out.connections = room.n, room.nclients
    for key in pairs(room.users) do
        if key:byte(1) ~= 0 then out.users[#out.users + 1] = key end
    end
    table_sort(out.users)
    for cid, key in pairs(room.clients) do
        out.clients[cid] = key:byte(1) ~= 0 and key or false
    end
    return out
end

--- users, clients in channel `ch` now (O(1)); nil for a channel not tracked.
function Tracker:count(ch)
    if type(ch) ~= "string" or not self:tracking(ch) then return nil end
    local room = self.rooms[ch]
    if not room then return 0, 0 end
    return room.n, room.nclients
end

return M
