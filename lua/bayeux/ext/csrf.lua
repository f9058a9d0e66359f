--- bayeux.ext.csrf: browser clients must prove they were served by you.
--
-- The scheme is the "double-submit cookie": your page is served with a
-- cookie holding a random token (csrf.issue(res) sets it), the page's
-- script reads the cookie and sends the same value in every message's
-- `ext.csrf`. A page on another site can make the browser send your
-- cookie, but cannot read it, so it cannot put the value in `ext`.
--
--   local csrf = require "bayeux.ext.csrf"
--   local check = csrf { cookie = "bayeux_csrf" }
--   server:add_extension(check)
--   server:route("GET", "/", function(req, res)
--     check.issue(req, res)                 -- Set-Cookie: bayeux_csrf=<random>
--     res:html(page)
--   end)
--   -- in the page (Faye client):
--   -- client.addExtension({ outgoing: (m, cb) => {
--   --   const t = document.cookie.match(/(?:^|; )bayeux_csrf=([^;]*)/);
--   --   m.ext = m.ext || {}; m.ext.csrf = t && t[1]; cb(m); } });
--
-- Instead of a cookie the expected value may be known to the server:
-- `token = "..."` or `token = function(message, request) -> expected`.
--
-- Every message arriving over HTTP (request ~= nil) is checked; a missing
-- or different value is refused with "403::Forbidden" (option `error`),
-- also when the request has no such cookie. `exempt = function(message,
-- request) -> true` lets other clients (e.g. servers without cookies)
-- through. The token is removed from incoming and outgoing messages.
--
-- Options: cookie (default "bayeux_csrf"), field (ext key, default "csrf"),
-- token, exempt, error, trust_local (default true).

local type, error, next = type, error, next

local function same(given, expected)
    local n, gn = #expected, #given
    local diff = n ~ gn
    for i = 1, n do
        diff = diff | ((i <= gn and given:byte(i) or 0) ~ expected:byte(i))
    end
    return diff == 0
end

local function cookie_value(header, name)
    if type(header) ~= "string" then return nil end
    for pair in header:gmatch("[^;]+") do
        local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
        if k == name then return v end
    end
    return nil
end

local M = {}

--- csrf.new_token() -> 32 random hex characters (from /dev/urandom).
function M.new_token()
    local f = io.open("/dev/urandom", "rb")
    local bytes
    if f then
        bytes = f:read(16)
        f:close()
    end
    if not bytes or #bytes < 16 then error("bayeux.ext.csrf: no /dev/urandom") end
    return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

M.cookie_value = cookie_value

local function new(opts)
    opts = opts or {}
    local name, field = opts.cookie or "bayeux_csrf", opts.field or "csrf"
    local token, exempt = opts.token, opts.exempt
    local refusal = opts.error or "403::Forbidden"
    local trust_local = opts.trust_local ~= false
    if not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
        error("bayeux.ext.csrf: bad cookie name", 2)
    end
    if token ~= nil and type(token) ~= "string" and type(token) ~= "function" then
        error("bayeux.ext.csrf: token must be a string or a function", 2)
    end

    local function strip(message)
        local ext = message.ext
        if type(ext) == "table" and ext[field] ~= nil then
            ext[field] = nil
            if next(ext) == nil then message.ext = nil end
        end
    end

    local ext = { name = "csrf" }

    --- ext.issue(req, res) -> the token: keeps the browser's cookie if it
    -- has one, else sets a new one (SameSite=Strict, Path=/).
    function ext.issue(req, res)
        local have = req and req.headers and cookie_value(req.headers.cookie, name)
        if have and have:match("^%x+$") and #have >= 32 then return have end
        local t = M.new_token()
        res:header("Set-Cookie", name .. "=" .. t .. "; Path=/; SameSite=Strict")
        return t
    end

    function ext.incoming(message, request, callback)
        if (request == nil and trust_local)
            or (request ~= nil and exempt and exempt(message, request)) then
            strip(message)
            return callback(message)
        end
        local expected
        if type(token) == "string" then
            expected = token
        elseif type(token) == "function" then
            expected = token(message, request)
        elseif request then
            expected = cookie_value(request.headers and request.headers.cookie, name)
        end
        local e = message.ext
        local given = type(e) == "table" and e[field] or nil
        if type(expected) ~= "string" or expected == "" or type(given) ~= "string"
            or not same(given, expected) then
            message.error = refusal
        end
        strip(message)
        callback(message)
    end

    function ext.outgoing(message, callback)
        strip(message)
        callback(message)
    end

    return ext
end

return setmetatable(M, { __call = function(_, opts) return new(opts) end })
