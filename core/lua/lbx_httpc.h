/*
 * lbx_httpc.h - bayeux.core.http_client(): the HTTP client for Lua
 * (lbx_httpc.c), what the network Bayeux client (lua/bayeux/client.lua)
 * sends its messages with.
 */
#ifndef LBX_HTTPC_H
#define LBX_HTTPC_H

#include <lua.h>

/* Registers http_client in the module table. */
void lbx_httpc_open(lua_State *L);

/* The state is closing: closes every client still open, so that their
 * connections and timers are freed before the loop is. */
void lbx_httpc_close_all(void);

#endif
