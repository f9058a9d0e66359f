--- bayeux.ext.history: channel history with recovery for the network client
-- (bayeux.client), as Faye.History is for the browser (docs/delivery.md).
--
--   local history = require "bayeux.ext.history" {
--     on_reset = function(channel, reason) reload(channel) end,
--   }
--   client:add_extension(history)
--
-- It remembers the last offset and epoch it saw on each history channel
-- (ext.history of each message); every /meta/subscribe (the client
-- resubscribes after a new handshake) names them, so the server replays
-- what was missed, in order. A message at or below an offset already seen
-- is dropped (no doubles). on_reset(channel, reason) is called when the
-- server cannot replay: "too old", "epoch changed", "unknown offset" or
-- "no history".
--
-- history:positions() -> { [channel] = { offset = n, epoch = e } }, and
-- history:restore(positions), for a program that keeps them over a restart.

local core = require "bayeux.core"
local channel = require "bayeux.channel"

local type, pairs, ipairs, setmetatable, math_type, pcall, tostring = type, pairs, ipairs,
    setmetatable, math.type, pcall, tostring

local function valid(pos)
    return type(pos) == "table" and math_type(pos.offset) == "integer"
        and type(pos.epoch) == "string"
end

local function covers(sub, ch)
    for _, p in ipairs(channel.expand(ch)) do
        if p == sub then return true end
    end
    return false
end

local History = {}
History.__index = History

function History:positions()
    local out = {}
    for ch, pos in pairs(self.seen) do out[ch] = { offset = pos.offset, epoch = pos.epoch } end
    return out
end

function History:restore(positions)
    for ch, pos in pairs(positions or {}) do
        if type(ch) == "string" and valid(pos) then
            self.seen[ch] = { offset = pos.offset, epoch = pos.epoch }
        end
    end
end

function History:outgoing(message, callback)
    if message.channel == "/meta/subscribe" then
        local subs = message.subscription
        if type(subs) ~= "table" then subs = { subs } end
        local want = setmetatable({}, core.object_mt)
        for ch, pos in pairs(self.seen) do
            for _, sub in ipairs(subs) do
                if covers(sub, ch) then
                    want[ch] = { offset = pos.offset, epoch = pos.epoch }
                    break
                end
            end
        end
        local ext = {}
        for k, v in pairs(type(message.ext) == "table" and message.ext or {}) do ext[k] = v end
        ext.history = want
        message.ext = ext
    end
    callback(message)
end

function History:_answered(answer)
    for ch, pos in pairs(answer) do
        if type(ch) == "string" and valid(pos) then
            local seen = self.seen[ch]
            if pos.recovered == false then
                -- start again from where the channel stands now
                if not (seen and seen.epoch == pos.epoch and seen.offset > pos.offset) then
                    self.seen[ch] = { offset = pos.offset, epoch = pos.epoch }
                end
                if self.on_reset then
                    local ok, err = pcall(self.on_reset, ch, pos.reason)
                    if not ok then core.log("error", "client", "on_reset: " .. tostring(err)) end
                end
            elseif not seen then
                self.seen[ch] = { offset = pos.offset, epoch = pos.epoch }
            end
        end
    end
end

function History:incoming(message, callback)
    local h = type(message.ext) == "table" and message.ext.history or nil
    local ch = message.channel
    if ch == "/meta/subscribe" then
        if message.successful == true and type(h) == "table" then self:_answered(h) end
        return callback(message)
    end
    if type(ch) ~= "string" or ch:sub(1, 6) == "/meta/" or not valid(h) then
        return callback(message)
    end
    local seen = self.seen[ch]
    if seen and seen.epoch == h.epoch and h.offset <= seen.offset then
        return callback(nil)            -- replayed, and already had it
    end
    self.seen[ch] = { offset = h.offset, epoch = h.epoch }
    return callback(message)
end

return function(opts)
    opts = opts or {}
    if opts.on_reset ~= nil and type(opts.on_reset) ~= "function" then
        error("bayeux.ext.history: on_reset must be a function", 2)
    end
    return setmetatable({ name = "history", seen = {}, on_reset = opts.on_reset }, History)
end
