/*
 * lbx_fs.c - the two file-system questions the static file server asks:
 * core.realpath(path) and core.stat(path).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "lbx.h"

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

void lbx_fs_open(lua_State *L)
{
    lua_pushcfunction(L, l_realpath);
    lua_setfield(L, -2, "realpath");
    lua_pushcfunction(L, l_stat);
    lua_setfield(L, -2, "stat");
}
