--- bayeux: a Bayeux (Faye-compatible) pub/sub server with a C core.
--
--   local bayeux = require "bayeux"
--   local server = bayeux.server { mount = "/faye", timeout = 45 }
--   server:listen(8000, "127.0.0.1")
--   bayeux.run()

local core = require "bayeux.core"
local channel = require "bayeux.channel"

local error, type, pairs, ipairs, setmetatable, tostring = error, type, pairs, ipairs,
    setmetatable, tostring
local table_remove, io, math_type = table.remove, io, math.type
local xpcall, traceback, getinfo = xpcall, debug.traceback, debug.getinfo

local _M = {
    _VERSION = "0.1.0",
    null = core.null,
}

-- Every option, its type and a check; unknown keys are misuse.
local OPTIONS = {
    mount = { "string", function(v) return v:sub(1, 1) == "/" and not v:find("[%s?#]") end,
              "a path starting with '/'" },
    timeout = { "number", function(v) return v > 0 end, "a positive number of seconds" },
    interval = { "number", function(v) return v >= 0 end, "seconds, 0 or more" },
    ping = { "number", function(v) return v >= 0 end, "seconds, 0 or more" },
    queue_limit = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                    "a positive integer" },
    max_body = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                 "a positive integer (bytes)" },
    max_header = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                   "a positive integer (bytes)" },
    idle_timeout = { "number", function(v) return v > 0 end, "a positive number of seconds" },
    max_conns = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                  "a positive integer" },
    client_script = { "string", function() return true end, "a file path" },
    extension_deadline = { "number", function(v) return v > 0 end,
                           "a positive number of seconds" },
    engine = { "string", function(v) return v == "memory" end, "\"memory\"" },
}

-- Until bayeux ships its own browser client, <mount>/client.js serves
-- Faye's from the npm package when a checkout has it installed.
local function default_client_script()
    local src = debug.getinfo(1, "S").source
    local root = src:match("^@(.*)/lua/bayeux/init%.lua$")
    if not root then return nil end
    local path = root .. "/test/node/node_modules/faye/client/faye-browser-min.js"
    local f = io.open(path)
    if not f then return nil end
    f:close()
    return path
end

local function check_options(opts)
    if opts == nil then return {} end
    if type(opts) ~= "table" then
        error("bayeux.server: options must be a table", 3)
    end
    local out = {}
    for k, v in pairs(opts) do
        local spec = OPTIONS[k]
        if not spec then
            error("bayeux.server: unknown option '" .. tostring(k) .. "'", 3)
        end
        if type(v) ~= spec[1] or not spec[2](v) then
            error(("bayeux.server: option '%s' must be %s"):format(k, spec[3]), 3)
        end
        out[k] = v
    end
    return out
end

--- JSON helpers shared with the core.
_M.encode = core.encode
_M.decode = core.decode

--- Marks a table as a JSON array (so an empty one encodes as []).
function _M.array(t)
    return setmetatable(t or {}, core.array_mt)
end

--- Marks a table as a JSON object (so an empty one encodes as {}).
function _M.object(t)
    return setmetatable(t or {}, core.object_mt)
end

-- ---------------------------------------------------------------------------
-- Timers and the loop
-- ---------------------------------------------------------------------------

--- Calls fn once after `seconds`; returns a timer with :cancel().
function _M.timer(seconds, fn)
    if type(seconds) ~= "number" or type(fn) ~= "function" then
        error("bayeux.timer(seconds, fn)", 2)
    end
    return core.timer(seconds, false, fn)
end

--- Calls fn every `seconds`; returns a timer with :cancel().
function _M.interval(seconds, fn)
    if type(seconds) ~= "number" or seconds <= 0 or type(fn) ~= "function" then
        error("bayeux.interval(seconds, fn): seconds must be positive", 2)
    end
    return core.timer(seconds, true, fn)
end

--- Runs the event loop until bayeux.stop() or SIGINT/SIGTERM.
function _M.run()
    core.run()
end

--- Closes every server (held connects are answered) and ends bayeux.run().
function _M.stop()
    core.stop()
end

--- The loop's clock, in seconds.
_M.now = core.now

-- ---------------------------------------------------------------------------
-- Server
-- ---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local EVENTS = { handshake = true, subscribe = true, unsubscribe = true, publish = true,
                 disconnect = true }

--- Creates a server (nothing listens until :listen()).
function _M.server(opts)
    local o = check_options(opts)
    o.mount = o.mount or "/bayeux"
    o.engine = nil
    o.client_script = o.client_script or default_client_script()
    local deadline = o.extension_deadline
    o.extension_deadline = nil
    local self = setmetatable({
        extensions = {},
        extension_deadline = deadline or 30,
        core = core.server(o),
        mount = o.mount:gsub("(.)/+$", "%1"),
        listeners = {},
        routes = {},
    }, Server)
    self.core:on_event(function(name, client_id, ch, data)
        local list = self.listeners[name]
        if not list then return end
        for _, fn in ipairs(list) do
            if name == "publish" then
                fn(client_id, ch, data)
            elseif name == "subscribe" or name == "unsubscribe" then
                fn(client_id, ch)
            else
                fn(client_id)
            end
        end
    end)
    return self
end

--- Starts listening. Returns the bound port, or nil and an error.
function Server:listen(port, host)
    host = host or "0.0.0.0"
    if type(port) ~= "number" or math_type(port) ~= "integer" then
        error("server:listen(port, host): port must be an integer", 2)
    end
    local bound, err = self.core:listen(port, host)
    if not bound then return nil, err end
    self.port = bound
    io.stdout:write(("bayeux: listening on http://%s:%d%s\n"):format(host, bound, self.mount))
    io.stdout:flush()
    return bound
end

--- Closes the server; fn() runs once everything is closed.
function Server:close(fn)
    self.core:close(fn)
end

--- Listens to an event: handshake, subscribe, unsubscribe, publish,
-- disconnect (Faye's arguments: client id, channel, data).
function Server:on(name, fn)
    if not EVENTS[name] then error("server:on: unknown event '" .. tostring(name) .. "'", 2) end
    if type(fn) ~= "function" then error("server:on: fn must be a function", 2) end
    local list = self.listeners[name] or {}
    list[#list + 1] = fn
    self.listeners[name] = list
end

-- ---------------------------------------------------------------------------
-- Extensions (Faye's server extensions)
-- ---------------------------------------------------------------------------

local function log(...)
    io.stderr:write("bayeux: ", ...)
    io.stderr:write("\n")
end

-- Runs one message through every extension's `incoming` (stage 0) or
-- `outgoing` (stage 1), in the order they were added, each continuing
-- through its callback, then hands the result to `done` (C).
local function chain_runner(self)
    return function(stage, message, request, done)
        local key = stage == 0 and "incoming" or "outgoing"
        local list = {}
        for i, ext in ipairs(self.extensions) do list[i] = ext end  -- a snapshot
        local i = 0
        local function step(msg)
            if msg == nil then return done(nil) end
            local ext
            repeat
                i = i + 1
                ext = list[i]
            until not ext or type(ext[key]) == "function"
            if not ext then return done(msg) end
            local fn, called = ext[key], false
            local function callback(m)
                if called then
                    log("extension ", key, ": callback called twice; ignored")
                    return
                end
                called = true
                step(m)
            end
            local ok, err
            if getinfo(fn, "u").nparams >= 3 then
                ok, err = xpcall(fn, traceback, msg, request, callback)
            else
                ok, err = xpcall(fn, traceback, msg, callback)
            end
            if not ok then
                log("extension ", key, " failed: ", tostring(err))
                if not called then
                    called = true
                    msg.error = "500::Internal server error"
                    if stage == 1 and msg.successful ~= nil then msg.successful = false end
                    done(msg)
                end
            end
        end
        step(message)
    end
end

local function install_extensions(self)
    local incoming, outgoing = false, false
    for _, ext in ipairs(self.extensions) do
        incoming = incoming or type(ext.incoming) == "function"
        outgoing = outgoing or type(ext.outgoing) == "function"
    end
    self.runner = self.runner or chain_runner(self)
    self.core:set_extensions(self.runner, incoming, outgoing, self.extension_deadline)
end

--- Adds an extension: a table with incoming(message, [request,] callback)
-- and/or outgoing(message, [request,] callback), and optional added(server)
-- / removed(server). Extensions run in the order they were added.
function Server:add_extension(ext)
    if type(ext) ~= "table" then error("server:add_extension(ext): ext must be a table", 2) end
    self.extensions[#self.extensions + 1] = ext
    install_extensions(self)
    if type(ext.added) == "function" then ext.added(self) end
end

--- Removes every occurrence of `ext`.
function Server:remove_extension(ext)
    local found = false
    for i = #self.extensions, 1, -1 do
        if self.extensions[i] == ext then
            table_remove(self.extensions, i)
            found = true
        end
    end
    if not found then return end
    install_extensions(self)
    if type(ext.removed) == "function" then ext.removed(self) end
end

-- ---------------------------------------------------------------------------
-- Routes beside the mount
-- ---------------------------------------------------------------------------

local Response = {}
Response.__index = Response

function Response:status(code)
    self.code = code
    return self
end

function Response:header(name, value)
    self.headers[name] = tostring(value)
    return self
end

function Response:send(body)
    if self.sent then error("response already sent", 2) end
    self.sent = true
    self.req:respond(self.code or 200, self.headers, body or "")
end

function Response:json(value)
    self.headers["Content-Type"] = "application/json; charset=utf-8"
    self:send(core.encode(value))
end

function Response:html(text)
    self.headers["Content-Type"] = "text/html; charset=utf-8"
    self:send(text)
end

local function dispatch(self, req)
    local info = req:info()
    local res = setmetatable({ req = req, headers = {} }, Response)
    local allowed = false
    for _, r in ipairs(self.routes) do
        local params = r.match(info.path)
        if params then
            if r.method == info.method or (r.method == "GET" and info.method == "HEAD") then
                info.params = params
                r.handler(info, res)
                return
            end
            allowed = true
        end
    end
    if allowed then
        res:status(405):header("Content-Type", "text/plain; charset=utf-8")
        res:send("Method not allowed\n")
    else
        res:status(404):header("Content-Type", "text/plain; charset=utf-8")
        res:send("Not found\n")
    end
end

--- Adds a route: method ("GET", "POST", ...), a path pattern ("/users/:id",
-- "/files/*path") and handler(req, res).
function Server:route(method, pattern, handler)
    if type(method) ~= "string" or type(pattern) ~= "string" or type(handler) ~= "function" then
        error("server:route(method, pattern, handler)", 2)
    end
    self.routes[#self.routes + 1] = {
        method = method:upper(), match = channel.route_matcher(pattern), handler = handler,
    }
    if not self.routing then
        self.routing = true
        self.core:on_request(function(req) dispatch(self, req) end)
    end
end

-- ---------------------------------------------------------------------------
-- In-process client
-- ---------------------------------------------------------------------------

local Client = {}
Client.__index = Client

--- An in-process client: subscribes and publishes without HTTP. Its
-- messages pass the server's extensions with request = nil.
function Server:client()
    local c = setmetatable({ server = self, subs = {}, waiting = {}, id = nil }, Client)
    self.core:process({ { channel = "/meta/handshake", version = "1.0",
                          supportedConnectionTypes = _M.array { "in-process" } } },
        function(replies)
            local r = replies and replies[1]
            if not r or not r.successful then
                c.failed = r and r.error or "handshake failed"
                for _, fn in ipairs(c.waiting) do fn(false, c.failed) end
                c.waiting = {}
                return
            end
            c.id = r.clientId
            self.core:bind(c.id, function(msgs) c:_deliver(msgs) end)
            local waiting = c.waiting
            c.waiting = {}
            for _, fn in ipairs(waiting) do fn(true) end
        end)
    return c
end

function Client:_when_ready(fn)
    if self.id then fn(true)
    elseif self.failed then fn(false, self.failed)
    else self.waiting[#self.waiting + 1] = fn end
end

function Client:_send(msg, cb)
    self:_when_ready(function(ok, err)
        if not ok then
            if cb then cb(false, err) end
            return
        end
        msg.clientId = self.id
        self.server.core:process({ msg }, function(replies)
            local r = replies and replies[1]
            if cb then
                if r and r.successful then cb(true, r) else cb(false, r and r.error, r) end
            end
        end)
    end)
end

function Client:_deliver(msgs)
    for _, m in ipairs(msgs) do
        if m.channel and m.data ~= nil then
            for pattern, fns in pairs(self.subs) do
                if channel.matches(pattern, m.channel) then
                    for _, fn in ipairs(fns) do fn(m.data, m.channel) end
                end
            end
        end
    end
end

local Subscription = {}
Subscription.__index = Subscription

--- Stops this subscription's callback; the last one unsubscribes.
function Subscription:cancel()
    if self.canceled then return end
    self.canceled = true
    local c, fns = self.client, self.client.subs[self.channel]
    if not fns then return end
    for i, fn in ipairs(fns) do
        if fn == self.fn then table_remove(fns, i) break end
    end
    if #fns == 0 then
        c.subs[self.channel] = nil
        c:_send({ channel = "/meta/unsubscribe", subscription = self.channel })
    end
end

--- Subscribes: fn(data, channel) for every message on `ch` (a name or a
-- pattern). on_ack(ok, err) reports the server's answer. Returns a
-- subscription with :cancel().
function Client:subscribe(ch, fn, on_ack)
    if type(ch) ~= "string" or type(fn) ~= "function" then
        error("client:subscribe(channel, fn)", 2)
    end
    local fns = self.subs[ch]
    local first = not fns
    if first then
        fns = {}
        self.subs[ch] = fns
    end
    fns[#fns + 1] = fn
    local sub = setmetatable({ client = self, channel = ch, fn = fn }, Subscription)
    if first then
        self:_send({ channel = "/meta/subscribe", subscription = ch }, function(ok, err)
            if not ok and self.subs[ch] == fns then self.subs[ch] = nil end
            if on_ack then on_ack(ok, err) end
        end)
    elseif on_ack then
        _M.timer(0, function() on_ack(true) end)
    end
    return sub
end

--- Removes every callback of `ch` and unsubscribes.
function Client:unsubscribe(ch)
    if self.subs[ch] then
        self.subs[ch] = nil
        self:_send({ channel = "/meta/unsubscribe", subscription = ch })
    end
end

--- Publishes `data` on `ch`; cb(ok, err) gets the server's ack.
function Client:publish(ch, data, cb)
    if type(ch) ~= "string" then error("client:publish(channel, data, cb)", 2) end
    if data == nil then data = core.null end
    self:_send({ channel = ch, data = data }, cb)
end

--- Ends the client's session.
function Client:disconnect(cb)
    self:_when_ready(function(ok)
        if not ok then return end
        local id = self.id
        self.server.core:unbind(id)
        self.server.core:process({ { channel = "/meta/disconnect", clientId = id } },
            function() if cb then cb() end end)
    end)
end

_M.Server = Server
_M.Client = Client
return _M
