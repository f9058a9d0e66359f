/*
 * lbx_json.h - JSON <-> Lua (lbx_json.c): the null sentinel, the array and object marks.
 */
#ifndef LBX_JSON_H
#define LBX_JSON_H

#include <lua.h>
#include <jansson.h>

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

/* Whether the value at `idx` converts to a JSON value equal to `j`
 * (borrowed): the same kinds, the same keys, the same scalars, bit for bit.
 * Lets a caller keep `j` instead of converting a value that came back
 * unchanged. A value that would not convert (a function, a cycle) is not
 * the same. Allocates nothing (the stack grows only through
 * lua_checkstack, which answers "not the same" when it cannot), so it
 * does not raise. */
int lbx_json_same(lua_State *L, int idx, const json_t *j);

/* Registers the JSON helpers (null, array, object marks) in the module
 * table at the top of the stack. */
void lbx_json_open(lua_State *L);

#endif
