/*
 * lbx_runtime.c - the Lua runtime of the module: its loop and main state,
 * logging, the later-turn queue, and lbx_invoke(), the one trampoline
 * through which C calls Lua (see lbx_runtime.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/later.h"
#include "base/log.h"
#include "net/conn.h"
#include "lua/lbx_runtime.h"

#define DEFAULT_BUDGET 200000000    /* instructions per Lua hook call */

static uv_loop_t *loop;
static lua_State *mainL;
static int budget = DEFAULT_BUDGET;
int lbx_closing;

uv_loop_t *lbx_loop(void)
{
    return loop;
}

lua_State *lbx_state(void)
{
    return mainL;
}

void lbx_log(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bx_log_kv(BX_LOG_ERROR, "lua", msg, NULL, 0);
}

/* ---- Deferred frees ---- */

void lbx_later(void (*fn)(void *ud), void *ud)
{
    bx_later(loop, fn, ud);
}

/* ---- The trampoline ---- */

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "instruction budget exceeded (a hook stuck in a loop?)");
}

int lbx_invoke(const char *what, lua_CFunction marshal, void *ud)
{
    lua_State *L = mainL;
    int top, rc;

    if (!L || lbx_closing)
        return -1;              /* the state is being closed: no more Lua */
    top = lua_gettop(L);

    if (!lua_checkstack(L, 8)) {
        lbx_log("%s: Lua stack overflow", what);
        return -1;
    }
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, marshal);
    lua_pushlightuserdata(L, ud);
    /* a hook stuck in a loop is stopped instead of wedging the server; a
     * nested invoke (C called back from Lua) restores the outer budget */
    lua_Hook old = lua_gethook(L);
    int oldmask = lua_gethookmask(L), oldcount = lua_gethookcount(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, budget);
    rc = lua_pcall(L, 1, 0, top + 1);
    lua_sethook(L, old, oldmask, oldcount);
    if (rc != LUA_OK) {
        lbx_log("%s: %s", what, lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_settop(L, top);
    return 0;
}

/* ---- Life ---- */

int lbx_runtime_open(lua_State *L)
{
    int made = 0;

    if (!loop) {
        loop = malloc(sizeof(*loop));
        if (!loop || uv_loop_init(loop) != 0) {
            free(loop);
            loop = NULL;
            return -1;
        }
        made = 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    mainL = lua_tothread(L, -1);
    lua_pop(L, 1);
    return made;
}

void lbx_set_budget(int n)
{
    budget = n;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void lbx_runtime_close(void)
{
    if (!loop)
        return;
    lbx_closing = 1;
    bx_later_drain(loop);
    bx_conn_cleanup(loop);
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0)
        lbx_log("loop still busy at exit");
    else
        free(loop);
    loop = NULL;
    mainL = NULL;
}
