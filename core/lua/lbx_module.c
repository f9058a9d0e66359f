/*
 * lbx_module.c - luaopen_bayeux_core: the module entry, run/stop, signals,
 * and the shutdown when the Lua state closes. The top of core/lua/: it
 * includes the other lbx_*.h, none includes it.
 */
#include <signal.h>
#include <stdlib.h>
#include "lua/lbx_fs.h"
#include "lua/lbx_httpc.h"
#include "lua/lbx_json.h"
#include "lua/lbx_proc.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_server.h"
#include "lua/lbx_timer.h"

static uv_signal_t sigint, sigterm;
static int stopping;
static char gc_key;

/* ---- run / stop ---- */

static void all_closed(void)
{
    uv_stop(lbx_loop());
}

static void begin_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    if (lbx_server_count() == 0)
        uv_stop(lbx_loop());
    else
        lbx_server_close_all(all_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    begin_stop();
}

/* bayeux.core.run(): runs the loop until stop() or a signal. */
static int l_run(lua_State *L)
{
    stopping = 0;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&sigint);
    uv_unref((uv_handle_t *)&sigterm);
    uv_run(lbx_loop(), UV_RUN_DEFAULT);
    uv_signal_stop(&sigint);
    uv_signal_stop(&sigterm);
    (void)L;
    return 0;
}

/* bayeux.core.stop(): closes the servers (held connects answered), then
 * makes run() return. */
static int l_stop(lua_State *L)
{
    (void)L;
    begin_stop();
    return 0;
}

/* bayeux.core.now(): the loop's clock in seconds. */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)uv_now(lbx_loop()) / 1000.0);
    return 1;
}

/* bayeux.core.budget(n): instructions a Lua hook may run per call. */
static int l_budget(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0 && n <= 0x7fffffff, 1, "out of range");
    lbx_set_budget((int)n);
    return 0;
}

/* Runs when the Lua state closes: everything is shut and the loop closed,
 * so a sanitizer run ends with no leak. */
static int l_gc(lua_State *L)
{
    (void)L;
    if (!lbx_loop())
        return 0;
    lbx_closing = 1;
    /* network clients first: their connections close in a turn or two */
    lbx_httpc_close_all();
    lbx_proc_close_all();
    for (int i = 0; i < 4; i++)
        uv_run(lbx_loop(), UV_RUN_NOWAIT);
    if (lbx_server_count() > 0) {
        lbx_server_close_all(all_closed);
        uv_run(lbx_loop(), UV_RUN_DEFAULT);
    }
    lbx_runtime_close();
    return 0;
}

static const luaL_Reg funcs[] = {
    { "run", l_run },
    { "stop", l_stop },
    { "now", l_now },
    { "budget", l_budget },
    { NULL, NULL }
};

int luaopen_bayeux_core(lua_State *L);

int luaopen_bayeux_core(lua_State *L)
{
    int made = lbx_runtime_open(L);
    if (made < 0)
        return luaL_error(L, "cannot create the event loop");
    if (made) {
        uv_signal_init(lbx_loop(), &sigint);
        uv_signal_init(lbx_loop(), &sigterm);
        signal(SIGPIPE, SIG_IGN);
        /* tie the loop's life to the state's: a sentinel whose __gc shuts
         * everything down when lua_close runs */
        lua_newuserdatauv(L, 0, 0);
        lua_newtable(L);
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &gc_key);
    }
    luaL_newlib(L, funcs);
    lbx_json_open(L);
    lbx_timer_open(L);
    lbx_server_open(L);
    lbx_fs_open(L);
    lbx_httpc_open(L);
    lbx_proc_open(L);
    return 1;
}
