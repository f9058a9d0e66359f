/*
 * lbx_timer.c - bayeux.core.timer(): one-shot and repeating timers.
 *
 * The userdata holds a pointer to a C struct, so the uv handle can outlive
 * the userdata until its close callback (luv's boxed-pointer design). While
 * active, a registry self-reference keeps the userdata alive; the function
 * is the userdata's user value, so one reference is all a timer takes.
 */
#include <stdlib.h>
#include "base/buf.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_timer.h"

#define TIMER_MT "bayeux.timer"

typedef struct ltimer {
    uv_timer_t handle;
    int self_ref;               /* LUA_NOREF once released */
    int repeat;
    struct ltimer **box;        /* the userdata's pointer, cleared on release */
} ltimer_t;

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Releases the Lua references and closes the handle. Idempotent. */
static void timer_release(lua_State *L, ltimer_t *t)
{
    if (t->self_ref == LUA_NOREF)
        return;
    if (L && !lbx_closing)
        luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    t->self_ref = LUA_NOREF;
    if (t->box)
        *t->box = NULL;
    t->box = NULL;
    uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static int fire(lua_State *L)
{
    ltimer_t *t = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_getiuservalue(L, -1, 1);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return 0;
}

static void on_timer(uv_timer_t *h)
{
    ltimer_t *t = h->data;
    lbx_invoke("timer", fire, t);
    if (!t->repeat)
        timer_release(lbx_state(), t);
}

/* core.timer(seconds, repeat, fn) -> timer */
static int l_timer(lua_State *L)
{
    lua_Number secs = luaL_checknumber(L, 1);
    int repeat = lua_toboolean(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "seconds out of range");
    if (repeat)
        luaL_argcheck(L, secs > 0, 1, "an interval must be positive");

    ltimer_t **box = lua_newuserdatauv(L, sizeof(ltimer_t *), 1);
    *box = NULL;
    luaL_setmetatable(L, TIMER_MT);
    lua_pushvalue(L, 3);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    /* may raise: nothing is held yet, and the empty box's __gc does nothing */
    int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ltimer_t *t = bx_calloc(1, sizeof(*t));
    *box = t;
    t->box = box;
    t->repeat = repeat;
    t->self_ref = self_ref;
    uv_timer_init(lbx_loop(), &t->handle);
    t->handle.data = t;
    uint64_t ms = (uint64_t)(secs * 1000);
    uv_timer_start(&t->handle, on_timer, ms, repeat ? (ms ? ms : 1) : 0);
    return 1;
}

/* timer:cancel(): stops it; harmless when already fired or canceled. */
static int t_cancel(lua_State *L)
{
    ltimer_t **box = luaL_checkudata(L, 1, TIMER_MT);
    if (*box)
        timer_release(L, *box);
    return 0;
}

/* timer:active() */
static int t_active(lua_State *L)
{
    ltimer_t **box = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushboolean(L, *box && (*box)->self_ref != LUA_NOREF);
    return 1;
}

static int t_gc(lua_State *L)
{
    ltimer_t **box = luaL_checkudata(L, 1, TIMER_MT);
    if (*box)
        timer_release(L, *box);
    return 0;
}

void lbx_timer_open(lua_State *L)
{
    static const luaL_Reg meth[] = {
        { "cancel", t_cancel }, { "active", t_active }, { NULL, NULL }
    };
    luaL_newmetatable(L, TIMER_MT);
    lua_pushcfunction(L, t_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, meth);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_timer);
    lua_setfield(L, -2, "timer");
}
