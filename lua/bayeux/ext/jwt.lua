--- bayeux.ext.jwt: per-user identity from a JSON Web Token.
--
--   local jwt = require "bayeux.ext.jwt"
--   server:add_extension(jwt { secret = os.getenv("JWT_SECRET") })     -- HS256
--   server:add_extension(jwt { public_key = pem })                     -- RS256
--   -- Faye client: client.addExtension({outgoing: (m, cb) => {
--   --   m.ext = Object.assign(m.ext || {}, {token: jwt}); cb(m); }});
--
-- The client sends its token in the handshake's `ext.token` (`field`
-- picks another key). The token is verified: three canonical base64url
-- parts, a header whose `alg` is exactly the configured one (never "none",
-- never HS256 with an RSA key), the signature (HMAC-SHA256 compared in
-- constant time, or RSA-SHA256 with the public key), then `exp` and `nbf`
-- (with `leeway` seconds), `iss` and `aud` when configured, and a string
-- `sub`. A good token binds the user { id = sub, claims = <payload> } to the
-- session (server:enable_users): extensions then see `message.user` on
-- every later message of that clientId, events get `user` as their last
-- argument, and publishes are stamped with the sender's id. With a Redis
-- engine the user is kept in Redis too, so that every process sees it
-- (lua/bayeux/identity.lua): the token is needed at the handshake only.
--
-- Refusals (the handshake, or a subscribe/publish):
--   401::Authentication required   no token (and `required`, the default)
--   401::Invalid token             malformed, wrong alg, bad signature,
--                                  wrong iss/aud, no sub
--   401::Token expired             exp passed (also later: a session whose
--                                  token expired cannot subscribe or publish
--                                  until it sends a fresh token in ext)
--   401::Token not yet valid       nbf in the future
-- A later message may carry a token too (Faye's outgoing extension adds it
-- to every message): it is verified and must name the same `sub`.
--
-- Options:
--   secret       HS256 key (a string of 32 bytes or more)
--   public_key   RS256: a PEM public key ("BEGIN PUBLIC KEY", RSA, >= 2048 bits)
--   alg          "HS256" or "RS256" (default: from secret / public_key)
--   field        key in message.ext (default "token")
--   issuer, audience   required `iss` / `aud` (aud may be a list in the token)
--   leeway       seconds of clock skew allowed on exp/nbf (default 30)
--   require_exp  a token without `exp` is invalid (default true)
--   required     a handshake without a token is refused (default true;
--                false: anonymous sessions, message.user == nil)
--   from         data field stamped with the sender's id (default "from";
--                false: only ext.user), see server:enable_users
--   check        function(claims, message, request) -> true, or nil/false
--                and a Bayeux error: an extra rule on the claims
--   trust_local  in-process clients pass unchecked (default true)
--   clock        function() -> seconds since the epoch (default os.time)

local core = require "bayeux.core"

local type, error, next, pcall, ipairs, getmetatable = type, error, next, pcall, ipairs,
    getmetatable
local os_time = os.time
local math_type = math.type
local hmac, b64d, b64e, same_bytes = core.hmac_sha256, core.b64url_decode, core.b64url_encode,
    core.same_bytes

local INVALID = "401::Invalid token"
local EXPIRED = "401::Token expired"
local EARLY = "401::Token not yet valid"
local REQUIRED = "401::Authentication required"
local MISMATCH = "401::Token subject mismatch"
local MAX_TOKEN = 16384

local M = {}

-- JSON text to a table (object only), or nil.
local function decode_object(text)
    if not text then return nil end
    local ok, v = pcall(core.decode, text)
    if not ok or type(v) ~= "table" or getmetatable(v) == core.array_mt then return nil end
    return v
end

local function compile(opts, where)
    if type(opts) ~= "table" then error(where .. ": options must be a table", 3) end
    local o = { leeway = opts.leeway or 30, issuer = opts.issuer, audience = opts.audience,
                require_exp = opts.require_exp ~= false, clock = opts.clock or os_time }
    if type(o.clock) ~= "function" then error(where .. ": clock must be a function", 3) end
    local secret, pem = opts.secret, opts.public_key or opts.private_key
    if secret ~= nil and pem ~= nil then
        error(where .. ": give secret (HS256) or a key (RS256), not both", 3)
    end
    o.alg = opts.alg or (secret ~= nil and "HS256") or (pem ~= nil and "RS256") or nil
    if o.alg == "HS256" then
        if type(secret) ~= "string" or #secret < 32 then
            error(where .. ": secret must be a string of 32 bytes or more (HS256)", 3)
        end
        o.secret = secret
    elseif o.alg == "RS256" then
        if type(pem) ~= "string" then error(where .. ": RS256 needs public_key (PEM)", 3) end
        local key, err = core.pem_key(pem)
        if not key then error(where .. ": public_key: " .. err, 3) end
        if key:type() ~= "RSA" or key:bits() < 2048 then
            error(where .. ": RS256 needs an RSA key of 2048 bits or more", 3)
        end
        o.key = key
    else
        error(where .. ": alg must be \"HS256\" (with secret) or \"RS256\" (with public_key)", 3)
    end
    if type(o.leeway) ~= "number" or o.leeway < 0 then
        error(where .. ": leeway must be seconds, 0 or more", 3)
    end
    return o
end

local function has_audience(aud, want)
    if aud == want then return true end
    if type(aud) ~= "table" then return false end
    for _, a in ipairs(aud) do if a == want then return true end end
    return false
end

-- The claims of a good token, or nil and the Bayeux error.
local function verify(token, o, now)
    if type(token) ~= "string" or #token > MAX_TOKEN then return nil, INVALID end
    local h64, p64, s64 = token:match("^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]+)$")
    if not h64 then return nil, INVALID end
    local header = decode_object(b64d(h64))
    local sig = b64d(s64)
    -- the header's alg must be the one configured: no "none", and a token
    -- signed "HS256" with an RSA public key as secret is refused here
    if not header or header.alg ~= o.alg or header.crit ~= nil or not sig then
        return nil, INVALID
    end
    local input = h64 .. "." .. p64
    local good
    if o.alg == "HS256" then
        good = same_bytes(hmac(o.secret, input), sig)
    else
        good = o.key:verify_sha256(input, sig)
    end
    if not good then return nil, INVALID end
    local claims = decode_object(b64d(p64))
    if not claims then return nil, INVALID end
    local exp, nbf = claims.exp, claims.nbf
    if (exp ~= nil and type(exp) ~= "number") or (nbf ~= nil and type(nbf) ~= "number")
        or (exp == nil and o.require_exp) then
        return nil, INVALID
    end
    now = now or o.clock()
    if exp and now >= exp + o.leeway then return nil, EXPIRED end
    if nbf and now + o.leeway < nbf then return nil, EARLY end
    if o.issuer ~= nil and claims.iss ~= o.issuer then return nil, INVALID end
    if o.audience ~= nil and not has_audience(claims.aud, o.audience) then return nil, INVALID end
    local sub = claims.sub
    if type(sub) ~= "string" or sub == "" or #sub > 256 then return nil, INVALID end
    return claims
end

--- jwt.verify(token, opts) -> claims, or nil and the Bayeux error
-- ("401::Invalid token", "401::Token expired", ...). opts as for the
-- extension (secret or public_key, alg, issuer, audience, leeway,
-- require_exp); opts.now overrides the clock (seconds).
function M.verify(token, opts)
    return verify(token, compile(opts, "jwt.verify"), opts.now)
end

--- jwt.sign(claims, opts) -> token: HS256 with opts.secret, RS256 with
-- opts.private_key (PEM). For issuing tokens (a login route) and tests.
function M.sign(claims, opts)
    if type(claims) ~= "table" then error("jwt.sign(claims, opts): claims must be a table", 2) end
    local o = compile(opts, "jwt.sign")
    local input = b64e(core.encode { alg = o.alg, typ = "JWT" }) .. "."
        .. b64e(core.encode(claims))
    local sig
    if o.alg == "HS256" then
        sig = hmac(o.secret, input)
    else
        local err
        sig, err = o.key:sign_sha256(input)
        if not sig then error("jwt.sign: " .. err, 2) end
    end
    return input .. "." .. b64e(sig)
end

local function strip(message, field)
    local ext = message.ext
    if type(ext) == "table" and ext[field] ~= nil then
        ext[field] = nil
        if next(ext) == nil then message.ext = nil end
    end
end

local function user_of(claims)
    return { id = claims.sub, claims = claims }
end

local function new(opts)
    local o = compile(opts, "bayeux.ext.jwt")
    local field = opts.field or "token"
    local required = opts.required ~= false
    local trust_local = opts.trust_local ~= false
    local check, from = opts.check, opts.from
    if check ~= nil and type(check) ~= "function" then
        error("bayeux.ext.jwt: check must be a function", 2)
    end
    if from ~= nil and from ~= false and type(from) ~= "string" then
        error("bayeux.ext.jwt: from must be a field name or false", 2)
    end

    -- a verified token's user, or nil and the refusal
    local function authenticate(token, message, request)
        local claims, err = verify(token, o)
        if not claims then return nil, err end
        if check then
            local ok, why = check(claims, message, request)
            if not ok then return nil, type(why) == "string" and why or "403::Forbidden" end
        end
        return user_of(claims)
    end

    return {
        name = "jwt",
        added = function(server)
            server:enable_users { from = from == nil and "from" or from }
        end,
        incoming = function(message, request, callback)
            local ext = message.ext
            local given = type(ext) == "table" and ext[field] or nil
            strip(message, field)
            if trust_local and request == nil then return callback(message) end
            local ch = message.channel
            if ch == "/meta/handshake" then
                message.user = nil
                if given == nil then
                    if required then message.error = REQUIRED end
                else
                    local user, err = authenticate(given, message, request)
                    if user then message.user = user else message.error = err end
                end
                return callback(message)
            end
            -- connect, unsubscribe and disconnect only concern the session
            if type(ch) ~= "string" or (ch ~= "/meta/subscribe" and ch:sub(1, 6) == "/meta/") then
                return callback(message)
            end
            local user = message.user
            if given ~= nil then
                local fresh, err = authenticate(given, message, request)
                if not fresh then
                    message.error = err
                elseif user and user.id ~= fresh.id then
                    message.error = MISMATCH
                else
                    message.user = fresh       -- this message only
                end
            elseif not user then
                if required then message.error = REQUIRED end
            else
                local exp = type(user.claims) == "table" and user.claims.exp
                if math_type(exp) and o.clock() >= exp + o.leeway then
                    message.error = EXPIRED
                end
            end
            callback(message)
        end,
    }
end

M.errors = { invalid = INVALID, expired = EXPIRED, early = EARLY, required = REQUIRED,
             mismatch = MISMATCH }

return setmetatable(M, { __call = function(_, opts) return new(opts) end })
