rockspec_format = "3.0"
package = "bayeux"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
    summary = "A Bayeux (Faye-compatible) pub/sub server: C core on libuv, Lua on top",
    license = "MIT",
}
dependencies = { "lua >= 5.4", "lpeg >= 1.0" }
external_dependencies = {
    LIBUV = { header = "uv.h", library = "uv" },
    JANSSON = { header = "jansson.h", library = "jansson" },
    HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
    WSLAY = { header = "wslay/wslay.h", library = "wslay" },
    OPENSSL = { header = "openssl/sha.h", library = "crypto" },
    ZLIB = { header = "zlib.h", library = "z" },
}
build = {
    type = "make",
    makefile = "Makefile",
    build_target = "all",
    install_target = "rock-install",
    build_variables = {
        LUA_INCDIR = "$(LUA_INCDIR)", LIBFLAG = "$(LIBFLAG)", CFLAGS = "$(CFLAGS)", LUA = "$(LUA)",
    },
    install_variables = {
        INST_LIBDIR = "$(LIBDIR)", INST_LUADIR = "$(LUADIR)", INST_BINDIR = "$(BINDIR)",
    },
}
