-- TLS on the client side: bayeux.client over https (long-polling) and wss,
-- and bayeux.http.request to https, against `bayeux serve --tls-cert F
-- --tls-key F`, with a test CA made by the openssl tool; the server's
-- certificate is checked (a client without the CA refuses it).
local H = require "spec.helper"

-- A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
local function make_certs(dir)
  local function run(cmd)
    assert(os.execute("cd " .. H.q(dir) .. " && " .. cmd .. " >/dev/null 2>&1"), cmd)
  end
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key"
      .. " -out ca.crt -subj /CN=test-ca -days 2 -addext basicConstraints=critical,CA:TRUE")
  run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key"
      .. " -out srv.csr -subj /CN=srv")
  H.writefile(dir .. "/san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  run("openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -set_serial 7 -days 2"
      .. " -extfile san.ext -out srv.crt")
  return dir .. "/ca.crt", dir .. "/srv.crt", dir .. "/srv.key"
end

local PUBSUB = [[
local bayeux = require "bayeux"
local url, mode, ca = arg[1], arg[2], arg[3]
local a = bayeux.client(url, { timeout = 10, retry = 0.2, ca = ca })
local b = bayeux.client(url, { timeout = 10, retry = 0.2, ca = ca })
if mode == "long-polling" then a:disable("websocket") b:disable("websocket") end
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
a:subscribe("/tls/x", function(data)
  print("A got " .. bayeux.encode(data))
  print("TRANSPORT " .. a:get_transport())
  a:disconnect(function() b:disconnect(function() print("END") bayeux.stop() end) end)
end, function(ok, err)
  print("A ack", ok, err)
  b:publish("/tls/x", { n = 1, big = string.rep("y", 100000) }, function() end)
end)
]]

local REQUEST = [[
local bayeux = require "bayeux"
bayeux.http.request({ url = arg[1], ca = arg[2] ~= "" and arg[2] or nil, timeout = 10 },
  function(res, err)
    if res then print("STATUS " .. res.status .. " " .. #res.body) else print("ERR " .. err) end
    bayeux.stop()
  end)
bayeux.timer(20, function() print("TIMEOUT") bayeux.stop() end)
]]

local function script(src, args)
  local dir = H.tmpdir()
  H.writefile(dir .. "/s.lua", src)
  local argv = { dir .. "/s.lua" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = H.spawn(argv)
  local rc = p:wait(30)
  if not rc then p:kill() end
  return rc, p:stdout(), p:stderr()
end

describe("TLS clients", function()
  local dir, ca, srv

  setup(function()
    dir = H.tmpdir()
    local cert, key
    ca, cert, key = make_certs(dir)
    srv = H.start_server { "--tls-cert", cert, "--tls-key", key }
  end)

  teardown(function()
    if srv then srv:finish() end
    os.execute("rm -rf " .. H.q(dir))
  end)

  it("the listening line says https", function()
    assert.truthy(srv.url:match("^https://127%.0%.0%.1:%d+/faye$"), srv.url)
  end)

  for _, mode in ipairs { "websocket", "long-polling" } do
    it("bayeux.client over " .. (mode == "websocket" and "wss" or "https long-polling"), function()
      local rc, out, err = script(PUBSUB, { srv.url, mode, ca })
      assert.are.equal(0, rc, err)
      assert.truthy(out:find("A ack\ttrue", 1, true), out)
      assert.truthy(out:find('A got {"', 1, true), out)
      assert.truthy(out:find("TRANSPORT " .. mode, 1, true), out)
      assert.truthy(out:find("END", 1, true), out)
    end)
  end

  it("bayeux.http.request to https, the CA given", function()
    local rc, out, err = script(REQUEST, { srv.url .. "/client.js", ca })
    assert.are.equal(0, rc, err)
    assert.truthy(out:match("STATUS 200 %d+"), out)
  end)

  it("without the CA the certificate is refused, and says so", function()
    local rc, out, err = script(REQUEST, { srv.url .. "/client.js", "" })
    assert.are.equal(0, rc, err)
    assert.truthy(out:find("ERR TLS: certificate verify failed", 1, true), out)
  end)

  it("a client whose CA file cannot be read raises", function()
    local rc, _, err = script(REQUEST, { srv.url .. "/client.js", dir .. "/nope.pem" })
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("nope.pem", 1, true), err)
  end)
end)
