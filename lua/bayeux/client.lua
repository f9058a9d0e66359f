--- bayeux.client(url[, opts]): a Bayeux client over the network, what Faye
-- users write as `new Faye.Client(url)` in server code.
--
--   local client = bayeux.client("http://127.0.0.1:8000/faye")
--   client:subscribe("/messages", function(data, channel) end)
--   client:publish("/messages", { text = "Hello" }, function(ok, err) end)
--
-- The protocol logic mirrors the browser client (client/bayeux.js): the
-- handshake / connect cycle, advice, back-off, subscriptions restored after
-- a new handshake, messages sent late once the server is back. The I/O is
-- the C HTTP client (core/net/httpc.c) on the module's loop, so a script
-- with servers and clients runs one loop.

local core = require "bayeux.core"
local channel = require "bayeux.channel"

local error, type, pairs, ipairs, setmetatable, tostring, pcall = error, type, pairs, ipairs,
    setmetatable, tostring, pcall
local math_min, math_max, table_remove, string_format = math.min, math.max, table.remove,
    string.format

local _M = {}

local BAYEUX_VERSION = "1.0"
local MAX_BACKOFF = 60          -- longest wait between retries (unless `retry` is longer)
local STOPPED = "Client stopped by the server (advice reconnect \"none\")"
local UNCONNECTED, CONNECTING, CONNECTED, DISCONNECTED = 1, 2, 3, 4

local Client = {}
Client.__index = Client

local Subscription = {}
Subscription.__index = Subscription

local function array(t)
    return setmetatable(t, core.array_mt)
end

local function later(fn, ...)
    local n, args = select("#", ...), { ... }
    core.timer(0, false, function() fn(table.unpack(args, 1, n)) end)
end

-- Calls fn(...) so that an error in user code is logged, not raised into
-- the loop's callback (where it would be logged without context).
local function guarded(what, fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok then core.log("error", "client", what .. ": " .. tostring(err)) end
end

-- "http://host:port/path" -> host, port, path, secure (https or wss); nil,
-- err when not one.
local function parse_url(url)
    local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then return nil, "not an absolute URL: " .. url end
    scheme = scheme:lower()
    local secure = scheme == "https" or scheme == "wss"
    if scheme ~= "http" and scheme ~= "ws" and not secure then
        return nil, "unsupported scheme " .. scheme .. " (http:// or https:// only)"
    end
    local authority, path = rest:match("^([^/?#]*)(.*)$")
    if path == "" then path = "/" end
    local host, port = authority:match("^%[(.+)%]:?(%d*)$")
    if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
    if not host or host == "" then return nil, "no host in URL: " .. url end
    port = tonumber(port) or (secure and 443 or 80)
    return host, port, path, secure
end

_M.parse_url = parse_url

--- A new client for `url`; nothing is sent until the first call that needs
-- a session (subscribe, publish). Options: timeout (seconds a request may
-- take, and a publish may wait for its answer; default 60), retry (seconds
-- before the first retry; default 5), interval (seconds between connects;
-- default 0), headers (a table of extra HTTP headers).
function _M.new(url, opts)
    if type(url) ~= "string" then error("bayeux.client(url[, opts])", 3) end
    opts = opts or {}
    if type(opts) ~= "table" then error("bayeux.client: opts must be a table", 3) end
    for k, v in pairs(opts) do
        if k == "timeout" or k == "retry" or k == "interval" then
            if type(v) ~= "number" or v < 0 or (k ~= "interval" and v == 0) then
                error("bayeux.client: option " .. k .. " must be a positive number", 3)
            end
        elseif k == "ca" then
            if type(v) ~= "string" then error("bayeux.client: option ca must be a file name", 3) end
        elseif k ~= "headers" then
            error("bayeux.client: unknown option " .. tostring(k), 3)
        end
    end
    local host, port, path, secure = parse_url(url)
    if not host then error("bayeux.client: " .. port, 3) end
    local self = setmetatable({
        url = url, host = host, port = port, path = path,
        -- https/wss: checked against opts.ca (a PEM file) or the system's CAs
        tls = secure and (opts.ca or true) or nil,
        timeout = opts.timeout or 60,
        retry = opts.retry or 5,
        headers = {},
        disabled = {},
        state = UNCONNECTED,
        client_id = nil,
        message_id = 0,
        advice = { reconnect = "retry", interval = 1000 * (opts.interval or 0),
                   timeout = 1000 * (opts.timeout or 60) },
        channels = {},          -- name -> { subs = {}, state, acks = {} }
        callbacks = {},         -- message id -> { fn, client_id }
        waiting = {},           -- functions waiting for a session
        extensions = {},
        listeners = {},
        outbox = {},
        failures = 0,
        handshake_failures = 0,
        up = nil,
    }, Client)
    for k, v in pairs(opts.headers or {}) do self.headers[k] = v end
    return self
end

-- ---- Events ----

--- Listens for "transport:up" / "transport:down".
function Client:on(name, fn)
    if name ~= "transport:up" and name ~= "transport:down" then
        error("client:on: unknown event " .. tostring(name), 2)
    end
    if type(fn) ~= "function" then error("client:on(name, fn)", 2) end
    local l = self.listeners[name] or {}
    l[#l + 1] = fn
    self.listeners[name] = l
    return self
end

function Client:_emit(name)
    for _, fn in ipairs(self.listeners[name] or {}) do guarded(name, fn) end
end

function Client:_set_up(up)
    if self.up == up then return end
    self.up = up
    self:_emit(up and "transport:up" or "transport:down")
end

--- Turns a transport off ("websocket", "long-polling"); Faye's disable().
function Client:disable(feature)
    self.disabled[feature] = true
    return self
end

--- Adds an HTTP header to every request.
function Client:set_header(name, value)
    if type(name) ~= "string" or name:find("[\r\n:]") then
        error("client:set_header(name, value)", 2)
    end
    value = tostring(value)
    if value:find("[\r\n]") then error("client:set_header: bad value", 2) end
    self.headers[name] = value
    return self
end

--- Faye-style extension: a table with incoming(message, callback) and/or
-- outgoing(message, callback); callback(message) passes it on, callback(nil)
-- drops it.
function Client:add_extension(ext)
    if type(ext) ~= "table" then error("client:add_extension(ext)", 2) end
    self.extensions[#self.extensions + 1] = ext
    if type(ext.added) == "function" then guarded("extension", ext.added, ext, self) end
    return self
end

function Client:remove_extension(ext)
    for i, e in ipairs(self.extensions) do
        if e == ext then
            table_remove(self.extensions, i)
            if type(ext.removed) == "function" then guarded("extension", ext.removed, ext, self) end
            break
        end
    end
    return self
end

function Client:_pipe(stage, message, done)
    local exts = { table.unpack(self.extensions) }
    local function step(i, msg)
        if msg == nil then return end
        while i <= #exts and type(exts[i][stage]) ~= "function" do i = i + 1 end
        if i > #exts then return done(msg) end
        local called = false
        local ok, err = pcall(exts[i][stage], exts[i], msg, function(m)
            if called then return end
            called = true
            step(i + 1, m)
        end)
        if not ok then
            core.log("error", "client", "extension: " .. tostring(err))
            if not called then
                called = true
                step(i + 1, msg)
            end
        end
    end
    step(1, message)
end

-- ---- The dispatcher: envelopes, requests, retries ----

function Client:_http()
    if not self.http then self.http = core.http_client(self.host, self.port, self.tls) end
    return self.http
end

function Client:_header_lines()
    local lines = { "Content-Type: application/json\r\n" }
    for k, v in pairs(self.headers) do lines[#lines + 1] = k .. ": " .. v .. "\r\n" end
    return table.concat(lines)
end

function Client:_backoff()
    local cap = math_max(self.retry, MAX_BACKOFF)
    return math_min(self.retry * 1.5 ^ math_max(0, self.failures - 1), cap)
end

-- Queues an envelope for the next request (a connect goes alone: it is
-- held by the server, and the others' answers must not wait for it).
function Client:_enqueue(env)
    if env.dead then return end
    if env.message.channel == "/meta/connect" then
        return self:_start({ env })
    end
    self.outbox[#self.outbox + 1] = env
    if not self.flushing then
        self.flushing = true
        core.timer(0, false, function()
            self.flushing = false
            local batch = self.outbox
            self.outbox = {}
            local live = {}
            for _, e in ipairs(batch) do if not e.dead then live[#live + 1] = e end end
            if #live > 0 then self:_start(live) end
        end)
    end
end

-- The answers to a request's envelopes arrived: what they forgot is tried
-- again.
function Client:_answered(envs, replies)
    self.failures = 0
    self:_set_up(true)
    local answered = {}
    for _, r in ipairs(replies) do
        if type(r) == "table" then
            if r.id ~= nil then answered[r.id] = true end
            self:_receive(r)
        end
    end
    for _, e in ipairs(envs) do
        if not answered[e.message.id] then self:_retry(e) end
    end
end

function Client:_encode(envs)
    local msgs = {}
    for i, e in ipairs(envs) do msgs[i] = e.message end
    local ok, body = pcall(core.encode, array(msgs))
    if not ok then
        for _, e in ipairs(envs) do self:_abort(e, tostring(body)) end
        return nil
    end
    return body
end

function Client:_start(envs)
    if self.state == DISCONNECTED and envs[1].message.channel ~= "/meta/disconnect" then return end
    local held = envs[1].message.channel == "/meta/connect"
    local timeout = 1.2 * (held and self.advice.timeout / 1000 or 0) + self.timeout
    local ws = self.ws
    if ws and ws.open and envs[1].message.channel ~= "/meta/handshake" then
        if held then envs[1].message.connectionType = "websocket" end
        local body = self:_encode(envs)
        if not body then return end
        if ws.sock:send(body) then return self:_ws_track(ws, envs, timeout) end
    end
    if held then envs[1].message.connectionType = "long-polling" end
    local body = self:_encode(envs)
    if not body then return end
    self:_http():request("POST", self.path, self:_header_lines(), body, timeout,
        function(status, text, err)
            local replies
            if not err then
                if status ~= 200 then
                    err = "HTTP " .. tostring(status)
                else
                    local v = core.decode(text)
                    if type(v) == "table" then replies = v
                    else err = "bad JSON in the answer" end
                end
            end
            if err then return self:_failed(envs, err) end
            self:_answered(envs, replies)
        end)
end

-- ---- The websocket transport ----
--
-- Tried after each handshake when the server offers it and it is not
-- disabled; the first connect waits for the outcome. While it is open every
-- message but the handshake goes over it; if it cannot be opened the
-- session stays on long-polling; if it breaks, what was in flight is tried
-- again (over a new socket, or long-polling if that fails).

function Client:_ws_wanted(types)
    if self.disabled["websocket"] or self.ws_broken then return false end
    for _, t in ipairs(types or {}) do if t == "websocket" then return true end end
    return false
end

-- Opens the socket; then(ok) runs once it is open or has failed.
function Client:_ws_open(then_fn)
    if self.ws then
        if then_fn then then_fn(self.ws.open) end
        return
    end
    local ws = { open = false, pending = {}, waiters = { then_fn } }
    self.ws = ws
    local headers = {}
    for k, v in pairs(self.headers) do headers[#headers + 1] = k .. ": " .. v .. "\r\n" end
    ws.sock = core.ws_open(self.host, self.port, self.path, table.concat(headers),
        self.timeout, function(event, data)
            if event == "open" then
                ws.open = true
                self:_set_up(true)
                local waiters = ws.waiters
                ws.waiters = {}
                for _, fn in ipairs(waiters) do fn(true) end
            elseif event == "message" then
                local v = core.decode(data)
                if type(v) ~= "table" then return end
                local done = {}
                for _, r in ipairs(v) do
                    local e = type(r) == "table" and r.id ~= nil and ws.pending[r.id]
                    if e then
                        ws.pending[r.id] = nil
                        done[#done + 1] = e
                    end
                end
                self:_answered({}, v)
                -- an envelope answered is done; the others wait on
                for _, e in ipairs(done) do e.ws_timer:cancel() end
            else
                if self.ws == ws then self.ws = nil end
                local was_open = ws.open
                ws.open = false
                if not was_open then self.ws_broken = true end
                local waiters = ws.waiters
                ws.waiters = {}
                for _, fn in ipairs(waiters) do fn(false) end
                local pending = {}
                for _, e in pairs(ws.pending) do pending[#pending + 1] = e end
                ws.pending = {}
                for _, e in ipairs(pending) do e.ws_timer:cancel() end
                if #pending > 0 then self:_failed(pending, "websocket " .. tostring(data)) end
                if was_open and self.state ~= DISCONNECTED then
                    -- reopen at once; a connect in flight on it is retried
                    self:_set_up(false)
                    self:_ws_open()
                end
            end
        end, self.tls)
end

function Client:_ws_track(ws, envs, timeout)
    for _, e in ipairs(envs) do
        ws.pending[e.message.id] = e
        e.ws_timer = core.timer(timeout, false, function()
            if ws.pending[e.message.id] ~= e then return end
            ws.pending[e.message.id] = nil
            self:_failed({ e }, "timeout")
        end)
    end
end

function Client:_failed(envs, err)
    if self.state == DISCONNECTED and envs[1].message.channel ~= "/meta/disconnect" then return end
    self.failures = self.failures + 1
    self:_set_up(false)
    self.last_error = err
    for _, e in ipairs(envs) do self:_retry(e) end
end

function Client:_retry(env)
    if env.dead then return end
    env.attempts = env.attempts - 1
    if env.attempts <= 0 then return self:_abort(env, self.last_error or "no answer") end
    core.timer(self:_backoff(), false, function() self:_enqueue(env) end)
end

function Client:_abort(env, err)
    if env.dead then return end
    env.dead = true
    self.callbacks[env.message.id] = nil
    if env.on_abort then env.on_abort(err) end
end

function Client:_next_id()
    self.message_id = self.message_id >= 0xffffffff and 1 or self.message_id + 1
    return string_format("%x", self.message_id)
end

-- Sends `message` through the outgoing extensions; on_reply(reply) gets the
-- server's answer. opts: attempts, on_abort(err), env (filled with the
-- envelope, so the caller can give up on it).
function Client:_send(message, on_reply, opts)
    opts = opts or {}
    message.id = self:_next_id()
    local client_id = self.client_id
    local env = { message = message, attempts = opts.attempts or math.huge,
                  on_abort = opts.on_abort }
    if opts.holder then opts.holder.env = env end
    self:_pipe("outgoing", message, function(msg)
        env.message = msg
        if on_reply then self.callbacks[msg.id] = { fn = on_reply, client_id = client_id } end
        self:_enqueue(env)
    end)
end

function Client:_receive(message)
    self:_pipe("incoming", message, function(msg)
        local cb
        if msg.successful ~= nil and msg.id ~= nil then cb = self.callbacks[msg.id] end
        if type(msg.advice) == "table" then
            local stale = cb and cb.client_id ~= nil and cb.client_id ~= self.client_id
            self:_handle_advice(msg.advice, stale)
        end
        self:_deliver(msg)
        if cb then
            self.callbacks[msg.id] = nil
            cb.fn(msg)
        end
    end)
end

function Client:_deliver(msg)
    if type(msg.channel) ~= "string" or msg.data == nil or msg.successful ~= nil then return end
    if msg.channel:sub(1, 6) == "/meta/" then return end
    local calls = {}
    for _, pattern in ipairs(channel.expand(msg.channel)) do
        local entry = self.channels[pattern]
        if entry then
            for _, sub in ipairs(entry.subs) do calls[#calls + 1] = sub end
        end
    end
    for _, sub in ipairs(calls) do
        if not sub.canceled and self.state ~= DISCONNECTED then
            guarded("subscriber", sub.fn, msg.data, msg.channel)
        end
    end
end

-- ---- The session: handshake, connect, advice ----

function Client:_stopped()
    return self.advice.reconnect == "none"
end

function Client:_schedule(fn, secs)
    self:_clear_cycle()
    self.cycle_timer = core.timer(math_max(0, secs or 0), false, function()
        self.cycle_timer = nil
        fn()
    end)
end

function Client:_clear_cycle()
    if self.cycle_timer then self.cycle_timer:cancel() end
    self.cycle_timer = nil
end

function Client:_connect_types()
    local t = {}
    if not self.disabled["websocket"] then t[#t + 1] = "websocket" end
    if not self.disabled["long-polling"] then t[#t + 1] = "long-polling" end
    return array(t)
end

function Client:handshake()
    if self:_stopped() or self.state ~= UNCONNECTED then return end
    self.state = CONNECTING
    self:_clear_cycle()
    self:_send({ channel = "/meta/handshake", version = BAYEUX_VERSION,
                 supportedConnectionTypes = self:_connect_types() },
        function(reply) self:_handshake_reply(reply) end)
end

function Client:_handshake_reply(reply)
    if self.state ~= CONNECTING then return end
    if not reply.successful or type(reply.clientId) ~= "string" then
        self.state = UNCONNECTED
        self.handshake_failures = self.handshake_failures + 1
        if self:_stopped() then return self:_fail_waiting(reply.error or STOPPED) end
        local s = self.retry * 1.5 ^ (self.handshake_failures - 1)
        self:_schedule(function() self:handshake() end,
            math_min(s, math_max(self.retry, MAX_BACKOFF)))
        return
    end
    self.handshake_failures = 0
    self.state = CONNECTED
    self.client_id = reply.clientId
    -- every subscription restored, one per channel whatever happened before
    for name, entry in pairs(self.channels) do self:_send_subscribe(name, entry) end
    self.ws_broken = nil
    if self:_ws_wanted(reply.supportedConnectionTypes) then
        -- the first connect waits for the socket (or its failure)
        self.connecting = true
        self:_ws_open(function()
            self.connecting = false
            self:_connect()
        end)
    else
        self:_connect()
    end
    local waiting = self.waiting
    self.waiting = {}
    for _, fn in ipairs(waiting) do fn(true) end
end

function Client:_fail_waiting(err)
    local waiting = self.waiting
    self.waiting = {}
    for _, fn in ipairs(waiting) do fn(false, err) end
end

function Client:_when_connected(fn)
    if self:_stopped() then return fn(false, STOPPED) end
    if self.state == DISCONNECTED then self.state = UNCONNECTED end
    if self.state == CONNECTED then return fn(true) end
    self.waiting[#self.waiting + 1] = fn
    if self.state == UNCONNECTED then self:handshake() end
end

function Client:_connect()
    if self:_stopped() or self.state ~= CONNECTED or self.connecting then return end
    self:_clear_cycle()
    self.connecting = true
    self:_send({ channel = "/meta/connect", clientId = self.client_id,
                 connectionType = "long-polling" },
        function()
            self.connecting = false
            self:_cycle()
        end)
end

function Client:_cycle()
    if self:_stopped() or self.state == DISCONNECTED then return end
    if self.state == UNCONNECTED then
        self:_schedule(function() self:handshake() end, self.advice.interval / 1000)
    elseif self.state == CONNECTED then
        self:_schedule(function() self:_connect() end, self.advice.interval / 1000)
    end
end

function Client:_handle_advice(advice, stale)
    if type(advice.interval) == "number" then self.advice.interval = advice.interval end
    if type(advice.timeout) == "number" then self.advice.timeout = advice.timeout end
    if stale or type(advice.reconnect) ~= "string" then return end
    self.advice.reconnect = advice.reconnect
    if advice.reconnect == "handshake" and self.state ~= DISCONNECTED then
        self:_forget_client()
        if not self.connecting then self:_cycle() end
    elseif advice.reconnect == "none" then
        self:_clear_cycle()
        self:_fail_waiting(STOPPED)
    end
end

function Client:_forget_client()
    if self.state == CONNECTING then return end
    self.state = UNCONNECTED
    self.client_id = nil
    for _, entry in pairs(self.channels) do entry.state = "new" end
end

-- ---- Public API ----

--- The transport in use: "websocket" while the socket is open, else
-- "long-polling".
function Client:get_transport()
    return self.ws and self.ws.open and "websocket" or "long-polling"
end

--- The client id of the current session, or nil.
function Client:get_client_id()
    return self.client_id
end

-- on_ack(true, reply) / on_ack(false, err[, reply]), as the in-process
-- client's
local function settle(entry, ok, err, reply)
    local acks = entry.acks
    entry.acks = {}
    for _, fn in ipairs(acks) do guarded("on_ack", fn, ok, err, reply) end
end

function Client:_send_subscribe(name, entry)
    if self:_stopped() then
        self.channels[name] = nil
        return settle(entry, false, STOPPED)
    end
    entry.state = "pending"
    if self.state ~= CONNECTED then
        return self:_when_connected(function() end)
    end
    local client_id = self.client_id
    self:_send({ channel = "/meta/subscribe", clientId = client_id, subscription = name },
        function(reply)
            if self.channels[name] ~= entry then
                if reply.successful then return settle(entry, true, reply) end
                return settle(entry, false, reply.error, reply)
            end
            -- the answer of a session already left: the new handshake
            -- subscribes again and that answer settles it
            if client_id ~= self.client_id then return end
            if reply.successful then
                entry.state = "subscribed"
                settle(entry, true, reply)
            else
                self.channels[name] = nil
                settle(entry, false, reply.error or "subscribe failed", reply)
            end
        end)
end

--- Subscribes: fn(data, channel) for every message on `ch` (a name or a
-- pattern); on_ack(ok, err) reports the server's answer. Returns a
-- subscription with :cancel().
function Client:subscribe(ch, fn, on_ack)
    if type(ch) ~= "string" or type(fn) ~= "function" then
        error("client:subscribe(channel, fn[, on_ack])", 2)
    end
    local sub = setmetatable({ client = self, channel = ch, fn = fn }, Subscription)
    local entry = self.channels[ch]
    if not entry then
        entry = { subs = {}, state = "new", acks = {} }
        self.channels[ch] = entry
    end
    entry.subs[#entry.subs + 1] = sub
    if entry.state == "subscribed" then
        if on_ack then later(on_ack, true) end
        return sub
    end
    if on_ack then entry.acks[#entry.acks + 1] = on_ack end
    if entry.state == "new" then self:_send_subscribe(ch, entry) end
    return sub
end

--- Stops this subscription's callback; the last one of its channel
-- unsubscribes.
function Subscription:cancel()
    if self.canceled then return end
    self.canceled = true
    local c = self.client
    local entry = c.channels[self.channel]
    if not entry then return end
    for i, s in ipairs(entry.subs) do
        if s == self then table_remove(entry.subs, i) break end
    end
    if #entry.subs == 0 then c:_unsubscribe(self.channel, entry) end
end

function Client:_unsubscribe(ch, entry)
    self.channels[ch] = nil
    if self.state ~= CONNECTED or entry.state == "new" then return end
    self:_send({ channel = "/meta/unsubscribe", clientId = self.client_id, subscription = ch })
end

--- Removes every callback of `ch` and unsubscribes.
function Client:unsubscribe(ch)
    local entry = self.channels[ch]
    if not entry then return end
    for _, s in ipairs(entry.subs) do s.canceled = true end
    self:_unsubscribe(ch, entry)
end

--- Publishes `data` on `ch`; cb(ok, err) gets the server's answer (err is
-- the Bayeux error, e.g. "403:/x:Forbidden channel"). Published while the
-- server cannot be reached, the message is sent once it can, or fails
-- after the client's `timeout`.
function Client:publish(ch, data, cb)
    if type(ch) ~= "string" then error("client:publish(channel, data[, cb])", 2) end
    if data == nil then data = core.null end
    local ok, err = pcall(core.encode, data)
    if not ok then error("client:publish: " .. tostring(err), 2) end
    local done = false
    local holder = {}
    local deadline
    local function finish(success, e, reply)
        if done then return end
        done = true
        if deadline then deadline:cancel() end
        if holder.env then holder.env.dead = true end
        if cb then guarded("publish callback", cb, success, e, reply) end
    end
    deadline = core.timer(self.timeout, false, function()
        deadline = nil
        finish(false, string_format("408::No answer from the server within %g s (%s)",
            self.timeout, self.last_error or "not connected"))
    end)
    local function attempt()
        self:_when_connected(function(ready, why)
            if done then return end
            if not ready then return finish(false, why) end
            local session = self.client_id
            self:_send({ channel = ch, data = data, clientId = session }, function(reply)
                if reply.successful then return finish(true, reply) end
                local e = type(reply.error) == "string" and reply.error or "publish failed"
                -- the server forgot the session (restarted, expired): the
                -- message goes again in the next one
                if e:match("^401:") and not self:_stopped() then
                    holder.env = nil
                    if self.client_id == session then self:_forget_client() end
                    if not self.connecting then self:_cycle() end
                    return attempt()
                end
                finish(false, e, reply)
            end, { holder = holder, on_abort = function(e) finish(false, e) end })
        end)
    end
    attempt()
end

--- Ends the session: callbacks stop at once; cb() runs once the server
-- answered (or could not be reached).
function Client:disconnect(cb)
    local was = self.state
    self.state = DISCONNECTED
    self:_clear_cycle()
    self:_fail_waiting("client disconnected")
    local http = self.http
    local function finish()
        self.callbacks = {}
        self.channels = {}
        self.connecting = false
        self.client_id = nil
        self.outbox = {}
        if http then http:close() end
        if self.ws then
            self.ws.sock:close()
            self.ws = nil
        end
        if self.http == http then self.http = nil end
        if cb then guarded("disconnect callback", cb) end
    end
    if was ~= CONNECTED then return later(finish) end
    local fired = false
    local function once()
        if fired then return end
        fired = true
        finish()
    end
    self:_send({ channel = "/meta/disconnect", clientId = self.client_id }, once,
        { attempts = 1, on_abort = once })
end

-- ---- Acknowledged delivery ----

-- A copy of `ext` (a message's ext table, or nil) with ack = value.
local function with_ack(ext, value)
    local t = {}
    if type(ext) == "table" then
        for k, v in pairs(ext) do t[k] = v end
    end
    t.ack = value
    return t
end

--- bayeux.ack_extension(): acknowledged delivery (docs/delivery.md),
-- opt-in, one per client: client:add_extension(bayeux.ack_extension()).
-- The wire of CometD's AckExtension: ext.ack = true on the handshake; once
-- the server answers ext.ack = true, every /meta/connect carries the id of
-- the last batch received (its connect answer's ext.ack), and a batch
-- whose answer was lost on the way comes again, ahead of newer messages.
function _M.ack_extension()
    local ext = { enabled = false, batch = 0 }

    function ext.outgoing(self, message, callback)
        if message.channel == "/meta/handshake" then
            message.ext = with_ack(message.ext, true)
            self.enabled, self.batch = false, 0
        elseif message.channel == "/meta/connect" and self.enabled then
            message.ext = with_ack(message.ext, self.batch)
        end
        callback(message)
    end

    function ext.incoming(self, message, callback)
        local ack = type(message.ext) == "table" and message.ext.ack or nil
        if message.channel == "/meta/handshake" and message.successful == true then
            -- CometD servers may answer { enabled, batch } instead of true
            if type(ack) == "table" then
                self.enabled = ack.enabled == true
                if self.enabled and math.type(ack.batch) == "integer" then
                    self.batch = ack.batch
                end
            else
                self.enabled = ack == true
            end
        elseif message.channel == "/meta/connect" and message.successful == true and self.enabled
            and math.type(ack) == "integer" then
            self.batch = ack
        end
        callback(message)
    end

    return ext
end

_M.Client = Client
return _M
