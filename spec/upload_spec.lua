-- Upload routes: a multipart/form-data body streamed to disk as it arrives
-- (core/net/upload.c, core/base/multipart.c), a size limit per route,
-- progress while it arrives; other routes keep max_body.
local H = require "spec.helper"

local APP = [[
local bayeux = require "bayeux"
local server = bayeux.server { mount = "/faye", timeout = 2 }
local dir = os.getenv("UPLOAD_DIR")
local progress = {}

local function pattern(n)
  local unit = {}
  for i = 0, 255 do unit[#unit + 1] = string.char(i) end
  unit = table.concat(unit)
  return (unit:rep(n // 256 + 1)):sub(1, n)
end

server:route("POST", "/upload", function(req, res)
  local out = { fields = req:form(), files = {} }
  for i, f in ipairs(req.files) do
    local fh = assert(io.open(f.path, "rb"))
    local data = fh:read("a")
    fh:close()
    out.files[i] = { field = f.field, filename = f.filename, size = f.size,
                     content_type = f.content_type, on_disk = #data,
                     same = data == pattern(f.size),
                     in_dir = f.path:sub(1, #dir + 1) == dir .. "/" }
  end
  res:json(out)
end, { upload = { max_size = 4 * 1024 * 1024, dir = dir,
                  progress = function(req, received, total)
                    local id = req.query_params.id
                    local p = progress[id] or { events = 0 }
                    progress[id] = p
                    p.events, p.last, p.total = p.events + 1, received, total
                  end } })

server:route("POST", "/small", function(_, res) res:send("never") end,
             { upload = { max_size = 100000, dir = dir } })

server:route("POST", "/kept", function(req, res)
  res:json { path = req.files[1].path }
end, { upload = { dir = dir, keep = true } })

server:route("POST", "/plain", function(req, res) res:send(#req.body .. "") end)

server:route("GET", "/progress/:id", function(req, res)
  res:json(progress[req.params.id] or {})
end)

server:listen(0, "127.0.0.1")
]]

local function pattern(n)
  local unit = {}
  for i = 0, 255 do unit[#unit + 1] = string.char(i) end
  unit = table.concat(unit)
  return (unit:rep(n // 256 + 1)):sub(1, n)
end

local BOUNDARY = "----bxTestBoundary7MA4YWxkTrZu0gW"

local function multipart(parts)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. BOUNDARY .. "\r\n"
    if p.filename then
      out[#out + 1] = ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n')
        :format(p.name, p.filename)
      out[#out + 1] = "Content-Type: " .. (p.type or "application/octet-stream") .. "\r\n"
    else
      out[#out + 1] = ('Content-Disposition: form-data; name="%s"\r\n'):format(p.name)
    end
    out[#out + 1] = "\r\n" .. p.data .. "\r\n"
  end
  out[#out + 1] = "--" .. BOUNDARY .. "--\r\n"
  return table.concat(out)
end

local CT = "multipart/form-data; boundary=" .. BOUNDARY

local function files_in(dir)
  local f = io.popen("ls -A " .. H.q(dir))
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

-- waits (bounded) until the folder holds `n` files; returns the count
local function wait_files(dir, n)
  local deadline = H.now() + 10
  local got = files_in(dir)
  while got ~= n and H.now() < deadline do
    H.sleep(0.02)
    got = files_in(dir)
  end
  return got
end

describe("upload routes", function()
  local srv, dir

  lazy_setup(function()
    dir = H.tmpdir()
    srv = H.start_app(APP, { env = "UPLOAD_DIR=" .. H.q(dir) })
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
    if dir then os.execute("rm -rf " .. H.q(dir)) end
  end)

  it("takes a 2 MB multipart upload: fields, file on disk, name, type and size", function()
    local size = 2 * 1024 * 1024 + 17
    local body = multipart {
      { name = "title", data = "holiday\r\n--not a boundary" },
      { name = "photo", filename = "C:\\pics\\beach.png", type = "image/png", data = pattern(size) },
      { name = "note", data = "" },
    }
    local status, _, rbody = H.request(srv.port, "POST", "/upload?id=a",
      { ["Content-Type"] = CT }, body, 30)
    assert.are.equal(200, status, rbody)
    local v = H.decode(rbody)
    assert.are.same({ title = "holiday\r\n--not a boundary", note = "" }, v.fields)
    assert.are.equal(1, #v.files)
    local f = v.files[1]
    assert.are.equal("photo", f.field)
    assert.are.equal("beach.png", f.filename)
    assert.are.equal("image/png", f.content_type)
    assert.are.equal(size, f.size)
    assert.are.equal(size, f.on_disk)
    assert.is_true(f.same)
    assert.is_true(f.in_dir)
    -- progress came while it arrived, and reached the whole body
    local _, _, pbody = H.request(srv.port, "GET", "/progress/a")
    local p = H.decode(pbody)
    assert.is_true(p.events >= 2, pbody)
    assert.are.equal(#body, p.last)
    assert.are.equal(#body, p.total)
    -- the file went once the answer was sent
    assert.are.equal(0, wait_files(dir, 0))
  end)

  it("streams a chunked upload (no Content-Length) the same way", function()
    local size = 1500000
    local body = multipart { { name = "f", filename = "x.bin", data = pattern(size) } }
    local chunks = {}
    for i = 1, #body, 100000 do
      local piece = body:sub(i, i + 99999)
      chunks[#chunks + 1] = ("%x\r\n%s\r\n"):format(#piece, piece)
    end
    chunks[#chunks + 1] = "0\r\n\r\n"
    local status, _, rbody = H.request(srv.port, "POST", "/upload?id=c",
      { ["Content-Type"] = CT, ["Transfer-Encoding"] = "chunked" }, table.concat(chunks), 30)
    assert.are.equal(200, status, rbody)
    local f = H.decode(rbody).files[1]
    assert.are.equal(size, f.size)
    assert.is_true(f.same)
  end)

  it("answers 413 beyond the route's max_size and removes the partial file", function()
    -- announced: refused before the body is sent
    local body = multipart { { name = "f", filename = "big.bin", data = pattern(300000) } }
    local status = H.request(srv.port, "POST", "/small", { ["Content-Type"] = CT }, body)
    assert.are.equal(413, status)
    -- chunked: found while it arrives, after part of the file is on disk
    local c = H.connect(srv.port)
    c:send(H.build_request(srv.port, "POST", "/small",
      { ["Content-Type"] = CT, ["Transfer-Encoding"] = "chunked" }))
    local sent = 0
    while sent < #body do
      local piece = body:sub(sent + 1, sent + 16384)
      if not c:send(("%x\r\n%s\r\n"):format(#piece, piece)) then break end
      sent = sent + #piece
    end
    local st = c:read_response(10)
    c:close()
    assert.are.equal(413, st)
    assert.are.equal(0, wait_files(dir, 0))
  end)

  it("removes the partial file of a client that goes away mid-upload", function()
    local body = multipart { { name = "f", filename = "gone.bin", data = pattern(500000) } }
    local c = H.connect(srv.port)
    c:send(H.build_request(srv.port, "POST", "/upload?id=g", { ["Content-Type"] = CT,
      ["Content-Length"] = #body }))
    c:send(body:sub(1, 300000))
    -- the file is on disk while the body arrives ...
    assert.are.equal(1, wait_files(dir, 1))
    c:close()
    -- ... and gone with its client
    assert.are.equal(0, wait_files(dir, 0))
    local status = H.request(srv.port, "GET", "/progress/g")
    assert.are.equal(200, status)             -- the server carries on
  end)

  it("answers 400 for a body that is not multipart, 413 for a large body elsewhere", function()
    local status = H.request(srv.port, "POST", "/upload", { ["Content-Type"] = CT },
      "--" .. BOUNDARY .. "\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--" .. BOUNDARY .. "--\r\n")
    assert.are.equal(400, status)
    status = H.request(srv.port, "POST", "/upload", { ["Content-Type"] = CT },
      "--" .. BOUNDARY .. "\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ncut short")
    assert.are.equal(400, status)
    -- a route without `upload` keeps max_body (1 MiB)
    status = H.request(srv.port, "POST", "/plain", { ["Content-Type"] = CT },
      multipart { { name = "f", filename = "x", data = pattern(2 * 1024 * 1024) } })
    assert.are.equal(413, status)
    assert.are.equal(0, wait_files(dir, 0))
  end)

  it("keeps the files with keep = true", function()
    local body = multipart { { name = "f", filename = "k.txt", data = "kept" } }
    local status, _, rbody = H.request(srv.port, "POST", "/kept", { ["Content-Type"] = CT }, body)
    assert.are.equal(200, status)
    local path = H.decode(rbody).path
    assert.are.equal("kept", H.readfile(path))
    os.remove(path)
  end)
end)
