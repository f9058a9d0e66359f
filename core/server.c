/*
 * server.c - the composition root (see server.h): it makes the parts, wires
 * each to the one below, routes HTTP between the mount and the application,
 * and closes the parts through the closers they registered. It holds no
 * Bayeux state of its own.
 */
#include <stdlib.h>
#include <string.h>
#include "base/metrics.h"
#include "metrics.h"
#include "server.h"
#include "transport/router.h"

/* A part to close at shutdown: returns 0 when nothing is left to wait for,
 * or 1 and then calls done(done_ud) once, on a later loop turn. */
typedef int (*closer_fn)(void *ud, void (*done)(void *ud), void *done_ud);

#define MAX_CLOSERS 8
#define LAG_EVERY_MS 1000

struct bx_server_s {
    uv_loop_t *loop;
    bx_server_opts_t opts;
    bx_engine_t *engine;
    bx_hub_t *hub;
    bx_endpoint_t *ep;
    bx_http_server_t *http;
    char *metrics;              /* the exposition's path, or NULL */
    uv_timer_t lag;             /* measures the loop's lag (metrics.h) */
    uint64_t lag_due;           /* uv_hrtime the timer should fire at */
    void (*lag_done)(void *ud);
    void *lag_done_ud;
    bx_server_app_cb app_cb, app_abort;
    bx_http_head_cb app_head;
    void *app_ud;
    struct { closer_fn fn; void *ud; } closers[MAX_CLOSERS];
    int nclosers;
    int closing;
    int pending_closes;
    void (*close_done)(void *ud);
    void *close_ud;
};

void bx_server_opts_default(bx_server_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->mount = "/bayeux";
    o->timeout = 60;
    o->queue_limit = 1000;
    o->max_frame = 1 << 20;
    o->deflate = 1;
    o->max_output = 4 << 20;
    o->max_reply = 1 << 20;
    /* far beyond any real channel name, low enough that a publish to one
     * costs the loop next to nothing */
    o->max_channel_length = 4096;
    o->max_channel_depth = 128;
    /* the channel index cannot grow without bound; and one network client
     * cannot take it all (max_channels is the node's: without a limit per
     * client one of them could subscribe to a million names and leave the
     * rest "Too many channels"). A real client holds a handful, a busy one
     * dozens; a thousand is far above that and bounds what one costs (an
     * entry in the client and in the index each). The server's in-process
     * clients are not limited: they subscribe for the application */
    o->max_channels = 1000000;
    o->max_subscriptions = 1000;
    bx_http_limits_default(&o->http);
}

static void add_closer(bx_server_t *s, closer_fn fn, void *ud)
{
    s->closers[s->nclosers].fn = fn;
    s->closers[s->nclosers].ud = ud;
    s->nclosers++;
}

/* ---- HTTP routing: the mount or the application ---- */

/* GET/HEAD of the metrics path: the exposition, never cached. */
static void serve_metrics(bx_server_t *s, bx_http_req_t *req)
{
    bx_buf_t b = BX_BUF_INIT;
    bx_chunkv_t body = BX_CHUNKV_INIT;

    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        bx_http_respond_text(req, 405, "text/plain; charset=utf-8", "Method not allowed\n", 0);
        return;
    }
    bx_metrics_render(s->engine, s->hub, &b);
    bx_chunkv_push_new(&body, bx_chunk_from_buf(&b));
    bx_http_respond(req, 200, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    "Cache-Control: no-store\r\n", &body, 0);
}

static int is_metrics(const bx_server_t *s, const bx_str_t *path)
{
    return s->metrics && path->len == strlen(s->metrics)
        && memcmp(path->base, s->metrics, path->len) == 0;
}

static void on_request(void *ud, bx_http_req_t *req)
{
    bx_server_t *s = ud;

    if (is_metrics(s, &req->path))
        serve_metrics(s, req);
    else if (bx_router_owns(s->ep, req->path.base, req->path.len))
        bx_router_handle(s->ep, req);
    else if (s->app_cb)
        s->app_cb(s->app_ud, req);
    else
        bx_http_respond_text(req, 404, "text/plain; charset=utf-8", "Not found\n", 0);
}

/* The mount collects its bodies; the application may stream its own. */
static int on_head(void *ud, bx_http_req_t *req, bx_http_body_t *body)
{
    bx_server_t *s = ud;

    if (!s->app_head || bx_router_owns(s->ep, req->path.base, req->path.len))
        return 0;
    return s->app_head(s->app_ud, req, body);
}

static void on_abort(void *ud, bx_http_req_t *req)
{
    bx_server_t *s = ud;
    if (is_metrics(s, &req->path))
        return;                 /* answered at once: never pending */
    if (bx_router_owns(s->ep, req->path.base, req->path.len))
        bx_router_abort(s->ep, req);
    else if (s->app_abort)
        s->app_abort(s->app_ud, req);
}

/* ---- The closers of the parts ---- */

static int close_router(void *ud, void (*done)(void *ud), void *done_ud)
{
    return bx_router_close(ud, done, done_ud);
}

static int close_hub(void *ud, void (*done)(void *ud), void *done_ud)
{
    return bx_hub_close(ud, done, done_ud);
}

static int close_http(void *ud, void (*done)(void *ud), void *done_ud)
{
    bx_http_server_close(ud, done, done_ud);
    return 1;
}

static void lag_closed(uv_handle_t *h)
{
    bx_server_t *s = h->data;
    s->lag_done(s->lag_done_ud);
}

static int close_lag(void *ud, void (*done)(void *ud), void *done_ud)
{
    bx_server_t *s = ud;
    s->lag_done = done;
    s->lag_done_ud = done_ud;
    uv_close((uv_handle_t *)&s->lag, lag_closed);
    return 1;
}

/* The loop's lag: how much later than asked a timer fires, i.e. how long
 * the loop was busy with something else. */
static void on_lag(uv_timer_t *t)
{
    bx_server_t *s = t->data;
    uint64_t now = uv_hrtime();
    uint64_t lag = now > s->lag_due ? now - s->lag_due : 0;

    bx_metrics.lag_samples++;
    bx_metrics.lag_ns_sum += lag;
    bx_metrics.lag_ns_last = lag;
    if (lag > bx_metrics.lag_ns_max)
        bx_metrics.lag_ns_max = lag;
    s->lag_due = now + LAG_EVERY_MS * 1000000ull;
    uv_timer_start(&s->lag, on_lag, LAG_EVERY_MS, 0);
}

static int close_engine(void *ud, void (*done)(void *ud), void *done_ud)
{
    bx_engine_t *e = ud;
    e->ops->close(e, done, done_ud);
    return 1;
}

/* ---- Life cycle ---- */

/* A hub whose server could not be made is freed once its handles close. */
static void hub_orphan_closed(void *ud)
{
    bx_hub_free(ud);
}

bx_server_t *bx_server_new(uv_loop_t *loop, const bx_server_opts_t *opts, char *err,
                           size_t errlen)
{
    bx_server_t *s = bx_calloc(1, sizeof(*s));
    bx_hub_opts_t hopts = {
        opts->timeout > 0 ? opts->timeout : 60, opts->interval, opts->max_reply,
        opts->max_channel_length, opts->max_channel_depth, opts->publish_rate,
        opts->publish_burst, opts->max_subscriptions
    };
    bx_endpoint_opts_t eopts = {
        opts->mount, opts->ping, opts->max_frame, opts->max_output, opts->client_script,
        opts->http.idle_timeout > 0 ? opts->http.idle_timeout : 120,
        opts->allowed_origins, opts->browser_cookie, opts->deflate
    };
    bx_engine_opts_t engine_opts = {
        hopts.timeout, opts->queue_limit, opts->max_channels
    };

    s->loop = loop;
    /* the endpoint first: it may fail (the client script), and the hub,
     * once made, has handles to close */
    s->ep = bx_router_new(loop, NULL, &eopts, err, errlen);
    if (!s->ep) {
        free(s);
        return NULL;
    }
    s->hub = bx_hub_new(loop, &hopts);
    s->ep->hub = s->hub;
    bx_proxy_t proxy = bx_hub_proxy(s->hub);
    s->engine = bx_engine_new(opts->engine ? opts->engine : "memory", loop, &proxy, &engine_opts, err, errlen);
    if (!s->engine) {
        bx_hub_close(s->hub, hub_orphan_closed, s->hub);
        bx_router_free(s->ep);
        free(s);
        return NULL;
    }
    bx_hub_attach(s->hub, s->engine);
    s->opts = *opts;
    s->opts.timeout = hopts.timeout;
    s->opts.mount = s->ep->opts.mount;
    s->opts.client_script = s->ep->opts.client_script;
    if (opts->metrics && *opts->metrics)
        s->metrics = bx_strdup(opts->metrics);
    s->opts.metrics = s->metrics;
    /* the lag is measured whether or not it is exposed: one wake a second */
    uv_timer_init(loop, &s->lag);
    s->lag.data = s;
    uv_unref((uv_handle_t *)&s->lag);
    s->lag_due = uv_hrtime() + LAG_EVERY_MS * 1000000ull;
    uv_timer_start(&s->lag, on_lag, LAG_EVERY_MS, 0);
    s->opts.allowed_origins = s->ep->opts.allowed_origins;
    /* the order of shutdown: sockets first (their sinks leave the
     * sessions), then the sessions, then what is under them */
    add_closer(s, close_router, s->ep);
    add_closer(s, close_hub, s->hub);
    add_closer(s, close_lag, s);
    return s;
}

const bx_server_opts_t *bx_server_opts(const bx_server_t *s)
{
    return &s->opts;
}

bx_hub_t *bx_server_hub(bx_server_t *s)
{
    return s->hub;
}

bx_engine_t *bx_server_engine(bx_server_t *s)
{
    return s->engine;
}

int bx_server_listen(bx_server_t *s, const char *host, int port)
{
    return bx_server_listen_ex(s, host, port, 0);
}

int bx_server_listen_ex(bx_server_t *s, const char *host, int port, int reuseport)
{
    return bx_server_listen_tls(s, host, port, reuseport, NULL);
}

int bx_server_listen_tls(bx_server_t *s, const char *host, int port, int reuseport,
                         bx_tls_ctx_t *tls)
{
    if (s->http || s->closing)
        return UV_EALREADY;
    s->http = bx_http_server_new(s->loop, &s->opts.http, on_request, on_abort, s);
    bx_http_server_on_head(s->http, on_head);
    bx_http_server_set_tls(s->http, tls);
    int rc = bx_http_listen_ex(s->http, host, port, reuseport);
    if (rc != 0) {
        bx_http_server_close(s->http, NULL, NULL);
        s->http = NULL;
        return rc;
    }
    add_closer(s, close_http, s->http);
    return 0;
}

int bx_server_port(const bx_server_t *s)
{
    return s->http ? bx_http_port(s->http) : -1;
}

static void adopt_refused(uv_handle_t *h)
{
    free(h);
}

void bx_server_adopt(bx_server_t *s, uv_tcp_t *tcp)
{
    if (!s->http) {
        uv_close((uv_handle_t *)tcp, adopt_refused);
        return;
    }
    bx_http_adopt(s->http, tcp);
}

void bx_server_on_app(bx_server_t *s, bx_server_app_cb cb, bx_server_app_cb abort_cb,
                      void *ud)
{
    s->app_cb = cb;
    s->app_abort = abort_cb;
    s->app_ud = ud;
}

void bx_server_on_app_head(bx_server_t *s, bx_http_head_cb cb)
{
    s->app_head = cb;
}

/* One closer is done; the last frees the server. */
static void closed_one(void *ud)
{
    bx_server_t *s = ud;

    if (--s->pending_closes > 0)
        return;
    void (*done)(void *) = s->close_done;
    void *close_ud = s->close_ud;
    bx_router_free(s->ep);
    bx_hub_free(s->hub);
    free(s->metrics);
    free(s);
    if (done)
        done(close_ud);
}

/* Second stage of close: the answers to held connects have been produced
 * (first stage) and the HTTP layer has written what it could. */
static void close_rest(void *ud)
{
    bx_server_t *s = ud;

    /* the engine last: the closers before it may still give messages back */
    add_closer(s, close_engine, s->engine);
    /* one extra count, so that no closer finishes the server while the
     * others are still being started */
    s->pending_closes = 1;
    for (int i = 0; i < s->nclosers; i++)
        s->pending_closes += s->closers[i].fn(s->closers[i].ud, closed_one, s);
    closed_one(s);
}

void bx_server_close(bx_server_t *s, void (*done)(void *ud), void *ud)
{
    if (s->closing)
        return;
    s->closing = 1;
    s->close_done = done;
    s->close_ud = ud;
    bx_hub_close_begin(s->hub);
    /* push the answers to the sockets before the listener closes them */
    bx_conn_flush_all(s->loop);
    bx_hub_defer(s->hub, close_rest, s);
}
