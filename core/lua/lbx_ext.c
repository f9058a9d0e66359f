/*
 * lbx_ext.c - server extensions written in Lua (Faye's incoming/outgoing).
 *
 * The C hooks of bayeux/hub.h hand each message to one Lua function, the chain
 * runner installed by the façade, together with a continuation: a C closure
 * over a cont_t and the generation it was made for. cont_t's come from a
 * pool and are never freed (a stale closure may still point at one), and a
 * cont_t's generation moves on when it finishes, so that:
 *   - calling it twice is noticed (logged, ignored) without touching freed
 *     memory, and without a userdata, a finalizer or a registry reference
 *     per message (a few thousand instructions each message otherwise);
 *   - a continuation called synchronously, inside the hook call, finishes
 *     on a later turn (the callback contract of bayeux/hub.h);
 *   - a continuation never called is answered after a deadline.
 */
#include <stdlib.h>
#include <string.h>
#include "base/metrics.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_ext.h"
#include "lua/lbx_json.h"
#include "lua/lbx_request.h"
#include "net/http.h"
#include "base/json.h"
#include "base/list.h"

typedef struct cont {
    bx_list_t link;             /* pending list of its lext_t; or the pool */
    struct lext *x;
    bx_ext_next_cb next_cb;
    void *next_ud;
    json_t *orig;               /* the message as it entered (for errors) */
    uint64_t started;
    lua_Integer gen;            /* its closures' generation; moves on when done */
    int stage;                  /* 0 incoming, 1 outgoing */
    int in_call;                /* its hook call is running: stays out of the pool */
    struct call *call;          /* the hook call it was made in, while in it */
    char label[96];             /* the extension holding it, named by Lua (logs) */
} cont_t;

/* Free cont_t's. Never given back to the allocator: a closure Lua kept may
 * still name one (it finds the generation moved on), so the pool stays at
 * the most messages ever inside extensions at once. */
static bx_list_t pool = BX_LIST_INIT(pool);

static cont_t *cont_get(void)
{
    cont_t *c;
    if (bx_list_empty(&pool)) {
        c = bx_calloc(1, sizeof(*c));
    } else {
        c = BX_CONTAINER(pool.next, cont_t, link);
        bx_list_remove(&c->link);
        lua_Integer gen = c->gen;
        memset(c, 0, sizeof(*c));
        c->gen = gen;
    }
    bx_list_init(&c->link);
    return c;
}

/* Back to the pool once finished and out of its hook call. */
static void cont_put(cont_t *c)
{
    bx_list_push_head(&pool, &c->link);
}

typedef struct lext {
    bx_hub_t *s;
    int runner_ref;             /* function(stage, message, request, done, cont, label) */
    int incoming, outgoing;
    double deadline;            /* seconds */
    bx_list_t pending;          /* of cont_t, newest first */
    uv_timer_t *sweep;
} lext_t;

/* The message a failing stage answers with: the original, with an error. */
static json_t *failed(cont_t *c, const char *error)
{
    json_t *m = json_is_object(c->orig) ? json_deep_copy(c->orig) : json_object();
    bx_metrics.ext_errors++;
    json_object_set_new(m, "error", json_string(error));
    if (c->stage == 1)
        json_object_set_new(m, "successful", json_false());
    return m;
}

typedef struct call {
    lext_t *x;
    cont_t *c;
    json_t *msg;
    bx_http_req_t *req;
    int stage;
    bx_ext_next_cb next;
    void *next_ud;
    int finished;               /* the continuation ran during the call */
} call_t;

/* Ends the continuation: it is no longer pending, and its closures are
 * stale. Back to the pool now, or when its hook call returns. */
static void cont_finish(cont_t *c)
{
    c->gen++;
    if (c->call)
        c->call->finished = 1;  /* its hook call must not finish it again */
    bx_list_remove(&c->link);
    if (c->orig)
        json_decref(c->orig);
    c->orig = NULL;
    if (!c->in_call)
        cont_put(c);
}

typedef struct {
    bx_ext_next_cb cb;
    void *ud;
    json_t *msg;
} later_t;

static void run_later(void *ud)
{
    later_t *l = ud;
    l->cb(l->ud, l->msg);
    free(l);
}

/* Hands `msg` (stolen, may be NULL) on, now or on a later turn. */
static void cont_deliver(cont_t *c, json_t *msg, int later)
{
    bx_ext_next_cb cb = c->next_cb;
    void *ud = c->next_ud;
    bx_hub_t *s = c->x->s;
    cont_finish(c);
    if (later) {
        later_t *l = bx_calloc(1, sizeof(*l));
        l->cb = cb;
        l->ud = ud;
        l->msg = msg;
        bx_hub_defer(s, run_later, l);
    } else {
        cb(ud, msg);
    }
}

/* The message Lua handed back, as JSON, when it differs from the one that
 * entered (protected: a value JSON cannot hold raises). */
static int convert(lua_State *L)
{
    json_t **out = lua_touserdata(L, 2);
    *out = lbx_check_json(L, 1);
    return 0;
}

/* The continuation Lua calls: cont(message) or cont(nil) to drop. */
static int l_continue(lua_State *L)
{
    cont_t *c = lua_touserdata(L, lua_upvalueindex(1));
    json_t *msg = NULL;

    if (c->gen != lua_tointeger(L, lua_upvalueindex(2))) {
        bx_metrics.ext_errors++;
        lbx_log("an extension called its callback twice; the second call is ignored");
        return 0;
    }
    if (!lua_isnoneornil(L, 1)) {
        if (!lua_istable(L, 1)) {
            lbx_log("an extension passed a %s to its callback", luaL_typename(L, 1));
            msg = failed(c, "500::Internal server error");
        } else if (lbx_json_same(L, 1, c->orig)) {
            /* most extensions only read the message and hand the very
             * one they got back: its JSON is kept rather than built anew
             * (comparing allocates nothing, so needs no pcall) */
            msg = json_incref(c->orig);
        } else {
            /* a message JSON cannot hold fails like a raising extension:
             * the continuation still ends, now */
            lua_pushcfunction(L, convert);
            lua_pushvalue(L, 1);
            lua_pushlightuserdata(L, &msg);
            if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
                lbx_log("an extension passed a message that is not JSON to its callback: %s",
                        lua_tostring(L, -1));
                lua_pop(L, 1);
                msg = failed(c, "500::Internal server error");
            }
        }
    }
    cont_deliver(c, msg, c->in_call);
    return 0;
}

/* label(cont, text): which extension holds the message now, for the log
 * line of a missed deadline. A stale continuation labels nothing. */
static int cont_label(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    if (lua_tocfunction(L, 1) != l_continue || !lua_getupvalue(L, 1, 1) ||
        !lua_getupvalue(L, 1, 2))
        return luaL_argerror(L, 1, "not a continuation");
    cont_t *c = lua_touserdata(L, -2);
    if (c->gen != lua_tointeger(L, -1))
        return 0;
    if (n >= sizeof(c->label))
        n = sizeof(c->label) - 1;
    memcpy(c->label, text, n);
    c->label[n] = '\0';
    return 0;
}

/* ---- The hooks ---- */


/* The request as a Lua table. The messages of one HTTP request, or of one
 * WebSocket (its upgrade request), see the same table, as in Faye, and it
 * is built once for them: the last one is kept, keyed by the request's
 * serial (a pointer could be reused by a later request). */
static lua_State *cached_L;
static uint64_t cached_serial;
static int cached_ref = LUA_NOREF;

static void push_request(lua_State *L, bx_http_req_t *req)
{
    if (!req) {
        lua_pushnil(L);
        return;
    }
    if (cached_L != L) {            /* another state: its refs are not ours */
        cached_L = L;
        cached_ref = LUA_NOREF;
    }
    if (cached_ref != LUA_NOREF && cached_serial == req->serial) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, cached_ref);
        return;
    }
    lbx_push_request(L, req, 0);
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: the old one stays */
    luaL_unref(L, LUA_REGISTRYINDEX, cached_ref);
    cached_ref = ref;
    cached_serial = req->serial;
}

static int call_runner(lua_State *L)
{
    call_t *k = lua_touserdata(L, 1);
    cont_t *c = cont_get();
    c->x = k->x;
    c->stage = k->stage;
    c->next_cb = k->next;
    c->next_ud = k->next_ud;
    c->call = k;
    c->orig = json_incref(k->msg);
    c->started = uv_now(lbx_loop());
    c->in_call = 1;             /* out of the pool until hook() returns */
    bx_list_push_head(&k->x->pending, &c->link);
    k->c = c;

    lua_rawgeti(L, LUA_REGISTRYINDEX, k->x->runner_ref);
    lua_pushinteger(L, k->stage);
    lbx_push_json(L, k->msg);
    push_request(L, k->req);
    lua_pushlightuserdata(L, c);
    lua_pushinteger(L, c->gen);
    lua_pushcclosure(L, l_continue, 2);
    lua_pushvalue(L, -1);                   /* cont, for label(cont, text) */
    lua_pushcfunction(L, cont_label);
    lua_call(L, 6, 0);
    return 0;
}

static void hook(lext_t *x, int stage, json_t *msg, void *request, bx_ext_next_cb next,
                 void *next_ud)
{
    call_t k = { x, NULL, msg, request, stage, next, next_ud, 0 };
    uint64_t t0 = uv_hrtime();
    int rc = lbx_invoke(stage ? "outgoing extension" : "incoming extension", call_runner, &k);

    /* the time the loop spent in the chain; an extension that calls back
     * later adds only its synchronous part */
    bx_metrics.ext_calls++;
    bx_metrics.ext_ns += uv_hrtime() - t0;
    if (!k.c) {
        /* the runner could not even start: answer on a later turn */
        later_t *l = bx_calloc(1, sizeof(*l));
        cont_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        tmp.orig = msg;
        tmp.stage = stage;
        l->cb = next;
        l->ud = next_ud;
        l->msg = failed(&tmp, "500::Internal server error");
        bx_hub_defer(x->s, run_later, l);
    } else {
        /* k.c is out of the pool while in_call, whatever Lua did */
        k.c->in_call = 0;
        k.c->call = NULL;
        if (k.finished)
            cont_put(k.c);
        else if (rc != 0)       /* the runner raised before calling back */
            cont_deliver(k.c, failed(k.c, "500::Internal server error"), 1);
    }
    json_decref(msg);
}

static void hook_in(void *ud, json_t *msg, void *request, bx_ext_next_cb next, void *next_ud)
{
    hook(ud, 0, msg, request, next, next_ud);
}

static void hook_out(void *ud, json_t *msg, void *request, bx_ext_next_cb next, void *next_ud)
{
    hook(ud, 1, msg, request, next, next_ud);
}

/* ---- Deadline sweep ---- */

static void on_sweep(uv_timer_t *t)
{
    lext_t *x = t->data;
    uint64_t now = uv_now(lbx_loop());
    uint64_t limit = (uint64_t)(x->deadline * 1000);
    BX_LIST_FOREACH_SAFE(l, n, &x->pending) {
        cont_t *c = BX_CONTAINER(l, cont_t, link);
        if (now - c->started < limit)
            continue;
        json_t *ch = json_object_get(c->orig, "channel");
        lbx_log("%s extension %s did not call its callback within %g s (extension_deadline) "
                "for a message on %s; message failed", c->stage ? "outgoing" : "incoming",
                c->label[0] ? c->label : "?", x->deadline,
                json_is_string(ch) ? json_string_value(ch) : "(no channel)");
        cont_deliver(c, failed(c, "500::Internal server error"), 0);
    }
}

static void sweep_closed(uv_handle_t *h)
{
    free(h);
}

/* ---- API used by lbx_server.c ---- */

lext_t *lbx_ext_new(bx_hub_t *s)
{
    lext_t *x = bx_calloc(1, sizeof(*x));
    x->s = s;
    bx_list_init(&x->pending);
    x->runner_ref = LUA_NOREF;
    x->deadline = 30;
    return x;
}

void lbx_ext_configure(lua_State *L, lext_t *x, int runner_idx, int incoming, int outgoing,
                       double deadline)
{
    lua_pushvalue(L, runner_idx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: the old one stays */
    luaL_unref(L, LUA_REGISTRYINDEX, x->runner_ref);
    x->runner_ref = ref;
    x->incoming = incoming;
    x->outgoing = outgoing;
    if (deadline > 0)
        x->deadline = deadline;
    bx_hub_set_extensions(x->s, incoming ? hook_in : NULL, outgoing ? hook_out : NULL,
                             lbx_ext_abandon, x);
    if ((incoming || outgoing) && !x->sweep) {
        uint64_t every = (uint64_t)(x->deadline * 250);
        x->sweep = bx_malloc(sizeof(*x->sweep));
        uv_timer_init(lbx_loop(), x->sweep);
        x->sweep->data = x;
        uv_timer_start(x->sweep, on_sweep, every ? every : 1, every ? every : 1);
        uv_unref((uv_handle_t *)x->sweep);
    }
}

void lbx_ext_abandon(void *ud)
{
    lext_t *x = ud;
    /* the server is closing: every message still inside an extension is
     * dropped, on the next turn (before the server's own close steps), so
     * that its op and batch complete and are freed; a late callback from
     * Lua finds its continuation done and touches nothing else */
    while (!bx_list_empty(&x->pending))
        cont_deliver(BX_CONTAINER(x->pending.next, cont_t, link), NULL, 1);
}

void lbx_ext_free(lext_t *x)
{
    lua_State *L = lbx_state();
    lbx_ext_abandon(x);
    if (L && !lbx_closing)
        luaL_unref(L, LUA_REGISTRYINDEX, x->runner_ref);
    if (x->sweep)
        uv_close((uv_handle_t *)x->sweep, sweep_closed);
    free(x);
}

void lbx_ext_open(lua_State *L)
{
    (void)L;                    /* continuations need no metatable */
}
