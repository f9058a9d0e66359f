/*
 * lbx_ext.h - Lua extensions behind the server's extension hooks.
 */
#ifndef LBX_EXT_H
#define LBX_EXT_H

#include <lua.h>
#include "bayeux/hub.h"

typedef struct lext lext_t;

/* Creates the extension state of a server (no hooks installed yet). */
lext_t *lbx_ext_new(bx_hub_t *s);

/* Installs the Lua chain runner at `runner_idx` and the hooks wanted: a
 * stage with no extension keeps the C fast path. `deadline` (seconds, 0 =
 * keep) bounds how long a message may wait for an extension's callback. */
void lbx_ext_configure(lua_State *L, lext_t *x, int runner_idx, int incoming, int outgoing,
                       double deadline);

/* Forgets every message still inside an extension (server closing). */
void lbx_ext_abandon(void *x);

/* Frees the state. */
void lbx_ext_free(lext_t *x);

/* Registers the continuation metatable. */
void lbx_ext_open(lua_State *L);

#endif
