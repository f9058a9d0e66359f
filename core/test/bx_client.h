/*
 * bx_client.h - a raw TCP client on libuv for the C unit tests that talk to
 * a server over loopback (test_http.c, test_ws.c), on the server's loop,
 * and run_until() to drive that loop with a bound.
 *
 * Functions are static inline so that a test using only some of them still
 * builds with -Werror. Received bytes accumulate in `in`; bytes sent before
 * the connect completes wait in `unsent`.
 */
#ifndef BX_CLIENT_H
#define BX_CLIENT_H

#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "base/buf.h"

/* ---- Waiting ---- */

static int (*until_pred)(void);
static int until_ok;

static inline void until_idle_cb(uv_idle_t *c)
{
    if (until_pred()) {
        until_ok = 1;
        uv_stop(c->loop);
    }
}

static inline void until_timeout_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until pred() holds (1) or `ms` pass (0). */
static inline int run_until(uv_loop_t *loop, int (*pred)(void), uint64_t ms)
{
    uv_idle_t chk;      /* idle, not check: the loop must not block in poll
                         * when pred() became true in a close callback */
    uv_timer_t tm;

    until_pred = pred;
    until_ok = pred();
    if (until_ok)
        return 1;
    uv_idle_init(loop, &chk);
    uv_idle_start(&chk, until_idle_cb);
    uv_timer_init(loop, &tm);
    uv_timer_start(&tm, until_timeout_cb, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&chk, NULL);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(loop, UV_RUN_NOWAIT);    /* completes the two closes */
    return until_ok;
}

/* ---- The client ---- */

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t creq;
    bx_buf_t in;
    bx_buf_t unsent;            /* queued before the connect completed */
    size_t off;                 /* for the test's parser: consumed up to here */
    int connected, eof, closed;
    int upgraded, status;       /* for the test's parser */
    uint64_t eof_at;            /* loop time the peer's close was seen */
} client_t;

typedef struct {
    uv_write_t req;
    char data[];
} cl_write_t;

static inline void cl_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    *buf = uv_buf_init(malloc(size), (unsigned)size);
}

static inline void cl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *cl = s->data;

    if (n > 0) {
        bx_buf_append(&cl->in, buf->base, (size_t)n);
    } else if (n < 0) {
        cl->eof = 1;
        cl->eof_at = uv_now(s->loop);
        uv_read_stop(s);
    }
    free(buf->base);
}

static inline void cl_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

/* Sends a copy of `data` (queued until connected). */
static inline void client_send(client_t *cl, const void *data, size_t len)
{
    if (!cl->connected) {
        bx_buf_append(&cl->unsent, data, len);
        return;
    }
    cl_write_t *w = malloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&cl->tcp, &b, 1, cl_write_cb) < 0)
        free(w);
}

static inline void cl_connect_cb(uv_connect_t *req, int status)
{
    client_t *cl = req->data;

    if (status < 0) {
        cl->eof = 1;
        return;
    }
    cl->connected = 1;
    uv_read_start((uv_stream_t *)&cl->tcp, cl_alloc, cl_read);
    if (cl->unsent.len)
        client_send(cl, cl->unsent.data, cl->unsent.len);
    bx_buf_free(&cl->unsent);
}

/* Connects `cl` (zeroed here) to 127.0.0.1:port. */
static inline void client_open(uv_loop_t *loop, client_t *cl, int port)
{
    struct sockaddr_in a;

    memset(cl, 0, sizeof(*cl));
    uv_tcp_init(loop, &cl->tcp);
    cl->tcp.data = cl;
    cl->creq.data = cl;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_connect(&cl->creq, &cl->tcp, (struct sockaddr *)&a, cl_connect_cb);
}

static inline void cl_closed_cb(uv_handle_t *h)
{
    client_t *cl = h->data;
    cl->closed = 1;
}

/* Starts closing; `closed` is set on a later loop turn. */
static inline void client_close(client_t *cl)
{
    if (!uv_is_closing((uv_handle_t *)&cl->tcp))
        uv_close((uv_handle_t *)&cl->tcp, cl_closed_cb);
}

/* Closes, runs the loop until closed and frees the buffers, so the struct
 * can be reused. */
static inline void client_close_wait(client_t *cl)
{
    client_close(cl);
    while (!cl->closed)
        uv_run(cl->tcp.loop, UV_RUN_ONCE);
    bx_buf_free(&cl->in);
    bx_buf_free(&cl->unsent);
}

/* ---- Reading a WebSocket (the test parses what the server sends) ---- */

/* Parses the 101 answer once it is complete: cl->status, cl->upgraded,
 * and cl->off past the head. */
static inline void parse_upgrade(client_t *cl)
{
    if (cl->upgraded || cl->status)
        return;
    bx_buf_reserve(&cl->in, 1);
    cl->in.data[cl->in.len] = '\0';
    char *end = strstr(cl->in.data ? cl->in.data : "", "\r\n\r\n");
    if (!end)
        return;
    cl->status = atoi(cl->in.data + 9);
    cl->off = (size_t)(end + 4 - cl->in.data);
    cl->upgraded = cl->status == 101;
}

/* The next complete server frame after the upgrade: its first byte, with
 * the header's length in *hl and the payload's in *len (the caller moves
 * cl->off past it); NULL while none is complete. */
static inline const uint8_t *client_frame(client_t *cl, size_t *hl, uint64_t *len)
{
    parse_upgrade(cl);
    if (!cl->upgraded)
        return NULL;
    const uint8_t *p = (const uint8_t *)cl->in.data + cl->off;
    size_t avail = cl->in.len - cl->off;
    *hl = 2;
    if (avail < 2)
        return NULL;
    *len = p[1] & 0x7f;
    if (*len == 126) {
        *hl = 4;
        if (avail < *hl)
            return NULL;
        *len = (uint64_t)p[2] << 8 | p[3];
    } else if (*len == 127) {
        *hl = 10;
        if (avail < *hl)
            return NULL;
        *len = 0;
        for (int i = 0; i < 8; i++)
            *len = *len << 8 | p[2 + i];
    }
    return avail < *hl + *len ? NULL : p;
}

#endif
