-- examples/jobs/app.lua - a long job as users build them: the page uploads
-- a picture, the server converts it with ImageMagick in several steps
-- (bayeux.spawn: the server keeps answering meanwhile) and publishes the
-- progress to /jobs/<id>; the page shows a progress bar and, at the end, a
-- link to the result. The job may take longer than any proxy would hold an
-- HTTP request: the upload's answer comes at once, the rest is messages.
--
-- Try it (ImageMagick's `convert` and `identify` on PATH: apt-get install
-- imagemagick):
--   lua5.4 bin/bayeux examples/jobs/app.lua          (from the repository root)
-- then open http://127.0.0.1:8000/ and pick a picture. Environment: PORT,
-- HOST, JOBS_DIR (default: a new folder in /tmp), STEP_DELAY (seconds
-- between two steps, default 20: four steps make the job outlast a 60 s
-- proxy timeout; 0 for a quick one).

local bayeux = require "bayeux"

local port = tonumber(os.getenv("PORT")) or 8000
local host = os.getenv("HOST") or "127.0.0.1"
local step_delay = tonumber(os.getenv("STEP_DELAY")) or 20
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

-- Set-up, before the loop runs: blocking here costs nobody anything.
local jobs_dir = os.getenv("JOBS_DIR")
if not jobs_dir then
  local p = assert(io.popen("mktemp -d /tmp/bayeux-jobs.XXXXXX"))
  jobs_dir = p:read("l")
  p:close()
end
assert(os.execute("mkdir -p '" .. jobs_dir .. "/incoming'"), "cannot make " .. jobs_dir)

-- Late subscribers (a page opened, or reloaded, after the job started)
-- get the job's last message at once.
local server = bayeux.server { mount = "/faye", timeout = 45, retain = { "/jobs/*" } }
local client = server:client()
local jobs = {}                 -- id -> { state, percent, result, width, height }

local function publish(id, msg)
  local job = jobs[id]
  for k, v in pairs(msg) do job[k] = v end
  client:publish("/jobs/" .. id, msg, function(ok, err)
    if not ok then io.stderr:write("jobs: publish failed: ", tostring(err), "\n") end
  end)
end

-- The steps of a conversion: each a `convert` run on the previous output.
local STEPS = {
  { label = "resizing", args = { "-resize", "50%" } },
  { label = "blurring", args = { "-blur", "0x2" } },
  { label = "sharpening", args = { "-sharpen", "0x1" } },
  { label = "rotating", args = { "-rotate", "90" } },
}

-- Upload: 0-20 %; each step its share of the rest.
local function step_percent(i)
  return 20 + math.floor(80 * i / #STEPS)
end

local function finish(id, dir)
  local out = dir .. "/result.jpg"
  local size
  local p, err = bayeux.spawn("identify", { "-format", "%w %h\n", out },
    { stdout = function(line) size = size or line end },
    function(code)
      local w, h = (size or ""):match("^(%d+) (%d+)$")
      if code ~= 0 or not w then
        return publish(id, { state = "failed", error = "identify failed" })
      end
      publish(id, { state = "done", percent = 100, result = "/jobs/" .. id .. "/result.jpg",
                    width = tonumber(w), height = tonumber(h) })
    end)
  if not p then publish(id, { state = "failed", error = err }) end
end

local function run_step(id, dir, i, input)
  if i > #STEPS then return finish(id, dir) end
  local step = STEPS[i]
  local output = dir .. (i == #STEPS and "/result.jpg" or ("/step" .. i .. ".png"))
  local args = { input }
  for _, a in ipairs(step.args) do args[#args + 1] = a end
  args[#args + 1] = output
  publish(id, { state = step.label, percent = step_percent(i - 1), step = i, steps = #STEPS })
  local errors = {}
  local p, err = bayeux.spawn("convert", args,
    { stderr = function(line) errors[#errors + 1] = line end },
    function(code, signal)
      if code ~= 0 then
        return publish(id, { state = "failed", error = table.concat(errors, " ") ~= ""
          and table.concat(errors, " ") or ("convert ended with " .. code .. "/" .. signal) })
      end
      publish(id, { state = step.label, percent = step_percent(i), step = i, steps = #STEPS })
      -- a slow conversion, made visible: the job outlasts a proxy's timeout
      bayeux.timer(step_delay, function() run_step(id, dir, i + 1, output) end)
    end)
  if not p then publish(id, { state = "failed", error = err }) end
end

local function valid_id(id)
  return type(id) == "string" and id:match("^[%w]+$") and #id >= 8 and #id <= 40
end

-- The upload: streamed to disk; its progress goes to /jobs/<id> as it arrives.
server:route("POST", "/jobs", function(req, res)
  local id, f = req.query_params.id, req.files and req.files[1]
  if not valid_id(id) or jobs[id] then return res:status(400):json { error = "bad or used id" } end
  if not f or f.size == 0 then return res:status(400):json { error = "no picture" } end
  local dir = jobs_dir .. "/" .. id
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local input = dir .. "/input"
  assert(os.rename(f.path, input))           -- else removed once answered
  jobs[id] = {}
  publish(id, { state = "uploaded", percent = 20, name = f.filename, size = f.size })
  run_step(id, dir, 1, input)
  res:status(202):json { id = id }           -- answered now; the job goes on
end, { upload = {
  max_size = 20 * 1024 * 1024,
  dir = jobs_dir .. "/incoming",
  progress = function(req, received, total)
    local id = req.query_params.id
    if valid_id(id) and total and total > 0 and not jobs[id] then
      client:publish("/jobs/" .. id, { state = "uploading",
                                       percent = math.floor(20 * received / total) })
    end
  end,
} })

server:route("GET", "/jobs/:id/result.jpg", function(req, res)
  local job = jobs[req.params.id]
  if not job or job.state ~= "done" then return res:status(404):send("no such result\n") end
  res:header("Content-Type", "image/jpeg")
     :header("Content-Disposition", 'attachment; filename="' .. req.params.id .. '.jpg"')
     :file(jobs_dir .. "/" .. req.params.id .. "/result.jpg")
end)

server:route("GET", "/", function(_, res)
  res:header("Content-Type", "text/html; charset=utf-8"):file(here .. "/index.html")
end)

server:listen(port, host)
