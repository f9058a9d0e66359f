/*
 * lbx_request.c - an HTTP request seen from Lua (see lbx_request.h).
 */
#include <lauxlib.h>
#include "lua/lbx_request.h"

void lbx_push_request(lua_State *L, const bx_http_req_t *req, int with_body)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, req->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path.base, req->path.len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, req->query.base, req->query.len);
    lua_setfield(L, -2, "query");
    lua_pushstring(L, req->remote_addr ? req->remote_addr : "");
    lua_setfield(L, -2, "remote");
    if (with_body) {
        lua_pushlstring(L, req->body.data ? req->body.data : "", req->body.len);
        lua_setfield(L, -2, "body");
    }
    lua_createtable(L, 0, (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t j = 0; j < req->headers[i].name.len; j++) {
            char c = req->headers[i].name.base[j];
            luaL_addchar(&b, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
        }
        luaL_pushresult(&b);
        lua_pushlstring(L, req->headers[i].value.base, req->headers[i].value.len);
        lua_settable(L, -3);
    }
    lua_setfield(L, -2, "headers");
}
