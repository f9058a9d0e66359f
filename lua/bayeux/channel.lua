--- bayeux.channel: channel matching and route patterns (lpeg).

local lpeg = require "lpeg"

local P, C, Ct, Cc = lpeg.P, lpeg.C, lpeg.Ct, lpeg.Cc
local R, S = lpeg.R, lpeg.S
local type, error, ipairs, concat = type, error, ipairs, table.concat
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
-- "/files/*path" captures the rest (possibly with slashes) as params.path,
-- "/d/:id.json" a segment's start before a literal suffix. The parts are
-- parsed with lpeg; the path is matched with a Lua pattern, which
-- backtracks: a parameter gives back what the literal after it needs.
local name_char = R("az", "AZ", "09") + S("_")
local param = P(":") * C(name_char ^ 1)
local splat = P("*") * C(name_char ^ 0)
local literal = C((1 - S(":*")) ^ 1)
local route_grammar = Ct((Ct(Cc("param") * param) + Ct(Cc("splat") * splat)
    + Ct(Cc("lit") * literal)) ^ 0) * -1

-- Lua patterns hold at most 32 captures.
local MAX_CAPTURES = 32

local function bad_route(pattern, why)
    error("server:route: pattern '" .. pattern .. "' " .. why, 4)
end

--- Compiles a route pattern into a function(path) -> params table or nil.
-- Raises for a pattern that could never match a request's path.
function _M.route_matcher(pattern)
    if type(pattern) ~= "string" or sub(pattern, 1, 1) ~= "/" then
        error("a route pattern must start with '/'", 3)
    end
    local brace = find(pattern, "[{}]")
    if brace then
        bad_route(pattern, "has a brace: a parameter is written ':name', not '{name}'")
    end
    if find(pattern, "[%s?#]") then
        bad_route(pattern, "has a space, '?' or '#': a request path (without its query) never does")
    end
    local parts = route_grammar:match(pattern)
    if not parts then
        bad_route(pattern, "is not valid: ':' must be followed by a name (letters, digits, _)")
    end
    local lua_patt, names, seen = { "^" }, {}, {}
    for i, part in ipairs(parts) do
        local kind, value = part[1], part[2]
        if kind == "lit" then
            lua_patt[#lua_patt + 1] = value:gsub("%p", "%%%0")
        else
            local prev = parts[i - 1]
            if prev and prev[1] ~= "lit" then
                bad_route(pattern, "has two parameters with nothing between them")
            end
            if kind == "splat" and value == "" then value = "splat" end
            if seen[value] then bad_route(pattern, "uses the name '" .. value .. "' twice") end
            seen[value] = true
            names[#names + 1] = value
            lua_patt[#lua_patt + 1] = kind == "param" and "([^/]+)" or "(.*)"
        end
    end
    if #names > MAX_CAPTURES then
        bad_route(pattern, "has more than " .. MAX_CAPTURES .. " parameters")
    end
    lua_patt[#lua_patt + 1] = "$"
    local lp = concat(lua_patt)
    local n = #names
    if n == 0 then
        return function(path) return path == pattern and {} or nil end
    end
    return function(path)
        local caps = { path:match(lp) }
        if caps[1] == nil then return nil end
        local params = {}
        for i = 1, n do params[names[i]] = caps[i] end
        return params
    end
end

return _M
