/*
 * lbx_json.c - JSON values <-> Lua values.
 *
 * Decoded objects and arrays get a marker metatable so that they keep their
 * kind on the way back ({} stays an object, an empty array stays []); JSON
 * null is bayeux.null, a light userdata NULL (lua-cjson's convention).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "lua/lbx_json.h"

#define MAX_DEPTH 128

static char array_key, object_key;

static void push_mark(lua_State *L, char *key)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
}

static void push_json(lua_State *L, const json_t *j, int depth)
{
    size_t i;
    json_t *v;

    if (depth > MAX_DEPTH)
        luaL_error(L, "JSON nested too deeply");
    luaL_checkstack(L, 4, "JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(j));
        /* keys by length, set raw: the table has no metatable yet, and
         * lua_setfield would measure and look up each key's C string */
        for (void *it = json_object_iter((json_t *)j); it;
             it = json_object_iter_next((json_t *)j, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            push_json(L, json_object_iter_value(it), depth + 1);
            lua_rawset(L, -3);
        }
        push_mark(L, &object_key);
        lua_setmetatable(L, -2);
        break;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(j), 0);
        json_array_foreach(j, i, v) {
            push_json(L, v, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        push_mark(L, &array_key);
        lua_setmetatable(L, -2);
        break;
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

void lbx_push_json(lua_State *L, const json_t *j)
{
    push_json(L, j, 0);
}

/* Whether the table at `idx` is encoded as an array: marked so, or with a
 * sequence part and no other keys. */
static int is_array(lua_State *L, int idx)
{
    int kind = 0;
    if (lua_getmetatable(L, idx)) {
        push_mark(L, &array_key);
        kind = lua_rawequal(L, -1, -2) ? 1 : 0;
        lua_pop(L, 1);
        push_mark(L, &object_key);
        if (lua_rawequal(L, -1, -2))
            kind = -1;
        lua_pop(L, 2);
    }
    if (kind)
        return kind > 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    if (n == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    return count == n;
}

/* Converts a non-table value; raises on values JSON cannot hold. Nothing
 * is allocated when it raises. */
static json_t *scalar(lua_State *L, int idx)
{
    json_t *j;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx)))
            luaL_error(L, "cannot encode %f as JSON", lua_tonumber(L, idx));
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        j = json_stringn(s, len);
        if (!j)
            luaL_error(L, "string is not valid UTF-8");
        return j;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return json_null();
        break;
    default:
        break;
    }
    return luaL_error(L, "cannot encode a %s as JSON", luaL_typename(L, idx)), NULL;
}

static json_t *empty_for(lua_State *L, int idx)
{
    json_t *j = is_array(L, idx) ? json_array() : json_object();
    if (!j)
        luaL_error(L, "not enough memory");
    return j;
}

/* Whether s[0..n) is UTF-8 as jansson accepts it: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len, min;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* Adds `v` (new) to `into`. jansson frees `v` when it refuses it, so the
 * caller must not touch `v` after a failure: this raises instead of
 * returning one. The key is checked before anything is made for it. */
static void add(lua_State *L, json_t *into, const char *key, size_t klen, json_t *v)
{
    int rc = key ? json_object_setn_new_nocheck(into, key, klen, v)
                 : json_array_append_new(into, v);
    if (rc != 0)
        luaL_error(L, "not enough memory");
}

/* Fills `into` (already owned by a reachable parent, so nothing leaks if a
 * conversion raises) from the table at `idx`. */
static void fill(lua_State *L, int idx, json_t *into, int depth)
{
    if (depth > MAX_DEPTH)
        luaL_error(L, "value nested too deeply for JSON (or a cycle)");
    luaL_checkstack(L, 6, "value nested too deeply");
    if (json_is_array(into)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            if (lua_istable(L, -1)) {
                json_t *c = empty_for(L, lua_gettop(L));
                add(L, into, NULL, 0, c);       /* c is into's from here on */
                fill(L, lua_gettop(L), c, depth + 1);
            } else {
                add(L, into, NULL, 0, scalar(L, -1));
            }
            lua_pop(L, 1);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int vt = lua_gettop(L);
        const char *key;
        size_t klen;
        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tolstring(L, -2, &klen);
        } else if (lua_type(L, -2) == LUA_TNUMBER) {
            lua_pushvalue(L, -2);
            key = lua_tolstring(L, -1, &klen);  /* converts the copy, not the key */
        } else {
            lua_pop(L, 1);
            continue;
        }
        if (!utf8_valid((const unsigned char *)key, klen))
            luaL_error(L, "object key is not valid UTF-8");
        if (lua_istable(L, vt)) {
            json_t *c = empty_for(L, vt);
            add(L, into, key, klen, c);         /* c is into's from here on */
            fill(L, vt, c, depth + 1);
        } else {
            add(L, into, key, klen, scalar(L, vt));
        }
        lua_settop(L, vt - 1);
    }
}

/* lbx_json_same(), `depth` levels down. Mirrors the conversion above:
 * what it would make of each value is compared, nothing is made. */
static int same(lua_State *L, int idx, const json_t *j, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_is_null(j);
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == NULL && json_is_null(j);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? json_is_true(j) : json_is_false(j);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_is_integer(j) &&
                   json_integer_value(j) == (json_int_t)lua_tointeger(L, idx);
        if (json_is_real(j)) {
            double a = lua_tonumber(L, idx), b = json_real_value(j);
            return memcmp(&a, &b, sizeof(a)) == 0;  /* -0.0 is not 0.0 */
        }
        return 0;
    case LUA_TSTRING: {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        return json_is_string(j) && json_string_length(j) == n &&
               memcmp(str, json_string_value(j), n) == 0;
    }
    case LUA_TTABLE:
        break;
    default:
        return 0;
    }
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return 0;
    if (is_array(L, idx)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (!json_is_array(j) || json_array_size(j) != (size_t)n)
            return 0;
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            int ok = same(L, lua_gettop(L), json_array_get(j, (size_t)i - 1), depth + 1);
            lua_pop(L, 1);
            if (!ok)
                return 0;
        }
        return 1;
    }
    if (!json_is_object(j))
        return 0;
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int vt = lua_gettop(L);
        size_t klen = 0;
        const char *key = NULL;
        json_t *v = NULL;
        /* a key that is not a string would be converted or skipped: not
         * worth following, the conversion decides */
        if (lua_type(L, vt - 1) == LUA_TSTRING) {
            key = lua_tolstring(L, vt - 1, &klen);
            v = json_object_getn(j, key, klen);
        }
        if (!v || !same(L, vt, v, depth + 1)) {
            lua_settop(L, vt - 2);
            return 0;
        }
        count++;
        lua_settop(L, vt - 1);
    }
    return count == json_object_size(j);
}

int lbx_json_same(lua_State *L, int idx, const json_t *j)
{
    return j && same(L, lua_absindex(L, idx), j, 0);
}

json_t **lbx_check_json_boxed(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    /* the root sits in a box whose __gc frees it should a conversion raise */
    json_t **box = lua_newuserdatauv(L, sizeof(json_t *), 0);
    *box = NULL;
    luaL_setmetatable(L, "bayeux.jsonbox");
    if (!lua_istable(L, idx)) {
        *box = scalar(L, idx);
        return box;
    }
    *box = empty_for(L, idx);
    fill(L, idx, *box, 0);
    return box;
}

json_t *lbx_check_json(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx))
        return scalar(L, idx);
    json_t **box = lbx_check_json_boxed(L, idx);
    json_t *j = *box;
    *box = NULL;
    lua_pop(L, 1);
    return j;
}

static int box_gc(lua_State *L)
{
    json_t **box = luaL_checkudata(L, 1, "bayeux.jsonbox");
    if (*box)
        json_decref(*box);
    *box = NULL;
    return 0;
}

/* bayeux.core.encode(v): the JSON text of a Lua value. */
static int l_encode(lua_State *L)
{
    json_t **box = lbx_check_json_boxed(L, 1);
    size_t n = json_dumpb(*box, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    luaL_Buffer b;
    /* dumped straight into Lua memory: a raise leaks nothing (the box
     * frees the value) */
    char *p = luaL_buffinitsize(L, &b, n);
    json_dumpb(*box, p, n, JSON_COMPACT | JSON_ENCODE_ANY);
    luaL_pushresultsize(&b, n);
    return 1;
}

/* bayeux.core.decode(s): a Lua value, or nil and an error message. */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    json_error_t err;
    /* pushing can raise (depth): the box frees the value either way */
    json_t **box = lua_newuserdatauv(L, sizeof(json_t *), 0);
    *box = NULL;
    luaL_setmetatable(L, "bayeux.jsonbox");
    *box = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!*box) {
        lua_pushnil(L);
        lua_pushfstring(L, "invalid JSON: %s at position %d", err.text, err.position);
        return 2;
    }
    lbx_push_json(L, *box);
    return 1;
}

void lbx_json_open(lua_State *L)
{
    luaL_newmetatable(L, "bayeux.jsonbox");
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "array_mt");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
    lua_newtable(L);
    lua_pushliteral(L, "object");
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "object_mt");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &object_key);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
}
