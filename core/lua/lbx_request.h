/*
 * lbx_request.h - an HTTP request seen from Lua (lbx_request.c), for the server and the
 * extensions alike.
 */
#ifndef LBX_REQUEST_H
#define LBX_REQUEST_H

#include <lua.h>
#include "net/http.h"

/* Pushes a table describing an HTTP request: method, path, query, remote,
 * headers (lower-case names) and, with `with_body`, body. */
void lbx_push_request(lua_State *L, const bx_http_req_t *req, int with_body);

#endif
