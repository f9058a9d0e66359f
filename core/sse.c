/*
 * sse.c - EventSource streams (see sse.h).
 *
 * As in ws.c, push() and close() run inside the server's delivery pass or
 * a session's end, so they only write and start closing; a stream leaves
 * its session in its close callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "server.h"
#include "sse.h"

#define DEFAULT_KEEPALIVE   10.0    /* seconds, faye-websocket's DEFAULT_PING */
#define CLOSE_GRACE_MS      2000

typedef struct es es_t;
typedef struct reg reg_t;

struct reg {
    reg_t *next;
    bx_server_t *s;             /* NULL once the server closes */
    uv_timer_t timer;           /* keep-alive; at close, the grace period */
    es_t *head;
    size_t max_output;
    int closing;
    void (*done)(void *ud);
    void *done_ud;
};

struct es {
    bx_sink_t sink;             /* first: the server hands it back */
    reg_t *reg;
    es_t *prev, *next;
    bx_conn_t *conn;
    bx_http_req_t *req;
    char id[32];
    unsigned bound : 1;
    unsigned closing : 1;
};

static reg_t *regs;
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

static void on_keepalive(uv_timer_t *t)
{
    BX_CHUNK_STATIC(comment, ":\r\n\r\n");
    reg_t *r = t->data;

    for (es_t *e = r->head; e; e = e->next)
        if (!e->closing)
            bx_conn_write_chunk(e->conn, bx_chunk_ref(comment));
}

static reg_t *reg_get(bx_server_t *s)
{
    for (reg_t *r = regs; r; r = r->next)
        if (r->s == s)
            return r;
    const bx_server_opts_t *o = bx_server_opts(s);
    reg_t *r = bx_calloc(1, sizeof(*r));
    r->s = s;
    r->max_output = o->max_output;
    uv_timer_init(bx_server_loop(s), &r->timer);
    r->timer.data = r;
    uint64_t ms = (uint64_t)((o->ping > 0 ? o->ping : DEFAULT_KEEPALIVE) * 1000);
    uv_timer_start(&r->timer, on_keepalive, ms ? ms : 1, ms ? ms : 1);
    uv_unref((uv_handle_t *)&r->timer);
    r->next = regs;
    regs = r;
    return r;
}

static void reg_timer_closed(uv_handle_t *h)
{
    reg_t *r = h->data;
    void (*done)(void *) = r->done;
    void *ud = r->done_ud;
    free(r);
    if (done)
        done(ud);
}

/* ---- Sink ---- */

static void sink_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    BX_CHUNK_STATIC(open_event, "data: [");
    BX_CHUNK_STATIC(close_event, "]\r\n\r\n");
    BX_CHUNK_STATIC(comma, ",");
    es_t *e = (es_t *)sink;
    bx_chunkv_t ev = BX_CHUNKV_INIT;

    if (e->closing || bx_conn_is_closing(e->conn) || msgs->n == 0) {
        bx_chunkv_clear(msgs);
        return;
    }
    size_t queued = bx_conn_pending_bytes(e->conn);
    if (e->reg->max_output && queued > e->reg->max_output) {
        fprintf(stderr, "bayeux: eventsource %s: closed: %zu bytes not read by the client "
                        "(max_output)\n", bx_conn_peer(e->conn), queued);
        fflush(stderr);
        bx_chunkv_clear(msgs);
        e->closing = 1;
        bx_conn_close(e->conn);
        return;
    }
    bx_chunkv_push(&ev, open_event);
    for (size_t i = 0; i < msgs->n; i++) {
        if (i)
            bx_chunkv_push(&ev, comma);
        bx_chunkv_push_new(&ev, msgs->v[i]);
    }
    msgs->n = 0;                /* references moved to `ev` */
    bx_chunkv_push(&ev, close_event);
    bx_conn_write(e->conn, &ev);
    bx_chunkv_free(&ev);
}

static void sink_close(bx_sink_t *sink)
{
    es_t *e = (es_t *)sink;

    e->bound = 0;
    e->closing = 1;
    bx_conn_close_after_write(e->conn);
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
    reg_t *r = e->reg;

    (void)c;
    if (e->bound && r->s)
        bx_session_unbind(r->s, e->id, &e->sink);
    bx_http_hijack_done(e->req);
    if (e->prev)
        e->prev->next = e->next;
    else
        r->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    free(e);
    nstreams--;
    if (r->closing && !r->head)
        uv_close((uv_handle_t *)&r->timer, reg_timer_closed);
}

void bx_sse_handle(bx_server_t *s, bx_http_req_t *req)
{
    const char *start = req->url.base, *end = req->url.base + req->url.len;

    if (bx_server_closing(s)) {
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
    e->conn = bx_http_hijack(req, es_read, es_closed, e);
    if (!e->conn) {
        free(e);
        bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
        return;
    }
    reg_t *r = reg_get(s);
    e->reg = r;
    e->req = req;
    e->sink.push = sink_push;
    e->sink.close = sink_close;
    e->sink.request = req;
    memcpy(e->id, start, n);
    e->id[n] = '\0';
    e->next = r->head;
    if (e->next)
        e->next->prev = e;
    r->head = e;
    nstreams++;
    bx_conn_write_copy(e->conn, head, sizeof(head) - 1);
    e->bound = 1;
    bx_session_bind(s, e->id, &e->sink);
}

static void on_grace(uv_timer_t *t)
{
    reg_t *r = t->data;
    for (es_t *e = r->head; e; e = e->next)
        bx_conn_close(e->conn);
}

int bx_sse_server_close(bx_server_t *s, void (*done)(void *ud), void *ud)
{
    reg_t **pp, *r = NULL;

    for (pp = &regs; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            r = *pp;
            *pp = r->next;
            break;
        }
    if (!r)
        return 0;
    for (es_t *e = r->head; e; e = e->next) {
        if (e->bound)
            bx_session_unbind(s, e->id, &e->sink);
        e->bound = 0;
        e->closing = 1;
        bx_conn_close_after_write(e->conn);
    }
    r->s = NULL;
    r->closing = 1;
    uv_timer_stop(&r->timer);
    if (!r->head) {
        uv_close((uv_handle_t *)&r->timer, reg_timer_closed);
        return 0;
    }
    r->done = done;
    r->done_ud = ud;
    uv_timer_start(&r->timer, on_grace, CLOSE_GRACE_MS, 0);
    return 1;
}
