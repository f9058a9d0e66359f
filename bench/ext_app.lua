-- bench/ext_app.lua - the server of bench/run.js's extension scenario: a plain
-- Bayeux server on /faye plus one trivial Lua incoming extension that every
-- message passes through (`--no-ext` leaves it out, so the two runs differ
-- by the extension alone).
--
--   lua5.4 bin/bayeux bench/ext_app.lua [--no-ext] [port]
--
-- Prints "bayeux: listening on http://127.0.0.1:PORT/faye" (port 0, the
-- default, picks a free one).
local bayeux = require "bayeux"

local with_ext = true
local port = 0
for _, a in ipairs(arg) do
    if a == "--no-ext" then
        with_ext = false
    elseif tonumber(a) then
        port = math.tointeger(tonumber(a))
    else
        error("usage: bayeux bench/ext_app.lua [--no-ext] [port]")
    end
end

local server = bayeux.server { mount = "/faye", timeout = 45, max_conns = 30000 }

if with_ext then
    server:add_extension {
        -- the three-argument form: the server hands it the request too
        incoming = function(message, request, callback) -- luacheck: no unused args
            callback(message)
        end,
    }
end

assert(server:listen(port, "127.0.0.1"))
