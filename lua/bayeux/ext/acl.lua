--- bayeux.ext.acl: who may subscribe and publish where, by channel pattern.
--
--   local acl = require "bayeux.ext.acl"
--   server:add_extension(acl {
--     subscribe = { allow = { "/chat/**", "/news" }, deny = { "/chat/admin/**" } },
--     publish   = { allow = { "/chat/*" }, deny = { "/chat/announcements" } },
--   })
--
-- Patterns are channel names where a `*` segment matches exactly one
-- segment (anywhere: "/users/*/inbox") and a final `**` matches one or more.
-- For each action (subscribe, publish):
--   - no rules for the action: everything is allowed;
--   - `allow` given: the channel must be inside one of its patterns;
--   - `deny` given: a channel touching one of its patterns is refused;
--     deny wins over allow.
-- Subscriptions are judged conservatively: a pattern subscription such as
-- "/chat/**" or "/**" is allowed only if every channel it could receive is
-- allowed, and refused if any channel it could receive is denied. A
-- subscribe message with an array of subscriptions is refused as a whole
-- if any element is. Refusals carry "403:<channel>:Forbidden channel".
--
-- Options: subscribe, publish (each { allow = {...}, deny = {...} }),
-- trust_local (default true: in-process clients, request == nil, are not
-- checked).

local type, error, ipairs = type, error, ipairs

local function split(s)
    local out = {}
    for seg in s:gmatch("[^/]+") do out[#out + 1] = seg end
    return out
end

-- Is every channel of subscription S inside rule pattern A?
local function covers(A, S, i)
    local a, s = A[i], S[i]
    if a == nil then return s == nil end
    if a == "**" then return s ~= nil end
    if s == nil or s == "**" then return false end
    if s == "*" then
        if a ~= "*" then return false end
    elseif a ~= "*" and a ~= s then
        return false
    end
    return covers(A, S, i + 1)
end

-- Is some channel of subscription S inside rule pattern D?
local function overlaps(D, S, i)
    local d, s = D[i], S[i]
    if d == nil or s == nil then return d == nil and s == nil end
    if d == "**" or s == "**" then return true end
    if d ~= "*" and s ~= "*" and d ~= s then return false end
    return overlaps(D, S, i + 1)
end

local function compile(rules, what)
    if rules == nil then return nil end
    if type(rules) ~= "table" then error("bayeux.ext.acl: " .. what .. " must be a table", 3) end
    local out = {}
    for _, kind in ipairs { "allow", "deny" } do
        local list = rules[kind]
        if list ~= nil then
            if type(list) ~= "table" then
                error("bayeux.ext.acl: " .. what .. "." .. kind .. " must be a list", 3)
            end
            out[kind] = {}
            for i, p in ipairs(list) do
                if type(p) ~= "string" or p:sub(1, 1) ~= "/" then
                    error("bayeux.ext.acl: bad pattern in " .. what .. "." .. kind, 3)
                end
                out[kind][i] = split(p)
            end
        end
    end
    return out
end

local function permitted(rules, ch)
    if not rules then return true end
    if type(ch) ~= "string" then return false end
    local S = split(ch)
    for _, D in ipairs(rules.deny or {}) do
        if overlaps(D, S, 1) then return false end
    end
    if not rules.allow then return true end
    for _, A in ipairs(rules.allow) do
        if covers(A, S, 1) then return true end
    end
    return false
end

local M = {}

--- acl.covers(rule, subscription), acl.overlaps(rule, subscription): the
-- two tests the extension uses, for applications that need them.
function M.covers(rule, sub) return covers(split(rule), split(sub), 1) end
function M.overlaps(rule, sub) return overlaps(split(rule), split(sub), 1) end

local function new(opts)
    if type(opts) ~= "table" then error("bayeux.ext.acl{ subscribe = ..., publish = ... }", 2) end
    local sub_rules, pub_rules = compile(opts.subscribe, "subscribe"),
        compile(opts.publish, "publish")
    local trust_local = opts.trust_local ~= false
    return {
        name = "acl",
        incoming = function(message, request, callback)
            local ch = message.channel
            if type(ch) ~= "string" or (trust_local and request == nil) then
                return callback(message)
            end
            if ch == "/meta/subscribe" then
                local subs = message.subscription
                if type(subs) ~= "table" then subs = { subs } end
                for _, s in ipairs(subs) do
                    if type(s) == "string" and not permitted(sub_rules, s) then
                        message.error = "403:" .. s .. ":Forbidden channel"
                        break
                    end
                end
            elseif ch:sub(1, 6) ~= "/meta/" and not permitted(pub_rules, ch) then
                message.error = "403:" .. ch .. ":Forbidden channel"
            end
            callback(message)
        end,
    }
end

return setmetatable(M, { __call = function(_, opts) return new(opts) end })
