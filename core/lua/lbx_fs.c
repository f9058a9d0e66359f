/*
 * lbx_fs.c - what the static file server asks of C: core.realpath(path),
 * core.stat(path), and HTTP dates, core.http_date(t) and
 * core.parse_http_date(s), made by the one helper the HTTP layer uses.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <lauxlib.h>
#include "net/http.h"
#include "lua/lbx_fs.h"

/* core.realpath(path) -> the canonical absolute path (symlinks resolved),
 * or nil, error message. A path holding a NUL byte is refused. */
static int l_realpath(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    char out[PATH_MAX];         /* not malloc'd: pushing it may raise */

    if (memchr(path, '\0', len)) {
        lua_pushnil(L);
        lua_pushliteral(L, "path contains a NUL byte");
        return 2;
    }
    if (!realpath(path, out)) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushstring(L, out);
    return 1;
}

/* core.stat(path) -> { size = bytes, mtime = seconds, type = "file" |
 * "directory" | "other" } following symlinks, or nil, error message. */
static int l_stat(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    struct stat st;

    if (memchr(path, '\0', len)) {
        lua_pushnil(L);
        lua_pushliteral(L, "path contains a NUL byte");
        return 2;
    }
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
    lua_setfield(L, -2, "type");
    return 1;
}

/* core.http_date(seconds) -> "Sun, 06 Nov 1994 08:49:37 GMT", whatever
 * LC_TIME says (os.date's names follow it). */
static int l_http_date(lua_State *L)
{
    char out[BX_HTTP_DATE_SIZE];

    bx_http_date_format((time_t)luaL_checkinteger(L, 1), out);
    lua_pushstring(L, out);
    return 1;
}

/* core.parse_http_date(text) -> seconds since the epoch, or nil when `text`
 * is not an IMF-fixdate. */
static int l_parse_http_date(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    time_t t;

    if (bx_http_date_parse(text, len, &t) != 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)t);
    return 1;
}

void lbx_fs_open(lua_State *L)
{
    lua_pushcfunction(L, l_realpath);
    lua_setfield(L, -2, "realpath");
    lua_pushcfunction(L, l_stat);
    lua_setfield(L, -2, "stat");
    lua_pushcfunction(L, l_http_date);
    lua_setfield(L, -2, "http_date");
    lua_pushcfunction(L, l_parse_http_date);
    lua_setfield(L, -2, "parse_http_date");
}
