/*
 * lbx_runtime.h - the bottom of core/lua/, the only folder that touches
 * Lua: the loop, the main state, logging, the later-turn queue and the one
 * call helper. Every lbx_*.c includes it; it includes no other lbx_*.h.
 *
 * There is one loop and one main lua_State per loaded module. C enters Lua
 * only through lbx_invoke(): a C "marshal" function runs under lua_pcall
 * with a traceback handler, so pushing arguments (which may raise on OOM)
 * never longjmps through libuv, and errors are logged, never fatal.
 */
#ifndef LBX_RUNTIME_H
#define LBX_RUNTIME_H

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

/* The module's loop and main state. */
uv_loop_t *lbx_loop(void);
lua_State *lbx_state(void);

/* Set once the Lua state is closing: C must not call Lua any more. */
extern int lbx_closing;

/* Runs marshal(L) with `ud` as a light userdata at index 1, protected,
 * under the instruction budget. Returns 0, or -1 after logging the error
 * with its traceback prefixed by `what`. */
int lbx_invoke(const char *what, lua_CFunction marshal, void *ud);

/* Calls fn(ud) once on a later loop turn (before the next poll; the core's
 * one queue, base/later.h), or when
 * the Lua state closes if the loop never turns again (lbx_closing is then
 * set: fn must not call Lua). The one way the Lua layer frees an object
 * whose destruction was asked for inside a call into Lua that still uses
 * it (an in-process client's sink unbound from its own message callback). */
void lbx_later(void (*fn)(void *ud), void *ud);

/* Logs an error line from the Lua layer (component "lua", base/log.h). */
void lbx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sets up the runtime for the state `L` (the loop on first use). Returns
 * 1 if the loop was made now, 0 if it existed, -1 if it cannot be. */
int lbx_runtime_open(lua_State *L);

/* Sets the instruction budget of one lbx_invoke (bayeux.core.budget): the
 * instructions a call may run once the watchdog finds it running long. */
void lbx_set_budget(int n);

/* The state is closing and the servers are closed: runs what is still
 * queued for a later turn, closes every handle and the loop. */
void lbx_runtime_close(void);

#endif
