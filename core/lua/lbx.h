/*
 * lbx.h - shared by the core/lbx_*.c files, the only ones that touch Lua.
 *
 * There is one loop and one main lua_State per loaded module. C enters Lua
 * only through lbx_invoke(): a C "marshal" function runs under lua_pcall
 * with a traceback handler, so pushing arguments (which may raise on OOM)
 * never longjmps through libuv, and errors are logged, never fatal.
 */
#ifndef LBX_H
#define LBX_H

#include <lua.h>
#include <lauxlib.h>
#include <jansson.h>
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

/* Calls fn(ud) once on a later loop turn (before the next poll), or when
 * the Lua state closes if the loop never turns again (lbx_closing is then
 * set: fn must not call Lua). The one way the Lua layer frees an object
 * whose destruction was asked for inside a call into Lua that still uses
 * it (an in-process client's sink unbound from its own message callback). */
void lbx_later(void (*fn)(void *ud), void *ud);

/* Logs a line to stderr as "bayeux: <msg>". */
void lbx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Pushes the Lua value of `j` (borrowed): objects and arrays become tables
 * marked with the object/array metatables, null becomes bayeux.null. Raises
 * on excessive depth. */
void lbx_push_json(lua_State *L, const json_t *j);

/* Converts the value at `idx` to a new JSON reference; raises a Lua error
 * on values JSON cannot hold (functions, cycles, too deep). */
json_t *lbx_check_json(lua_State *L, int idx);

/* Like lbx_check_json, for callers that may still raise afterwards: the
 * new value is left in a box pushed on the stack, whose __gc frees it
 * unless the caller has taken it out (read *box, then set it to NULL). */
json_t **lbx_check_json_boxed(lua_State *L, int idx);

/* Registers the JSON helpers (null, array, object marks) in the module
 * table at the top of the stack. */
void lbx_json_open(lua_State *L);

struct bx_http_req_s;

/* Pushes a table describing an HTTP request: method, path, query, remote,
 * headers (lower-case names) and, with `with_body`, body. */
void lbx_push_request(lua_State *L, const struct bx_http_req_s *req, int with_body);

/* Registers the server type and its constructor in the module table. */
void lbx_server_open(lua_State *L);

/* Registers timers in the module table. */
void lbx_timer_open(lua_State *L);

/* Registers realpath and stat (lbx_fs.c) in the module table. */
void lbx_fs_open(lua_State *L);

/* Closes every open server (signal or bayeux.stop()); `done` runs once all
 * are closed. */
void lbx_server_close_all(void (*done)(void));

/* Number of servers not yet fully closed. */
int lbx_server_count(void);

#endif
