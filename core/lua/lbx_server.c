/*
 * lbx_server.c - the bayeux.server userdata: listen, close, in-process
 * messages and sinks, events, and application requests.
 *
 * Every C -> Lua call goes through lbx_invoke (protected, budgeted).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "base/dict.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_ext.h"
#include "lua/lbx_json.h"
#include "lua/lbx_request.h"
#include "lua/lbx_server.h"
#include "base/multipart.h"
#include "bayeux/protocol.h"
#include "bayeux/history.h"
#include "bayeux/retain.h"
#include "net/upload.h"
#include "server.h"
#include "transport/sse.h"
#include "transport/ws.h"

#define SERVER_MT "bayeux.server"
#define REQUEST_MT "bayeux.request"

typedef struct lserver {
    bx_server_t *s;
    struct lserver **box;
    struct lserver *next;       /* in the list of servers not fully closed */
    int self_ref, event_ref, request_ref, close_ref, upload_ref;
    int handshake_ref;          /* fn(client_id, user) of server:on_handshake */
    char *hold_key[2];          /* server:share_identities: the identity key
                                   is hold_key[0] .. id .. hold_key[1] */
    int closing;
    bx_dict_t sinks;            /* client id -> lsink_t */
    lext_t *ext;                /* Lua extensions, created on first use */
} lserver_t;

typedef struct {
    bx_sink_t base;
    lserver_t *ls;
    char id[32];
    int fn_ref;
    int pushing;                /* its function is running */
    int closed;                 /* unbound while pushing: freed on a later turn */
    bx_chunkv_t msgs;           /* handed to Lua by the marshal */
} lsink_t;

typedef struct {
    int fn_ref;
    char *text;
    size_t len;
} lreply_t;

struct lreq;

/* What req->data points to: an upload still arriving (from the head on),
 * or the Lua handle of a request handed to the handler. */
enum { DATA_REQ = 1, DATA_UPLOAD };

/* A multipart body streamed to disk (net/upload.h) for an upload route. */
typedef struct {
    int kind;                   /* DATA_UPLOAD */
    lserver_t *ls;
    bx_http_req_t *req;
    bx_upload_t *up;
    int progress_ref;           /* fn(bytes, total) or LUA_NOREF */
    int keep;                   /* the files outlive the answer */
    int has_total;
    uint64_t total;             /* Content-Length */
} lupload_t;

/* One call of the request handler, on on_app's stack: the handler may
 * answer the request (which frees it) and then raise. */
typedef struct {
    lserver_t *ls;
    bx_http_req_t *req;
    struct lreq *r;             /* the Lua handle, while unanswered */
    lupload_t *lu;              /* the upload, until the handle owns it */
    int gone;                   /* answered or aborted: not ours any more */
} app_call_t;

typedef struct lreq {
    int kind;                   /* DATA_REQ */
    lupload_t *lu;              /* its upload's files and fields, or NULL */
    bx_http_req_t *req;
    struct lreq **box;
    int self_ref;
    app_call_t *call;           /* while inside the handler call */
} lreq_t;

static lserver_t *servers;
static int nservers;
static void (*all_done)(void);

/* ---- Helpers ---- */

static lserver_t *check_server(lua_State *L)
{
    lserver_t **box = luaL_checkudata(L, 1, SERVER_MT);
    if (!*box || (*box)->closing)
        luaL_error(L, "attempt to use a closed server");
    return *box;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    double v = def;
    if (lua_getfield(L, t, k) != LUA_TNIL)
        v = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static char *join_chunks(const bx_chunkv_t *cv, size_t *len)
{
    bx_buf_t b = BX_BUF_INIT;
    for (size_t i = 0; i < cv->n; i++)
        bx_buf_append(&b, cv->v[i]->data, cv->v[i]->len);
    bx_buf_append(&b, "", 1);
    *len = b.len - 1;
    return b.data;
}

/* Pushes the JSON text as a Lua value (decoded under protection). */
static void push_text(lua_State *L, const char *text, size_t len)
{
    json_t **box = lua_newuserdatauv(L, sizeof(json_t *), 0);
    *box = NULL;
    luaL_setmetatable(L, "bayeux.jsonbox");
    *box = bx_json_parse(text, len);    /* freed by the box's __gc even if pushing raises */
    if (*box)
        lbx_push_json(L, *box);
    else
        lua_pushnil(L);
    lua_remove(L, -2);
}

/* ---- core.server(opts) ---- */

static int l_server(lua_State *L)
{
    bx_server_opts_t o;
    luaL_checktype(L, 1, LUA_TTABLE);
    bx_server_opts_default(&o);
    lua_getfield(L, 1, "mount");
    if (!lua_isnil(L, -1))
        o.mount = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "client_script");
    if (!lua_isnil(L, -1))
        o.client_script = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "engine");
    if (!lua_isnil(L, -1))
        o.engine = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "metrics");
    if (!lua_isnil(L, -1))
        o.metrics = luaL_checkstring(L, -1);
    o.timeout = opt_number(L, 1, "timeout", o.timeout);
    o.interval = opt_number(L, 1, "interval", o.interval);
    o.ping = opt_number(L, 1, "ping", o.ping);
    o.queue_limit = (size_t)opt_number(L, 1, "queue_limit", (double)o.queue_limit);
    o.max_frame = (size_t)opt_number(L, 1, "max_frame", (double)o.max_frame);
    o.max_output = (size_t)opt_number(L, 1, "max_output", (double)o.max_output);
    o.max_reply = (size_t)opt_number(L, 1, "max_reply", (double)o.max_reply);
    o.max_channel_length = (size_t)opt_number(L, 1, "max_channel_length",
                                              (double)o.max_channel_length);
    o.max_channel_depth = (size_t)opt_number(L, 1, "max_channel_depth",
                                             (double)o.max_channel_depth);
    o.http.max_body = (size_t)opt_number(L, 1, "max_body", (double)o.http.max_body);
    o.http.max_header = (size_t)opt_number(L, 1, "max_header", (double)o.http.max_header);
    o.http.idle_timeout = opt_number(L, 1, "idle_timeout", o.http.idle_timeout);
    o.http.head_timeout = opt_number(L, 1, "head_timeout", o.http.head_timeout);
    o.http.body_timeout = opt_number(L, 1, "body_timeout", o.http.body_timeout);
    o.http.max_conns = (unsigned)opt_number(L, 1, "max_conns", (double)o.http.max_conns);
    lua_getfield(L, 1, "access_log");
    o.http.access_log = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.http.max_conns_per_addr = (unsigned)opt_number(L, 1, "max_conns_per_addr",
                                                     (double)o.http.max_conns_per_addr);
    o.max_subscriptions = (size_t)opt_number(L, 1, "max_subscriptions",
                                             (double)o.max_subscriptions);
    o.max_channels = (size_t)opt_number(L, 1, "max_channels", (double)o.max_channels);
    o.publish_rate = opt_number(L, 1, "publish_rate", o.publish_rate);
    o.publish_burst = opt_number(L, 1, "publish_burst", o.publish_burst);
    lua_getfield(L, 1, "browser_cookie");
    o.browser_cookie = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "deflate") != LUA_TNIL)
        o.deflate = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "allowed_origins") != LUA_TNIL) {
        /* the strings stay referenced by the options table until
         * bx_server_new has copied them; the array is a userdata */
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_Integer n = luaL_len(L, -1);
        const char **list = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(*list), 0);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -2, i);
            list[i - 1] = luaL_checkstring(L, -1);
            lua_pop(L, 1);
        }
        list[n] = NULL;
        o.allowed_origins = list;
        lua_replace(L, -2);     /* the array stays on the stack, the table in opts */
    } else {
        lua_pop(L, 1);
    }

    lserver_t **box = lua_newuserdatauv(L, sizeof(lserver_t *), 0);
    *box = NULL;
    luaL_setmetatable(L, SERVER_MT);
    lua_pushvalue(L, -1);
    /* may raise: nothing is held yet, and the empty box's __gc does nothing */
    int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    char err[512];
    bx_server_t *s = bx_server_new(lbx_loop(), &o, err, sizeof(err));  /* copies the strings */
    if (!s) {
        luaL_unref(L, LUA_REGISTRYINDEX, self_ref);
        return luaL_error(L, "%s", err);
    }
    lserver_t *ls = bx_calloc(1, sizeof(*ls));
    ls->box = box;
    ls->self_ref = self_ref;
    ls->event_ref = ls->request_ref = ls->close_ref = ls->upload_ref = LUA_NOREF;
    ls->handshake_ref = LUA_NOREF;
    ls->s = s;
    *box = ls;
    ls->next = servers;
    servers = ls;
    nservers++;
    return 1;
}

/* server:listen(port, host, reuseport, tls) -> port | nil, err; tls is nil
 * or { cert = FILE, key = FILE } (PEM) */
static int s_listen(lua_State *L)
{
    lserver_t *ls = check_server(L);
    lua_Integer port = luaL_checkinteger(L, 2);
    const char *host = luaL_optstring(L, 3, "127.0.0.1");
    int reuseport = lua_toboolean(L, 4);
    bx_tls_ctx_t *tls = NULL;
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
    if (!lua_isnoneornil(L, 5)) {
        char err[512];
        luaL_checktype(L, 5, LUA_TTABLE);
        lua_getfield(L, 5, "cert");
        lua_getfield(L, 5, "key");
        const char *cert = lua_tostring(L, -2), *key = lua_tostring(L, -1);
        luaL_argcheck(L, cert && key, 5, "tls needs cert and key (file names)");
        tls = bx_tls_ctx_new(cert, key, err, sizeof(err));
        if (!tls) {
            lua_pushnil(L);
            lua_pushstring(L, err);
            lua_pushliteral(L, "TLS");
            return 3;
        }
    }
    int rc = bx_server_listen_tls(ls->s, host, (int)port, reuseport, tls);
    bx_tls_ctx_unref(tls);      /* the listener holds its own reference */
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot listen on %s:%d: %s", host, (int)port, uv_strerror(rc));
        lua_pushstring(L, uv_err_name(rc));
        return 3;
    }
    lua_pushinteger(L, bx_server_port(ls->s));
    return 1;
}

/* server:port() -> the bound port or nil */
static int s_port(lua_State *L)
{
    lserver_t **box = luaL_checkudata(L, 1, SERVER_MT);
    int p = *box ? bx_server_port((*box)->s) : -1;
    if (p < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, p);
    return 1;
}

/* server:stats() -> { clients, connected, connections, dropped } */
static int s_stats(lua_State *L)
{
    lserver_t *ls = check_server(L);
    bx_engine_t *e = bx_server_engine(ls->s);
    bx_engine_stats_t st;
    e->ops->stats(e, &st);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)st.clients);
    lua_setfield(L, -2, "clients");
    lua_pushinteger(L, (lua_Integer)bx_hub_connected(bx_server_hub(ls->s)));
    lua_setfield(L, -2, "connected");
    lua_pushinteger(L, (lua_Integer)bx_conn_count());
    lua_setfield(L, -2, "connections");
    lua_pushinteger(L, (lua_Integer)st.dropped);
    lua_setfield(L, -2, "dropped");
    return 1;
}

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* server:metrics() -> the process's counters (base/metrics.h) and this
 * server's gauges, for the monitor: { sessions, connected, subscriptions,
 * channels, dropped, messages_in, messages_out, bytes_in, bytes_out,
 * handshakes, http_requests, slow_readers, ext_errors, lag_ms,
 * connections = { http, websocket, eventsource }, errors = { [code] = n },
 * recent = { "warn redis: ...", ... } (newest first) } */
static int s_metrics(lua_State *L)
{
    lserver_t *ls = check_server(L);
    bx_engine_t *e = bx_server_engine(ls->s);
    const bx_metrics_t *m = &bx_metrics;
    bx_engine_stats_t st;
    size_t ws = bx_ws_count(), sse = bx_sse_count(), all = bx_conn_count();

    memset(&st, 0, sizeof(st));
    e->ops->stats(e, &st);
    lua_createtable(L, 0, 20);
    set_int(L, "sessions", st.clients);
    set_int(L, "connected", bx_hub_connected(bx_server_hub(ls->s)));
    set_int(L, "subscriptions", st.subscriptions);
    set_int(L, "channels", st.channels);
    set_int(L, "dropped", st.dropped);
    set_int(L, "messages_in", m->messages_in);
    set_int(L, "messages_out", m->messages_out);
    set_int(L, "bytes_in", m->bytes_in);
    set_int(L, "bytes_out", m->bytes_out);
    set_int(L, "handshakes", m->handshakes);
    set_int(L, "http_requests", m->http_requests);
    set_int(L, "slow_readers", m->slow_readers);
    set_int(L, "ext_errors", m->ext_errors);
    lua_pushnumber(L, (lua_Number)m->lag_ns_last / 1e6);
    lua_setfield(L, -2, "lag_ms");
    lua_createtable(L, 0, 3);
    set_int(L, "http", all > ws + sse ? all - ws - sse : 0);
    set_int(L, "websocket", ws);
    set_int(L, "eventsource", sse);
    lua_setfield(L, -2, "connections");
    lua_newtable(L);
    for (int c = 0; c < BX_METRIC_NCODES; c++) {
        uint64_t n = 0;
        for (int k = 0; k < BX_MK_COUNT; k++)
            n += m->errors[k][c];
        if (n) {
            if (c == BX_METRIC_NCODES - 1)
                lua_pushstring(L, "other");
            else
                lua_pushfstring(L, "%d", bx_metrics_slot_code(c));
            lua_pushinteger(L, (lua_Integer)n);
            lua_rawset(L, -3);
        }
    }
    lua_setfield(L, -2, "errors");
    lua_newtable(L);
    for (int i = 0; bx_log_recent(i); i++) {
        lua_pushstring(L, bx_log_recent(i));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "recent");
    return 1;
}

/* ---- Close ---- */

static int call_close_fn(lua_State *L)
{
    int *ref = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    lua_call(L, 0, 0);
    return 0;
}

static void unlink_server(lserver_t *ls)
{
    for (lserver_t **pp = &servers; *pp; pp = &(*pp)->next)
        if (*pp == ls) {
            *pp = ls->next;
            break;
        }
    nservers--;
}

static void server_closed(void *ud)
{
    lserver_t *ls = ud;
    lua_State *L = lbx_state();
    int close_ref = ls->close_ref;

    unlink_server(ls);
    bx_dict_free(&ls->sinks);
    free(ls->hold_key[0]);
    free(ls->hold_key[1]);
    if (ls->ext)
        lbx_ext_free(ls->ext);
    if (L && !lbx_closing) {
        if (close_ref != LUA_NOREF) {
            lbx_invoke("close callback", call_close_fn, &close_ref);
            luaL_unref(L, LUA_REGISTRYINDEX, close_ref);
        }
        luaL_unref(L, LUA_REGISTRYINDEX, ls->event_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->handshake_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->request_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->upload_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->self_ref);
    }
    free(ls);
    if (nservers == 0 && all_done) {
        void (*done)(void) = all_done;
        all_done = NULL;
        done();
    }
}

static void begin_close(lserver_t *ls)
{
    if (ls->closing)
        return;
    ls->closing = 1;
    if (ls->box)
        *ls->box = NULL;
    ls->box = NULL;
    bx_server_close(ls->s, server_closed, ls);
}

/* server:close([fn]): answers held connects, closes sockets; fn() runs once
 * everything is closed. */
static int s_close(lua_State *L)
{
    lserver_t **box = luaL_checkudata(L, 1, SERVER_MT);
    lserver_t *ls = *box;
    if (!ls)
        return 0;
    if (lua_isfunction(L, 2)) {
        lua_pushvalue(L, 2);
        ls->close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    begin_close(ls);
    return 0;
}

void lbx_server_close_all(void (*done)(void))
{
    all_done = done;
    for (lserver_t *ls = servers; ls; ls = ls->next)
        begin_close(ls);
    if (nservers == 0 && all_done) {
        all_done = NULL;
        done();
    }
}

int lbx_server_count(void)
{
    return nservers;
}

static int s_gc(lua_State *L)
{
    /* a server is pinned by its self reference until closed, so a __gc on
     * an open server means the Lua state itself is closing */
    lserver_t **box = luaL_checkudata(L, 1, SERVER_MT);
    if (*box) {
        lbx_closing = 1;
        begin_close(*box);
    }
    return 0;
}

/* ---- In-process messages ---- */

static int deliver_reply(lua_State *L)
{
    lreply_t *r = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    push_text(L, r->text, r->len);
    lua_call(L, 1, 0);
    return 0;
}

static void on_local_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    lreply_t *r = ud;
    lua_State *L = lbx_state();
    r->text = join_chunks(reply, &r->len);
    lbx_invoke("in-process reply", deliver_reply, r);
    if (L && !lbx_closing)
        luaL_unref(L, LUA_REGISTRYINDEX, r->fn_ref);
    free(r->text);
    free(r);
}

/* server:process(messages, fn): runs messages as an in-process client;
 * fn(replies) gets the reply array. */
static int s_process(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    json_t **box = lbx_check_json_boxed(L, 2);
    lua_pushvalue(L, 3);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* may raise: the box frees msgs */
    json_t *msgs = *box;
    *box = NULL;
    lreply_t *r = bx_calloc(1, sizeof(*r));
    r->fn_ref = fn_ref;
    bx_protocol_process(bx_server_hub(ls->s), msgs, NULL, BX_PROTO_LOCAL, on_local_reply, r);
    json_decref(msgs);
    return 0;
}

/* ---- Sinks: deliveries to in-process clients ---- */

static int deliver_sink(lua_State *L)
{
    lsink_t *k = lua_touserdata(L, 1);
    luaL_Buffer b;
    lua_rawgeti(L, LUA_REGISTRYINDEX, k->fn_ref);
    /* the text is built in Lua memory, so a raise leaks nothing */
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '[');
    for (size_t i = 0; i < k->msgs.n; i++) {
        if (i)
            luaL_addchar(&b, ',');
        luaL_addlstring(&b, k->msgs.v[i]->data, k->msgs.v[i]->len);
    }
    luaL_addchar(&b, ']');
    luaL_pushresult(&b);
    size_t tl;
    const char *t = lua_tolstring(L, -1, &tl);
    push_text(L, t, tl);
    lua_remove(L, -2);
    lua_call(L, 1, 0);
    return 0;
}

static void sink_destroy(void *ud)
{
    lsink_t *k = ud;
    bx_chunkv_free(&k->msgs);
    free(k);
}

/* The function that an unbound sink called is let go at once (a running
 * one stays on the Lua stack); the sink itself waits for the end of a push
 * in progress, and then for a later turn. */
static void sink_free(lsink_t *k)
{
    lua_State *L = lbx_state();
    if (L && !lbx_closing && k->fn_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, k->fn_ref);
    k->fn_ref = LUA_NOREF;
    if (k->pushing)
        k->closed = 1;
    else
        sink_destroy(k);
}

static void sink_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    lsink_t *k = (lsink_t *)sink;
    if (k->closed)
        return;
    bx_chunkv_move(&k->msgs, msgs);
    /* the function may unbind this sink (a client that disconnects when it
     * gets a message, or binds its id again): k stays valid until after */
    k->pushing = 1;
    lbx_invoke("in-process delivery", deliver_sink, k);
    k->pushing = 0;
    bx_chunkv_clear(&k->msgs);
    if (k->closed)
        lbx_later(sink_destroy, k);
}

static void sink_close(bx_sink_t *sink)
{
    lsink_t *k = (lsink_t *)sink;
    /* a newer sink of the same id may own the entry already */
    if (bx_dict_get(&k->ls->sinks, k->id, strlen(k->id)) == k)
        bx_dict_del(&k->ls->sinks, k->id, strlen(k->id));
    sink_free(k);
}

/* server:bind(client_id, fn): deliveries for client_id go to fn(messages). */
static int s_bind(lua_State *L)
{
    lserver_t *ls = check_server(L);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_argcheck(L, n > 0 && n < 32, 2, "not a client id");
    lua_pushvalue(L, 3);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* may raise: nothing held yet */
    lsink_t *k = bx_calloc(1, sizeof(*k));
    k->base.push = sink_push;
    k->base.close = sink_close;
    k->base.keepalive = 1;
    k->ls = ls;
    k->fn_ref = fn_ref;
    memcpy(k->id, id, n);
    bx_session_bind(bx_server_hub(ls->s), k->id, &k->base);    /* closes an older sink */
    bx_dict_set(&ls->sinks, k->id, n, k);
    return 0;
}

/* server:unbind(client_id) */
static int s_unbind(lua_State *L)
{
    lserver_t *ls = check_server(L);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    lsink_t *k = bx_dict_del(&ls->sinks, id, n);
    if (k) {
        bx_session_unbind(bx_server_hub(ls->s), k->id, &k->base);
        sink_free(k);
    }
    return 0;
}

/* ---- Events ---- */

typedef struct {
    lserver_t *ls;
    bx_event_t ev;
    const char *id, *channel;
    const json_t *data;
} levent_t;

static int deliver_event(lua_State *L)
{
    static const char *const names[] = {
        "handshake", "subscribe", "unsubscribe", "publish", "disconnect", "close"
    };
    levent_t *e = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ls->event_ref);
    lua_pushstring(L, names[e->ev]);
    if (e->id && *e->id)
        lua_pushstring(L, e->id);
    else
        lua_pushnil(L);
    if (e->channel)
        lua_pushstring(L, e->channel);
    else
        lua_pushnil(L);
    if (e->data)
        lbx_push_json(L, e->data);
    else
        lua_pushnil(L);
    lua_call(L, 4, 0);
    return 0;
}

static void on_event(void *ud, bx_event_t ev, const char *id, const char *channel,
                     const json_t *data)
{
    lserver_t *ls = ud;
    levent_t e = { ls, ev, id, channel, data };
    if (ls->event_ref != LUA_NOREF)
        lbx_invoke("event listener", deliver_event, &e);
}

/* server:on_event(fn, names): fn(name, client_id, channel, data) for the
 * events named in the list `names` (all of them when it is nil). */
static int s_on_event(lua_State *L)
{
    static const char *const names[] = {
        "handshake", "subscribe", "unsubscribe", "publish", "disconnect", NULL
    };
    lserver_t *ls = check_server(L);
    unsigned mask = 0;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (lua_isnoneornil(L, 3)) {
        mask = ~0u;
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        for (lua_Integer i = 1; lua_rawgeti(L, 3, i) != LUA_TNIL; i++) {
            mask |= 1u << luaL_checkoption(L, -1, NULL, names);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: the old one stays */
    luaL_unref(L, LUA_REGISTRYINDEX, ls->event_ref);
    ls->event_ref = ref;
    bx_hub_on_event(bx_server_hub(ls->s), on_event, ls, mask);
    return 0;
}

/* ---- Handshakes ---- */

typedef struct {
    lserver_t *ls;
    const char *id;
    const json_t *user;
} lhandshake_t;

static int deliver_handshake(lua_State *L)
{
    lhandshake_t *h = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ls->handshake_ref);
    lua_pushstring(L, h->id);
    lbx_push_json(L, h->user);
    lua_call(L, 2, 0);
    return 0;
}

/* Only a handshake whose extensions gave it a `user` costs a call into
 * Lua (and only that member is converted). */
static void on_handshake(void *ud, const char *id, const json_t *msg)
{
    lserver_t *ls = ud;
    lhandshake_t h = { ls, id, json_object_get(msg, "user") };
    if (h.user && ls->handshake_ref != LUA_NOREF)
        lbx_invoke("handshake listener", deliver_handshake, &h);
}

/* server:on_handshake(fn): fn(client_id, user) when a handshake whose
 * message left the incoming extensions with a member `user` made a
 * client, before its reply is sent. */
static int s_on_handshake(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: the old one stays */
    luaL_unref(L, LUA_REGISTRYINDEX, ls->handshake_ref);
    ls->handshake_ref = ref;
    bx_hub_on_handshake(bx_server_hub(ls->s), on_handshake, ls);
    return 0;
}

/* ---- The engine's shared store (engine.h): identities, presence ---- */

typedef struct {
    int fn_ref;
    int status;
    const json_t *reply;
} lstore_t;

static int deliver_store(lua_State *L)
{
    lstore_t *c = lua_touserdata(L, 1);
    const json_t *err = json_is_object(c->reply) ? json_object_get(c->reply, "error") : NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);
    if (c->status != 0 || err) {
        lua_pushnil(L);
        lua_pushstring(L, err ? json_string_value(err)
                          : c->status == BX_ECANCELED ? "closed" : "unavailable");
        lua_call(L, 2, 0);
    } else {
        lbx_push_json(L, c->reply);
        lua_call(L, 1, 0);
    }
    return 0;
}

static void on_store(void *ud, int status, const json_t *reply)
{
    lstore_t *c = ud;
    lua_State *L = lbx_state();
    if (L && !lbx_closing) {
        c->status = status;
        c->reply = reply;
        lbx_invoke("store callback", deliver_store, c);
        luaL_unref(L, LUA_REGISTRYINDEX, c->fn_ref);
    }
    free(c);
}

/* server:store({ "CMD", "arg", ... }, fn) -> true | nil, err: one command on
 * the engine's shared store; fn(reply) or fn(nil, err) on a later turn.
 * nil, "no store" with the memory engine. */
static int s_store(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_Integer n = luaL_len(L, 2);
    luaL_argcheck(L, n >= 1 && n <= 64, 2, "1 to 64 arguments");
    const char *argv[64];
    size_t lens[64];
    for (lua_Integer i = 1; i <= n; i++) {
        /* strings only: the table keeps them alive once popped (a number
         * converted on the stack would not be) */
        if (lua_geti(L, 2, i) != LUA_TSTRING)
            return luaL_error(L, "server:store: argument %d is not a string", (int)i);
        argv[i - 1] = lua_tolstring(L, -1, &lens[i - 1]);
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 3);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: nothing held yet */
    lstore_t *c = bx_calloc(1, sizeof(*c));
    c->fn_ref = ref;
    int rc = bx_engine_store_call(bx_server_engine(ls->s), (int)n, argv, lens, on_store, c);
    if (rc != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        free(c);
        lua_pushnil(L);
        lua_pushstring(L, rc == BX_EUNKNOWN ? "no store" : rc == BX_ECANCELED ? "closed"
                                                                 : "unavailable");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* server:store_ns() -> namespace, "bayeux" | "faye"; nil without a store. */
static int s_store_ns(lua_State *L)
{
    lserver_t *ls = check_server(L);
    int faye = 0;
    const char *ns = bx_engine_store_ns(bx_server_engine(ls->s), &faye);
    if (!ns)
        return 0;
    lua_pushstring(L, ns);
    lua_pushstring(L, faye ? "faye" : "bayeux");
    return 2;
}

typedef struct {
    void (*resume)(void *ud);
    void *ud;
} lhold_t;

static void on_held(void *ud, int status, const json_t *reply)
{
    lhold_t *h = ud;
    if (status != 0 || json_is_object(reply))
        bx_logf(BX_LOG_WARN, "lua", "an identity could not be stored (%s): other processes "
               "see the session as anonymous", status ? "Redis out of reach" : "error reply");
    h->resume(h->ud);
    free(h);
}

/* The handshake hold: a handshake that left the extensions with a `user`
 * writes it (JSON) to the store before its reply goes, so that the process
 * that gets the client's next message reads it there. */
static int on_hold(void *ud, const char *id, const json_t *msg, void (*resume)(void *),
                   void *resume_ud)
{
    lserver_t *ls = ud;
    const json_t *user = json_object_get(msg, "user");
    if (!json_is_object(user) || !ls->hold_key[0])
        return 0;
    char *text = json_dumps(user, JSON_COMPACT | JSON_ENCODE_ANY);
    bx_buf_t key = BX_BUF_INIT;
    bx_buf_printf(&key, "%s%s%s", ls->hold_key[0], id, ls->hold_key[1]);
    const char *argv[3] = { "SET", key.data, text ? text : "null" };
    lhold_t *h = bx_calloc(1, sizeof(*h));
    h->resume = resume;
    h->ud = resume_ud;
    int rc = bx_engine_store_call(bx_server_engine(ls->s), 3, argv, NULL, on_held, h);
    bx_buf_free(&key);
    free(text);
    if (rc != 0) {
        free(h);
        bx_logf(BX_LOG_WARN, "lua", "an identity could not be stored (Redis out of reach): "
               "other processes see the session as anonymous");
        return 0;
    }
    return 1;
}

/* server:share_identities(prefix, suffix): from now on a handshake's
 * `user` is written to the store under prefix .. client id .. suffix
 * before the reply goes (server:enable_users with a Redis engine). */
static int s_share_identities(lua_State *L)
{
    lserver_t *ls = check_server(L);
    const char *prefix = luaL_checkstring(L, 2);
    const char *suffix = luaL_checkstring(L, 3);
    char *p = strdup(prefix), *x = strdup(suffix);
    if (!p || !x) {
        free(p);
        free(x);
        return luaL_error(L, "out of memory");
    }
    free(ls->hold_key[0]);
    free(ls->hold_key[1]);
    ls->hold_key[0] = p;
    ls->hold_key[1] = x;
    bx_hub_on_handshake_hold(bx_server_hub(ls->s), on_hold, ls);
    return 0;
}

/* server:set_extensions(runner, incoming, outgoing, deadline): installs the
 * Lua chain runner; a stage without extensions keeps the C fast path. */
static int s_set_extensions(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    double deadline = luaL_optnumber(L, 5, 0);
    if (!ls->ext)
        ls->ext = lbx_ext_new(bx_server_hub(ls->s));
    lbx_ext_configure(L, ls->ext, 2, lua_toboolean(L, 3), lua_toboolean(L, 4), deadline);
    return 0;
}

/* ---- Application requests ---- */

/* Ends an upload: its files are removed unless kept. */
static void upload_release(lupload_t *lu, int remove)
{
    lua_State *L = lbx_state();

    bx_upload_free(lu->up, remove);
    if (L && !lbx_closing)
        luaL_unref(L, LUA_REGISTRYINDEX, lu->progress_ref);
    free(lu);
}

/* The request is answered or gone: the Lua handle no longer reaches it. */
static void req_release(lreq_t *r)
{
    lua_State *L = lbx_state();
    if (r->lu)
        upload_release(r->lu, !r->lu->keep);
    if (r->box)
        *r->box = NULL;
    if (L && !lbx_closing)
        luaL_unref(L, LUA_REGISTRYINDEX, r->self_ref);
    if (r->call) {
        r->call->r = NULL;
        r->call->gone = 1;
    }
    r->req->data = NULL;
    free(r);
}

static int deliver_request(lua_State *L)
{
    app_call_t *call = lua_touserdata(L, 1);
    lreq_t **box = lua_newuserdatauv(L, sizeof(lreq_t *), 0);
    *box = NULL;
    luaL_setmetatable(L, REQUEST_MT);
    lua_pushvalue(L, -1);
    int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: nothing held yet */
    lreq_t *r = bx_calloc(1, sizeof(*r));
    r->kind = DATA_REQ;
    r->lu = call->lu;
    call->lu = NULL;
    r->req = call->req;
    r->box = box;
    r->self_ref = self_ref;
    r->call = call;
    *box = r;
    call->req->data = r;
    call->r = r;
    lua_rawgeti(L, LUA_REGISTRYINDEX, call->ls->request_ref);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return 0;
}

/* Hands a request to the Lua handler; `lu` (may be NULL) is its upload,
 * which the handle then owns. */
static void app_dispatch(lserver_t *ls, bx_http_req_t *req, lupload_t *lu)
{
    app_call_t call = { ls, req, NULL, lu, 0 };
    req->data = NULL;
    int rc = lbx_invoke("request handler", deliver_request, &call);
    if (call.lu)                /* the handle was never made */
        upload_release(call.lu, 1);
    if (call.r)
        call.r->call = NULL;
    /* a handler that answered and then raised has nothing left to answer:
     * the request may be freed already */
    if (rc != 0 && !call.gone) {
        if (call.r)
            req_release(call.r);
        bx_http_respond_text(req, 500, "text/plain; charset=utf-8",
                             "Internal server error\n", 0);
    }
}

static void on_app(void *ud, bx_http_req_t *req)
{
    lupload_t *lu = req->data;

    if (lu && lu->kind == DATA_UPLOAD) {
        bx_upload_finish(lu->up);   /* upload_done() goes on */
        return;
    }
    app_dispatch(ud, req, NULL);
}

static void on_app_abort(void *ud, bx_http_req_t *req)
{
    int *kind = req->data;
    (void)ud;
    if (!kind)
        return;
    req->data = NULL;
    if (*kind == DATA_UPLOAD)
        upload_release((lupload_t *)kind, 1);
    else
        req_release((lreq_t *)kind);
}

/* ---- Uploads ---- */

/* The upload route's answer for a request head: its options. */
typedef struct {
    lserver_t *ls;
    bx_http_req_t *req;
    int found;
    lua_Integer max_size, max_fields;
    int keep;
    int progress_ref;
    char dir[4096];
} head_call_t;

static int deliver_head(lua_State *L)
{
    head_call_t *hc = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, hc->ls->upload_ref);
    lbx_push_request(L, hc->req, 0);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
        return 0;
    int t = lua_gettop(L);
    lua_getfield(L, t, "max_size");
    hc->max_size = luaL_checkinteger(L, -1);
    lua_getfield(L, t, "max_fields");
    hc->max_fields = luaL_optinteger(L, -1, 1024 * 1024);
    lua_getfield(L, t, "keep");
    hc->keep = lua_toboolean(L, -1);
    lua_getfield(L, t, "dir");
    size_t dl;
    const char *dir = luaL_checklstring(L, -1, &dl);
    if (dl == 0 || dl >= sizeof(hc->dir) || memchr(dir, '\0', dl))
        return luaL_error(L, "upload: dir is not a folder path");
    memcpy(hc->dir, dir, dl + 1);
    lua_getfield(L, t, "progress");
    if (lua_isfunction(L, -1))
        hc->progress_ref = luaL_ref(L, LUA_REGISTRYINDEX);     /* the last thing done */
    hc->found = 1;
    return 0;
}

typedef struct {
    lupload_t *lu;
    uint64_t bytes;
} progress_call_t;

static int deliver_progress(lua_State *L)
{
    progress_call_t *pc = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, pc->lu->progress_ref);
    lua_pushinteger(L, (lua_Integer)pc->bytes);
    if (pc->lu->has_total)
        lua_pushinteger(L, (lua_Integer)pc->lu->total);
    else
        lua_pushnil(L);
    lua_call(L, 2, 0);
    return 0;
}

static void upload_progress(void *ud, uint64_t bytes)
{
    lupload_t *lu = ud;
    progress_call_t pc = { lu, bytes };

    if (lu->progress_ref != LUA_NOREF && !lbx_closing)
        lbx_invoke("upload progress", deliver_progress, &pc);
}

static void upload_resume(void *ud)
{
    lupload_t *lu = ud;
    bx_http_body_resume(lu->req);
}

static void upload_done(void *ud, int status)
{
    lupload_t *lu = ud;
    bx_http_req_t *req = lu->req;

    if (status) {
        req->data = NULL;
        upload_release(lu, 1);
        bx_http_respond_text(req, status, "text/plain; charset=utf-8",
                             status == 400 ? "Bad request: not a multipart/form-data body\n"
                             : status == 413 ? "Payload too large\n"
                             : "Internal server error\n", BX_HTTP_CLOSE);
        return;
    }
    app_dispatch(lu->ls, req, lu);
}

static int upload_data(void *ud, const char *data, size_t len)
{
    lupload_t *lu = ud;
    int rc = bx_upload_data(lu->up, data, len);
    return rc == BX_UPLOAD_PAUSE ? BX_HTTP_BODY_PAUSE : rc;
}

static void upload_gone(void *ud)
{
    lupload_t *lu = ud;
    lu->req->data = NULL;
    upload_release(lu, 1);
}

/* A head arrived outside the mount: a multipart body for an upload route
 * is streamed to disk; anything else is collected as usual. */
static int on_app_head(void *ud, bx_http_req_t *req, bx_http_body_t *body)
{
    static const bx_upload_cbs_t cbs = { upload_progress, upload_resume, upload_done };
    lserver_t *ls = ud;
    char boundary[BX_MULTIPART_MAX_BOUNDARY + 1];
    const bx_str_t *ct = bx_http_header(req, "Content-Type");
    size_t blen;

    if (ls->upload_ref == LUA_NOREF || lbx_closing || !ct ||
        !(blen = bx_multipart_boundary(ct->base, ct->len, boundary)))
        return 0;
    head_call_t *hc = bx_calloc(1, sizeof(*hc));
    hc->ls = ls;
    hc->req = req;
    hc->progress_ref = LUA_NOREF;
    if (lbx_invoke("upload route", deliver_head, hc) != 0 || !hc->found) {
        lua_State *L = lbx_state();
        if (L && !lbx_closing)
            luaL_unref(L, LUA_REGISTRYINDEX, hc->progress_ref);
        int found = hc->found;
        free(hc);
        return found ? 500 : 0;
    }
    lupload_t *lu = bx_calloc(1, sizeof(*lu));
    lu->kind = DATA_UPLOAD;
    lu->ls = ls;
    lu->req = req;
    lu->progress_ref = hc->progress_ref;
    lu->keep = hc->keep;
    const bx_str_t *cl = bx_http_header(req, "Content-Length");
    if (cl && !bx_http_header(req, "Transfer-Encoding")) {
        char num[32];
        snprintf(num, sizeof(num), "%.*s", (int)(cl->len < 31 ? cl->len : 31), cl->base);
        lu->total = strtoull(num, NULL, 10);
        lu->has_total = 1;
    }
    bx_upload_opts_t o = { hc->dir, hc->max_size > 0 ? (uint64_t)hc->max_size : 0,
                           hc->max_fields > 0 ? (size_t)hc->max_fields : 0 };
    if (lu->has_total && lu->total > o.max_size) {
        /* refused before the client sends it */
        lua_State *L = lbx_state();
        if (L && !lbx_closing)
            luaL_unref(L, LUA_REGISTRYINDEX, lu->progress_ref);
        free(lu);
        free(hc);
        return 413;
    }
    lu->up = bx_upload_new(lbx_loop(), boundary, blen, &o, &cbs, lu);    /* copies the folder */
    free(hc);
    req->data = lu;
    body->data = upload_data;
    body->gone = upload_gone;
    body->ud = lu;
    return 1;
}

/* server:on_upload(fn): fn(req) for a multipart/form-data request head
 * outside the mount returns nil (collect the body as usual) or the upload
 * options { max_size, dir, max_fields, keep, progress = fn(bytes, total) }. */
static int s_on_upload(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->upload_ref);
    ls->upload_ref = ref;
    bx_server_on_app_head(ls->s, on_app_head);
    return 0;
}

/* server:on_request(fn): fn(req) for every request outside the mount. */
static int s_on_request(lua_State *L)
{
    lserver_t *ls = check_server(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* may raise: the old one stays */
    luaL_unref(L, LUA_REGISTRYINDEX, ls->request_ref);
    ls->request_ref = ref;
    bx_server_on_app(ls->s, on_app, on_app_abort, ls);
    return 0;
}

static lreq_t *check_req(lua_State *L)
{
    lreq_t **box = luaL_checkudata(L, 1, REQUEST_MT);
    if (!*box)
        luaL_error(L, "the request was already answered or its client went away");
    return *box;
}

/* req:info() -> { method, path, query, headers = {lower-case name = value},
 * body, remote } */
static int r_info(lua_State *L)
{
    lreq_t *r = check_req(L);
    lbx_push_request(L, r->req, 1);
    if (!r->lu)
        return 1;
    /* an upload: files = { { field, filename, path, size, content_type } },
     * fields = { name = value } */
    lua_newtable(L);
    const bx_upload_file_t *f;
    for (size_t i = 0; (f = bx_upload_file(r->lu->up, i)) != NULL; i++) {
        lua_createtable(L, 0, 5);
        lua_pushstring(L, f->field);
        lua_setfield(L, -2, "field");
        lua_pushstring(L, f->filename);
        lua_setfield(L, -2, "filename");
        lua_pushstring(L, f->path);
        lua_setfield(L, -2, "path");
        lua_pushinteger(L, (lua_Integer)f->size);
        lua_setfield(L, -2, "size");
        if (f->content_type) {
            lua_pushstring(L, f->content_type);
            lua_setfield(L, -2, "content_type");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "files");
    size_t n;
    const bx_upload_field_t *fl = bx_upload_fields(r->lu->up, &n);
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushlstring(L, fl[i].value, fl[i].len);
        lua_setfield(L, -2, fl[i].name);
    }
    lua_setfield(L, -2, "fields");
    return 1;
}

/* Headers the HTTP layer writes itself (http.c response_head): one from a
 * route would frame the body wrongly or contradict the layer's. */
static const char *const layer_headers[] = { "Content-Length", "Transfer-Encoding", "Date",
                                             "Connection", NULL };

/* Checks the status (argument 2) and the headers table (argument 3, may be
 * nil) of `fn`, raising a clear error on misuse: this runs before any C
 * memory is held, as nothing after it may raise. */
static lua_Integer check_response(lua_State *L, const char *fn, int with_file)
{
    lua_Integer status = luaL_checkinteger(L, 2);

    /* 1xx answers are the layer's (100 Continue); a file needs a body */
    if (status < 200 || status > 999 || (with_file && (status == 204 || status == 304)))
        return luaL_error(L, "%s: status %d is not allowed (200-999%s)", fn, (int)status,
                          with_file ? ", not 204 or 304" : "");
    if (!lua_istable(L, 3))
        return status;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "response headers must be strings");
        size_t vl;
        const char *k = lua_tostring(L, -2), *v = lua_tolstring(L, -1, &vl);
        /* a header must not smuggle a line break into the response */
        if (!*k || strpbrk(k, "\r\n: ") || memchr(v, '\r', vl) || memchr(v, '\n', vl))
            return luaL_error(L, "invalid response header '%s'", k);
        for (int i = 0; layer_headers[i]; i++)
            if (strcasecmp(k, layer_headers[i]) == 0)
                return luaL_error(L, "%s: header '%s' is set by the HTTP layer", fn, k);
        lua_pop(L, 1);
    }
    return status;
}

/* The checked headers table at index 3 as "Name: value\r\n" lines, NUL
 * terminated, into hb. */
static void build_headers(lua_State *L, bx_buf_t *hb)
{
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            size_t vl;
            const char *v = lua_tolstring(L, -1, &vl);
            bx_buf_puts(hb, lua_tostring(L, -2));
            bx_buf_puts(hb, ": ");
            bx_buf_append(hb, v, vl);
            bx_buf_puts(hb, "\r\n");
            lua_pop(L, 1);
        }
    }
    bx_buf_append(hb, "", 1);
}

/* req:respond(status, headers, body): headers is { name = value }. */
static int r_respond(lua_State *L)
{
    lreq_t *r = check_req(L);
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 4, "", &blen);
    lua_Integer status = check_response(L, "req:respond", 0);

    bx_buf_t hb = BX_BUF_INIT;
    build_headers(L, &hb);
    bx_chunkv_t cv = BX_CHUNKV_INIT;
    if (blen)
        bx_chunkv_push_new(&cv, bx_chunk_new(body, blen));
    bx_http_req_t *req = r->req;
    req_release(r);
    bx_http_respond(req, (int)status, hb.data, &cv, 0);
    bx_chunkv_free(&cv);
    bx_buf_free(&hb);
    return 0;
}

/* req:send_file(status, headers, path): answers with the file's contents,
 * read from disk in chunks as the client takes them (bx_http_respond_file);
 * HEAD gets the length only. */
static int r_send_file(lua_State *L)
{
    lreq_t *r = check_req(L);
    size_t plen;
    const char *path = luaL_checklstring(L, 4, &plen);
    lua_Integer status = check_response(L, "req:send_file", 1);

    luaL_argcheck(L, plen > 0 && !memchr(path, '\0', plen), 4, "not a file path");
    bx_buf_t hb = BX_BUF_INIT;
    build_headers(L, &hb);
    bx_http_req_t *req = r->req;
    req_release(r);
    bx_http_respond_file(req, (int)status, hb.data, path, 0);
    bx_buf_free(&hb);
    return 0;
}

/* server:retain(pattern, ttl) -> true | nil, err */
static int s_retain(lua_State *L)
{
    lserver_t *ls = check_server(L);
    const char *pattern = luaL_checkstring(L, 2);
    lua_Number ttl = luaL_checknumber(L, 3);
    if (bx_retain_add(bx_retain_of(bx_server_hub(ls->s)), pattern, ttl) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "'%s' is not a channel name or pattern", pattern);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* server:history(pattern, size, ttl, keep) -> true | nil, err */
static int s_history(lua_State *L)
{
    lserver_t *ls = check_server(L);
    const char *pattern = luaL_checkstring(L, 2);
    lua_Integer size = luaL_checkinteger(L, 3);
    lua_Number ttl = luaL_checknumber(L, 4);
    lua_Number keep = luaL_checknumber(L, 5);
    if (size <= 0 || size > 1000000 || !(ttl > 0) || !(keep >= 0)) {
        lua_pushnil(L);
        lua_pushliteral(L, "size must be an integer from 1 to 1000000, ttl a positive "
                           "number, keep 0 or more");
        return 2;
    }
    bx_history_t *h = bx_history_of(bx_server_hub(ls->s));
    int rc = bx_history_add(h, pattern, (size_t)size, ttl, keep);
    if (rc == -2) {
        lua_pushnil(L);
        lua_pushliteral(L, "history needs the memory engine, or the Redis engine in native "
                           "mode on one server (docs/delivery.md)");
        return 2;
    } else if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "'%s' is not a channel name or pattern", pattern);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- Registration ---- */

void lbx_server_open(lua_State *L)
{
    static const luaL_Reg smeth[] = {
        { "listen", s_listen }, { "port", s_port }, { "close", s_close },
        { "process", s_process }, { "bind", s_bind }, { "unbind", s_unbind },
        { "on_event", s_on_event }, { "on_request", s_on_request }, { "on_upload", s_on_upload },
        { "on_handshake", s_on_handshake }, { "retain", s_retain }, { "history", s_history },
        { "store", s_store }, { "store_ns", s_store_ns },
        { "share_identities", s_share_identities },
        { "set_extensions", s_set_extensions }, { "stats", s_stats },
        { "metrics", s_metrics }, { NULL, NULL }
    };
    static const luaL_Reg rmeth[] = {
        { "info", r_info }, { "respond", r_respond }, { "send_file", r_send_file },
        { NULL, NULL }
    };
    luaL_newmetatable(L, SERVER_MT);
    lua_pushcfunction(L, s_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, smeth);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, REQUEST_MT);
    luaL_newlib(L, rmeth);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lbx_ext_open(L);
    lua_pushcfunction(L, l_server);
    lua_setfield(L, -2, "server");
}
