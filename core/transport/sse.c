/*
 * sse.c - EventSource streams (see sse.h).
 *
 * As in ws.c, push() and close() run inside the server's delivery pass or
 * a session's end, so they only write and start closing; a stream leaves
 * its session in its close callback.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/metrics.h"
#include "transport/endpoint.h"
#include "transport/sse.h"
#include "transport/streams.h"

#define DEFAULT_KEEPALIVE   10.0    /* seconds, faye-websocket's DEFAULT_PING */

typedef struct es es_t;

struct es {
    bx_sink_t sink;             /* first: the server hands it back */
    bx_stream_t st;             /* in the server's set; st.conn is ours */
    bx_http_req_t *req;
    char id[32];
    unsigned bound : 1;
    unsigned closing : 1;
    unsigned asking : 1;        /* a client_exists is in flight */
    unsigned gone : 1;          /* closed while asking: its answer frees e */
};

static bx_streams_t *sets;      /* one per server with streams */
static size_t nstreams;

static const char head[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream\r\n"
    "Cache-Control: no-cache, no-store\r\n"
    "Connection: close\r\n"
    "\r\n"
    "retry: 5000\r\n"
    "\r\n";

size_t bx_sse_count(void)
{
    return nstreams;
}

#define ES_OF(stp) ((es_t *)(void *)((char *)(stp) - offsetof(es_t, st)))

/* The set's timer: the keep-alive comment on every stream. */
static void keepalive_one(bx_stream_t *st)
{
    BX_CHUNK_STATIC(comment, ":\r\n\r\n");
    es_t *e = ES_OF(st);

    if (!e->closing)
        bx_conn_write_chunk(e->st.conn, bx_chunk_ref(comment));
}

/* The engine's answer for an idle stream: a stream for a client the engine
 * does not know would never get a delivery nor end with a session (the
 * session's expiry is what ends the others), so it ends here. */
static void exists_cb(void *ud, int status, int yes)
{
    es_t *e = ud;

    e->asking = 0;
    if (e->gone) {
        free(e);
        return;
    }
    if (status == BX_EUNKNOWN || (status == 0 && !yes)) {
        if (e->bound && e->st.set->s)
            bx_session_unbind(e->st.set->s->hub, e->id, &e->sink);
        e->bound = 0;
        e->closing = 1;
        bx_conn_close_after_write(e->st.conn);
    }
}

/* The set's idle check: every idle_timeout, ask whether the client lives. */
static void idle_one(bx_stream_t *st)
{
    es_t *e = ES_OF(st);
    bx_engine_t *en;

    st->last_rx = uv_now(st->set->timer.loop);
    if (e->closing || e->asking || !st->set->s)
        return;
    en = bx_hub_engine(st->set->s->hub);
    if (en->ops->client_exists(en, e->id, exists_cb, e) == 0)
        e->asking = 1;
}

/* ---- Sink ---- */

static void sink_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    BX_CHUNK_STATIC(open_event, "data: [");
    BX_CHUNK_STATIC(close_event, "]\r\n\r\n");
    es_t *e = (es_t *)sink;
    bx_chunkv_t ev = BX_CHUNKV_INIT;

    /* refused (left in msgs) when the stream is going away: the server
     * gives them back to the client's queue */
    if (e->closing || bx_conn_is_closing(e->st.conn) || msgs->n == 0)
        return;
    if (bx_stream_too_slow(&e->st, "eventsource")) {
        e->closing = 1;
        return;
    }
    bx_chunkv_push(&ev, open_event);
    bx_chunkv_push_joined(&ev, msgs, 1);
    bx_chunkv_push(&ev, close_event);
    bx_chunkv_clear(msgs);
    bx_conn_write(e->st.conn, &ev);
    bx_chunkv_free(&ev);
}

static void sink_close(bx_sink_t *sink)
{
    es_t *e = (es_t *)sink;

    e->bound = 0;
    e->closing = 1;
    bx_conn_close_after_write(e->st.conn);
}

/* ---- Connection ---- */

static void es_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    /* nothing is expected from the client: ignore it */
    (void)c;
    (void)ud;
    (void)data;
    (void)len;
    (void)status;
}

static void es_closed(bx_conn_t *c, void *ud)
{
    es_t *e = ud;

    (void)c;
    if (e->bound && e->st.set->s)
        bx_session_unbind(e->st.set->s->hub, e->id, &e->sink);
    bx_http_hijack_done(e->req);
    bx_streams_remove(&e->st);
    nstreams--;
    if (e->asking)
        e->gone = 1;            /* exists_cb frees it */
    else
        free(e);
}

void bx_sse_handle(bx_endpoint_t *s, bx_http_req_t *req)
{
    const char *start = req->url.base, *end = req->url.base + req->url.len;

    if (bx_hub_closing(s->hub)) {
        bx_http_respond_text(req, 503, "text/plain; charset=utf-8", "Server closing", 0);
        return;
    }
    for (const char *p = req->url.base; p < end; p++)
        if (*p == '/')
            start = p + 1;
    size_t n = (size_t)(end - start);
    es_t *e = bx_calloc(1, sizeof(*e));
    if (n == 0 || n >= sizeof(e->id) || memchr(start, '\0', n)) {
        /* no id, or one no server issues: a stream that can never get a
         * delivery; Faye would serve it, we refuse it plainly */
        free(e);
        bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
        return;
    }
    memcpy(e->id, start, n);
    e->id[n] = '\0';
    if (bx_session_has_sink(s->hub, e->id)) {
        /* another live stream or socket owns it (see ws.c's bind_to) */
        free(e);
        bx_http_respond_text(req, 409, "text/plain; charset=utf-8",
                             "Client bound to another connection", 0);
        return;
    }
    if (s->opts.browser_cookie) {
        char browser[65];
        const char *bound = bx_session_browser(s->hub, e->id);
        bx_endpoint_browser(req, browser);
        if (bound && strcmp(bound, browser) != 0) {
            free(e);
            bx_http_respond_text(req, 409, "text/plain; charset=utf-8",
                                 "Client bound to another browser", 0);
            return;
        }
    }
    e->st.conn = bx_http_hijack(&req, es_read, es_closed, e);
    if (!e->st.conn) {
        free(e);
        bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
        return;
    }
    const bx_endpoint_opts_t *o = (&s->opts);
    e->req = req;
    e->sink.push = sink_push;
    e->sink.close = sink_close;
    e->sink.request = req;
    bx_streams_t *set = bx_streams_get(&sets, s, o->ping > 0 ? o->ping : DEFAULT_KEEPALIVE,
                                       keepalive_one);
    bx_streams_watch(set, o->idle_timeout, idle_one);
    bx_streams_add(set, &e->st);
    nstreams++;
    bx_metrics.sse_opened++;
    bx_conn_write_copy(e->st.conn, head, sizeof(head) - 1);
    e->bound = 1;
    bx_session_bind(s->hub, e->id, &e->sink);
}

/* Server shutdown: a stream leaves its session and ends once written. */
static void close_one(bx_stream_t *st)
{
    es_t *e = ES_OF(st);

    if (e->bound)
        bx_session_unbind(e->st.set->s->hub, e->id, &e->sink);
    e->bound = 0;
    e->closing = 1;
    bx_conn_close_after_write(e->st.conn);
}

int bx_sse_server_close(bx_endpoint_t *s, void (*done)(void *ud), void *ud)
{
    return bx_streams_close(&sets, s, close_one, done, ud);
}
