/*
 * lbx_core.c - luaopen_bayeux_core: the loop, run/stop, signals, and the
 * one trampoline through which C calls Lua.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/conn.h"
#include "lua/lbx.h"

#define DEFAULT_BUDGET 200000000    /* instructions per Lua hook call */

static uv_loop_t *loop;
static lua_State *mainL;
static uv_signal_t sigint, sigterm;
static int stopping;
static int budget = DEFAULT_BUDGET;
static char gc_key;
int lbx_closing;

typedef struct later {
    struct later *next;
    void (*fn)(void *ud);
    void *ud;
} later_t;

static uv_idle_t later_idle;
static later_t *later_head, **later_tail = &later_head;

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
    va_list ap;
    fputs("bayeux: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

/* ---- Deferred frees ---- */

/* Runs everything queued so far; what those calls queue waits for the next
 * turn. */
static void run_later(void)
{
    later_t *l = later_head;
    later_head = NULL;
    later_tail = &later_head;
    while (l) {
        later_t *next = l->next;
        l->fn(l->ud);
        free(l);
        l = next;
    }
}

static void on_later(uv_idle_t *h)
{
    uv_idle_stop(h);
    run_later();
}

void lbx_later(void (*fn)(void *ud), void *ud)
{
    later_t *l = bx_calloc(1, sizeof(*l));
    l->fn = fn;
    l->ud = ud;
    *later_tail = l;
    later_tail = &l->next;
    uv_idle_start(&later_idle, on_later);
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

/* ---- run / stop ---- */

static void all_closed(void)
{
    uv_stop(loop);
}

static void begin_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    if (lbx_server_count() == 0)
        uv_stop(loop);
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
    uv_run(loop, UV_RUN_DEFAULT);
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
    lua_pushnumber(L, (lua_Number)uv_now(loop) / 1000.0);
    return 1;
}

/* bayeux.core.budget(n): instructions a Lua hook may run per call. */
static int l_budget(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0 && n <= 0x7fffffff, 1, "out of range");
    budget = (int)n;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Runs when the Lua state closes: everything is shut and the loop closed,
 * so a sanitizer run ends with no leak. */
static int l_gc(lua_State *L)
{
    (void)L;
    if (!loop)
        return 0;
    lbx_closing = 1;
    if (lbx_server_count() > 0) {
        lbx_server_close_all(all_closed);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    while (later_head)
        run_later();
    bx_conn_cleanup(loop);
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0)
        lbx_log("loop still busy at exit");
    else
        free(loop);
    loop = NULL;
    mainL = NULL;
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
    if (!loop) {
        loop = malloc(sizeof(*loop));
        if (!loop || uv_loop_init(loop) != 0)
            return luaL_error(L, "cannot create the event loop");
        uv_signal_init(loop, &sigint);
        uv_signal_init(loop, &sigterm);
        uv_idle_init(loop, &later_idle);
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    mainL = lua_tothread(L, -1);
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    lbx_json_open(L);
    lbx_timer_open(L);
    lbx_server_open(L);
    lbx_fs_open(L);
    return 1;
}
