-- The in-process client (server:client()): a delivery calls the callbacks
-- of exactly the subscriptions that match its channel, found by expanding
-- the channel (as the C engine does), not by testing every subscription.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local channel = require "bayeux.channel"
-- counts the pattern tests made while delivering
local tests, matches = 0, channel.matches
channel.matches = function(...) tests = tests + 1; return matches(...) end
local server = bayeux.server { mount = "/faye" }
local c = server:client()
local got = {}
local function on(pattern)
  return function(data, ch) got[#got + 1] = pattern .. " " .. ch .. " " .. tostring(data) end
end
for i = 1, 2000 do c:subscribe("/n/" .. i, on("/n/" .. i)) end
for _, p in ipairs{ "/n/*", "/n/**", "/**", "/x/y/*", "/x/y/**" } do c:subscribe(p, on(p)) end
local sub2 = c:subscribe("/x/y/z", on("/x/y/z"))
c:subscribe("/x/y/z", on("/x/y/z second"), function()
  sub2:cancel()     -- one of two callbacks gone, the subscription stays
  server:route("GET", "/got", function(_, res)
    res:json{ got = bayeux.array(got), tests = tests }
  end)
  server:listen(0, "127.0.0.1")
end)
]]

describe("in-process client deliveries", function()
  local srv

  lazy_setup(function()
    srv = H.start_app(APP)
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  it("calls exactly the matching subscriptions, without testing all 2000", function()
    local b = H.bayeux(srv.port)
    for i, ch in ipairs{ "/n/7", "/n/7/z", "/x/y/z", "/other" } do
      assert.is_true(b:publish(nil, ch, i).successful)
    end
    local want = {
      "/n/7 /n/7 1", "/n/* /n/7 1", "/n/** /n/7 1", "/** /n/7 1",
      "/n/** /n/7/z 2", "/** /n/7/z 2",
      "/x/y/* /x/y/z 3", "/x/y/** /x/y/z 3", "/x/y/z second /x/y/z 3", "/** /x/y/z 3",
      "/** /other 4",
    }
    local deadline, r = H.now() + 5
    repeat
      local st, _, body = H.request(srv.port, "GET", "/got")
      assert.are.equal(200, st)
      r = H.decode(body)
      if #r.got >= #want then break end
      H.sleep(0.02)
    until H.now() > deadline
    table.sort(want)
    table.sort(r.got)
    assert.are.same(want, r.got)
    -- the work per delivery does not grow with the subscriptions held
    assert.is_true(r.tests <= 4 * 8, "pattern tests: " .. tostring(r.tests))
  end)
end)
