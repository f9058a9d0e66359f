/*
 * lbx_httpc.c - bayeux.core.http_client(host, port): an HTTP client object
 * on the module's loop.
 *
 *   local c = core.http_client("127.0.0.1", 8000[, tls])
 *   c:request("POST", "/faye", "Content-Type: application/json\r\n", body,
 *             timeout_seconds, function(status, body, err) end)
 *   c:close()     -- requests in flight answer (nil, nil, "aborted")
 *
 *   local ws = core.ws_open(host, port, path, headers, timeout, function(event, data) end[, tls])
 *   ws:send(text) -> true | false;  ws:close()
 *   events: "open", "message" (data: the text), "closed" (data: the reason)
 *
 * The userdata holds a pointer to a C wrapper (the timers' boxed design):
 * the C client lives on until its connections are closed. Each request
 * holds its function in the registry until it is answered, so a client
 * with requests in flight is not collected.
 *
 * tls: nil or false for http/ws; true for https/wss checked against the
 * system's CA certificates; a file name for https/wss checked against the
 * CA certificates in that PEM file.
 */
#include <stdlib.h>
#include "base/buf.h"
#include "base/list.h"
#include "net/httpc.h"
#include "net/wsc.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_httpc.h"

#define HTTPC_MT "bayeux.http_client"
#define WS_MT "bayeux.websocket"

typedef struct lclient {
    bx_httpc_t *h;              /* NULL once closed */
    struct lclient **box;       /* the userdata's pointer, cleared on close */
    bx_list_t link;             /* on live */
} lclient_t;

typedef struct {
    int fn_ref;
    int status;
    const char *body;
    size_t len;
    const char *err;
} lreq_t;

static bx_list_t live = BX_LIST_INIT(live);    /* of lclient_t, newest first */

static void set_mt(lua_State *L, const char *name, const luaL_Reg *meth, lua_CFunction gc);
static int c_request(lua_State *L);
static int c_close(lua_State *L);
static int ws_send(lua_State *L);
static int ws_close(lua_State *L);
static int ws_gc(lua_State *L);

static const luaL_Reg client_meth[] = {
    { "request", c_request }, { "close", c_close }, { NULL, NULL }
};
static const luaL_Reg ws_meth[] = {
    { "send", ws_send }, { "close", ws_close }, { NULL, NULL }
};

/* A WebSocket: lives until its "closed" event, holding its userdata and
 * function meanwhile (a socket in use is not collected). */
typedef struct lws {
    bx_wsc_t *w;
    struct lws **box;
    bx_list_t link;             /* on live_ws until "closed" */
    int fn_ref, self_ref;
    int event;
    const char *data;
    size_t len;
} lws_t;

static bx_list_t live_ws = BX_LIST_INIT(live_ws);  /* of lws_t, newest first */

static void client_close(lclient_t *c)
{
    if (c->box)
        *c->box = NULL;
    bx_list_remove(&c->link);
    bx_httpc_close(c->h);
    free(c);
}

static int answer(lua_State *L)
{
    lreq_t *r = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    if (r->err) {
        lua_pushnil(L);
        lua_pushnil(L);
        lua_pushstring(L, r->err);
    } else {
        lua_pushinteger(L, r->status);
        lua_pushlstring(L, r->body, r->len);
        lua_pushnil(L);
    }
    lua_call(L, 3, 0);
    return 0;
}

static void on_answer(void *ud, int status, const char *body, size_t len, const char *err)
{
    lreq_t *r = ud;
    r->status = status;
    r->body = body;
    r->len = len;
    r->err = err;
    lbx_invoke("http client", answer, r);
    if (!lbx_closing)
        luaL_unref(lbx_state(), LUA_REGISTRYINDEX, r->fn_ref);
    free(r);
}

static bx_tls_ctx_t *system_ctx;   /* the system's CAs, loaded once */

/* The client context the argument at `idx` asks for (see the top), a new
 * reference, or NULL for plain TCP; raises if a CA file cannot be loaded. */
static bx_tls_ctx_t *tls_arg(lua_State *L, int idx)
{
    char err[512];
    bx_tls_ctx_t *ctx;

    if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx)))
        return NULL;
    if (lua_isboolean(L, idx)) {
        if (!system_ctx && !(system_ctx = bx_tls_client_ctx_new(NULL, err, sizeof(err))))
            luaL_error(L, "%s", err);
        return bx_tls_ctx_ref(system_ctx);
    }
    ctx = bx_tls_client_ctx_new(luaL_checkstring(L, idx), err, sizeof(err));
    if (!ctx)
        luaL_error(L, "%s", err);
    return ctx;
}

/* core.http_client(host, port, tls) -> client */
static int l_http_client(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");

    lclient_t **box = lua_newuserdatauv(L, sizeof(lclient_t *), 0);
    *box = NULL;
    set_mt(L, HTTPC_MT, client_meth, c_close);
    bx_tls_ctx_t *tls = tls_arg(L, 3);     /* may raise: nothing held yet */
    lclient_t *c = bx_calloc(1, sizeof(*c));
    c->h = bx_httpc_new(lbx_loop(), host, (int)port);
    bx_httpc_set_tls(c->h, tls);
    bx_tls_ctx_unref(tls);      /* the client holds its own reference */
    c->box = box;
    *box = c;
    bx_list_push_head(&live, &c->link);
    return 1;
}

/* client:request(method, path, headers, body, timeout, fn): headers is a
 * string of "Name: value\r\n" lines or nil; timeout in seconds (0: none).
 * fn(status, body, err) is called once, later. */
static int c_request(lua_State *L)
{
    lclient_t **box = luaL_checkudata(L, 1, HTTPC_MT);
    const char *method = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    const char *headers = luaL_optstring(L, 4, NULL);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 5, NULL, &len);
    lua_Number secs = luaL_optnumber(L, 6, 0);
    luaL_checktype(L, 7, LUA_TFUNCTION);
    luaL_argcheck(L, secs >= 0 && secs < 1e6, 6, "timeout out of range");
    if (!*box)
        return luaL_error(L, "http client is closed");

    lua_pushvalue(L, 7);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lreq_t *r = bx_calloc(1, sizeof(*r));
    r->fn_ref = ref;
    if (bx_httpc_request((*box)->h, method, path, headers, body, len, (unsigned)(secs * 1000),
                         on_answer, r) < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        free(r);
        return luaL_error(L, "http client is closed");
    }
    return 0;
}

/* client:close(): aborts what is in flight; harmless when closed. */
static int c_close(lua_State *L)
{
    lclient_t **box = luaL_checkudata(L, 1, HTTPC_MT);
    if (*box)
        client_close(*box);
    return 0;
}

static int ws_event(lua_State *L)
{
    lws_t *s = lua_touserdata(L, 1);
    static const char *const names[] = { "open", "message", "closed" };
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
    lua_pushstring(L, names[s->event]);
    if (s->data)
        lua_pushlstring(L, s->data, s->len);
    else
        lua_pushnil(L);
    lua_call(L, 2, 0);
    return 0;
}

static void on_ws(void *ud, int event, const char *data, size_t len)
{
    lws_t *s = ud;
    s->event = event;
    s->data = data;
    s->len = len;
    if (event == BX_WSC_CLOSED) {
        /* the C socket frees itself after this: forget it first, so that
         * nothing reaches it from Lua */
        s->w = NULL;
        if (s->box)
            *s->box = NULL;
        s->box = NULL;
        bx_list_remove(&s->link);
    }
    lbx_invoke("websocket", ws_event, s);
    if (event == BX_WSC_CLOSED) {
        if (!lbx_closing) {
            luaL_unref(lbx_state(), LUA_REGISTRYINDEX, s->fn_ref);
            luaL_unref(lbx_state(), LUA_REGISTRYINDEX, s->self_ref);
        }
        free(s);
    }
}

/* core.ws_open(host, port, path, headers, timeout, fn, tls) -> socket */
static int l_ws_open(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    const char *path = luaL_checkstring(L, 3);
    const char *headers = luaL_optstring(L, 4, NULL);
    lua_Number secs = luaL_optnumber(L, 5, 0);
    luaL_checktype(L, 6, LUA_TFUNCTION);
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
    luaL_argcheck(L, secs >= 0 && secs < 1e6, 5, "timeout out of range");

    lws_t **box = lua_newuserdatauv(L, sizeof(lws_t *), 0);
    *box = NULL;
    set_mt(L, WS_MT, ws_meth, ws_gc);
    bx_tls_ctx_t *tls = tls_arg(L, 7);
    lua_pushvalue(L, 6);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lws_t *s = bx_calloc(1, sizeof(*s));
    s->fn_ref = fn_ref;
    s->self_ref = self_ref;
    s->box = box;
    *box = s;
    bx_list_push_head(&live_ws, &s->link);
    s->w = bx_wsc_open_tls(lbx_loop(), host, (int)port, path, headers, (unsigned)(secs * 1000),
                           tls, on_ws, s);
    bx_tls_ctx_unref(tls);
    return 1;
}

/* socket:send(text) -> whether it was queued */
static int ws_send(lua_State *L)
{
    lws_t **box = luaL_checkudata(L, 1, WS_MT);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    lua_pushboolean(L, *box && (*box)->w && bx_wsc_send((*box)->w, text, len) == 0);
    return 1;
}

/* socket:close(): "closed" follows later; harmless when closed. */
static int ws_close(lua_State *L)
{
    lws_t **box = luaL_checkudata(L, 1, WS_MT);
    if (*box && (*box)->w)
        bx_wsc_close((*box)->w);
    return 0;
}

/* Collected (only when the state closes: a live socket is referenced from
 * the registry): the wrapper must not point at the userdata any more. */
static int ws_gc(lua_State *L)
{
    lws_t **box = luaL_checkudata(L, 1, WS_MT);
    lws_t *s = *box;
    if (!s)
        return 0;
    *box = NULL;
    s->box = NULL;
    if (s->w && !lbx_closing)
        bx_wsc_close(s->w);
    return 0;
}

void lbx_httpc_close_all(void)
{
    bx_tls_ctx_unref(system_ctx);   /* the clients hold their own references */
    system_ctx = NULL;
    while (!bx_list_empty(&live))
        client_close(BX_CONTAINER(live.next, lclient_t, link));
    BX_LIST_FOREACH(l, &live_ws) {
        lws_t *s = BX_CONTAINER(l, lws_t, link);
        if (s->w)
            bx_wsc_close(s->w);
    }
}

/* Sets the metatable `name` on the value at the top, making it on first
 * use (made lazily, so that loading the module leaves the registry as it
 * was for scripts that never use a network client). */
static void set_mt(lua_State *L, const char *name, const luaL_Reg *meth, lua_CFunction gc)
{
    if (luaL_newmetatable(L, name)) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        luaL_setfuncs(L, meth, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
}

void lbx_httpc_open(lua_State *L)
{
    lua_pushcfunction(L, l_http_client);
    lua_setfield(L, -2, "http_client");
    lua_pushcfunction(L, l_ws_open);
    lua_setfield(L, -2, "ws_open");
}
