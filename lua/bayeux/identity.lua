--- bayeux.identity: where the users bound to sessions live
-- (server:enable_users in lua/bayeux/init.lua).
--
-- With the memory engine: a table of this process, client id -> user,
-- entries removed when the session ends.
--
-- With a Redis engine a client's next message may reach another process
-- (no sticky sessions): the handshake's user is also written to Redis,
-- JSON under the client's own keys (native mode NS/c/<id>/u, faye mode
-- NS/clients/<id>/user), before the handshake's reply goes out (the core's
-- handshake hold, server:share_identities), so that whichever process gets
-- the client's next message finds it there. Each process caches what it
-- read (an anonymous session as false) in two generations of at most
-- CACHE entries each: a session that ends on another process leaves its
-- entry here until it ages out, and an identity never changes during its
-- session, so a cached one is never stale. The key goes when the session
-- ends (disconnect, expiry on any process, or the sweep of a dead
-- process's clients: the process that reports the disconnect deletes it).

local core = require "bayeux.core"

local type, pcall, getmetatable, setmetatable = type, pcall, getmetatable, setmetatable

local CACHE = 10000

local M = {}

local Ids = {}
Ids.__index = Ids

--- The identities of `server`; shared through the engine's store when it
-- has one.
function M.new(server)
    local self = setmetatable({ users = {}, n = 0 }, Ids)
    local ns, mode = server.core:store_ns()
    if ns then
        self.core = server.core
        if mode == "faye" then
            self.prefix, self.suffix = ns .. "/clients/", "/user"
        else
            self.prefix, self.suffix = ns .. "/c/", "/u"
        end
        server.core:share_identities(self.prefix, self.suffix)
    end
    return self
end

--- The user of `id` as known here: a table, false (anonymous), or nil
-- (not known here: ask with fetch).
function Ids:get(id)
    local u = self.users[id]
    if u == nil and self.old then
        u = self.old[id]
        if u ~= nil then self:put(id, u) end
    end
    return u
end

--- Binds (or caches) `user` (a table, or false) to `id`.
function Ids:put(id, user)
    if self.core then
        self.n = self.n + 1
        if self.n > CACHE then
            self.old, self.users, self.n = self.users, {}, 1
        end
    end
    self.users[id] = user
end

--- The session `id` ended: out of this process's table, and of Redis.
function Ids:drop(id)
    self.users[id] = nil
    if self.old then self.old[id] = nil end
    if self.core then
        self.core:store({ "DEL", self.prefix .. id .. self.suffix }, function() end)
    end
end

--- Whether identities may live elsewhere (a Redis engine).
function Ids:shared()
    return self.core ~= nil
end

--- Reads the user of `id` from Redis: fn(user or false) on a later turn;
-- fn(nil) when Redis cannot answer (nothing cached then).
function Ids:fetch(id, fn)
    if type(id) ~= "string" or #id > 64 or id:find("[^%w]") then return fn(false) end
    local ok = self.core:store({ "GET", self.prefix .. id .. self.suffix }, function(text)
        if type(text) ~= "string" then
            if text == nil then return fn(nil) end     -- Redis out of reach
            self:put(id, false)
            return fn(false)
        end
        local good, user = pcall(core.decode, text)
        if not good or type(user) ~= "table" or getmetatable(user) == core.array_mt
            or type(user.id) ~= "string" then
            user = false
        end
        self:put(id, user)
        fn(user)
    end)
    if not ok then fn(nil) end
end

return M
