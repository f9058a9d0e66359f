-- Work beside the loop: bayeux.spawn (uv_spawn), bayeux.fs.read/write (the
-- thread pool), bayeux.http.request (the loop's HTTP client). A child that
-- runs on does not stop the server answering.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local child, state = nil, { running = false }
local port

server:route("POST", "/start", function(_, res)
  state = { running = true }
  -- runs until killed: `sleep` in a loop would end on its own
  child = assert(bayeux.spawn("sh", { "-c", "echo started; exec sleep 1000" }, {
    stdout = function(line) state.line = line end,
  }, function(code, signal)
    state.running, state.code, state.signal = false, code, signal
  end))
  res:json { pid = child:pid() }
end)
server:route("GET", "/ping", function(_, res)
  res:json { running = state.running, line = state.line }
end)
server:route("POST", "/stop", function(_, res)
  res:json { killed = child:kill("TERM") }
end)
server:route("GET", "/state", function(_, res) res:json(state) end)

server:route("GET", "/lines", function(req, res)
  local out, err = {}, {}
  local p, e = bayeux.spawn("sh", { "-c", 'echo "$GREETING"; pwd; echo oops >&2; printf last; exit 7' },
    { env = { GREETING = "hello " .. req.query_params.who }, cwd = "/",
      stdout = function(l) out[#out + 1] = l end,
      stderr = function(l) err[#err + 1] = l end },
    function(code, signal)
      res:json { out = out, err = err, code = code, signal = signal }
    end)
  if not p then res:status(500):json { error = e } end
end)
server:route("GET", "/missing", function(_, res)
  local p, err = bayeux.spawn("/no/such/program", {}, nil, function() end)
  res:json { p = p == nil, err = err }
end)

server:route("POST", "/file", function(req, res)
  local path = os.getenv("SPEC_DIR") .. "/f.txt"
  bayeux.fs.write(path, req.body, function(ok, err)
    if not ok then return res:status(500):send(err) end
    bayeux.fs.read(path, function(data, err2)
      bayeux.fs.read(path .. ".missing", function(none, err3)
        res:json { data = data, err = err2, none = none == nil, err3 = err3 }
      end)
    end)
  end)
end)

server:route("GET", "/proxy", function(_, res)
  bayeux.http.request({ url = "http://127.0.0.1:" .. port .. "/echo?x=1", method = "POST",
                        headers = { ["X-Thing"] = "abc" }, body = "payload" },
    function(r, err)
      if not r then return res:status(502):json { error = err } end
      bayeux.http.request({ url = "http://127.0.0.1:1/" , timeout = 5 }, function(r2, err2)
        res:json { status = r.status, body = r.body, failed = r2 == nil, err = err2 }
      end)
    end)
end)
server:route("POST", "/echo", function(req, res)
  res:status(201):send(req.query .. " " .. req.headers["x-thing"] .. " " .. req.body)
end)

port = server:listen(0, "127.0.0.1")
]]

describe("bayeux.spawn, bayeux.fs, bayeux.http", function()
  local srv, dir

  lazy_setup(function()
    dir = H.tmpdir()
    srv = H.start_app(APP, { env = "SPEC_DIR=" .. H.q(dir) })
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  local function json(method, path, body)
    local status, _, b = H.request(srv.port, method, path, nil, body, 20)
    assert.are.equal(200, status, b)
    return H.decode(b)
  end

  it("keeps answering while a child runs, and reports its end", function()
    local started = json("POST", "/start")
    assert.is_number(started.pid)
    -- every request is answered while the child is still running
    local answered = 0
    for _ = 1, 20 do
      local v = json("GET", "/ping")
      assert.is_true(v.running)
      answered = answered + 1
    end
    assert.are.equal(20, answered)
    -- its first line arrives while it runs
    local deadline, v = H.now() + 10
    repeat
      v = json("GET", "/ping")
      if v.line == nil then H.sleep(0.02) end
    until v.line or H.now() > deadline
    assert.are.equal("started", v.line)
    assert.is_true(v.running)
    assert.is_true(json("POST", "/stop").killed)
    deadline = H.now() + 10
    local st
    repeat
      st = json("GET", "/state")
      if st.running then H.sleep(0.02) end
    until not st.running or H.now() > deadline
    assert.is_false(st.running)
    assert.are.equal("started", st.line)
    assert.are.equal(15, st.signal)
  end)

  it("hands over stdout and stderr lines, then the exit code; env and cwd apply", function()
    local v = json("GET", "/lines?who=ann")
    assert.are.same({ "hello ann", "/", "last" }, v.out)
    assert.are.same({ "oops" }, v.err)
    assert.are.equal(7, v.code)
    assert.are.equal(0, v.signal)
  end)

  it("returns nil and an error for a program that cannot run", function()
    local v = json("GET", "/missing")
    assert.is_true(v.p)
    assert.matches("cannot run '/no/such/program'", v.err, 1, true)
  end)

  it("writes and reads files in the thread pool", function()
    local v = json("POST", "/file", "some\0bytes")
    assert.are.equal("some\0bytes", v.data)
    assert.is_true(v.none)
    assert.matches("No such file", v.err3, 1, true)
  end)

  it("makes HTTP requests on the loop", function()
    local v = json("GET", "/proxy")
    assert.are.equal(201, v.status)
    assert.are.equal("x=1 abc payload", v.body)
    assert.is_true(v.failed)
    assert.is_string(v.err)
  end)
end)
