-- HTTP transports: JSON POST, form POST, JSONP GET, CORS (bayeux-faye.md §7.2-7.5, §18.2-3)
local H = require "spec.helper"

local HS = '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]'

describe("HTTP transports", function()
  local srv, port

  lazy_setup(function()
    srv = H.start_server{ "--timeout", "2" }
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then srv:finish() end
  end)

  local function assert_bad_request(st, h, body, what)
    assert.are.equal(400, st, what)
    assert.are.equal("Bad request", body, what)
    assert.are.equal("text/plain; charset=utf-8", h["content-type"], what)
    assert.is_nil(h["access-control-allow-origin"], what)
    assert.is_nil(h["access-control-allow-credentials"], what)
  end

  local function get(path, headers)
    return H.request(port, "GET", path, headers)
  end

  local function jsonp_query(json, cb)
    local q = "?message=" .. H.urlencode(json)
    if cb then q = q .. "&jsonp=" .. H.urlencode(cb) end
    return q
  end

  describe("JSON POST", function()
    it("answers 200 with the exact headers and a correct Content-Length", function()
      local st, h, body = H.request(port, "POST", "/faye", { ["Content-Type"] = "application/json" }, HS)
      assert.are.equal(200, st)
      assert.are.equal("application/json; charset=utf-8", h["content-type"])
      assert.are.equal("no-cache, no-store", h["cache-control"])
      assert.are.equal("nosniff", h["x-content-type-options"])
      assert.are.equal(tostring(#body), h["content-length"])
      assert.is_nil(h["access-control-allow-origin"])
      assert.is_nil(h["access-control-allow-credentials"])
      assert.is_nil(h["content-disposition"])
      assert.is_true(H.decode(body)[1].successful)
    end)

    it("echoes Origin and allows credentials when Origin is sent", function()
      local st, h = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/json", Origin = "http://example.test" }, HS)
      assert.are.equal(200, st)
      assert.are.equal("http://example.test", h["access-control-allow-origin"])
      assert.are.equal("true", h["access-control-allow-credentials"])
    end)

    it("takes the media type before ';'", function()
      local st, _, body = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/json; charset=utf-8" }, HS)
      assert.are.equal(200, st)
      assert.is_true(H.decode(body)[1].successful)
    end)

    it("treats a differently-cased JSON type as form data (400)", function()
      local st, h, body = H.request(port, "POST", "/faye", { ["Content-Type"] = "Application/JSON" }, HS)
      assert_bad_request(st, h, body)
    end)

    it("answers bad JSON with 400 Bad request and no CORS headers", function()
      local st, h, body = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/json", Origin = "http://example.test" }, "[{")
      assert_bad_request(st, h, body)
    end)

    it("answers null with []", function()
      local st, _, body = H.request(port, "POST", "/faye", { ["Content-Type"] = "application/json" }, "null")
      assert.are.equal(200, st)
      assert.are.equal("[]", body)
    end)
  end)

  describe("form POST", function()
    local function form(json, ctype, extra)
      local headers = {}
      if ctype then headers["Content-Type"] = ctype end
      local body = "message=" .. H.urlencode(json) .. (extra or "")
      return H.request(port, "POST", "/faye", headers, body)
    end

    it("accepts message= with the form content type", function()
      local st, h, body = form(HS, "application/x-www-form-urlencoded")
      assert.are.equal(200, st)
      assert.are.equal("application/json; charset=utf-8", h["content-type"])
      assert.is_true(H.decode(body)[1].successful)
    end)

    it("accepts message= with text/plain and with no content type", function()
      local st, _, body = form(HS, "text/plain;charset=UTF-8")
      assert.are.equal(200, st)
      assert.is_true(H.decode(body)[1].successful)
      st, _, body = form(HS, nil)
      assert.are.equal(200, st)
      assert.is_true(H.decode(body)[1].successful)
    end)

    it("decodes '+' as a space", function()
      local json = '[{"channel":"/foo","data":1,"id":"a b"}]'
      local body = "message=" .. H.urlencode(json):gsub("%%20", "+")
      local st, _, resp = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
      assert.are.equal(200, st)
      assert.are.equal("a b", H.decode(resp)[1].id)
    end)

    it("echoes Origin for cross-origin-long-polling", function()
      local st, h = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "text/plain;charset=UTF-8", Origin = "http://cors.test" },
        "message=" .. H.urlencode(HS))
      assert.are.equal(200, st)
      assert.are.equal("http://cors.test", h["access-control-allow-origin"])
      assert.are.equal("true", h["access-control-allow-credentials"])
    end)

    it("answers 400 without a message parameter", function()
      local st, h, body = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, "other=1")
      assert_bad_request(st, h, body)
      st, h, body = H.request(port, "POST", "/faye", { ["Content-Type"] = "text/plain" }, "")
      assert_bad_request(st, h, body)
    end)

    it("answers 400 for an unparsable message", function()
      local st, h, body = form("[{", "application/x-www-form-urlencoded")
      assert_bad_request(st, h, body)
    end)

    it("validates a jsonp parameter but still answers plain JSON", function()
      local st, h, body = form(HS, "application/x-www-form-urlencoded", "&jsonp=alert(1)")
      assert_bad_request(st, h, body)
      st, h, body = form(HS, "application/x-www-form-urlencoded", "&jsonp=cb")
      assert.are.equal(200, st)
      assert.are.equal("application/json; charset=utf-8", h["content-type"])
      assert.are.equal("[", body:sub(1, 1))
    end)
  end)

  describe("JSONP GET", function()
    it("wraps the reply as /**/cb(...); with the exact headers", function()
      local st, h, body = get("/faye" .. jsonp_query(HS, "__jsonp1__"))
      assert.are.equal(200, st)
      assert.are.equal("text/javascript; charset=utf-8", h["content-type"])
      assert.are.equal("attachment; filename=f.txt", h["content-disposition"])
      assert.are.equal("no-cache, no-store", h["cache-control"])
      assert.are.equal("nosniff", h["x-content-type-options"])
      assert.are.equal(tostring(#body), h["content-length"])
      assert.is_nil(h["access-control-allow-origin"])
      local json = body:match("^/%*%*/__jsonp1__%((.*)%);$")
      assert.truthy(json, body)
      local r = H.decode(json)
      assert.is_true(r[1].successful)
      assert.are.equal("1", r[1].id)
      assert.are.equal(31, #r[1].clientId)
    end)

    it("defaults the callback to jsonpcallback", function()
      local st, _, body = get("/faye" .. jsonp_query("[]"))
      assert.are.equal(200, st)
      assert.are.equal("/**/jsonpcallback([]);", body)
    end)

    it("uses the default callback for an empty jsonp parameter", function()
      local st, _, body = get("/faye" .. jsonp_query("[]", ""))
      assert.are.equal(200, st)
      assert.are.equal("/**/jsonpcallback([]);", body)
    end)

    it("answers null with an empty array", function()
      local st, _, body = get("/faye" .. jsonp_query("null", "cb"))
      assert.are.equal(200, st)
      assert.are.equal("/**/cb([]);", body)
    end)

    it("adds CORS headers when Origin is present", function()
      local st, h = get("/faye" .. jsonp_query("[]", "cb"), { Origin = "http://example.test" })
      assert.are.equal(200, st)
      assert.are.equal("http://example.test", h["access-control-allow-origin"])
      assert.are.equal("true", h["access-control-allow-credentials"])
    end)

    it("accepts dotted identifier callbacks", function()
      for _, cb in ipairs{ "a.b$._c", "$", "_x9", "A.B", "jQuery123_456" } do
        local st, _, body = get("/faye" .. jsonp_query("[]", cb))
        assert.are.equal(200, st, cb)
        assert.are.equal("/**/" .. cb .. "([]);", body)
      end
    end)

    it("rejects bad callback names with 400", function()
      for _, cb in ipairs{ "42", "alert(1)", "a b", "a..b", "a.", ".a", "a-b" } do
        local st, h, body = get("/faye" .. jsonp_query("[]", cb))
        assert_bad_request(st, h, body, "callback " .. cb)
      end
    end)

    it("escapes U+2028 and U+2029", function()
      local id = "a\226\128\168b\226\128\169c"
      local st, _, body = get("/faye" .. jsonp_query('[{"channel":"/foo","data":1,"id":"' .. id .. '"}]', "cb"))
      assert.are.equal(200, st)
      assert.falsy(body:find("\226\128\168", 1, true))
      assert.falsy(body:find("\226\128\169", 1, true))
      assert.truthy(body:find("a\\u2028b\\u2029c", 1, true), body)
      local r = H.decode(body:match("^/%*%*/cb%((.*)%);$"))
      assert.are.equal(id, r[1].id)
    end)

    it("works on any path under the mount", function()
      local st, _, body = get("/faye/x" .. jsonp_query(HS, "cb"))
      assert.are.equal(200, st)
      assert.truthy(body:match("^/%*%*/cb%("))
    end)

    it("answers 400 without a message, or with bad JSON", function()
      local st, h, body = get("/faye")
      assert_bad_request(st, h, body)
      st, h, body = get("/faye?jsonp=cb")
      assert_bad_request(st, h, body)
      st, h, body = get("/faye" .. jsonp_query("[{", "cb"), { Origin = "http://example.test" })
      assert_bad_request(st, h, body)
      st, h, body = get("/faye" .. jsonp_query('"str"', "cb"))
      assert_bad_request(st, h, body)
    end)

    it("runs a full session over JSONP", function()
      local function call(json)
        local st, _, body = get("/faye" .. jsonp_query(json, "cb"))
        assert.are.equal(200, st)
        return H.decode(body:match("^/%*%*/cb%((.*)%);$"))
      end
      local cid = call(HS)[1].clientId
      assert.is_true(call('[{"channel":"/meta/subscribe","clientId":"' .. cid .. '","subscription":"/jp","id":"2"}]')[1].successful)
      assert.is_true(call('[{"channel":"/jp","data":{"v":1},"id":"3"}]')[1].successful)
      local r = call('[{"channel":"/meta/connect","clientId":"' .. cid
        .. '","connectionType":"callback-polling","advice":{"timeout":0},"id":"4"}]')
      assert.are.equal(2, #r)
      assert.is_true(r[1].successful)
      assert.are.same({ channel = "/jp", data = { v = 1 }, id = "3" }, r[2])
    end)
  end)

  describe("CORS preflight", function()
    local PRE = {
      ["access-control-allow-credentials"] = "true",
      ["access-control-allow-headers"] = "Accept, Authorization, Content-Type, Pragma, X-Requested-With",
      ["access-control-allow-methods"] = "POST, GET",
      ["access-control-max-age"] = "86400",
    }

    local function check(st, h, body, origin)
      assert.are.equal(200, st)
      assert.are.equal("", body)
      for k, v in pairs(PRE) do assert.are.equal(v, h[k], k) end
      assert.are.equal(origin, h["access-control-allow-origin"])
    end

    it("echoes Origin", function()
      local st, h, body = H.request(port, "OPTIONS", "/faye",
        { Origin = "http://example.test", ["Access-Control-Request-Method"] = "POST" })
      check(st, h, body, "http://example.test")
    end)

    it("falls back to Referer, then *", function()
      local st, h, body = H.request(port, "OPTIONS", "/faye", { Referer = "http://ref.test/page" })
      check(st, h, body, "http://ref.test/page")
      st, h, body = H.request(port, "OPTIONS", "/faye/connect", {})
      check(st, h, body, "*")
    end)

    it("answers a POST carrying Access-Control-Request-Method: POST as a preflight", function()
      local st, h, body = H.request(port, "POST", "/faye",
        { ["Content-Type"] = "application/json", ["Access-Control-Request-Method"] = "POST",
          Origin = "http://example.test" }, HS)
      check(st, h, body, "http://example.test")
    end)
  end)

  describe("other methods", function()
    it("answers PUT and DELETE with 400 Bad request", function()
      for _, m in ipairs{ "PUT", "DELETE" } do
        local st, h, body = H.request(port, m, "/faye", { ["Content-Type"] = "application/json" }, HS)
        assert_bad_request(st, h, body, m)
      end
    end)
  end)
end)
