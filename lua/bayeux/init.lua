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
local table_remove, table_unpack, io, math_type = table.remove, table.unpack, io, math.type
local math_tointeger, table_concat, table_sort = math.tointeger, table.concat, table.sort
local xpcall, traceback, getinfo = xpcall, debug.traceback, debug.getinfo
local next = next

local _M = {
    _VERSION = "0.1.0",
    null = core.null,
}

local LOG_LEVELS = { error = true, warn = true, info = true, debug = true }

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
    head_timeout = { "number", function(v) return v > 0 end, "a positive number of seconds" },
    body_timeout = { "number", function(v) return v > 0 end, "a positive number of seconds" },
    max_frame = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                  "a positive integer (bytes)" },
    max_output = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                   "a positive integer (bytes)" },
    max_reply = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                  "a positive integer (bytes)" },
    max_channel_length = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                           "a positive integer (bytes)" },
    max_channel_depth = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                          "a positive integer (segments)" },
    max_conns = { "number", function(v) return math_type(v) == "integer" and v > 0 end,
                  "a positive integer" },
    max_conns_per_addr = { "number", function(v) return math_type(v) == "integer" and v >= 0 end,
                           "an integer, 0 or more (0: no limit)" },
    max_subscriptions = { "number", function(v) return math_type(v) == "integer" and v >= 0 end,
                          "an integer, 0 or more (0: no limit)" },
    max_channels = { "number", function(v) return math_type(v) == "integer" and v >= 0 end,
                     "an integer, 0 or more (0: no limit)" },
    publish_rate = { "number", function(v) return v >= 0 end,
                     "publishes per second, 0 or more (0: no limit)" },
    publish_burst = { "number", function(v) return v >= 0 end,
                      "a number of publishes, 0 or more (0: publish_rate)" },
    allowed_origins = { "table", function(v)
        for i, o in pairs(v) do
            if math_type(i) ~= "integer" or type(o) ~= "string"
                or not o:match("^%a[%w+.-]*://[^/]+$") then
                return false
            end
        end
        return #v > 0
    end, "a non-empty list of origins such as \"https://example.com\"" },
    browser_cookie = { "boolean", function() return true end, "a boolean" },
    deflate = { "boolean", function() return true end, "a boolean" },
    client_script = { "string", function() return true end, "a file path" },
    extension_deadline = { "number", function(v) return v > 0 end,
                           "a positive number of seconds" },
    route_deadline = { "number", function(v) return v >= 0 end,
                       "seconds, 0 or more (0: no deadline)" },
    retain = { "table", function(v)
        for k, p in pairs(v) do
            if math_type(k) ~= "integer" or type(p) ~= "string" then return false end
        end
        return true
    end, "an array of channel patterns" },
    history = { "table", function(v)
        for k, p in pairs(v) do
            if type(k) ~= "string" or type(p) ~= "table" then return false end
            for f, x in pairs(p) do
                if (f ~= "size" and f ~= "ttl" and f ~= "keep") or type(x) ~= "number" then
                    return false
                end
            end
        end
        return true
    end, "a table { [pattern] = { size = messages, ttl = seconds, keep = seconds } }" },
    monitor = { "string", function(v) return v:sub(1, 1) == "/" and not v:find("[%s?#]") end,
                "a path starting with '/'" },
    monitor_token = { "string", function(v) return v ~= "" end, "a non-empty string" },
    metrics = { "string", function(v) return v:sub(1, 1) == "/" and not v:find("[%s?#]") end,
                "a path starting with '/'" },
    log = { "table", function(v)
        for k, x in pairs(v) do
            if k == "level" then
                if not LOG_LEVELS[x] then return false end
            elseif k == "format" then
                if x ~= "plain" and x ~= "json" then return false end
            elseif k == "access" then
                if type(x) ~= "boolean" then return false end
            else
                return false
            end
        end
        return true
    end, "a table { level = \"error\"|\"warn\"|\"info\"|\"debug\", "
        .. "format = \"plain\"|\"json\", access = boolean }" },
    engine = { "string", function(v)
        return v == "memory" or v:match("^redis://") ~= nil or v:match("^unix:///") ~= nil
    end, "\"memory\" or a Redis URL (redis://[:password@]host[:port][/db]"
        .. "[?namespace=NS][&mode=faye]), or a table { url = ..., shards = { ... }, "
        .. "namespace = ... }" },
}

local function is_redis_url(v)
    return type(v) == "string" and (v:match("^redis://") ~= nil or v:match("^unix:///") ~= nil)
        and not v:find(",", 1, true)
end

-- The table form of the engine option, { url = ..., shards = { ... },
-- namespace = ... }, as the core's string: the URLs comma-separated (url
-- first, then the shards), each given the namespace (the last namespace=
-- of a URL wins).
local function engine_url(t)
    local urls, ns = {}, t.namespace
    for k in pairs(t) do
        if k ~= "url" and k ~= "shards" and k ~= "namespace" then
            error("bayeux.server: option 'engine' has no field '" .. tostring(k)
                  .. "' (url, shards, namespace)", 4)
        end
    end
    if t.url ~= nil then
        if not is_redis_url(t.url) then
            error("bayeux.server: engine.url must be a Redis URL (redis://... or unix:///...)", 4)
        end
        urls[1] = t.url
    end
    if t.shards ~= nil then
        if type(t.shards) ~= "table" then
            error("bayeux.server: engine.shards must be a list of Redis URLs", 4)
        end
        for i, u in ipairs(t.shards) do
            if not is_redis_url(u) then
                error(("bayeux.server: engine.shards[%d] must be a Redis URL"):format(i), 4)
            end
            urls[#urls + 1] = u
        end
    end
    if #urls == 0 then
        error("bayeux.server: option 'engine' needs url or shards", 4)
    end
    if ns ~= nil then
        if type(ns) ~= "string" or not ns:match("^[%w_.:-]+$") then
            error("bayeux.server: engine.namespace must be letters, digits or _ . : -", 4)
        end
        for i, u in ipairs(urls) do
            urls[i] = u .. (u:find("?", 1, true) and "&" or "?") .. "namespace=" .. ns
        end
    end
    return table.concat(urls, ",")
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
        if k == "engine" and type(v) == "table" then v = engine_url(v) end
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

--- Writes one log line (docs/operations.md, "Logs"): level "error", "warn",
-- "info" or "debug"; msg a string; fields an optional table of key = value.
-- The component is "app" unless fields.component names another.
function _M.log(level, msg, fields)
    if not LOG_LEVELS[level] then
        error("bayeux.log(level, msg, fields): level must be error, warn, info or debug", 2)
    end
    if type(msg) ~= "string" or (fields ~= nil and type(fields) ~= "table") then
        error("bayeux.log(level, msg, fields): msg must be a string, fields a table", 2)
    end
    local comp = "app"
    if fields and fields.component ~= nil then
        local f = {}
        for k, v in pairs(fields) do f[k] = v end
        comp, f.component = tostring(fields.component), nil
        fields = f
    end
    core.log(level, comp, msg, fields)
end

--- Sets the process's log level and/or format ({ level =, format = }).
function _M.log_config(o)
    if type(o) ~= "table" then error("bayeux.log_config{ level =, format = }", 2) end
    local ok, err = core.log_config(o.level, o.format)
    if not ok then error("bayeux.log_config: " .. err, 2) end
end

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
-- Work beside the loop: child processes, files, HTTP requests
-- ---------------------------------------------------------------------------

--- Runs `cmd` (a program found on PATH, or a path; no shell) with `args` (an
-- array of strings) without waiting for it. opts: stdout = fn(line),
-- stderr = fn(line), env = { NAME = value } (added to this process's
-- environment), cwd = folder. on_exit(code, signal) runs once, after the
-- last line of output. Returns the process (`:kill([signal])`, `:pid()`),
-- or nil and an error when it cannot be started.
function _M.spawn(cmd, args, opts, on_exit)
    if type(cmd) ~= "string" or (args ~= nil and type(args) ~= "table")
            or (opts ~= nil and type(opts) ~= "table")
            or (on_exit ~= nil and type(on_exit) ~= "function") then
        error("bayeux.spawn(cmd, args, opts, on_exit)", 2)
    end
    opts = opts or {}
    for k in pairs(opts) do
        if k ~= "stdout" and k ~= "stderr" and k ~= "env" and k ~= "cwd" then
            error("bayeux.spawn: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local out, err = opts.stdout, opts.stderr
    if (out ~= nil and type(out) ~= "function") or (err ~= nil and type(err) ~= "function")
            or (opts.env ~= nil and type(opts.env) ~= "table")
            or (opts.cwd ~= nil and type(opts.cwd) ~= "string") then
        error("bayeux.spawn: stdout/stderr must be functions, env a table, cwd a string", 2)
    end
    return core.spawn(cmd, args, opts.env, opts.cwd, function(event, a, b)
        if event == "stdout" then
            if out then out(a) end
        elseif event == "stderr" then
            if err then err(a) end
        elseif on_exit then
            on_exit(a, b)
        end
    end)
end

--- Files read and written whole in the loop's thread pool.
_M.fs = {}

--- Reads the file at `path`: cb(data) or cb(nil, err), later.
function _M.fs.read(path, cb)
    if type(path) ~= "string" or type(cb) ~= "function" then
        error("bayeux.fs.read(path, cb)", 2)
    end
    core.read_file(path, cb)
end

--- Writes `data` to the file at `path` (made or replaced): cb(true) or
-- cb(nil, err), later.
function _M.fs.write(path, data, cb)
    if type(path) ~= "string" or type(data) ~= "string" or type(cb) ~= "function" then
        error("bayeux.fs.write(path, data, cb)", 2)
    end
    core.write_file(path, data, cb)
end

_M.http = {}

--- One HTTP request on the loop: req = { method = "GET", url =
-- "http://host[:port]/path?query" (or https://), headers = { Name = value },
-- body = string, timeout = seconds (default 30), ca = a PEM file of CA
-- certificates for https (default: the system's) }; cb(res) with res = {
-- status, body }, or cb(nil, err) when no answer came.
function _M.http.request(req, cb)
    if type(req) ~= "table" or type(req.url) ~= "string" or type(cb) ~= "function" then
        error("bayeux.http.request({ url = ..., method, headers, body, timeout }, cb)", 2)
    end
    local scheme, host, port, path = req.url:match("^(https?)://([^/:]+):?(%d*)(.*)$")
    if not host then
        error("bayeux.http.request: url must be http(s)://host[:port]/path, not " .. req.url, 2)
    end
    if req.ca ~= nil and type(req.ca) ~= "string" then
        error("bayeux.http.request: ca must be a file name", 2)
    end
    if host:sub(1, 1) == "[" then host = host:sub(2, -2) end
    port = tonumber(port) or (scheme == "https" and 443 or 80)
    if path == "" then path = "/" end
    local lines = {}
    for k, v in pairs(req.headers or {}) do
        local name, value = tostring(k), tostring(v)
        if name:find("[\r\n:]") or value:find("[\r\n]") then
            error("bayeux.http.request: invalid header '" .. name .. "'", 2)
        end
        lines[#lines + 1] = name .. ": " .. value .. "\r\n"
    end
    local method = (req.method or (req.body and "POST" or "GET")):upper()
    local client = core.http_client(host, port, scheme == "https" and (req.ca or true) or nil)
    client:request(method, path, #lines > 0 and table.concat(lines) or nil, req.body,
        req.timeout or 30, function(status, body, err)
            -- the client is closed on a later turn, not inside its own callback
            core.timer(0, false, function() client:close() end)
            if status then cb({ status = status, body = body }) else cb(nil, err) end
        end)
end

--- A client of a Bayeux server over the network (lua/bayeux/client.lua):
-- the in-process client's API, Faye's `new Faye.Client(url)`.
function _M.client(url, opts)
    return require("bayeux.client").new(url, opts)
end

--- An extension for a network client: acknowledged delivery, CometD's
-- ack extension (lua/bayeux/client.lua, docs/delivery.md).
function _M.ack_extension()
    return require("bayeux.client").ack_extension()
end

-- ---------------------------------------------------------------------------
-- Server
-- ---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local watch_events, settle_user

local EVENTS = { handshake = true, subscribe = true, unsubscribe = true, publish = true,
                 disconnect = true }
local NO_LISTENERS = {}

--- Creates a server (nothing listens until :listen()).
function _M.server(opts)
    local o = check_options(opts)
    o.mount = o.mount or "/bayeux"
    local deadline, route_deadline, retain = o.extension_deadline, o.route_deadline, o.retain
    o.extension_deadline, o.route_deadline, o.retain = nil, nil, nil
    local history = o.history
    o.history = nil
    local monitor, monitor_token = o.monitor, o.monitor_token
    o.monitor, o.monitor_token = nil, nil
    if o.log then
        -- the log is the process's: the last server made sets it
        core.log_config(o.log.level, o.log.format)
        o.access_log, o.log = o.log.access, nil
    end
    -- the client script is read here, once: a missing file is the caller's error
    local ok, srv = pcall(core.server, o)
    if not ok then error("bayeux.server: " .. tostring(srv), 2) end
    local self = setmetatable({
        extensions = {},
        extension_deadline = deadline or 30,
        route_deadline = route_deadline or 30,
        core = srv,
        mount = o.mount:gsub("(.)/+$", "%1"),
        listeners = {},
        routes = {},
        engine_name = o.engine or "memory",
    }, Server)
    if history then
        -- in pattern order, so that the first that matches decides the same
        -- way on every run
        local patterns = {}
        for pattern in pairs(history) do patterns[#patterns + 1] = pattern end
        table_sort(patterns)
        for _, pattern in ipairs(patterns) do
            local hok, herr = pcall(self.history, self, pattern, history[pattern])
            if not hok then
                error("bayeux.server: " .. (tostring(herr):gsub("^[^:]*:%d+: ", "")), 2)
            end
        end
    end
    for _, pattern in ipairs(retain or {}) do
        local kept, err = srv:retain(pattern, 3600)
        if not kept then error("bayeux.server: retain: " .. err, 2) end
    end
    -- hands an event from the core to the listeners of its name, with the
    -- client's user (server:enable_users) as the last argument
    local function fire(ev, client_id, ch, data)
        local ids = self.ids
        local user = ids and client_id and ids:get(client_id) or nil
        -- a session that ended takes its identity along, first: a
        -- listener that raises must not keep it
        if ev == "disconnect" and ids and client_id then ids:drop(client_id) end
        -- without identities, Faye's arguments exactly (no trailing nil)
        local with_channel = ev == "subscribe" or ev == "unsubscribe"
        for _, f in ipairs(self.listeners[ev] or NO_LISTENERS) do
            if ev == "publish" then
                if ids then f(client_id, ch, data, user) else f(client_id, ch, data) end
            elseif with_channel then
                if ids then f(client_id, ch, user) else f(client_id, ch) end
            elseif ids then
                f(client_id, user)
            else
                f(client_id)
            end
        end
    end
    self.dispatch = function(ev, client_id, ch, data)
        local ids = self.ids
        -- a client handshaken on another process (Redis engine): its
        -- identity is read from Redis first
        if ids and client_id and ids:get(client_id) == nil and ids:shared() then
            return ids:fetch(client_id, function() fire(ev, client_id, ch, data) end)
        end
        fire(ev, client_id, ch, data)
    end
    if monitor then require("bayeux.monitor")(self, monitor, monitor_token, _M) end
    return self
end

--- Keeps the last message of each channel inside `pattern` ("/jobs/**")
-- for opts.ttl seconds (default 3600) after it was published: a client
-- subscribing to the channel gets it at once after its subscribe succeeds.
-- A message whose data has `final = true` is delivered and ends it.
function Server:retain(pattern, opts)
    local ttl = opts and opts.ttl or 3600
    if type(pattern) ~= "string" or type(ttl) ~= "number" or ttl <= 0 then
        error("server:retain(pattern, { ttl = seconds })", 2)
    end
    local ok, err = self.core:retain(pattern, ttl)
    if not ok then error("server:retain: " .. err, 2) end
end

--- Keeps the history of each channel inside `pattern` ("/chat/**"): its
-- last opts.size messages (default 100), each for opts.ttl seconds (default
-- 300), stamped with ext.history = { offset, epoch }; a client subscribing
-- with the last position it saw gets what it missed (docs/delivery.md).
-- A channel's position is kept opts.keep seconds (default 3600) after its
-- last message expired. With the Redis engine (native mode, one server) the
-- history is kept in Redis, shared by every process; faye mode refuses it.
function Server:history(pattern, opts)
    local size, ttl = opts and opts.size or 100, opts and opts.ttl or 300
    local keep = opts and opts.keep or 3600
    if type(pattern) ~= "string" or math_type(size) ~= "integer" or size <= 0
        or type(ttl) ~= "number" or ttl <= 0 or type(keep) ~= "number" or keep < 0 then
        error("server:history(pattern, { size = messages, ttl = seconds, keep = seconds })", 2)
    end
    local ok, err = self.core:history(pattern, size, ttl, keep)
    if not ok then error("server:history: " .. err, 2) end
end

--- Starts listening on host (default "127.0.0.1", this machine only; "0.0.0.0"
-- for every IPv4 interface). Returns the bound port. A port that cannot be
-- bound (in use, no permission) raises at the caller's line, so an app
-- script stops instead of running on without a listener; with
-- opts.raise == false it returns nil and the error instead. With
-- opts.reuse_port the socket has SO_REUSEPORT: other processes of the same
-- user may listen on the same port, and the kernel spreads the connections
-- (bayeux serve --workers). With opts.tls = { cert = FILE, key = FILE }
-- (PEM: the certificate chain, the private key) the port speaks HTTPS, and
-- so WSS and EventSource over TLS; SIGHUP loads the files again. The one
-- table form works too: server:listen{ port = 443, host = ..., tls = ... }.
function Server:listen(port, host, opts)
    if type(port) == "table" and host == nil and opts == nil then
        opts = port
        port, host = opts.port, opts.host
    end
    host = host or "127.0.0.1"
    if type(port) ~= "number" or math_type(port) ~= "integer" then
        error("server:listen(port, host): port must be an integer", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("server:listen(port, host, opts): opts must be a table", 2)
    end
    local tls = opts and opts.tls
    if tls ~= nil and (type(tls) ~= "table" or type(tls.cert) ~= "string"
                       or type(tls.key) ~= "string") then
        error("server:listen: tls must be { cert = FILE, key = FILE }", 2)
    end
    local bound, err = self.core:listen(port, host, opts and opts.reuse_port, tls)
    if not bound then
        if opts and opts.raise == false then return nil, err end
        error("server:listen: " .. tostring(err), 2)
    end
    self.port = bound
    self.tls = tls and true or nil
    io.stdout:write(("bayeux: listening on %s://%s:%d%s\n"):format(tls and "https" or "http",
                                                                   host, bound, self.mount))
    io.stdout:flush()
    return bound
end

--- Closes the server; fn() runs once everything is closed.
function Server:close(fn)
    if self.monitor_timer then self.monitor_timer:cancel() end
    self.core:close(fn)
end

--- Counters: clients (live sessions), connected (clients with a held
-- connect or a socket here), connections (open TCP connections), dropped
-- (messages dropped because a client's queue was full).
function Server:stats()
    return self.core:stats()
end

-- Tells the core which events to report: those someone listens to (a
-- publish's data is not copied and converted for nobody), and disconnect
-- while identities are kept (a session's identity ends with it).
watch_events = function(self)
    local names, seen = {}, {}
    for n in pairs(self.listeners) do names[#names + 1] = n; seen[n] = true end
    if self.ids and not seen.disconnect then names[#names + 1] = "disconnect" end
    self.core:on_event(self.dispatch, names)
end

--- Listens to an event: handshake, subscribe, unsubscribe, publish,
-- disconnect (Faye's arguments: client id, channel, data).
function Server:on(name, fn)
    if not EVENTS[name] then error("server:on: unknown event '" .. tostring(name) .. "'", 2) end
    if type(fn) ~= "function" then error("server:on: fn must be a function", 2) end
    local list = self.listeners[name]
    if not list then
        list = {}
        self.listeners[name] = list
        watch_events(self)
    end
    list[#list + 1] = fn
end

-- ---------------------------------------------------------------------------
-- Extensions (Faye's server extensions)
-- ---------------------------------------------------------------------------

local function log(...)
    core.log("error", "lua", table_concat({ ... }))
end

-- Whether a hook takes (message, request, callback) rather than (message,
-- callback), as Faye decides it: by the function's number of parameters.
-- Cached, as debug.getinfo makes a table per call and this runs per message.
local takes_request = setmetatable({}, { __mode = "k" })
local function wants_request(fn)
    local yes = takes_request[fn]
    if yes == nil then
        yes = getinfo(fn, "u").nparams >= 3
        takes_request[fn] = yes
    end
    return yes
end

-- After the incoming extensions: a handshake keeps `user` (the core hands
-- it to the on_handshake listener, which binds it to the new client);
-- other messages lose it, and a client's publish is stamped with its
-- sender: ext.user and data[from] (when data is an object) are the
-- session's user id, or removed for an anonymous sender, so a name in a
-- delivered message cannot be spoofed. In-process clients (request ==
-- nil) publish as they like.
settle_user = function(self, msg, request)
    local ch = msg.channel
    if ch == "/meta/handshake" then return end
    local user = msg.user
    msg.user = nil
    if request == nil or type(ch) ~= "string" or ch:sub(1, 6) == "/meta/" then return end
    local id = type(user) == "table" and user.id or nil
    local ext = msg.ext
    if type(ext) == "table" then
        ext.user = nil
        if next(ext) == nil then msg.ext = nil end
    end
    if id ~= nil then
        if type(msg.ext) ~= "table" then msg.ext = {} end
        msg.ext.user = id
    end
    local from, data = self.user_field, msg.data
    if from and type(data) == "table" and getmetatable(data) ~= core.array_mt then
        data[from] = id
    end
end

-- Runs one message through every extension's `incoming` (stage 0) or
-- `outgoing` (stage 1), in the order they were added, each continuing
-- through its callback, then hands the result to `done` (C). Each
-- extension's label goes to the C continuation `cont` (by C's
-- label(cont, text)) before it runs: a missed deadline's log line names
-- it. This runs for every message: the chain's state is one table `st`
-- (st.at: the extension whose callback is awaited), and each extension
-- called costs one callback closure over it and its place.
local function run_chain(st, i, msg)
    if msg == nil then
        st.at = -1
        return st.done(nil)
    end
    local list, key = st.list, st.key
    local ext
    repeat
        i = i + 1
        ext = list[i]
    until not ext or type(ext[key]) == "function"
    if not ext then
        st.at = -1
        return st.done(msg)
    end
    local fn = ext[key]
    st.label(st.cont, st.labels[i])
    st.at = i
    local function callback(m)
        if st.at ~= i then
            log("extension ", key, ": callback called twice; ignored")
            return
        end
        run_chain(st, i, m)
    end
    local ok, err
    if wants_request(fn) then
        ok, err = xpcall(fn, traceback, msg, st.request, callback)
    else
        ok, err = xpcall(fn, traceback, msg, callback)
    end
    if not ok then
        core.ext_error()
        log("extension ", key, " failed: ", tostring(err))
        if st.at == i then      -- not called back before it raised
            st.at = -1
            msg.error = "500::Internal server error"
            if st.stage == 1 and msg.successful ~= nil then msg.successful = false end
            st.done(msg)
        end
    end
end

local function chain_runner(self)
    return function(stage, message, request, done, cont, label)
        local ids = self.ids
        if stage == 0 and ids then
            -- the identity is the server's, never the client's: a `user`
            -- member from the wire is replaced by the session's
            local id = message.clientId
            local user = type(id) == "string" and ids:get(id)
            local finish = done
            done = function(msg)
                if msg ~= nil then settle_user(self, msg, request) end
                return finish(msg)
            end
            if user == nil and type(id) == "string" and ids:shared()
                and message.channel ~= "/meta/handshake" then
                -- handshaken on another process: its identity is in Redis
                return ids:fetch(id, function(u)
                    message.user = u or nil
                    run_chain({ stage = stage, key = "incoming", list = self.extensions,
                                labels = self.extension_labels, request = request,
                                done = done, cont = cont, label = label, at = 0 },
                              0, message)
                end)
            end
            message.user = user or nil
        end
        -- self.extensions is replaced, never changed in place, by
        -- add/remove: a chain in progress keeps the list it started with
        run_chain({ stage = stage, key = stage == 0 and "incoming" or "outgoing",
                    list = self.extensions, labels = self.extension_labels,
                    request = request, done = done, cont = cont, label = label, at = 0 },
                  0, message)
    end
end

-- "#2 'token'": an extension's place in the list and its optional name.
local function extension_label(i, ext)
    local name = ext.name
    if type(name) == "string" and name ~= "" then return ("#%d '%s'"):format(i, name) end
    return "#" .. i
end

local function install_extensions(self)
    -- identities need the incoming chain (settle_user), extensions or not
    local incoming, outgoing = self.ids ~= nil, false
    local labels = {}
    for i, ext in ipairs(self.extensions) do
        incoming = incoming or type(ext.incoming) == "function"
        outgoing = outgoing or type(ext.outgoing) == "function"
        labels[i] = extension_label(i, ext)
    end
    self.extension_labels = labels
    self.runner = self.runner or chain_runner(self)
    self.core:set_extensions(self.runner, incoming, outgoing, self.extension_deadline)
end

--- Adds an extension: a table with incoming(message, [request,] callback)
-- and/or outgoing(message, [request,] callback), and optional added(server)
-- / removed(server). Extensions run in the order they were added.
function Server:add_extension(ext)
    if type(ext) ~= "table" then error("server:add_extension(ext): ext must be a table", 2) end
    local list = { table_unpack(self.extensions) }
    list[#list + 1] = ext
    self.extensions = list
    install_extensions(self)
    if type(ext.added) == "function" then ext.added(self) end
end

--- Removes every occurrence of `ext`.
function Server:remove_extension(ext)
    local list, found = {}, false
    for _, e in ipairs(self.extensions) do
        if e == ext then found = true else list[#list + 1] = e end
    end
    if not found then return end
    self.extensions = list
    install_extensions(self)
    if type(ext.removed) == "function" then ext.removed(self) end
end

-- ---------------------------------------------------------------------------
-- Identities: who is behind a clientId
-- ---------------------------------------------------------------------------

--- Turns on per-user identity; an authenticating extension (bayeux.ext.jwt)
-- calls it from its added(server). From then on: an incoming extension
-- that sets message.user = { id = "<user id>", ... } on a /meta/handshake
-- binds that user to the client the handshake makes; every later message
-- of that clientId carries it as message.user in the incoming extensions
-- (a `user` sent by the client is replaced); events get it as their last
-- argument; it ends with the session (disconnect or expiry). opts.from
-- (default "from", false for none) is the data field stamped with the
-- sender's id in the publishes clients make (ext.user always is).
function Server:enable_users(opts)
    if opts ~= nil and type(opts) ~= "table" then
        error("server:enable_users([{ from = field | false }])", 2)
    end
    local from = opts and opts.from
    if from == nil then from = "from" end
    if from ~= false and (type(from) ~= "string" or from == "") then
        error("server:enable_users: from must be a field name or false", 2)
    end
    self.user_field = from
    if self.ids then return end
    local ids = require("bayeux.identity").new(self)
    self.ids = ids
    self.core:on_handshake(function(client_id, user)
        if type(user) == "table" and type(user.id) == "string" and user.id ~= "" then
            ids:put(client_id, user)
        end
    end)
    watch_events(self)
    install_extensions(self)
end

--- The user bound to `client_id` (a table with `id`, and `claims` for
-- bayeux.ext.jwt), or nil.
function Server:user(client_id)
    return self.ids and self.ids:get(client_id) or nil
end

-- ---------------------------------------------------------------------------
-- Presence (lua/bayeux/presence.lua)
-- ---------------------------------------------------------------------------

--- Tracks who is subscribed to the channels `pattern` matches ("/room/*"):
-- join/leave events on "/presence" .. channel, server:presence(channel).
-- opts.list: users listed in each event while the room holds at most that
-- many (default 100); opts.events = false: no events, counts only.
function Server:track_presence(pattern, opts)
    local t = self.presence_tracker
    if not t then
        t = require("bayeux.presence").new(self)
        self.presence_tracker = t
    end
    t:track(pattern, opts)
end

--- Who is in `channel` now: { channel, count (users), connections
-- (clients), users = { ids, sorted }, clients = { [client_id] = user id
-- or false } }, or nil for a channel no server:track_presence covers.
-- With fn, fn(that) on a later turn instead; with a Redis engine fn is
-- needed (the answer, every process's, comes from Redis; fn(nil, err)
-- when Redis cannot answer).
function Server:presence(ch, fn)
    if fn ~= nil and type(fn) ~= "function" then
        error("server:presence(channel[, fn]): fn must be a function", 2)
    end
    local t = self.presence_tracker
    if not t then
        if fn then core.timer(0, false, function() fn(nil) end) end
        return nil
    end
    return t:list(ch, fn)
end

--- users, clients in `channel` now, in O(1); nil when not tracked. With
-- fn, fn(users, clients) on a later turn instead (needed with a Redis
-- engine, as for server:presence).
function Server:presence_count(ch, fn)
    if fn ~= nil and type(fn) ~= "function" then
        error("server:presence_count(channel[, fn]): fn must be a function", 2)
    end
    local t = self.presence_tracker
    if not t then
        if fn then core.timer(0, false, function() fn(nil) end) end
        return nil
    end
    return t:count(ch, fn)
end

-- ---------------------------------------------------------------------------
-- Application HTTP helpers: request helpers, static files, the publish API
-- ---------------------------------------------------------------------------

local string_char, tonumber, pcall = string.char, tonumber, pcall
local getmetatable = getmetatable

local function url_decode(s, plus)
    if plus then s = s:gsub("+", " ") end
    return (s:gsub("%%(%x%x)", function(h) return string_char(tonumber(h, 16)) end))
end

-- "a=1&b=x+y&c" -> { a = "1", b = "x y", c = "" }; a repeated name keeps
-- its last value.
local function decode_query(s)
    local out = {}
    for pair in (s or ""):gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=?(.*)$")
        if k ~= "" then out[url_decode(k, true)] = url_decode(v, true) end
    end
    return out
end
_M.decode_query = decode_query

--- req:json() -> the decoded body, or nil and an error message.
local function req_json(req)
    local body = req.body or ""
    if body == "" then return nil, "empty body" end
    local ok, v, err = pcall(core.decode, body)
    if not ok then return nil, tostring(v) end
    if v == nil then return nil, err end
    return v
end

--- req:form() -> the url-encoded body as a table of strings (an upload
-- route's multipart body: its plain fields).
local function req_form(req)
    if req.fields then return req.fields end
    return decode_query(req.body)
end

-- Sets the helpers on a route's request table (called from dispatch).
local function add_request_helpers(info)
    info.query_params = decode_query(info.query)
    info.json = req_json
    info.form = req_form
    return info
end

-- Static files ---------------------------------------------------------------

local CONTENT_TYPES = {
    html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
    css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
    mjs = "text/javascript; charset=utf-8", json = "application/json",
    map = "application/json", txt = "text/plain; charset=utf-8",
    md = "text/markdown; charset=utf-8", csv = "text/csv; charset=utf-8",
    xml = "application/xml", svg = "image/svg+xml", png = "image/png",
    jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", ico = "image/x-icon",
    webp = "image/webp", avif = "image/avif", wasm = "application/wasm",
    pdf = "application/pdf", woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf",
    otf = "font/otf", mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav",
    mp4 = "video/mp4", webm = "video/webm", zip = "application/zip",
    gz = "application/gzip",
}
_M.content_types = CONTENT_TYPES

-- HTTP dates come from the C helper the HTTP layer uses: os.date's day and
-- month names follow the C locale (LC_TIME) an application may set.
local http_date, parse_http_date = core.http_date, core.parse_http_date

-- Largest file server:static sends unless told otherwise.
local STATIC_MAX_SIZE = 256 * 1024 * 1024

local function etag_matches(header, etag)
    if not header then return false end
    if header:match("^%s*%*%s*$") then return true end
    local weak = etag:gsub("^W/", "")
    for tag in header:gmatch("[^,]+") do
        tag = tag:match("^%s*(.-)%s*$"):gsub("^W/", "")
        if tag == weak then return true end
    end
    return false
end

local function plain(res, code, text)
    res:status(code):header("Content-Type", "text/plain; charset=utf-8"):send(text .. "\n")
end

-- Maps the raw (still percent-encoded) rest of a URL to a file under root,
-- or returns nil and an HTTP status. Refuses every way out of the folder.
local function resolve_static(root, raw)
    -- encoded separators never name a file here: %2f, %5c
    if raw:find("%%2[fF]") or raw:find("%%5[cC]") or raw:find("\\", 1, true) then
        return nil, 403
    end
    local rel = url_decode(raw)
    if rel:find("%z") or rel:find("\\", 1, true) then return nil, 403 end
    local parts = {}
    for seg in rel:gmatch("[^/]+") do
        if seg == ".." or seg == "." then return nil, 403 end
        parts[#parts + 1] = seg
    end
    local path = root
    if #parts > 0 then path = root .. "/" .. table.concat(parts, "/") end
    local real = core.realpath(path)
    if not real then return nil, 404 end
    -- a symlink may still point out of the folder
    if real ~= root and real:sub(1, #root + 1) ~= root .. "/" then return nil, 403 end
    local st = core.stat(real)
    if st and st.type == "directory" then
        real = core.realpath(real .. "/index.html")
        if not real or real:sub(1, #root + 1) ~= root .. "/" then return nil, 404 end
        st = core.stat(real)
    end
    if not st or st.type ~= "file" then return nil, 404 end
    return real, st
end

--- Serves the files under `folder` at `url_prefix` ("/static" serves
-- folder/a.css as /static/a.css; a folder answers with its index.html).
-- GET and HEAD; ETag/Last-Modified with 304; never a file outside folder.
-- Files are read from disk in chunks while they are sent. opts.max_size
-- (bytes, default 256 MiB): a larger file is answered 403 "File too large".
function Server:static(url_prefix, folder, opts)
    if type(url_prefix) ~= "string" or url_prefix:sub(1, 1) ~= "/"
        or type(folder) ~= "string" or (opts ~= nil and type(opts) ~= "table") then
        error("server:static(url_prefix, folder, [opts])", 2)
    end
    local max_size = opts and opts.max_size or STATIC_MAX_SIZE
    if math_type(max_size) ~= "integer" or max_size < 0 then
        error("server:static: max_size must be a number of bytes", 2)
    end
    local root, err = core.realpath(folder)
    local st = root and core.stat(root)
    if not st or st.type ~= "directory" then
        error("server:static: '" .. folder .. "' is not a folder (" .. tostring(err or "") .. ")",
            2)
    end
    local prefix = url_prefix:gsub("/+$", "")
    local function serve(req, res)
        local file, info = resolve_static(root, req.params.path or "")
        if not file then
            return plain(res, info, info == 403 and "Forbidden" or "Not found")
        end
        if info.size > max_size then return plain(res, 403, "File too large") end
        local etag = ('W/"%x-%x"'):format(info.size, info.mtime)
        local modified = http_date(info.mtime)
        res:header("ETag", etag):header("Last-Modified", modified)
        res:header("Cache-Control", "no-cache")
        local inm = req.headers["if-none-match"]
        local ims = req.headers["if-modified-since"]
        ims = ims and parse_http_date(ims)
        if (inm and etag_matches(inm, etag)) or (not inm and ims and info.mtime <= ims) then
            return res:status(304):send()
        end
        local ext = file:match("%.([%w]+)$")
        res:header("Content-Type", CONTENT_TYPES[ext and ext:lower() or ""]
            or "application/octet-stream")
        res:header("X-Content-Type-Options", "nosniff")
        res:status(200):file(file)
    end
    self:route("GET", prefix .. "/*path", serve)
    if prefix ~= "" then
        self:route("GET", prefix, function(_, res)
            res:status(301):header("Location", prefix .. "/"):send()
        end)
    end
end

-- HTTP publish API -----------------------------------------------------------

-- Compares two strings in time that depends only on `expected`'s length.
local function same_secret(given, expected)
    local n, gn = #expected, #given
    local diff = n ~ gn
    for i = 1, n do
        local g = i <= gn and given:byte(i) or 0
        diff = diff | (g ~ expected:byte(i))
    end
    return diff == 0
end
_M.same_secret = same_secret

local function api_error(res, code, msg)
    res:status(code)
    if code == 401 then res:header("WWW-Authenticate", 'Bearer realm="bayeux"') end
    res:json { ok = false, error = msg }
end

-- The HTTP status a Bayeux error string maps to.
local function bayeux_status(err)
    local code = tonumber(tostring(err):match("^(%d%d%d):"))
    if code == 403 or code == 401 then return 403 end
    if code and code >= 500 then return 500 end
    return 400
end

--- An opt-in HTTP endpoint that publishes: POST `path` with JSON
-- {"channel": ..., "data": ...} or a form channel=&data= (data as JSON
-- text, else a plain string), header `Authorization: Bearer <token>`.
-- opts: path (default "/publish"), token (a string, or a
-- function(token, req) -> bool).
function Server:publish_api(opts)
    if type(opts) ~= "table" then error("server:publish_api{ path =, token = }", 2) end
    local path, token = opts.path or "/publish", opts.token
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
        error("server:publish_api: path must start with '/'", 2)
    end
    if not ((type(token) == "string" and token ~= "") or type(token) == "function") then
        error("server:publish_api: token must be a non-empty string or a function", 2)
    end
    self:route("POST", path, function(req, res)
        local given = (req.headers.authorization or ""):match("^%s*[Bb]earer%s+(%S+)%s*$")
        local good
        if type(token) == "function" then
            good = given ~= nil and token(given, req) == true
        else
            good = same_secret(given or "", token)
        end
        if not good then
            return api_error(res, 401, given and "wrong token"
                or "missing token: send 'Authorization: Bearer <token>'")
        end
        local ctype = (req.headers["content-type"] or ""):lower()
        local body = req.body or ""
        local msg
        if ctype:find("application/x-www-form-urlencoded", 1, true)
            and not body:find("^%s*{") then
            msg = req:form()
            if msg.data ~= nil then
                local ok, v = pcall(core.decode, msg.data)
                if ok and v ~= nil then msg.data = v end
            end
        else
            local v, err = req:json()
            if v == nil then return api_error(res, 400, "invalid JSON body: " .. err) end
            if type(v) ~= "table" or getmetatable(v) == core.array_mt then
                return api_error(res, 400, 'the body must be a JSON object '
                    .. '{"channel": "/...", "data": ...}')
            end
            msg = v
        end
        local ch, data = msg.channel, msg.data
        if type(ch) ~= "string" or ch == "" then
            return api_error(res, 400, 'missing "channel" (a string such as "/messages")')
        end
        if data == nil then return api_error(res, 400, 'missing "data"') end
        if ch:sub(1, 6) == "/meta/" or ch == "/meta" then
            return api_error(res, 400, "403:" .. ch .. ":Forbidden channel")
        end
        -- the server's shared client, made again if the app disconnected it
        self:client():publish(ch, data, function(ok, err)
            -- the HTTP client may have gone away meanwhile: nothing to answer
            pcall(function()
                if ok then
                    res:json { ok = true, channel = ch }
                else
                    err = err or "500::Internal server error"
                    api_error(res, bayeux_status(err), err)
                end
            end)
        end)
    end)
end

-- ---------------------------------------------------------------------------
-- Routes beside the mount
-- ---------------------------------------------------------------------------

local Response = {}
Response.__index = Response

-- Headers the HTTP layer writes itself; one from a route would frame the
-- body wrongly or contradict the layer's.
local LAYER_HEADERS = { ["content-length"] = true, ["transfer-encoding"] = true, date = true,
                        connection = true }

--- Sets the status: an HTTP status from 200 to 999 (1xx are the layer's).
function Response:status(code)
    local n = type(code) == "number" and math_tointeger(code) or nil
    if not n or n < 200 or n > 999 then
        error("res:status(code): code must be an integer from 200 to 999, not "
            .. tostring(code), 2)
    end
    self.code = n
    return self
end

--- Sets a response header. Content-Length, Transfer-Encoding, Date and
-- Connection are the HTTP layer's and refused.
function Response:header(name, value)
    if type(name) ~= "string" then error("res:header(name, value): name must be a string", 2) end
    if LAYER_HEADERS[name:lower()] then
        error("res:header: '" .. name .. "' is set by the HTTP layer", 2)
    end
    self.headers[name] = tostring(value)
    return self
end

--- Sends the file at `path` as the body, read from disk in chunks while it
-- is sent (HEAD: its length only). Set Content-Type yourself.
function Response:file(path)
    if self.sent then error(self:_sent_error(), 2) end
    if type(path) ~= "string" then error("res:file(path): path must be a string", 2) end
    self.req:send_file(self.code or 200, self.headers, path)
    self:_done()
end

-- The error of an answer after the first: why the response is gone.
function Response:_sent_error()
    if self.expired then
        return ("response already sent (the route's deadline of %g s passed: it was answered 500)")
            :format(self.expired)
    end
    return "response already sent"
end

-- The response is sent: no deadline any more.
function Response:_done()
    self.sent = true
    if self.deadline then
        self.deadline:cancel()
        self.deadline = nil
    end
end

function Response:send(body)
    if self.sent then error(self:_sent_error(), 2) end
    self:_done()
    self.req:respond(self.code or 200, self.headers, body or "")
end

function Response:json(value)
    if self.sent then error(self:_sent_error(), 2) end
    self.headers["Content-Type"] = "application/json; charset=utf-8"
    self:send(core.encode(value))
end

function Response:html(text)
    if self.sent then error(self:_sent_error(), 2) end
    self.headers["Content-Type"] = "text/html; charset=utf-8"
    self:send(text)
end

local TEXT_PLAIN = "text/plain; charset=utf-8"

-- Answers 500 for a route that failed or never answered; the client may
-- have gone away meanwhile (then there is nothing to answer).
local function answer_500(res)
    res:_done()
    pcall(res.req.respond, res.req, 500, { ["Content-Type"] = TEXT_PLAIN },
          "Internal server error\n")
end

-- Runs a route's handler: an error is logged with the route and its
-- traceback (and answers 500 if nothing was answered yet); a handler that
-- returns without answering has `route_deadline` seconds to do it.
local function run_route(self, r, info, res)
    local ok, err = xpcall(r.handler, traceback, info, res)
    if not ok then
        if res.sent then
            log("route ", r.method, " ", r.pattern, " raised after answering ", info.path,
                ": ", tostring(err))
        else
            log("route ", r.method, " ", r.pattern, " failed on ", info.path,
                " (answered 500): ", tostring(err))
            answer_500(res)
        end
        return
    end
    local seconds = r.deadline or self.route_deadline
    if res.sent or seconds <= 0 then return end
    res.deadline = core.timer(seconds, false, function()
        res.deadline = nil
        if res.sent then return end
        log(("route %s %s did not answer %s %s within %g s (route_deadline): answered 500")
            :format(r.method, r.pattern, info.method, info.path, seconds))
        res.expired = seconds
        answer_500(res)
    end)
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
                add_request_helpers(info)
                return run_route(self, r, info, res)
            end
            allowed = true
        end
    end
    if allowed then
        res:status(405):header("Content-Type", TEXT_PLAIN)
        res:send("Method not allowed\n")
    else
        res:status(404):header("Content-Type", TEXT_PLAIN)
        res:send("Not found\n")
    end
end

-- The upload options of the route a multipart request head goes to (the
-- route dispatch will pick), as the core wants them, or nil.
local function upload_for(self, info)
    for _, r in ipairs(self.routes) do
        local params = r.match(info.path)
        if params and r.method == info.method then
            local up = r.upload
            if not up then return nil end
            local out = { max_size = up.max_size, dir = up.dir, keep = up.keep,
                          max_fields = up.max_fields }
            if up.progress then
                info.params = params
                add_request_helpers(info)
                out.progress = function(received, total)
                    local ok, err = xpcall(up.progress, traceback, info, received, total)
                    if not ok then
                        log("route ", r.method, " ", r.pattern, ": upload progress failed on ",
                            info.path, ": ", tostring(err))
                    end
                end
            end
            return out
        end
    end
    return nil
end

-- Checks a route's `upload` option; returns it with its defaults.
local function check_upload(up)
    local function bad(what)
        error("server:route: upload." .. what, 3)
    end
    if type(up) ~= "table" then bad("must be a table") end
    for k in pairs(up) do
        if k ~= "max_size" and k ~= "dir" and k ~= "keep" and k ~= "progress"
                and k ~= "max_fields" then
            bad(tostring(k) .. " is not an upload option")
        end
    end
    local max_size = up.max_size or 100 * 1024 * 1024
    if math_type(max_size) ~= "integer" or max_size <= 0 then
        bad("max_size must be a positive integer (bytes)")
    end
    local max_fields = up.max_fields or 1024 * 1024
    if math_type(max_fields) ~= "integer" or max_fields <= 0 then
        bad("max_fields must be a positive integer (bytes)")
    end
    local dir = up.dir or os.getenv("TMPDIR") or "/tmp"
    if type(dir) ~= "string" or dir == "" then bad("dir must be a folder path") end
    if up.progress ~= nil and type(up.progress) ~= "function" then
        bad("progress must be a function(req, received, total)")
    end
    return { max_size = max_size, max_fields = max_fields, dir = dir, keep = up.keep and true,
             progress = up.progress }
end

--- Adds a route: method ("GET", "POST", ...), a path pattern ("/users/:id",
-- "/files/*path", "/d/:id.json") and handler(req, res). opts.deadline
-- (seconds, 0 for none) overrides the server's route_deadline; opts.upload
-- streams a multipart/form-data body to disk (see docs/lua-api.md). A
-- pattern that could never match a request raises.
function Server:route(method, pattern, handler, opts)
    if type(method) ~= "string" or type(pattern) ~= "string" or type(handler) ~= "function" then
        error("server:route(method, pattern, handler)", 2)
    end
    local deadline = opts and opts.deadline
    if opts ~= nil and (type(opts) ~= "table"
            or (deadline ~= nil and (type(deadline) ~= "number" or deadline < 0))) then
        error("server:route(method, pattern, handler, "
            .. "{ deadline = seconds (0: none), upload = {...} })", 2)
    end
    local upload = opts and opts.upload
    if upload ~= nil then upload = check_upload(upload) end
    -- the paths the mount owns (the core's rule): the mount itself, below
    -- it, and "<mount>.ext" with one extension; a route there never runs
    local mount, rest = self.mount, nil
    if pattern:sub(1, #mount) == mount then rest = pattern:sub(#mount + 1) end
    if rest and (rest == "" or rest:sub(1, 1) == "/"
            or rest:match("^%.[^.:*]+$")) then
        error("server:route: pattern '" .. pattern .. "' is under the Bayeux mount '" .. mount
            .. "', which answers every request there itself", 2)
    end
    local match = channel.route_matcher(pattern)
    self.routes[#self.routes + 1] = {
        method = method:upper(), pattern = pattern, match = match, handler = handler,
        deadline = deadline, upload = upload,
    }
    if not self.routing then
        self.routing = true
        self.core:on_request(function(req) dispatch(self, req) end)
    end
    if upload and not self.uploading then
        self.uploading = true
        self.core:on_upload(function(info) return upload_for(self, info) end)
    end
end

-- ---------------------------------------------------------------------------
-- In-process client
-- ---------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- A new in-process client, its handshake under way.
local function new_client(self)
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
            for _, fn in ipairs(waiting) do fn(true, nil, true) end
        end)
    return c
end

--- The server's in-process client: it subscribes and publishes without
-- HTTP, and its messages pass the server's extensions with request = nil.
-- As Faye's getClient(), every call returns the same client (one session
-- per server, kept alive while the server runs), until it is disconnected:
-- the next call then makes a new one.
function Server:client()
    local c = self.shared_client
    if not c or c.closed or c.failed then
        c = new_client(self)
        self.shared_client = c
    end
    return c
end

-- fn(ok, err, queued): at once when the handshake is over (returning what
-- fn returns), else after it (queued = true).
function Client:_when_ready(fn)
    if self.id then return fn(true)
    elseif self.failed then return fn(false, self.failed)
    else self.waiting[#self.waiting + 1] = fn end
end

-- Sends `msg`; cb(ok, err, reply) gets the answer. Returns an error message
-- when the client is ready and `msg` cannot be sent (data JSON cannot
-- hold): the caller raises it at its own caller's line. Once queued behind
-- the handshake the caller is gone, and such an error goes to cb.
function Client:_send(msg, cb)
    return self:_when_ready(function(ok, err, queued)
        if not ok then
            if cb then cb(false, err) end
            return
        end
        msg.clientId = self.id
        local function on_reply(replies)
            local r = replies and replies[1]
            if cb then
                if r and r.successful then cb(true, r) else cb(false, r and r.error, r) end
            end
        end
        -- called through pcall, the core's message carries no position
        local sent, perr = pcall(self.server.core.process, self.server.core, { msg }, on_reply)
        if sent then return end
        if not queued then return tostring(perr) end
        if cb then cb(false, tostring(perr)) else log("in-process client: ", tostring(perr)) end
    end)
end

-- Looks up only the few patterns a message's channel expands to, never
-- every subscription the client holds.
function Client:_deliver(msgs)
    for _, m in ipairs(msgs) do
        -- a callback may have disconnected the client: the rest is not its
        if self.closed then return end
        if type(m.channel) == "string" and m.data ~= nil then
            -- the callbacks are collected before any runs: one may subscribe
            -- (a new key) or cancel (a removal during ipairs)
            local calls = {}
            for _, pattern in ipairs(channel.expand(m.channel)) do
                local fns = self.subs[pattern]
                if fns then
                    for _, fn in ipairs(fns) do calls[#calls + 1] = fn end
                end
            end
            for _, fn in ipairs(calls) do
                if self.closed then return end
                fn(m.data, m.channel)
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
    local err = self:_send({ channel = ch, data = data }, cb)
    if err then error("client:publish: " .. err, 2) end
end

--- Ends the client's session (callbacks stop at once; server:client()
-- then makes a new client).
function Client:disconnect(cb)
    if self.closed then
        if cb then _M.timer(0, cb) end
        return
    end
    self.closed = true
    if self.server.shared_client == self then self.server.shared_client = nil end
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
