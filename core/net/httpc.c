/*
 * httpc.c - the HTTP/1.1 client (see httpc.h).
 *
 * Every request is given a connection at once: an idle kept-alive one, or a
 * new one that resolves, connects and then sends. So every failure, an
 * abort included, reaches the request through its connection's teardown,
 * which always runs in a libuv callback, never inside the call that asked.
 *
 * A kept-alive connection may have been closed by the server just before
 * we reuse it; a request that got no byte of answer on a reused connection
 * is sent once more on a fresh one (what browsers do).
 */
#include <stdlib.h>
#include <string.h>
#include <http_parser.h>
#include "base/buf.h"
#include "base/list.h"
#include "net/conn.h"
#include "net/httpc.h"

enum { P_RESOLVE, P_CONNECT, P_OPEN };

typedef struct req_s req_t;
typedef struct pconn_s pconn_t;

struct bx_httpc_s {
    uv_loop_t *loop;
    char *host;
    bx_tls_ctx_t *tls;          /* a reference: https; NULL: http */
    char port[8];
    bx_list_t conns;            /* every pconn_t, busy or idle; newest first */
    int nconns;
    int closing;
};

struct pconn_s {
    bx_httpc_t *h;
    bx_list_t link;             /* on h->conns */
    int state;
    int aborted;                /* closing on purpose: no retry */
    int reused;                 /* the current request is not its first */
    int complete;               /* the parser finished a response */
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_tcp_t *tcp;              /* owned by `conn` once open */
    bx_conn_t *conn;
    http_parser parser;
    req_t *req;                 /* the request it carries, if any */
};

struct req_s {
    bx_httpc_t *h;
    bx_buf_t out;               /* the whole request, head and body */
    bx_buf_t body;              /* the answer's body */
    uv_timer_t *timer;
    bx_httpc_cb cb;
    void *ud;
    int status;
    int got_bytes;
    int retried;
};

static void assign_new(bx_httpc_t *h, req_t *r);

static void timer_free(uv_handle_t *t)
{
    free(t);
}

/* Calls the request's callback and frees it. The caller has detached it
 * from its connection. */
static void req_finish(req_t *r, const char *err)
{
    if (r->timer && !uv_is_closing((uv_handle_t *)r->timer)) {
        uv_close((uv_handle_t *)r->timer, timer_free);
        r->timer = NULL;
    }
    if (err)
        r->cb(r->ud, 0, NULL, 0, err);
    else
        r->cb(r->ud, r->status, r->body.data ? r->body.data : "", r->body.len, NULL);
    bx_buf_free(&r->out);
    bx_buf_free(&r->body);
    free(r);
}

static void client_maybe_free(bx_httpc_t *h)
{
    if (h->closing && h->nconns == 0) {
        free(h->host);
        bx_tls_ctx_unref(h->tls);
        free(h);
    }
}

/* The connection is gone (closed, failed to connect or resolve): its
 * request, if unanswered, is retried or failed, and it is freed. */
static void pconn_teardown(pconn_t *p, const char *err)
{
    bx_httpc_t *h = p->h;
    req_t *r = p->req;

    bx_list_remove(&p->link);
    int retry = !h->closing && !p->aborted && p->reused;
    p->req = NULL;
    free(p);
    /* counted until after the callback, so that closing the client from
     * inside it does not free the client under our feet */
    if (r) {
        if (retry && !r->got_bytes && !r->retried) {
            r->retried = 1;
            assign_new(h, r);
        } else {
            req_finish(r, h->closing ? "aborted" : err);
        }
    }
    h->nconns--;
    client_maybe_free(h);
}

/* ---- Response parsing ---- */

static int on_status(http_parser *hp, const char *at, size_t len)
{
    pconn_t *p = hp->data;
    if (p->req)
        p->req->status = hp->status_code;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    pconn_t *p = hp->data;
    if (p->req)
        bx_buf_append(&p->req->body, at, len);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    pconn_t *p = hp->data;
    if (p->req)
        p->req->status = hp->status_code;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    pconn_t *p = hp->data;
    if (hp->status_code >= 100 && hp->status_code < 200)
        return 0;               /* an interim answer: the real one follows */
    p->complete = 1;
    return 0;
}

static const http_parser_settings settings = {
    .on_status = on_status,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void make_idle(pconn_t *p)
{
    p->req = NULL;
    p->complete = 0;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    /* an idle connection must not keep a finished script running */
    uv_unref((uv_handle_t *)p->tcp);
}

static void conn_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    pconn_t *p = ud;
    req_t *r = p->req;

    if (status < 0) {
        /* EOF ends a response that has neither length nor chunks */
        if (r && r->got_bytes && !p->complete)
            http_parser_execute(&p->parser, &settings, NULL, 0);
    } else {
        if (!r) {
            bx_conn_close(c);   /* bytes nobody asked for */
            return;
        }
        r->got_bytes = 1;
        size_t n = http_parser_execute(&p->parser, &settings, data, len);
        if (!p->complete && (n != len || HTTP_PARSER_ERRNO(&p->parser) != HPE_OK)) {
            p->aborted = 1;
            p->req = NULL;
            bx_conn_close(c);
            req_finish(r, "malformed response");
            return;
        }
    }
    if (!r || !p->complete)
        return;
    int keep = status >= 0 && http_should_keep_alive(&p->parser) && !p->h->closing;
    p->req = NULL;
    if (keep)
        make_idle(p);
    else
        bx_conn_close(c);
    req_finish(r, NULL);
}

static void conn_closed(bx_conn_t *c, void *ud)
{
    pconn_t *p = ud;
    const char *tls = bx_conn_tls_error(c);
    char why[200];

    if (tls)
        snprintf(why, sizeof(why), "TLS: %s", tls);
    pconn_teardown(p, tls ? why : "connection closed");
}

/* ---- Connecting ---- */

static void send_req(pconn_t *p)
{
    req_t *r = p->req;
    uv_ref((uv_handle_t *)p->tcp);
    bx_conn_write_copy(p->conn, r->out.data, r->out.len);
}

static void tcp_closed(uv_handle_t *t)
{
    pconn_t *p = t->data;
    free(t);
    pconn_teardown(p, p->aborted ? "aborted" : "connection refused");
}

static void on_connect(uv_connect_t *creq, int status)
{
    pconn_t *p = creq->data;

    if (status < 0 || p->aborted || p->h->closing) {
        if (!uv_is_closing((uv_handle_t *)p->tcp))
            uv_close((uv_handle_t *)p->tcp, tcp_closed);
        return;
    }
    p->state = P_OPEN;
    p->conn = bx_conn_new(p->h->loop, p->tcp, conn_read, conn_closed, p);
    if (p->h->tls)
        bx_conn_use_tls_client(p->conn, p->h->tls, p->h->host);
    if (p->req)
        send_req(p);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    pconn_t *p = g->data;

    if (status < 0 || !res || p->aborted || p->h->closing) {
        if (res)
            uv_freeaddrinfo(res);
        pconn_teardown(p, p->aborted || p->h->closing ? "aborted" : "cannot resolve host");
        return;
    }
    p->state = P_CONNECT;
    p->tcp = bx_malloc(sizeof(*p->tcp));
    uv_tcp_init(p->h->loop, p->tcp);
    p->tcp->data = p;
    p->connect.data = p;
    uv_tcp_nodelay(p->tcp, 1);
    if (uv_tcp_connect(&p->connect, p->tcp, res->ai_addr, on_connect) < 0)
        uv_close((uv_handle_t *)p->tcp, tcp_closed);
    uv_freeaddrinfo(res);
}

/* Gives `r` a new connection. */
static void assign_new(bx_httpc_t *h, req_t *r)
{
    pconn_t *p = bx_calloc(1, sizeof(*p));
    struct addrinfo hints;

    p->h = h;
    p->req = r;
    p->state = P_RESOLVE;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    bx_list_push_head(&h->conns, &p->link);
    h->nconns++;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    p->gai.data = p;
    if (uv_getaddrinfo(h->loop, &p->gai, on_resolved, h->host, h->port, &hints) < 0) {
        /* fail on a later turn through the same path as a failed connect */
        p->state = P_CONNECT;
        p->aborted = 0;
        p->tcp = bx_malloc(sizeof(*p->tcp));
        uv_tcp_init(h->loop, p->tcp);
        p->tcp->data = p;
        uv_close((uv_handle_t *)p->tcp, tcp_closed);
    }
}

static void on_timeout(uv_timer_t *t)
{
    req_t *r = t->data;

    BX_LIST_FOREACH(l, &r->h->conns) {
        pconn_t *p = BX_CONTAINER(l, pconn_t, link);
        if (p->req != r)
            continue;
        p->req = NULL;
        p->aborted = 1;
        if (p->state == P_OPEN)
            bx_conn_close(p->conn);
        else if (p->state == P_CONNECT)
            uv_close((uv_handle_t *)p->tcp, tcp_closed);
        else
            uv_cancel((uv_req_t *)&p->gai);
        break;
    }
    req_finish(r, "timeout");
}

/* ---- Public ---- */

bx_httpc_t *bx_httpc_new(uv_loop_t *loop, const char *host, int port)
{
    bx_httpc_t *h = bx_calloc(1, sizeof(*h));
    h->loop = loop;
    bx_list_init(&h->conns);
    h->host = bx_strdup(host);
    snprintf(h->port, sizeof(h->port), "%d", port);
    return h;
}

void bx_httpc_set_tls(bx_httpc_t *h, bx_tls_ctx_t *ctx)
{
    if (ctx)
        bx_tls_ctx_ref(ctx);
    bx_tls_ctx_unref(h->tls);
    h->tls = ctx;
}

int bx_httpc_request(bx_httpc_t *h, const char *method, const char *path, const char *headers,
                     const char *body, size_t len, unsigned timeout_ms, bx_httpc_cb cb, void *ud)
{
    if (h->closing)
        return -1;
    req_t *r = bx_calloc(1, sizeof(*r));
    r->h = h;
    r->cb = cb;
    r->ud = ud;
    bx_buf_printf(&r->out, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n", method, path, h->host, h->port);
    if (headers)
        bx_buf_puts(&r->out, headers);
    if (len > 0 || strcmp(method, "POST") == 0)
        bx_buf_printf(&r->out, "Content-Length: %zu\r\n", len);
    bx_buf_puts(&r->out, "\r\n");
    if (len)
        bx_buf_append(&r->out, body, len);
    if (timeout_ms) {
        r->timer = bx_malloc(sizeof(*r->timer));
        uv_timer_init(h->loop, r->timer);
        r->timer->data = r;
        uv_timer_start(r->timer, on_timeout, timeout_ms, 0);
    }
    BX_LIST_FOREACH(l, &h->conns) {
        pconn_t *p = BX_CONTAINER(l, pconn_t, link);
        if (p->state == P_OPEN && !p->req && !bx_conn_is_closing(p->conn)) {
            p->req = r;
            p->reused = 1;
            send_req(p);
            return 0;
        }
    }
    assign_new(h, r);
    return 0;
}

void bx_httpc_close(bx_httpc_t *h)
{
    if (h->closing)
        return;
    h->closing = 1;
    BX_LIST_FOREACH(l, &h->conns) {
        pconn_t *p = BX_CONTAINER(l, pconn_t, link);
        p->aborted = 1;
        if (p->state == P_OPEN)
            bx_conn_close(p->conn);
        else if (p->state == P_CONNECT) {
            if (!uv_is_closing((uv_handle_t *)p->tcp))
                uv_close((uv_handle_t *)p->tcp, tcp_closed);
        } else
            uv_cancel((uv_req_t *)&p->gai);
    }
    client_maybe_free(h);
}

int bx_httpc_conn_count(const bx_httpc_t *h)
{
    return h->nconns;
}
