/*
 * conn.c - one TCP connection on libuv: reading, coalesced output, close.
 *
 * Output is collected in c->pending and written by a per-loop uv_prepare
 * pass, right before the loop blocks for I/O, with one uv_write of all
 * pending chunks. Only one uv_write per connection is in flight at a time:
 * whatever is queued meanwhile leaves in the next single write, so a slow
 * reader gets fewer, larger writes. The chunks being written are held in
 * c->inflight until write_cb, as libuv requires the bytes to stay valid.
 *
 * Reads use one buffer per loop: libuv calls alloc_cb and read_cb back to
 * back, and read_cb consumes the bytes synchronously, so an idle connection
 * costs no read memory at all.
 */
#include "net/conn.h"
#include "net/tls.h"
#include "base/metrics.h"

#include "base/list.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BUF_SIZE   65536
#define WRITE_INLINE    16      /* uv_buf_t on the stack before we malloc */
/* After a final response the peer's input is drained until it closes, for
 * at most LINGER_IDLE_MS without a byte and LINGER_MAX_MS in all (nginx's
 * lingering_timeout and lingering_time). */
#define LINGER_IDLE_MS  2000
#define LINGER_MAX_MS   30000

enum {
    C_CLOSING   = 1 << 0,       /* uv_close() was called */
    C_DRAIN     = 1 << 1,       /* close_after_write: flush, shut down, then close */
    C_PAUSED    = 1 << 2,       /* the owner stopped reading */
    C_DIRTY     = 1 << 3,       /* on the loop's dirty list */
    C_WRITING   = 1 << 4,       /* a uv_write is in flight */
    C_LINGER    = 1 << 5,       /* FIN sent; discarding input until EOF or timeout */
    C_EOF       = 1 << 6,       /* the peer closed its side */
};

/* Per-loop state: the prepare pass, its dirty list and the read buffer. */
typedef struct loopstate {
    uv_loop_t *loop;
    uv_prepare_t prepare;
    bx_list_t dirty;            /* of bx_conn_t, by dlink; newest first */
    char *rbuf;
    int rbuf_busy;
    size_t nconns;
    int zombie;                 /* cleanup asked while connections still lived */
    struct loopstate *next;
} loopstate_t;

struct bx_conn_s {
    uv_tcp_t *tcp;              /* owned; freed in close_cb */
    loopstate_t *ls;
    bx_conn_read_cb on_read;
    bx_conn_close_cb on_close;
    void *ud;
    bx_chunkv_t pending;        /* queued, not yet handed to uv_write */
    bx_chunkv_t inflight;       /* handed to uv_write, held until write_cb */
    size_t pending_bytes;
    size_t inflight_bytes;
    /* Write and shutdown requests are allocated only when used (most writes
     * finish in uv_try_write) and freed by their callbacks: an idle
     * connection should cost little. */
    void (*on_free)(void *ud);  /* bx_conn_on_free */
    void *free_ud;
    bx_conn_drain_cb on_drain;  /* bx_conn_when_drained, until it fires */
    void *drain_ud;
    uv_timer_t *linger;         /* only while lingering; closed independently */
    uint64_t linger_end;        /* loop time at which lingering stops */
    bx_list_t dlink;            /* on ls->dirty while C_DIRTY */
    uint8_t family;             /* the peer: AF_INET, AF_INET6, or 0 */
    uint16_t port;
    unsigned char addr[16];     /* formatted on demand (bx_conn_peer) */
    unsigned flags;             /* here, in what was padding: 200 bytes stay
                                   in the allocator's 208-byte class */
    bx_tls_t *tls;              /* bx_conn_use_tls; NULL for plain TCP */
};

static loopstate_t *loops;      /* the server is single-threaded: one list */
static size_t conn_count;
static uint64_t write_calls;

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* ---- Per-loop state ---- */

static void prepare_cb(uv_prepare_t *p);

static loopstate_t *ls_get(uv_loop_t *loop, int create)
{
    loopstate_t *ls;

    for (ls = loops; ls; ls = ls->next)
        if (ls->loop == loop)
            return ls;
    if (!create)
        return NULL;
    ls = bx_calloc(1, sizeof(*ls));
    ls->loop = loop;
    bx_list_init(&ls->dirty);
    uv_prepare_init(loop, &ls->prepare);
    ls->prepare.data = ls;
    ls->next = loops;
    loops = ls;
    return ls;
}

static void ls_closed_cb(uv_handle_t *h)
{
    loopstate_t *ls = h->data;
    free(ls->rbuf);
    free(ls);
}

static void ls_close(loopstate_t *ls)
{
    uv_close((uv_handle_t *)&ls->prepare, ls_closed_cb);
}

/* ---- Dirty list and flushing ---- */

static void dirty_remove(bx_conn_t *c)
{
    if (!(c->flags & C_DIRTY))
        return;
    bx_list_remove(&c->dlink);
    c->flags &= ~C_DIRTY;
}

static void mark_dirty(bx_conn_t *c)
{
    loopstate_t *ls = c->ls;

    if (c->flags & (C_DIRTY | C_CLOSING))
        return;
    c->flags |= C_DIRTY;
    bx_list_push_head(&ls->dirty, &c->dlink);
    /* An active prepare handle keeps the loop alive, so it runs only while
     * there is something to flush. */
    if (!uv_is_active((uv_handle_t *)&ls->prepare))
        uv_prepare_start(&ls->prepare, prepare_cb);
}

static void linger_timer_cb(uv_timer_t *t)
{
    bx_conn_close(t->data);
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

/* Starts the linger timer: the connection closes after LINGER_IDLE_MS
 * without input, LINGER_MAX_MS at most. */
static void linger_start(bx_conn_t *c)
{
    c->linger_end = uv_now(c->ls->loop) + LINGER_MAX_MS;
    if (!c->linger) {
        c->linger = bx_malloc(sizeof(*c->linger));
        uv_timer_init(c->ls->loop, c->linger);
        c->linger->data = c;
    }
    uv_timer_start(c->linger, linger_timer_cb, LINGER_IDLE_MS, 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    bx_conn_t *c = req->data;

    free(req);
    if (c->flags & C_CLOSING)
        return;                 /* cancelled by bx_conn_close */
    if (status < 0 || (c->flags & C_EOF)) {
        bx_conn_close(c);
        return;
    }
    /* Closing a socket with unread input makes the kernel send RST, which
     * can destroy the response we just sent before the peer reads it, and
     * fails the peer's writes (e.g. a 413 while the client is still
     * uploading). So read and discard until the peer closes, for a bounded
     * time (nginx's lingering close). Reading may be on already (the
     * request was refused while its body arrived) or paused by the owner. */
    c->flags |= C_LINGER;
    linger_start(c);
    if (c->flags & C_PAUSED) {
        c->flags &= ~C_PAUSED;
        if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) < 0)
            bx_conn_close(c);
    }
}

/* Input arrived while lingering: wait again, up to the overall bound. */
static void linger_touch(bx_conn_t *c)
{
    uint64_t now = uv_now(c->ls->loop);
    uint64_t left = c->linger_end > now ? c->linger_end - now : 0;

    uv_timer_start(c->linger, linger_timer_cb, left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS,
                   0);
}

static void begin_shutdown(bx_conn_t *c)
{
    uv_shutdown_t *req = bx_malloc(sizeof(*req));

    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)c->tcp, shutdown_cb) < 0) {
        free(req);
        bx_conn_close(c);
    }
}

/* Runs the drain callback if nothing is left to write. */
static void check_drained(bx_conn_t *c)
{
    bx_conn_drain_cb cb = c->on_drain;

    if (!cb || c->pending.n || (c->flags & (C_WRITING | C_CLOSING)))
        return;
    c->on_drain = NULL;
    cb(c, c->drain_ud);
}

/* A TLS connection owes records besides its pending chunks: handshake
 * messages or alerts made while reading, or the close_notify that ends a
 * close_after_write. */
static int tls_owes(const bx_conn_t *c)
{
    return c->tls && (bx_tls_pending(c->tls) ||
                      ((c->flags & C_DRAIN) && !c->pending.n && bx_tls_owes_close(c->tls)));
}

/* Seals the pending plaintext into records, as one ciphertext chunk in
 * c->inflight (with c->inflight_bytes its size). Until the handshake has
 * finished the plaintext stays pending. Returns -1 on a TLS failure. */
static int tls_seal(bx_conn_t *c)
{
    size_t i, plain = 0;
    bx_chunk_t *out;

    for (i = 0; i < c->pending.n; i++) {
        bx_chunk_t *ch = c->pending.v[i];
        int rc = bx_tls_write(c->tls, ch->data, ch->len);
        if (rc < 0)
            return -1;
        if (rc > 0)
            break;
        plain += ch->len;
    }
    if (i > 0) {
        for (size_t j = 0; j < i; j++)
            bx_chunk_unref(c->pending.v[j]);
        memmove(c->pending.v, c->pending.v + i, (c->pending.n - i) * sizeof(*c->pending.v));
        c->pending.n -= i;
        c->pending_bytes -= plain;
    }
    if (c->pending.n == 0 && (c->flags & C_DRAIN))
        bx_tls_close_notify(c->tls);
    out = bx_tls_take(c->tls);
    if (out) {
        bx_chunkv_push_new(&c->inflight, out);
        c->inflight_bytes = out->len;
    }
    return 0;
}

static void write_cb(uv_write_t *req, int status)
{
    bx_conn_t *c = req->data;

    free(req);
    if (status >= 0)
        bx_metrics.bytes_out += c->inflight_bytes;
    bx_chunkv_free(&c->inflight);   /* an idle connection keeps no array */
    c->inflight_bytes = 0;
    c->flags &= ~C_WRITING;
    if (c->flags & C_CLOSING)
        return;
    if (status < 0) {
        bx_conn_close(c);
        return;
    }
    if (c->pending.n || tls_owes(c))
        mark_dirty(c);
    else if (c->flags & C_DRAIN)
        begin_shutdown(c);
    else
        check_drained(c);
}

/* Hands everything pending to the kernel in one writev: uv_try_write first,
 * and only what it could not take goes to a uv_write. A completed uv_write
 * costs more than the write itself: its callback runs on a later pass and
 * libuv (1.44) then re-arms the socket's epoll watcher with one more system
 * call (epoll_ctl), once per write. */
static void start_write(bx_conn_t *c)
{
    uv_buf_t small[WRITE_INLINE], *bufs;
    size_t n = c->pending.n, i = 0, total;
    int r;

    if (c->flags & (C_CLOSING | C_WRITING))
        return;
    if (c->tls) {
        /* the records of everything pending, as one chunk: one writev */
        if (tls_seal(c) < 0) {
            bx_conn_close(c);
            return;
        }
        n = c->inflight.n;
        total = c->inflight_bytes;
        c->inflight_bytes = 0;
        if (n == 0) {
            /* the handshake never finished: no close_notify to send */
            if ((c->flags & C_DRAIN) && !c->pending.n)
                begin_shutdown(c);
            else
                check_drained(c);
            return;
        }
    } else {
        if (n == 0) {
            check_drained(c);
            return;
        }
        bx_chunkv_move(&c->inflight, &c->pending);
        total = c->pending_bytes;
        c->pending_bytes = 0;
    }
    bufs = n <= WRITE_INLINE ? small : bx_malloc(n * sizeof(*bufs));
    for (i = 0; i < n; i++)
        bufs[i] = uv_buf_init(c->inflight.v[i]->data, (unsigned)c->inflight.v[i]->len);
    write_calls++;
    r = uv_try_write((uv_stream_t *)c->tcp, bufs, (unsigned)n);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r > 0)
        bx_metrics.bytes_out += (uint64_t)r;
    if (r < 0 || (size_t)r == total) {
        if (bufs != small)
            free(bufs);
        /* freed, not kept: the next pending array is moved in whole, and an
         * idle connection holds no output memory at all */
        bx_chunkv_free(&c->inflight);
        if (r < 0)
            bx_conn_close(c);
        else if (c->pending.n || tls_owes(c))
            mark_dirty(c);      /* TLS: plaintext waiting for the handshake */
        else if (c->flags & C_DRAIN)
            begin_shutdown(c);
        else
            check_drained(c);
        return;
    }
    /* the rest: skip what was written (the chunks stay in c->inflight) */
    size_t done = (size_t)r;
    for (i = 0; i < n && done >= bufs[i].len; i++)
        done -= bufs[i].len;
    bufs[i].base += done;
    bufs[i].len -= done;
    c->inflight_bytes = total - (size_t)r;
    uv_write_t *req = bx_malloc(sizeof(*req));
    req->data = c;
    r = uv_write(req, (uv_stream_t *)c->tcp, bufs + i, (unsigned)(n - i), write_cb);
    if (bufs != small)
        free(bufs);
    if (r < 0) {
        free(req);
        bx_chunkv_clear(&c->inflight);
        c->inflight_bytes = 0;
        bx_conn_close(c);
        return;
    }
    c->flags |= C_WRITING;
}

static void flush_loop(loopstate_t *ls)
{
    while (!bx_list_empty(&ls->dirty)) {
        bx_conn_t *c = BX_CONTAINER(ls->dirty.next, bx_conn_t, dlink);
        dirty_remove(c);
        start_write(c);
    }
}

static void prepare_cb(uv_prepare_t *p)
{
    loopstate_t *ls = p->data;

    flush_loop(ls);
    if (bx_list_empty(&ls->dirty))
        uv_prepare_stop(p);
}

/* ---- Reading ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    bx_conn_t *c = h->data;
    loopstate_t *ls = c->ls;

    (void)suggested;
    if (!ls->rbuf_busy) {
        if (!ls->rbuf)
            ls->rbuf = bx_malloc(READ_BUF_SIZE);
        ls->rbuf_busy = 1;
        *buf = uv_buf_init(ls->rbuf, READ_BUF_SIZE);
    } else {
        /* Not expected (reads are not nested), but never share a buffer. */
        *buf = uv_buf_init(bx_malloc(READ_BUF_SIZE), READ_BUF_SIZE);
    }
}

/* Hands `len` bytes of input to the owner (or discards them). */
static void deliver(bx_conn_t *c, const char *data, size_t len)
{
    /* After close_after_write the owner considers us gone: discard. */
    if (!(c->flags & (C_CLOSING | C_DRAIN)) && c->on_read)
        c->on_read(c, c->ud, data, len, 0);
    else if (c->linger && !(c->flags & C_CLOSING))
        linger_touch(c);
}

/* The input ended: EOF (status UV_EOF) or an error. */
static void input_end(bx_conn_t *c, int status)
{
    if (c->flags & C_CLOSING)
        return;
    if (c->flags & C_LINGER) {
        bx_conn_close(c);
    } else if (c->flags & C_DRAIN) {
        /* The peer half-closed; still deliver what we owe it, then
         * close without lingering. */
        c->flags |= C_EOF;
        uv_read_stop((uv_stream_t *)c->tcp);
    } else {
        bx_conn_close(c);
        if (c->on_read)
            c->on_read(c, c->ud, NULL, 0, status);
    }
}

/* A TLS connection failed: sends what the session has to say (an alert),
 * best effort and unqueued, then ends the input. Plain HTTP sent to the
 * TLS port gets a plain answer saying so. */
static void tls_fail(bx_conn_t *c, int why)
{
    static const char plain[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 35\r\n"
        "Connection: close\r\n\r\nThis port speaks HTTPS, not HTTP.\r\n";
    bx_chunk_t *out = why == BX_TLS_PLAIN_HTTP ? NULL : bx_tls_take(c->tls);
    uv_buf_t b = out ? uv_buf_init(out->data, (unsigned)out->len)
                     : uv_buf_init((char *)plain, sizeof(plain) - 1);

    if (!(c->flags & (C_WRITING | C_CLOSING)))
        uv_try_write((uv_stream_t *)c->tcp, &b, 1);
    bx_chunk_unref(out);
    input_end(c, UV_EPROTO);
}

/* Ciphertext arrived in `buf` (of `cap` bytes, `len` used): decrypts it
 * into the same buffer, which the session copied, and delivers the
 * plaintext, up to one buffer at a time. */
static void tls_input(bx_conn_t *c, char *buf, size_t len, size_t cap)
{
    int was_ready = bx_tls_ready(c->tls);

    if (c->linger)
        linger_touch(c);        /* a closing handshake goes on: bounded still */
    bx_tls_feed(c->tls, buf, len);
    for (;;) {
        size_t got = 0;
        ssize_t rc = 0;

        while (got < cap && (rc = bx_tls_read(c->tls, buf + got, cap - got)) > 0)
            got += (size_t)rc;
        /* the handshake's answers, or plaintext that waited for it */
        if (bx_tls_pending(c->tls) || (!was_ready && bx_tls_ready(c->tls) && c->pending.n))
            mark_dirty(c);
        was_ready = bx_tls_ready(c->tls);
        if (got)
            deliver(c, buf, got);
        if (c->flags & C_CLOSING)
            return;
        if (rc > 0)
            continue;           /* the buffer was full: maybe more */
        if (rc == BX_TLS_EOF)
            input_end(c, UV_EOF);
        else if (rc < 0)
            tls_fail(c, (int)rc);
        return;
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bx_conn_t *c = s->data;
    loopstate_t *ls = c->ls;

    if (nread > 0) {
        bx_metrics.bytes_in += (uint64_t)nread;
        if (c->tls && !(c->flags & (C_CLOSING | C_LINGER)))
            tls_input(c, buf->base, (size_t)nread, buf->len);
        else
            deliver(c, buf->base, (size_t)nread);
    } else if (nread < 0) {
        input_end(c, (int)nread);
    }
    if (buf->base == ls->rbuf)
        ls->rbuf_busy = 0;
    else
        free(buf->base);
}

/* ---- Public API ---- */

static void fill_peer(bx_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    /* kept now: once the peer has gone, getpeername fails */
    if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        c->family = AF_INET6;
        c->port = ntohs(a->sin6_port);
        memcpy(c->addr, &a->sin6_addr, 16);
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        c->family = AF_INET;
        c->port = ntohs(a->sin_port);
        memcpy(c->addr, &a->sin_addr, 4);
    }
}

bx_conn_t *bx_conn_new(uv_loop_t *loop, uv_tcp_t *tcp, bx_conn_read_cb on_read,
                       bx_conn_close_cb on_close, void *ud)
{
    bx_conn_t *c = bx_calloc(1, sizeof(*c));

    c->tcp = tcp;
    c->ls = ls_get(loop, 1);
    c->on_read = on_read;
    c->on_close = on_close;
    c->ud = ud;
    bx_list_init(&c->dlink);
    tcp->data = c;
    c->ls->nconns++;
    conn_count++;
    fill_peer(c);
    if (uv_read_start((uv_stream_t *)tcp, alloc_cb, read_cb) < 0)
        bx_conn_close(c);       /* on_close follows on a later turn */
    return c;
}

void bx_conn_use_tls(bx_conn_t *c, bx_tls_ctx_t *ctx)
{
    c->tls = bx_tls_new(ctx);
}

void bx_conn_use_tls_client(bx_conn_t *c, bx_tls_ctx_t *ctx, const char *host)
{
    c->tls = bx_tls_new_client(ctx, host);
    mark_dirty(c);              /* the ClientHello */
}

const char *bx_conn_tls_error(const bx_conn_t *c)
{
    return c->tls ? bx_tls_error(c->tls) : NULL;
}

void bx_conn_set_callbacks(bx_conn_t *c, bx_conn_read_cb on_read, bx_conn_close_cb on_close,
                           void *ud)
{
    c->on_read = on_read;
    c->on_close = on_close;
    c->ud = ud;
}

void bx_conn_on_free(bx_conn_t *c, void (*fn)(void *ud), void *ud)
{
    c->on_free = fn;
    c->free_ud = ud;
}

void bx_conn_write(bx_conn_t *c, bx_chunkv_t *cv)
{
    if (c->flags & (C_CLOSING | C_DRAIN)) {
        bx_chunkv_free(cv);
        return;
    }
    if (cv->n == 0)
        return;
    c->pending_bytes += bx_chunkv_bytes(cv);
    bx_chunkv_move(&c->pending, cv);
    mark_dirty(c);
}

void bx_conn_write_chunk(bx_conn_t *c, bx_chunk_t *chunk)
{
    if (c->flags & (C_CLOSING | C_DRAIN)) {
        bx_chunk_unref(chunk);
        return;
    }
    c->pending_bytes += chunk->len;
    bx_chunkv_push_new(&c->pending, chunk);
    mark_dirty(c);
}

void bx_conn_write_copy(bx_conn_t *c, const void *data, size_t len)
{
    if (c->flags & (C_CLOSING | C_DRAIN))
        return;
    bx_conn_write_chunk(c, bx_chunk_new(data, len));
}

size_t bx_conn_pending_bytes(const bx_conn_t *c)
{
    return c->pending_bytes + c->inflight_bytes;
}

void bx_conn_when_drained(bx_conn_t *c, bx_conn_drain_cb cb, void *ud)
{
    c->on_drain = cb;
    c->drain_ud = ud;
    /* the flush pass reports it, so never inside this call */
    if (cb && !(c->flags & C_WRITING))
        mark_dirty(c);
}

void bx_conn_pause(bx_conn_t *c)
{
    if (c->flags & (C_CLOSING | C_DRAIN | C_PAUSED))
        return;
    c->flags |= C_PAUSED;
    uv_read_stop((uv_stream_t *)c->tcp);
}

void bx_conn_resume(bx_conn_t *c)
{
    if (c->flags & (C_CLOSING | C_DRAIN) || !(c->flags & C_PAUSED))
        return;
    c->flags &= ~C_PAUSED;
    if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) < 0)
        bx_conn_close(c);
}

void bx_conn_close_after_write(bx_conn_t *c)
{
    if (c->flags & (C_CLOSING | C_DRAIN))
        return;
    c->flags |= C_DRAIN;
    /* Until its handshake has finished a TLS connection can send nothing,
     * and its owner no longer watches it: a peer that never finishes must
     * not hold it open. So it is bounded as lingering is. */
    if (c->tls && !bx_tls_ready(c->tls))
        linger_start(c);
    if (c->flags & C_WRITING)
        return;                 /* write_cb goes on */
    if (c->tls)
        mark_dirty(c);          /* the flush pass seals and adds close_notify */
    else if (c->pending.n == 0)
        begin_shutdown(c);
    /* otherwise write_cb starts the shutdown once the queue is empty */
}

static void close_cb(uv_handle_t *h)
{
    bx_conn_t *c = h->data;
    loopstate_t *ls = c->ls;

    if (c->on_close)
        c->on_close(c, c->ud);
    if (c->on_free)
        c->on_free(c->free_ud);
    bx_chunkv_free(&c->pending);
    bx_chunkv_free(&c->inflight);
    bx_tls_free(c->tls);
    free(c->tcp);
    free(c);
    conn_count--;
    if (--ls->nconns == 0 && ls->zombie)
        ls_close(ls);
}

void bx_conn_close(bx_conn_t *c)
{
    if (c->flags & C_CLOSING)
        return;
    c->flags |= C_CLOSING;
    dirty_remove(c);
    bx_chunkv_clear(&c->pending);
    c->pending_bytes = 0;
    if (c->linger)
        uv_close((uv_handle_t *)c->linger, free_handle_cb);
    c->linger = NULL;
    uv_close((uv_handle_t *)c->tcp, close_cb);
}

int bx_conn_is_closing(const bx_conn_t *c)
{
    return (c->flags & (C_CLOSING | C_DRAIN)) != 0;
}

const char *bx_conn_peer_ip(const bx_conn_t *c)
{
    static char ip[INET6_ADDRSTRLEN];

    if (!c->family || !inet_ntop(c->family, c->addr, ip, sizeof(ip)))
        ip[0] = '\0';
    return ip;
}

const char *bx_conn_peer(const bx_conn_t *c)
{
    static char peer[INET6_ADDRSTRLEN + 8];
    const char *ip = bx_conn_peer_ip(c);

    snprintf(peer, sizeof(peer), c->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)c->port);
    return peer;
}

void bx_conn_flush_all(uv_loop_t *loop)
{
    loopstate_t *ls = ls_get(loop, 0);

    if (ls)
        flush_loop(ls);
}

size_t bx_conn_count(void)
{
    return conn_count;
}

uv_loop_t *bx_conn_loop(const bx_conn_t *c)
{
    return c->ls->loop;
}

uint64_t bx_conn_write_calls(void)
{
    return write_calls;
}

void bx_conn_cleanup(uv_loop_t *loop)
{
    loopstate_t **pp, *ls;

    for (pp = &loops; (ls = *pp) != NULL; pp = &ls->next) {
        if (ls->loop == loop) {
            /* Unlink now so a new connection gets fresh state. */
            *pp = ls->next;
            if (ls->nconns == 0)
                ls_close(ls);
            else
                ls->zombie = 1;     /* the last close_cb closes it */
            return;
        }
    }
}
