/*
 * lbx_module.c - luaopen_bayeux_core: the module entry, run/stop, signals,
 * and the shutdown when the Lua state closes. The top of core/lua/: it
 * includes the other lbx_*.h, none includes it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "base/log.h"
#include "base/metrics.h"
#include "lua/lbx_crypto.h"
#include "lua/lbx_fs.h"
#include "lua/lbx_httpc.h"
#include "lua/lbx_json.h"
#include "lua/lbx_proc.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_server.h"
#include "lua/lbx_timer.h"
#include "net/tls.h"
#include "workers.h"

static uv_signal_t sigint, sigterm, sighup;
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

/* SIGHUP: the TLS listeners load their certificate files again; the
 * connections already open keep theirs (net/tls.h). */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    bx_tls_reload_all();
}

/* bayeux.core.run(): runs the loop until stop() or a signal. */
static int l_run(lua_State *L)
{
    stopping = 0;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sighup, on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&sigint);
    uv_unref((uv_handle_t *)&sigterm);
    uv_unref((uv_handle_t *)&sighup);
    uv_run(lbx_loop(), UV_RUN_DEFAULT);
    uv_signal_stop(&sigint);
    uv_signal_stop(&sigterm);
    uv_signal_stop(&sighup);
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

/* bayeux.core.log(level, component, msg [, fields]): one log line (base/log.h).
 * `fields` is a table of key = value (values converted with tostring),
 * written in key order so a line reads the same each time. An unknown
 * level is misuse. */
static int l_log(lua_State *L)
{
    int level = bx_log_parse_level(luaL_checkstring(L, 1));
    const char *comp = luaL_checkstring(L, 2);
    const char *msg = luaL_checkstring(L, 3);
    const char *kv[2 * 32];
    size_t n = 0;

    luaL_argcheck(L, level >= 0, 1, "level must be error, warn, info or debug");
    if (!bx_log_enabled(level))
        return 0;
    if (lua_istable(L, 4)) {
        /* collect the keys, sort them on the stack, then the values */
        lua_settop(L, 4);
        lua_newtable(L);                                    /* 5: keys */
        lua_Integer nk = 0;
        lua_pushnil(L);
        luaL_checkstack(L, 2 * 32 + 8, NULL);
        while (lua_next(L, 4)) {
            lua_pop(L, 1);
            if (nk < 32 && lua_type(L, -1) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, 5, ++nk);
            }
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, 5);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        for (lua_Integer i = 1; i <= nk; i++) {
            lua_rawgeti(L, 5, i);
            kv[2 * n] = lua_tostring(L, -1);
            lua_pushvalue(L, -1);
            lua_gettable(L, 4);
            kv[2 * n + 1] = luaL_tolstring(L, -1, NULL);   /* stays on the stack */
            n++;
        }
    }
    bx_log_kv(level, comp, msg, kv, n);
    return 0;
}

/* bayeux.core.log_config(level, format): either may be nil. Returns true,
 * or nil and an error naming what is wrong (nothing changed then). */
static int l_log_config(lua_State *L)
{
    const char *level = luaL_optstring(L, 1, NULL);
    const char *format = luaL_optstring(L, 2, NULL);

    if (level && bx_log_parse_level(level) < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "log level must be error, warn, info or debug, not '%s'", level);
        return 2;
    }
    if (format && strcmp(format, "plain") != 0 && strcmp(format, "json") != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "log format must be plain or json, not '%s'", format);
        return 2;
    }
    if (level)
        bx_log_set_level(level);
    if (format)
        bx_log_set_format(format);
    lua_pushboolean(L, 1);
    return 1;
}

/* bayeux.core.ext_error(): counts an extension that raised (the Lua chain
 * runner answers for it itself). */
static int l_ext_error(lua_State *L)
{
    (void)L;
    bx_metrics.ext_errors++;
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

/* bayeux.core.workers(argv, n, host, port) -> true | nil, err: runs N
 * copies of the command `argv` (a list of strings) on one port until
 * SIGTERM or SIGINT (workers.h). */
static int l_workers(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *host = luaL_checkstring(L, 3);
    lua_Integer port = luaL_checkinteger(L, 4);
    lua_Integer argc = (lua_Integer)luaL_len(L, 1);
    char err[256];

    luaL_argcheck(L, argc > 0 && argc < 1000, 1, "a command");
    luaL_argcheck(L, n > 0 && n <= 256, 2, "out of range");
    luaL_argcheck(L, port >= 0 && port <= 65535, 4, "port out of range");
    const char **argv = lua_newuserdatauv(L, ((size_t)argc + 1) * sizeof(*argv), 0);
    for (lua_Integer i = 0; i < argc; i++) {
        lua_geti(L, 1, i + 1);
        argv[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1);          /* the table keeps the string */
    }
    argv[argc] = NULL;
    int rc = bx_workers_run(lbx_loop(), argv, (int)n, host, (int)port, err, sizeof(err));
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg funcs[] = {
    { "workers", l_workers },
    { "run", l_run },
    { "stop", l_stop },
    { "now", l_now },
    { "budget", l_budget },
    { "log", l_log },
    { "log_config", l_log_config },
    { "ext_error", l_ext_error },
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
        uv_signal_init(lbx_loop(), &sighup);
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
    lbx_crypto_open(L);
    lbx_httpc_open(L);
    lbx_proc_open(L);
    return 1;
}
