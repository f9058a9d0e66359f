/*
 * fuzz_http.c - libFuzzer target: the HTTP request path (core/net/http.c:
 * the strict head check, http-parser, bodies, pipelining, the answers).
 *
 * One server on 127.0.0.1 for the whole run; each input is written by a
 * real client connection, which then half-closes and reads until the
 * server closes, so every byte goes the way a peer's would. The handler
 * answers every request at once, reading its headers and body on the way.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_shutdown_t shutdown;
    uv_buf_t buf;               /* the input, borrowed */
    int done;
} client_t;

static uv_loop_t loop;
static bx_http_server_t *server;
static struct sockaddr_in addr;
static char rbuf[65536];

static void on_request(void *ud, bx_http_req_t *req)
{
    size_t sum = req->body.len + req->path.len + req->query.len;

    (void)ud;
    for (size_t i = 0; i < req->nheaders; i++)
        sum += req->headers[i].name.len + req->headers[i].value.len;
    (void)bx_http_header(req, "Content-Type");
    (void)bx_http_header_has(req, "Connection", "upgrade");
    bx_http_respond_text(req, sum & 1 ? 200 : 404, NULL, "ok", 0);
}

static void on_abort(void *ud, bx_http_req_t *req)
{
    (void)ud;
    (void)req;
}

static void client_closed(uv_handle_t *h)
{
    ((client_t *)h->data)->done = 1;
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    (void)h;
    (void)n;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, client_closed);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void write_cb(uv_write_t *req, int status)
{
    client_t *c = req->data;

    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, client_closed);
        return;
    }
    uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, shutdown_cb);
}

static void connect_cb(uv_connect_t *req, int status)
{
    client_t *c = req->data;

    if (status < 0) {
        uv_close((uv_handle_t *)&c->tcp, client_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    c->write.data = c;
    uv_write(&c->write, (uv_stream_t *)&c->tcp, &c->buf, 1, write_cb);
}

static void setup(void)
{
    bx_http_limits_t lim = { .max_body = 4096, .max_header = 2048 };

    uv_loop_init(&loop);
    server = bx_http_server_new(&loop, &lim, on_request, on_abort, NULL);
    if (bx_http_listen(server, "127.0.0.1", 0) < 0)
        abort();
    uv_ip4_addr("127.0.0.1", bx_http_port(server), &addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    client_t c;

    if (!ready) {
        setup();
        ready = 1;
    }
    memset(&c, 0, sizeof(c));
    uv_tcp_init(&loop, &c.tcp);
    c.tcp.data = &c;
    c.connect.data = &c;
    c.buf = uv_buf_init((char *)data, (unsigned)size);
    if (uv_tcp_connect(&c.connect, &c.tcp, (struct sockaddr *)&addr, connect_cb) < 0)
        abort();
    while (!c.done)
        uv_run(&loop, UV_RUN_ONCE);
    return 0;
}
