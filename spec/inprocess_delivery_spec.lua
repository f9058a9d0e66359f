-- The in-process client's delivery (lua/bayeux/init.lua Client:_deliver):
-- callbacks that subscribe or cancel while a message is being delivered
-- change neither which callbacks get that message nor how often.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye" }
local c = server:client()
local got, counts = {}, {}
local function note(s) got[#got + 1] = s end

-- /a: the first callback cancels itself; the others must still run
local first
first = c:subscribe("/a", function(d) note("first " .. d.n); first:cancel() end)
c:subscribe("/a", function(d) note("second " .. d.n) end)
c:subscribe("/a", function(d) note("third " .. d.n) end)

-- /x/y matches all these patterns; each callback subscribes to many new
-- channels while the message is delivered (the table being walked grows)
local patterns = { "/x/y", "/x/*", "/x/**", "/**" }
local fresh = 0
for _, p in ipairs(patterns) do
  c:subscribe(p, function(d, ch)
    if ch ~= "/x/y" then return end
    counts[p] = (counts[p] or 0) + 1
    for _ = 1, 40 do
      fresh = fresh + 1
      c:subscribe("/fresh/" .. fresh, function() end)
    end
    if d.n == 1 and p == "/x/y" then
      -- a new callback on a matching pattern: from the next message on
      c:subscribe("/x/*", function(d2) note("late " .. d2.n) end)
    end
  end)
end

local function finish(why)
  local keys = {}
  for _, p in ipairs(patterns) do keys[#keys + 1] = p .. "=" .. tostring(counts[p]) end
  print("got: " .. table.concat(got, ","))
  print("counts: " .. table.concat(keys, ","))
  print("end: " .. why)
  bayeux.stop()
end

c:subscribe("/done", function() finish("done") end, function()
  c:publish("/a", { n = 1 })
  c:publish("/a", { n = 2 })
  c:publish("/x/y", { n = 1 })
  c:publish("/x/y", { n = 2 })
  c:publish("/done", {})
end)
bayeux.timer(10, function() finish("timeout") end)
]]

describe("in-process client delivery", function()
  local out

  lazy_setup(function()
    local dir = H.tmpdir()
    H.writefile(dir .. "/app.lua", APP)
    local p = H.spawn{ dir .. "/app.lua" }
    local rc = p:wait(20)
    if not rc then p:kill() end
    out = p:stdout() .. p:stderr()
    os.execute("rm -rf " .. H.q(dir))
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("end: done", 1, true), out)
  end)

  it("runs the next callback when one cancels itself", function()
    assert.is_truthy(out:find("got: first 1,second 1,third 1,second 2,third 2,", 1, true), out)
  end)

  it("calls each matching callback once while callbacks subscribe", function()
    assert.is_truthy(out:find("counts: /x/y=2,/x/*=2,/x/**=2,/**=2\n", 1, true), out)
    -- the callback added during the first message gets only the second
    assert.is_truthy(out:find(",late 2\n", 1, true), out)
    assert.is_falsy(out:find("late 1", 1, true), out)
  end)
end)
