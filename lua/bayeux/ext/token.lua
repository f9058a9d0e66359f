--- bayeux.ext.token: token authentication for subscribes and publishes.
--
--   local token = require "bayeux.ext.token"
--   server:add_extension(token { token = "s3cret" })
--   -- or decide per message:
--   server:add_extension(token { token = function(tok, message, request)
--     return tok == users[message.clientId]
--   end })
--
-- A client sends the token in the message's `ext`, by default as
-- `ext.token` (Faye client: an outgoing client extension that sets
-- `message.ext = {token = "s3cret"}`); `field = "auth"` reads `ext.auth`.
-- `/meta/subscribe` messages and publishes (every channel outside /meta/)
-- without a matching token are rejected with "403::Forbidden" (option
-- `error`). Handshake, connect, unsubscribe and disconnect are not
-- checked. The token is removed from every incoming message once checked
-- and from every outgoing one, so subscribers never see it.
--
-- Options:
--   token        a string, or function(token, message, request) -> true
--   field        the key in message.ext (default "token")
--   error        the Bayeux error of a refusal (default "403::Forbidden")
--   trust_local  in-process clients (request == nil) pass unchecked
--                (default true: server:client() and the publish API)

local type, error, next = type, error, next

local function same(given, expected)
    local n, gn = #expected, #given
    local diff = n ~ gn
    for i = 1, n do
        diff = diff | ((i <= gn and given:byte(i) or 0) ~ expected:byte(i))
    end
    return diff == 0
end

local function strip(message, field)
    local ext = message.ext
    if type(ext) == "table" and ext[field] ~= nil then
        ext[field] = nil
        if next(ext) == nil then message.ext = nil end
    end
end

return function(opts)
    if type(opts) ~= "table" then error("bayeux.ext.token{ token = ... }", 2) end
    local token, field = opts.token, opts.field or "token"
    local refusal = opts.error or "403::Forbidden"
    local trust_local = opts.trust_local ~= false
    if not ((type(token) == "string" and token ~= "") or type(token) == "function") then
        error("bayeux.ext.token: token must be a non-empty string or a function", 2)
    end

    local function valid(given, message, request)
        if type(given) ~= "string" then return false end
        if type(token) == "function" then return token(given, message, request) == true end
        return same(given, token)
    end

    return {
        name = "token",
        incoming = function(message, request, callback)
            local ch = message.channel
            local checked = ch == "/meta/subscribe"
                or (type(ch) == "string" and ch:sub(1, 6) ~= "/meta/")
            if checked and not (trust_local and request == nil) then
                local ext = message.ext
                local given = type(ext) == "table" and ext[field] or nil
                if not valid(given, message, request) then message.error = refusal end
            end
            strip(message, field)
            callback(message)
        end,
        outgoing = function(message, callback)
            strip(message, field)
            callback(message)
        end,
    }
end
