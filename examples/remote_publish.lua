-- examples/remote_publish.lua - a separate process (a web app's backend, a
-- job runner, a cron script) that talks to a running Bayeux server: it
-- reports a job's progress on /jobs/progress and reads the replies sent to
-- /jobs/<job>/replies. What Faye users write as `new Faye.Client(url)` in
-- server code.
--
-- Try it (from the repository root), with any Bayeux server (bin/bayeux
-- serve, the chat example, a Node Faye server):
--   lua5.4 bin/bayeux serve --mount /faye &
--   lua5.4 bin/bayeux subscribe http://127.0.0.1:8000/faye /jobs/progress &
--   lua5.4 bin/bayeux examples/remote_publish.lua http://127.0.0.1:8000/faye job-1
-- and answer it from another shell (or a browser page, another worker):
--   lua5.4 bin/bayeux publish http://127.0.0.1:8000/faye /jobs/job-1/replies '{"text":"thanks"}'
--
-- Environment: STEPS (default 3), WAIT (seconds to wait for a reply after
-- the last step, default 30).

local bayeux = require "bayeux"

local url = arg[1] or os.getenv("BAYEUX_URL") or "http://127.0.0.1:8000/faye"
local job = arg[2] or ("job-" .. os.time())
local steps = tonumber(os.getenv("STEPS")) or 3
local wait = tonumber(os.getenv("WAIT")) or 30

local client = bayeux.client(url, { timeout = 10 })
local replies = "/jobs/" .. job .. "/replies"
local waiting, replied

local function finish(code)
  client:disconnect(function()
    if code ~= 0 then os.exit(code) end
    bayeux.stop()
  end)
end

local function report(step)
  client:publish("/jobs/progress", { job = job, step = step, of = steps }, function(ok, err)
    if not ok then
      io.stderr:write("remote_publish: progress not delivered: ", tostring(err), "\n")
      return finish(1)
    end
    print(("sent step %d/%d"):format(step, steps))
    if step < steps then
      bayeux.timer(0.2, function() report(step + 1) end)
    elseif replied then
      finish(0)
    else
      waiting = bayeux.timer(wait, function()
        print("no reply within " .. wait .. " s")
        finish(0)
      end)
    end
  end)
end

-- Replies first, so none is missed; the progress starts once the server
-- has confirmed the subscription.
client:subscribe(replies, function(data)
  print("reply: " .. bayeux.encode(data))
  replied = true
  if waiting then
    waiting:cancel()
    finish(0)
  end
end, function(ok, err)
  if not ok then
    io.stderr:write("remote_publish: cannot subscribe to ", replies, ": ", tostring(err), "\n")
    return finish(1)
  end
  report(1)
end)
