/*
 * wsc.c - the WebSocket client (see wsc.h).
 *
 * Until the upgrade is answered the input is collected and searched for the
 * end of the answer's head; what follows it is already WebSocket data and
 * goes to the framing shared with the server (net/wsframe.c), in client
 * mode: our frames masked, the server's must not be.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "base/buf.h"
#include "net/conn.h"
#include "net/wsc.h"
#include "net/wsdeflate.h"
#include "net/wsframe.h"

#define MAX_HEAD 16384

enum { W_RESOLVE, W_CONNECT, W_UPGRADE, W_OPEN, W_CLOSED };

struct bx_wsc_s {
    uv_loop_t *loop;
    int state;
    int closing;                /* bx_wsc_close() was called */
    char *host, *path, *headers;
    bx_tls_ctx_t *tls;          /* a reference: wss; NULL: ws */
    char tls_error[200];        /* the reason of a failed TLS handshake */
    char port[8];
    char key[32], accept[32];
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_tcp_t *tcp;              /* owned by conn once open */
    bx_conn_t *conn;
    uv_timer_t *timer;
    bx_buf_t head;
    bx_wsframe_t f;             /* from the upgrade on */
    const char *reason;
    bx_wsc_cb cb;
    void *ud;
};

static void timer_free(uv_handle_t *t)
{
    free(t);
}

/* Reports BX_WSC_CLOSED and frees. Runs from a libuv callback. */
static void finish(bx_wsc_t *w)
{
    if (w->timer) {
        if (!uv_is_closing((uv_handle_t *)w->timer))
            uv_close((uv_handle_t *)w->timer, timer_free);
        w->timer = NULL;
    }
    const char *why = w->reason ? w->reason : "closed";
    w->state = W_CLOSED;
    w->cb(w->ud, BX_WSC_CLOSED, why, strlen(why));
    bx_wsframe_free(&w->f);
    bx_buf_free(&w->head);
    free(w->host);
    bx_tls_ctx_unref(w->tls);
    free(w->path);
    free(w->headers);
    free(w);
}

static void fail(bx_wsc_t *w, const char *reason)
{
    if (!w->reason)
        w->reason = reason;
    if (w->state == W_OPEN || w->state == W_UPGRADE)
        bx_conn_close(w->conn);
    else if (w->state == W_CONNECT) {
        if (!uv_is_closing((uv_handle_t *)w->tcp))
            uv_close((uv_handle_t *)w->tcp, timer_free);
        /* the connect callback (canceled) finishes */
    } else if (w->state == W_RESOLVE)
        uv_cancel((uv_req_t *)&w->gai);
}

/* ---- Frames ---- */

static void on_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    bx_wsc_t *w = ud;
    (void)opcode;
    if (!w->closing)
        w->cb(w->ud, BX_WSC_MESSAGE, (const char *)data, len);
}

static const bx_wsframe_cb_t frame_cb = { on_message, NULL };

/* Feeds input to the framing; a refused frame ends the socket. */
static void pump(bx_wsc_t *w, const char *data, size_t len)
{
    if (bx_wsframe_read(&w->f, data, len) == BX_WSF_ERROR && !w->reason)
        w->reason = "protocol error";
}

/* ---- Upgrade ---- */

static int header_is(const char *head, const char *name, const char *value)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            l += n + 1;
            while (*l == ' ' || *l == '\t')
                l++;
            size_t v = strlen(value);
            return strncmp(l, value, v) == 0 && (l[v] == '\r' || l[v] == ' ');
        }
    }
    return 0;
}

/* The value of header `name` in `head` into *len, or NULL. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *l = p + 2;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            l += n + 1;
            while (*l == ' ' || *l == '\t')
                l++;
            const char *e = strstr(l, "\r\n");
            *len = e ? (size_t)(e - l) : strlen(l);
            return l;
        }
    }
    return NULL;
}

static void on_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    bx_wsc_t *w = ud;

    if (status < 0) {
        const char *tls = bx_conn_tls_error(c);
        if (tls && !w->reason) {
            snprintf(w->tls_error, sizeof(w->tls_error), "TLS: %s", tls);
            w->reason = w->tls_error;
        }
        if (!w->reason)
            w->reason = w->state == W_UPGRADE ? "bad upgrade answer" : "closed";
        return;                 /* the close callback follows */
    }
    if (w->state == W_OPEN) {
        pump(w, data, len);
        return;
    }
    bx_buf_append(&w->head, data, len);
    bx_buf_reserve(&w->head, 1);
    w->head.data[w->head.len] = '\0';
    char *end = strstr(w->head.data, "\r\n\r\n");
    if (!end) {
        if (w->head.len > MAX_HEAD)
            fail(w, "bad upgrade answer");
        return;
    }
    end[2] = '\0';              /* the head, with its last line's CRLF */
    if (strncmp(w->head.data, "HTTP/1.1 101", 12) != 0 ||
        !header_is(w->head.data, "Sec-WebSocket-Accept", w->accept)) {
        fail(w, "bad upgrade answer");
        return;
    }
    size_t elen;
    const char *ext = header_value(w->head.data, "Sec-WebSocket-Extensions", &elen);
    int bits = ext ? bx_wsdeflate_accept(ext, elen) : 0;
    if (bits < 0) {
        fail(w, "bad upgrade answer");
        return;
    }
    bx_wsframe_init(&w->f, w->conn, 1, 0, &frame_cb, w);
    if (bits)
        bx_wsframe_deflate(&w->f, (unsigned)bits);
    w->state = W_OPEN;
    if (w->timer) {
        uv_close((uv_handle_t *)w->timer, timer_free);
        w->timer = NULL;
    }
    size_t used = (size_t)(end + 4 - w->head.data);
    if (!w->closing)
        w->cb(w->ud, BX_WSC_OPEN, NULL, 0);
    if (w->state == W_OPEN && !bx_conn_is_closing(w->conn))
        pump(w, w->head.data + used, w->head.len - used);
}

static void on_close(bx_conn_t *c, void *ud)
{
    finish(ud);
}

static void on_connect(uv_connect_t *creq, int status)
{
    bx_wsc_t *w = creq->data;
    unsigned char raw[16], md[SHA_DIGEST_LENGTH];
    char in[80];

    if (status < 0 || w->closing || w->reason) {
        if (!w->reason)
            w->reason = w->closing ? "closed" : "refused";
        if (!uv_is_closing((uv_handle_t *)w->tcp))
            uv_close((uv_handle_t *)w->tcp, timer_free);
        finish(w);
        return;
    }
    w->state = W_UPGRADE;
    w->conn = bx_conn_new(w->loop, w->tcp, on_read, on_close, w);
    if (w->tls)
        bx_conn_use_tls_client(w->conn, w->tls, w->host);
    RAND_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)w->key, raw, sizeof(raw));
    snprintf(in, sizeof(in), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", w->key);
    SHA1((unsigned char *)in, strlen(in), md);
    EVP_EncodeBlock((unsigned char *)w->accept, md, SHA_DIGEST_LENGTH);
    bx_buf_t req = BX_BUF_INIT;
    bx_buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Extensions: " BX_WSDEFLATE_OFFER "\r\n%s\r\n",
                  w->path, w->host, w->port, w->key, w->headers ? w->headers : "");
    bx_conn_write_copy(w->conn, req.data, req.len);
    bx_buf_free(&req);
}

/* A handle made only to fail on a later turn, or one that failed. */
static void closed_then_finish(uv_handle_t *h)
{
    bx_wsc_t *w = h->data;
    free(h);
    finish(w);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    bx_wsc_t *w = g->data;

    if (status < 0 || !res || w->closing || w->reason) {
        if (res)
            uv_freeaddrinfo(res);
        if (!w->reason)
            w->reason = w->closing ? "closed" : "cannot resolve host";
        finish(w);
        return;
    }
    w->state = W_CONNECT;
    w->tcp = bx_malloc(sizeof(*w->tcp));
    uv_tcp_init(w->loop, w->tcp);
    uv_tcp_nodelay(w->tcp, 1);
    w->connect.data = w;
    if (uv_tcp_connect(&w->connect, w->tcp, res->ai_addr, on_connect) < 0) {
        /* no connect callback will come: finish once the handle is closed */
        w->reason = "refused";
        w->tcp->data = w;
        uv_close((uv_handle_t *)w->tcp, closed_then_finish);
    }
    uv_freeaddrinfo(res);
}

static void on_timeout(uv_timer_t *t)
{
    bx_wsc_t *w = t->data;
    fail(w, "timeout");
}

/* ---- Public ---- */

bx_wsc_t *bx_wsc_open(uv_loop_t *loop, const char *host, int port, const char *path,
                      const char *headers, unsigned timeout_ms, bx_wsc_cb cb, void *ud)
{
    return bx_wsc_open_tls(loop, host, port, path, headers, timeout_ms, NULL, cb, ud);
}

bx_wsc_t *bx_wsc_open_tls(uv_loop_t *loop, const char *host, int port, const char *path,
                          const char *headers, unsigned timeout_ms, bx_tls_ctx_t *tls,
                          bx_wsc_cb cb, void *ud)
{
    bx_wsc_t *w = bx_calloc(1, sizeof(*w));
    struct addrinfo hints;

    w->loop = loop;
    w->tls = tls ? bx_tls_ctx_ref(tls) : NULL;
    w->host = bx_strdup(host);
    w->path = bx_strdup(path);
    w->headers = headers ? bx_strdup(headers) : NULL;
    snprintf(w->port, sizeof(w->port), "%d", port);
    w->cb = cb;
    w->ud = ud;
    w->state = W_RESOLVE;
    if (timeout_ms) {
        w->timer = bx_malloc(sizeof(*w->timer));
        uv_timer_init(loop, w->timer);
        w->timer->data = w;
        uv_timer_start(w->timer, on_timeout, timeout_ms, 0);
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    w->gai.data = w;
    if (uv_getaddrinfo(loop, &w->gai, on_resolved, w->host, w->port, &hints) < 0) {
        uv_timer_t *t = bx_malloc(sizeof(*t));
        w->reason = "cannot resolve host";
        uv_timer_init(loop, t);
        t->data = w;
        uv_close((uv_handle_t *)t, closed_then_finish);
    }
    return w;
}

int bx_wsc_send(bx_wsc_t *w, const char *text, size_t len)
{
    bx_chunkv_t v = BX_CHUNKV_INIT;

    if (w->state != W_OPEN || w->closing || w->f.closing || bx_conn_is_closing(w->conn))
        return -1;
    bx_chunkv_push_new(&v, bx_chunk_new(text, len));
    bx_wsframe_send(&w->f, BX_WS_TEXT, &v);
    bx_chunkv_free(&v);
    return 0;
}

void bx_wsc_close(bx_wsc_t *w)
{
    if (w->closing || w->state == W_CLOSED)
        return;
    w->closing = 1;
    if (w->state == W_OPEN && !bx_conn_is_closing(w->conn)) {
        bx_wsframe_close(&w->f, 1000, NULL);
        return;
    }
    fail(w, "closed");
}
