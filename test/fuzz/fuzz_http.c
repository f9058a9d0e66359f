/*
 * fuzz_http.c - libFuzzer target: the HTTP request path (core/net/http.c:
 * the strict head check, http-parser, bodies, pipelining, the answers).
 *
 * One server for the whole run; each input is written by a real client
 * connection, which then half-closes and reads until the server closes, so
 * every byte goes the way a peer's would. The connection is a socketpair
 * whose server end the server adopts as if accepted (bx_http_adopt): no
 * TCP handshake and loopback stack per input, which cost more than the
 * parsing. The handler answers every request at once, reading its headers
 * and body on the way.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include "base/buf.h"
#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uv_tcp_t tcp;
    uv_write_t write;
    uv_shutdown_t shutdown;
    uv_buf_t buf;               /* the input, borrowed */
    int done;
} client_t;

static uv_loop_t loop;
static bx_http_server_t *server;
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

static void setup(void)
{
    bx_http_limits_t lim = { .max_body = 4096, .max_header = 2048 };

    signal(SIGPIPE, SIG_IGN);   /* as a server process: EPIPE, not a signal */
    uv_loop_init(&loop);
    server = bx_http_server_new(&loop, &lim, on_request, on_abort, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    client_t c;
    uv_tcp_t *peer;
    int sv[2];

    if (!ready) {
        setup();
        ready = 1;
    }
    memset(&c, 0, sizeof(c));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    peer = bx_malloc(sizeof(*peer));
    uv_tcp_init(&loop, peer);
    uv_tcp_init(&loop, &c.tcp);
    if (uv_tcp_open(peer, sv[0]) < 0 || uv_tcp_open(&c.tcp, sv[1]) < 0)
        abort();
    bx_http_adopt(server, peer);
    c.tcp.data = &c;
    c.write.data = &c;
    c.buf = uv_buf_init((char *)data, (unsigned)size);
    uv_read_start((uv_stream_t *)&c.tcp, alloc_cb, read_cb);
    uv_write(&c.write, (uv_stream_t *)&c.tcp, &c.buf, 1, write_cb);
    while (!c.done)
        uv_run(&loop, UV_RUN_ONCE);
    return 0;
}
