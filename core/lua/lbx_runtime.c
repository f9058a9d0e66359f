/*
 * lbx_runtime.c - the Lua runtime of the module: its loop and main state,
 * logging, the later-turn queue, and lbx_invoke(), the one trampoline
 * through which C calls Lua (see lbx_runtime.h).
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base/later.h"
#include "base/log.h"
#include "net/conn.h"
#include "lua/lbx_runtime.h"

#define DEFAULT_BUDGET 200000000    /* instructions per Lua hook call */
#define WATCH_MS 200                /* how often the watchdog looks */
#define WATCH_SIGNAL (SIGRTMAX - 2) /* its tick, sent to the Lua thread only */

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

/* ---- The watchdog ----
 *
 * A count hook makes the VM trap at every instruction (a few thousand
 * host instructions for an extension's message), so calls run without
 * one. A timer ticks on the Lua thread every WATCH_MS: a call found
 * running at two ticks in a row (so for WATCH_MS at least) gets the count
 * hook then, and is stopped once it has run `budget` more instructions.
 * The tick is a signal, as lua.c stops a script on SIGINT: setting a hook
 * from it is safe because it interrupts the thread that runs Lua. */
static volatile sig_atomic_t watch_in_call;     /* an outermost invoke runs */
static volatile sig_atomic_t watch_seq;         /* counts outermost invokes */
static volatile sig_atomic_t watch_seen = -1;   /* watch_seq at the last tick */
static volatile sig_atomic_t watch_armed;       /* the count hook is set */
static volatile sig_atomic_t watch_quiet;       /* ticks in a row with no call */
static volatile sig_atomic_t watch_asleep;      /* the timer is stopped */
static int watch_depth;                         /* invokes on the stack */
static int watch_made;
static timer_t watch_timer;
static const struct itimerspec watch_every = {
    .it_interval = { .tv_sec = WATCH_MS / 1000, .tv_nsec = (WATCH_MS % 1000) * 1000000L },
    .it_value = { .tv_sec = WATCH_MS / 1000, .tv_nsec = (WATCH_MS % 1000) * 1000000L },
};

static void watch_tick(int sig)
{
    static const struct itimerspec stop;
    (void)sig;
    if (!watch_in_call || !mainL) {
        /* an idle server is not woken five times a second: the timer
         * stops after a second without a call, and the next call starts
         * it again */
        watch_seen = -1;
        if (++watch_quiet >= 1000 / WATCH_MS && !watch_asleep) {
            timer_settime(watch_timer, 0, &stop, NULL);
            watch_asleep = 1;
        }
        return;
    }
    watch_quiet = 0;
    if (watch_seen == watch_seq && !watch_armed) {
        watch_armed = 1;
        lua_sethook(mainL, budget_hook, LUA_MASKCOUNT, budget);
    }
    watch_seen = watch_seq;
}

/* Starts the ticks, aimed at the calling thread (the one that runs Lua). */
static void watch_start(void)
{
    struct sigaction sa;
    struct sigevent ev;

    watch_made = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watch_tick;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = WATCH_SIGNAL;
    ev._sigev_un._tid = gettid();
    if (sigaction(WATCH_SIGNAL, &sa, NULL) != 0 ||
        timer_create(CLOCK_MONOTONIC, &ev, &watch_timer) != 0) {
        lbx_log("no watchdog timer; Lua calls run under the count hook throughout");
        watch_made = -1;
        return;
    }
    watch_asleep = 0;
    timer_settime(watch_timer, 0, &watch_every, NULL);
}

static void watch_stop(void)
{
    if (watch_made == 1)
        timer_delete(watch_timer);
    watch_made = 0;
}

/* coroutine.create and coroutine.wrap, wrapped. The watchdog arms the
 * main thread only, so a coroutine that loops would run free: a coroutine
 * is made with the budget's count hook instead (lua_newthread copies the
 * creating thread's hook), as when every call from C ran under it. The
 * creator's own hook is set just for the call, with the tick blocked so
 * that an arming meanwhile is not undone. */
static int co_hooked(lua_State *L)
{
    int n = lua_gettop(L), rc;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_gethook(L) || watch_depth == 0) {
        /* armed, or a coroutine: the new one inherits; outside a call
         * from C (an app's main chunk) nothing is budgeted */
        lua_call(L, n, LUA_MULTRET);
        return lua_gettop(L);
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, WATCH_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, budget);
    rc = lua_pcall(L, n, LUA_MULTRET, 0);
    lua_sethook(L, NULL, 0, 0);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

static void co_wrap(lua_State *L, const char *name)
{
    if (lua_getfield(L, -1, name) != LUA_TFUNCTION || lua_tocfunction(L, -1) == co_hooked) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcclosure(L, co_hooked, 1);
    lua_setfield(L, -2, name);
}

/* Wraps the coroutine library's constructors (once per state). */
static void co_install(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (lua_getfield(L, -1, "coroutine") == LUA_TTABLE) {
        co_wrap(L, "create");
        co_wrap(L, "wrap");
    }
    lua_pop(L, 2);
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
    /* a hook stuck in a loop is stopped instead of wedging the server:
     * the watchdog arms the budget once a call runs long; a nested invoke
     * (C called back from Lua) runs under the outer one's */
    if (!watch_made)
        watch_start();
    if (watch_depth++ == 0) {
        if (watch_made < 0)
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, budget);
        watch_seq = (watch_seq + 1) & 0x3fffffff;
        watch_in_call = 1;
        /* after in_call is set: a tick from here on keeps the timer going */
        if (watch_asleep) {
            watch_asleep = 0;
            watch_quiet = 0;
            timer_settime(watch_timer, 0, &watch_every, NULL);
        }
    }
    rc = lua_pcall(L, 1, 0, top + 1);
    if (--watch_depth == 0) {
        watch_in_call = 0;      /* first: a tick from here on arms nothing */
        if (watch_armed || watch_made < 0)
            lua_sethook(L, NULL, 0, 0);
        watch_armed = 0;
    }
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
    co_install(L);
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
    watch_stop();
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
