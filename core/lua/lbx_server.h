/*
 * lbx_server.h - the bayeux.server userdata (lbx_server.c).
 */
#ifndef LBX_SERVER_H
#define LBX_SERVER_H

#include <lua.h>

/* Registers the server type and its constructor in the module table. */
void lbx_server_open(lua_State *L);

/* Closes every open server (signal or bayeux.stop()); `done` runs once all
 * are closed. */
void lbx_server_close_all(void (*done)(void));

/* Number of servers not yet fully closed. */
int lbx_server_count(void);

#endif
