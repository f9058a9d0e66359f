/*
 * test_httpc.c - the HTTP client against real loopback servers: a small
 * canned server (chunked answers, Connection: close, a request never
 * answered) and the project's own HTTP server (keep-alive).
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/httpc.h"

#include <signal.h>
#include <stdlib.h>

/* ---- The canned server: answers by path, counts connections ---- */

typedef struct {
    bx_buf_t in;
} sconn_t;

static uv_tcp_t listener;
static int accepted;

static void s_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    sconn_t *s = ud;
    char *end;

    if (status < 0)
        return;
    bx_buf_append(&s->in, data, len);
    bx_buf_reserve(&s->in, 1);
    s->in.data[s->in.len] = '\0';
    while ((end = strstr(s->in.data, "\r\n\r\n")) != NULL) {
        size_t head = (size_t)(end - s->in.data) + 4;
        const char *cl = strstr(s->in.data, "Content-Length: ");
        size_t blen = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
        if (s->in.len < head + blen)
            return;
        if (strncmp(s->in.data, "GET /chunked ", 13) == 0) {
            const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
            bx_conn_write_copy(c, r, strlen(r));
        } else if (strncmp(s->in.data, "POST /echo ", 11) == 0) {
            char h[128];
            snprintf(h, sizeof(h), "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", blen);
            bx_conn_write_copy(c, h, strlen(h));
            bx_conn_write_copy(c, s->in.data + head, blen);
        } else if (strncmp(s->in.data, "GET /close ", 11) == 0) {
            const char *r = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye";
            bx_conn_write_copy(c, r, strlen(r));
            bx_conn_close_after_write(c);
        }
        /* GET /hold: never answered */
        bx_buf_consume(&s->in, head + blen);
        bx_buf_reserve(&s->in, 1);
        s->in.data[s->in.len] = '\0';
    }
}

static void s_closed(bx_conn_t *c, void *ud)
{
    sconn_t *s = ud;
    bx_buf_free(&s->in);
    free(s);
}

static void on_conn(uv_stream_t *l, int status)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_tcp_init(l->loop, t);
    if (uv_accept(l, (uv_stream_t *)t) < 0) {
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
        return;
    }
    accepted++;
    bx_conn_new(l->loop, t, s_read, s_closed, calloc(1, sizeof(sconn_t)));
}

static int canned_listen(uv_loop_t *loop)
{
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int n = sizeof(ss);

    accepted = 0;
    uv_tcp_init(loop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&listener, (struct sockaddr *)&a, 0);
    uv_listen((uv_stream_t *)&listener, 16, on_conn);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &n);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- Answers ---- */

typedef struct {
    int done, status;
    char body[256];
    char err[64];
} answer_t;

static answer_t ans[4];
static int ndone;

static void on_answer(void *ud, int status, const char *body, size_t len, const char *err)
{
    answer_t *a = ud;
    a->done++;
    ndone++;
    a->status = status;
    if (body)
        snprintf(a->body, sizeof(a->body), "%.*s", (int)len, body);
    if (err)
        snprintf(a->err, sizeof(a->err), "%s", err);
}

static int want;
static int enough(void)
{
    return ndone >= want;
}

static void reset(void)
{
    memset(ans, 0, sizeof(ans));
    ndone = 0;
}

/* ---- Tests ---- */

static void test_chunked_and_keepalive(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    reset();
    int port = canned_listen(&loop);
    bx_httpc_t *h = bx_httpc_new(&loop, "127.0.0.1", port);

    BX_CHECK_INT(bx_httpc_request(h, "GET", "/chunked", NULL, NULL, 0, 5000, on_answer, &ans[0]), 0);
    BX_CHECK_INT(ans[0].done, 0);      /* never inside the call */
    want = 1;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_INT(ans[0].status, 200);
    BX_CHECK_STR(ans[0].body, "hello world");

    /* the next request reuses the connection */
    BX_CHECK_INT(bx_httpc_request(h, "POST", "/echo", "Content-Type: text/plain\r\n", "abc", 3,
                                  5000, on_answer, &ans[1]), 0);
    want = 2;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_INT(ans[1].status, 201);
    BX_CHECK_STR(ans[1].body, "abc");
    BX_CHECK_INT(accepted, 1);
    BX_CHECK_INT(bx_httpc_conn_count(h), 1);

    /* Connection: close, then a new connection for the next one */
    bx_httpc_request(h, "GET", "/close", NULL, NULL, 0, 5000, on_answer, &ans[2]);
    want = 3;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_STR(ans[2].body, "bye");
    bx_httpc_request(h, "GET", "/chunked", NULL, NULL, 0, 5000, on_answer, &ans[3]);
    want = 4;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_STR(ans[3].body, "hello world");
    BX_CHECK_INT(accepted, 2);

    bx_httpc_close(h);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);     /* the server sees EOF and closes */
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_timeout_and_concurrency(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    reset();
    int port = canned_listen(&loop);
    bx_httpc_t *h = bx_httpc_new(&loop, "127.0.0.1", port);

    /* a held request does not block another one beside it */
    bx_httpc_request(h, "GET", "/hold", NULL, NULL, 0, 300, on_answer, &ans[0]);
    bx_httpc_request(h, "GET", "/chunked", NULL, NULL, 0, 5000, on_answer, &ans[1]);
    want = 2;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_INT(ans[1].status, 200);
    BX_CHECK_INT(ans[0].done, 1);
    BX_CHECK_STR(ans[0].err, "timeout");
    BX_CHECK_INT(ans[0].status, 0);
    BX_CHECK_INT(accepted, 2);

    bx_httpc_close(h);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);     /* the server sees EOF and closes */
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_refused_and_abort(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    reset();
    /* a port bound but not listening: the connect is refused */
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    uv_tcp_init(&loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &n);
    int dead = ntohs(((struct sockaddr_in *)&ss)->sin_port);

    bx_httpc_t *h = bx_httpc_new(&loop, "127.0.0.1", dead);
    bx_httpc_request(h, "GET", "/", NULL, NULL, 0, 5000, on_answer, &ans[0]);
    want = 1;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_INT(ans[0].status, 0);
    BX_CHECK(ans[0].err[0] != '\0');
    bx_httpc_close(h);

    /* closing the client fails what is in flight, later, once */
    int port = canned_listen(&loop);
    h = bx_httpc_new(&loop, "localhost", port);
    bx_httpc_request(h, "GET", "/hold", NULL, NULL, 0, 0, on_answer, &ans[1]);
    bx_httpc_close(h);
    BX_CHECK_INT(ans[1].done, 0);
    want = 2;
    BX_CHECK(run_until(&loop, enough, 5000));
    BX_CHECK_STR(ans[1].err, "aborted");

    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);     /* the server sees EOF and closes */
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

/* Against the project's own server: keep-alive across many requests. */
static void answer_req(void *ud, bx_http_req_t *req)
{
    bx_http_respond_text(req, 200, "text/plain", "ok", 0);
}

static int many_done;
static bx_httpc_t *many_h;
static void many_answer(void *ud, int status, const char *body, size_t len, const char *err)
{
    if (status == 200 && len == 2)
        many_done++;
    if (many_done > 0 && many_done < 20)
        bx_httpc_request(many_h, "POST", "/x", NULL, "[]", 2, 5000, many_answer, NULL);
}

static int many_enough(void)
{
    return many_done >= 20;
}

static void test_against_http_server(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    bx_http_server_t *s = bx_http_server_new(&loop, NULL, answer_req, NULL, NULL);
    BX_CHECK_INT(bx_http_listen(s, "127.0.0.1", 0), 0);
    size_t before = bx_conn_count();

    many_done = 0;
    many_h = bx_httpc_new(&loop, "127.0.0.1", bx_http_port(s));
    bx_httpc_request(many_h, "POST", "/x", NULL, "[]", 2, 5000, many_answer, NULL);
    BX_CHECK(run_until(&loop, many_enough, 10000));
    /* one connection each side, whatever the number of requests */
    BX_CHECK_INT(bx_httpc_conn_count(many_h), 1);
    BX_CHECK_INT(bx_conn_count() - before, 2);
    bx_httpc_close(many_h);
    bx_http_server_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    BX_RUN(test_chunked_and_keepalive);
    BX_RUN(test_timeout_and_concurrency);
    BX_RUN(test_refused_and_abort);
    BX_RUN(test_against_http_server);
    return BX_REPORT();
}
