--- bayeux.ext.logger: logs every incoming message.
--
--   server:add_extension(require "bayeux.ext.logger" ())        -- to stderr
--   server:add_extension(require "bayeux.ext.logger" {
--     sink = function(line, entry) print(line) end,
--   })
--
-- One line per message: "<time> <remote> <clientId> <channel>[ <subscription>]",
-- e.g. "2024-05-01T12:00:00Z 127.0.0.1 k3j2... /meta/subscribe /chat".
-- `entry` holds the same fields: time (seconds), remote ("-" for in-process
-- clients), client_id, channel, subscription (a string or nil; arrays are
-- joined with ","), and message (the message itself; do not change it).
--
-- Options:
--   sink    function(line, entry) (default: write the line to stderr)
--   filter  function(message, request) -> true to log it (default: all)

local type, tostring, os_time, os_date, concat = type, tostring, os.time, os.date, table.concat

local function default_sink(line)
    io.stderr:write(line, "\n")
    io.stderr:flush()
end

return function(opts)
    opts = opts or {}
    local sink, filter = opts.sink or default_sink, opts.filter
    if type(sink) ~= "function" then error("bayeux.ext.logger: sink must be a function", 2) end
    return {
        name = "logger",
        incoming = function(message, request, callback)
            if not filter or filter(message, request) then
                local sub = message.subscription
                if type(sub) == "table" then
                    local parts = {}
                    for i, s in ipairs(sub) do parts[i] = tostring(s) end
                    sub = concat(parts, ",")
                elseif sub ~= nil then
                    sub = tostring(sub)
                end
                local t = os_time()
                local entry = {
                    time = t,
                    remote = request and request.remote or "-",
                    client_id = type(message.clientId) == "string" and message.clientId or "-",
                    channel = tostring(message.channel),
                    subscription = sub,
                    message = message,
                }
                local line = ("%s %s %s %s"):format(os_date("!%Y-%m-%dT%H:%M:%SZ", t),
                    entry.remote, entry.client_id, entry.channel)
                if sub then line = line .. " " .. sub end
                -- a failing sink must not cost the message
                local ok, err = pcall(sink, line, entry)
                if not ok then io.stderr:write("bayeux.ext.logger: sink failed: ",
                    tostring(err), "\n") end
            end
            callback(message)
        end,
    }
end
