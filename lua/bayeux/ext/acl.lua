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
-- Rules from identity (server:enable_users, e.g. bayeux.ext.jwt): a
-- segment `{sub}` in a pattern is the user's id, `{name}` the claim `name`
-- (a string, or a list: one pattern per element), so "/user/{sub}/**" is
-- the user's own space and "/room/{rooms}" the rooms the token lists. A
-- pattern whose placeholder has no value (an anonymous client, a missing
-- claim, a value holding "/" or "*") matches nothing. A rule may be a table
-- { "<pattern>", claims = { role = "admin" }, unless = {...} }: it applies
-- only when every listed claim equals the value (or is a list holding it),
-- and not when `unless` matches.
--   private = { "/user/{sub}/**" }: those channels are their owner's alone:
--   a subscription that could receive any channel of the patterns ("/user/*/
--   inbox", "/user/**", "/**") is refused unless it lies inside one of the
--   subscriber's own instances of them (with { "/dm/{sub}/*", "/dm/*/{sub}" }
--   a conversation "/dm/alice/bob" is alice's and bob's). Publishing there
--   is left to `publish`.
--
-- Options: subscribe, publish (each { allow = {...}, deny = {...} }),
-- private (a list of patterns), trust_local (default true: in-process
-- clients, request == nil, are not checked).

local type, error, ipairs, pairs = type, error, ipairs, pairs

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

-- A rule: { segs = {...}, slots = { [i] = claim name } or nil, claims, unless }.
local function rule_of(p, where)
    local pat, claims, unless = p, nil, nil
    if type(p) == "table" then
        pat, claims, unless = p[1], p.claims, p.unless
        if (claims ~= nil and type(claims) ~= "table")
            or (unless ~= nil and type(unless) ~= "table") then
            error("bayeux.ext.acl: claims and unless in " .. where .. " must be tables", 4)
        end
    end
    if type(pat) ~= "string" or pat:sub(1, 1) ~= "/" then
        error("bayeux.ext.acl: bad pattern in " .. where, 4)
    end
    local segs, slots = split(pat), nil
    for i, seg in ipairs(segs) do
        local name = seg:match("^{([%w_%-%.]+)}$")
        if name then
            slots = slots or {}
            slots[i] = name
        elseif seg:find("[{}]") then
            error("bayeux.ext.acl: a placeholder must be a whole segment, '{name}', in "
                .. where, 4)
        end
    end
    return { segs = segs, slots = slots, claims = claims, unless = unless }
end

-- The values of placeholder `name` for `user`: a list of safe segments.
local function slot_values(user, name)
    if type(user) ~= "table" then return {} end
    local v
    if name == "sub" then v = user.id
    elseif type(user.claims) == "table" then v = user.claims[name] end
    local list = type(v) == "table" and v or { v }
    local out = {}
    for _, x in ipairs(list) do
        if type(x) == "string" and x ~= "" and not x:find("[/*]") then out[#out + 1] = x end
    end
    return out
end

local function claim_has(user, want)
    if type(user) ~= "table" then return false end
    local claims = type(user.claims) == "table" and user.claims or {}
    for k, v in pairs(want) do
        local have = k == "sub" and user.id or claims[k]
        local ok = have == v
        if not ok and type(have) == "table" then
            for _, x in ipairs(have) do if x == v then ok = true break end end
        end
        if not ok then return false end
    end
    return true
end

-- Calls fn(segs) for each concrete pattern of rule `r` for `user`; stops
-- (returning true) when fn does.
local function each_instance(r, user, fn)
    if r.claims and not claim_has(user, r.claims) then return false end
    if r.unless and claim_has(user, r.unless) then return false end
    if not r.slots then return fn(r.segs) end
    local segs = {}
    local function fill(i)
        if i > #r.segs then return fn(segs) end
        local name = r.slots[i]
        if not name then
            segs[i] = r.segs[i]
            return fill(i + 1)
        end
        for _, v in ipairs(slot_values(user, name)) do
            segs[i] = v
            if fill(i + 1) then return true end
        end
        return false
    end
    return fill(1)
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
            for i, p in ipairs(list) do out[kind][i] = rule_of(p, what .. "." .. kind) end
        end
    end
    return out
end

local function permitted(rules, ch, user)
    if not rules then return true end
    if type(ch) ~= "string" then return false end
    local S = split(ch)
    local function touches(D) return overlaps(D, S, 1) end
    local function inside(A) return covers(A, S, 1) end
    for _, r in ipairs(rules.deny or {}) do
        if each_instance(r, user, touches) then return false end
    end
    if not rules.allow then return true end
    for _, r in ipairs(rules.allow) do
        if each_instance(r, user, inside) then return true end
    end
    return false
end

-- A subscription touching anyone's private space must lie inside the
-- subscriber's own (one of its instances of the private patterns).
local function private_ok(private, ch, user)
    if not private or type(ch) ~= "string" then return true end
    local S = split(ch)
    local touched = false
    for _, r in ipairs(private) do
        if overlaps(r.any, S, 1) then touched = true break end
    end
    if not touched then return true end
    local function inside(O) return covers(O, S, 1) end
    for _, r in ipairs(private) do
        if each_instance(r, user, inside) then return true end
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
    local private
    if opts.private ~= nil then
        if type(opts.private) ~= "table" then error("bayeux.ext.acl: private must be a list", 2) end
        private = {}
        for i, p in ipairs(opts.private) do
            local r = rule_of(p, "private")
            -- every user's instance at once: the placeholders as `*`
            r.any = {}
            for j, seg in ipairs(r.segs) do r.any[j] = r.slots and r.slots[j] and "*" or seg end
            private[i] = r
        end
    end
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
                    if type(s) == "string" and not (private_ok(private, s, message.user)
                            and permitted(sub_rules, s, message.user)) then
                        message.error = "403:" .. s .. ":Forbidden channel"
                        break
                    end
                end
            elseif ch:sub(1, 6) ~= "/meta/" and not permitted(pub_rules, ch, message.user) then
                message.error = "403:" .. ch .. ":Forbidden channel"
            end
            callback(message)
        end,
    }
end

return setmetatable(M, { __call = function(_, opts) return new(opts) end })
