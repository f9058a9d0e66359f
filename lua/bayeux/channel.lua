--- bayeux.channel: channel matching and route patterns (lpeg).

local lpeg = require "lpeg"

local P, C, Cg, Ct, Cc = lpeg.P, lpeg.C, lpeg.Cg, lpeg.Ct, lpeg.Cc
local R, S = lpeg.R, lpeg.S
local type, error, ipairs = type, error, ipairs
local find, sub = string.find, string.sub

local _M = {}

--- Whether the subscription `pattern` ("/a", "/a/*", "/a/**") matches the
-- plain channel name `name`.
function _M.matches(pattern, name)
    if pattern == name then return true end
    local prefix = pattern:match("^(.*)/%*%*$")
    if prefix then
        return #name > #prefix + 1 and name:sub(1, #prefix + 1) == prefix .. "/"
    end
    prefix = pattern:match("^(.*)/%*$")
    if prefix then
        local rest = name:sub(#prefix + 2)
        return name:sub(1, #prefix + 1) == prefix .. "/" and #rest > 0
            and not rest:find("/", 1, true)
    end
    return false
end

--- The subscriptions that match the plain name `name`, as a list: the
-- name, "/**", the parent .. "/*" and every proper prefix .. "/**" (the
-- C engine's expansion). "/a/b" -> "/a/b", "/**", "/a/**", "/a/*".
function _M.expand(name)
    local out = { name, "/**" }
    local last = 1
    local pos = find(name, "/", 2, true)
    while pos do
        out[#out + 1] = sub(name, 1, pos - 1) .. "/**"
        last = pos
        pos = find(name, "/", pos + 1, true)
    end
    out[#out + 1] = sub(name, 1, last - 1) .. "/*"
    return out
end

-- Route patterns: "/users/:id" captures one segment as params.id,
-- "/files/*path" captures the rest (possibly with slashes) as params.path.
local name_char = R("az", "AZ", "09") + S("_")
local seg_char = 1 - P("/")
local param = P(":") * C(name_char ^ 1)
local splat = P("*") * C(name_char ^ 0)
local literal = C((1 - S(":*")) ^ 1)
local route_grammar = Ct((Ct(Cc("param") * param) + Ct(Cc("splat") * splat)
    + Ct(Cc("lit") * literal)) ^ 0) * -1

--- Compiles a route pattern into a function(path) -> params table or nil.
function _M.route_matcher(pattern)
    if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
        error("a route pattern must start with '/'", 3)
    end
    local parts = route_grammar:match(pattern)
    if not parts then error("bad route pattern '" .. pattern .. "'", 3) end
    local patt = P(true)
    for _, part in ipairs(parts) do
        local kind, value = part[1], part[2]
        if kind == "lit" then
            patt = patt * P(value)
        elseif kind == "param" then
            patt = patt * Cg(C(seg_char ^ 1), value)
        else
            patt = patt * Cg(C(P(1) ^ 0), value ~= "" and value or "splat")
        end
    end
    patt = Ct(patt) * -1
    return function(path) return patt:match(path) end
end

return _M
