/*
 * test_http_stream.c - request bodies streamed to a reader (http.h's head
 * callback): max_body does not apply to them, a reader that pauses stops
 * the connection's reads until it resumes, a reader's refusal answers the
 * request, and a request that ends early tells the reader once.
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/http.h"

#include <stdio.h>

typedef struct {
    bx_http_server_t *s;
    bx_http_req_t *req;         /* being streamed */
    uint64_t got;
    int pauses, resumes, gone, nreq, refuse_at, done;
    uv_timer_t resume;
} sctx_t;

static sctx_t S;
static client_t C1;

static void resume_cb(uv_timer_t *t)
{
    (void)t;
    S.resumes++;
    bx_http_body_resume(S.req);
}

static int s_data(void *ud, const char *data, size_t len)
{
    uint64_t before = S.got;

    (void)ud;
    (void)data;
    S.got += len;
    if (S.refuse_at && S.got >= (uint64_t)S.refuse_at)
        return 413;
    /* a pause at each 64 KiB crossed, resumed a little later */
    if (S.got / 65536 != before / 65536) {
        S.pauses++;
        uv_timer_start(&S.resume, resume_cb, 5, 0);
        return BX_HTTP_BODY_PAUSE;
    }
    return 0;
}

static void s_gone(void *ud)
{
    (void)ud;
    S.gone++;
}

static int on_head(void *ud, bx_http_req_t *req, bx_http_body_t *body)
{
    (void)ud;
    if (req->path.len != 7 || memcmp(req->path.base, "/stream", 7) != 0)
        return 0;
    S.req = req;
    body->data = s_data;
    body->gone = s_gone;
    body->ud = NULL;
    return 1;
}

static void on_request(void *ud, bx_http_req_t *req)
{
    char text[64];

    (void)ud;
    S.nreq++;
    snprintf(text, sizeof(text), "got %llu body %zu", (unsigned long long)S.got, req->body.len);
    bx_http_respond_text(req, 200, "text/plain", text, 0);
}

static void server_done(void *ud)
{
    (void)ud;
    S.done++;
}

static void start(uv_loop_t *loop)
{
    bx_http_limits_t lim = { .max_body = 100 };

    memset(&S, 0, sizeof(S));
    memset(&C1, 0, sizeof(C1));
    uv_loop_init(loop);
    uv_timer_init(loop, &S.resume);
    S.s = bx_http_server_new(loop, &lim, on_request, NULL, NULL);
    bx_http_server_on_head(S.s, on_head);
    bx_http_listen(S.s, "127.0.0.1", 0);
    client_open(loop, &C1, bx_http_port(S.s));
}

static void sends(const char *s)
{
    client_send(&C1, s, strlen(s));
}

static const char *text(void)
{
    bx_buf_reserve(&C1.in, 1);
    C1.in.data[C1.in.len] = '\0';
    return C1.in.data;
}

static int pred_answer(void)
{
    return strstr(text(), "got ") != NULL || strstr(text(), "413") != NULL;
}

static int pred_resumed(void)
{
    return S.resumes == S.pauses;
}

static int pred_eof(void)
{
    return C1.eof;
}

static int pred_gone(void)
{
    return S.gone > 0;
}

static int pred_done(void)
{
    return S.done && C1.closed && bx_conn_count() == 0;
}

static void stop(uv_loop_t *loop)
{
    client_close(&C1);
    uv_close((uv_handle_t *)&S.resume, NULL);
    bx_http_server_close(S.s, server_done, NULL);
    run_until(loop, pred_done, 2000);
    bx_buf_free(&C1.in);
    bx_buf_free(&C1.unsent);
}

static void test_streamed_past_max_body(void)
{
    uv_loop_t loop;
    size_t n = 300000;
    char *big = malloc(n);

    start(&loop);
    memset(big, 'x', n);
    sends("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n");
    client_send(&C1, big, n);
    free(big);
    BX_CHECK(run_until(&loop, pred_answer, 5000));
    BX_CHECK(strstr(text(), "HTTP/1.1 200 OK\r\n") == text());
    BX_CHECK(strstr(text(), "got 300000 body 0"));
    BX_CHECK(S.pauses >= 4);
    /* the last pause may come with the body's last bytes: its resume is
     * still on its timer when the answer is written */
    BX_CHECK(run_until(&loop, pred_resumed, 5000));
    BX_CHECK_INT(S.gone, 0);                /* handed over: no gone */
    /* the connection reads on: another (collected) request still gets
     * max_body */
    C1.in.len = 0;
    sends("POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_eof, 5000));
    BX_CHECK(strncmp(text(), "HTTP/1.1 413 ", 13) == 0);
    stop(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_reader_refuses(void)
{
    uv_loop_t loop;
    char chunk[1000];

    start(&loop);
    S.refuse_at = 5000;
    memset(chunk, 'y', sizeof(chunk));
    sends("POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 10; i++) {
        sends("3e8\r\n");
        client_send(&C1, chunk, sizeof(chunk));
        sends("\r\n");
    }
    BX_CHECK(run_until(&loop, pred_eof, 5000));
    BX_CHECK(strncmp(text(), "HTTP/1.1 413 ", 13) == 0);
    BX_CHECK_INT(S.nreq, 0);
    BX_CHECK_INT(S.gone, 1);
    stop(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_client_leaves_mid_body(void)
{
    uv_loop_t loop;

    start(&loop);
    sends("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
    BX_CHECK(run_until(&loop, pred_gone, 300) == 0);    /* still arriving */
    client_close(&C1);
    BX_CHECK(run_until(&loop, pred_gone, 5000));
    BX_CHECK_INT(S.gone, 1);
    BX_CHECK_INT(S.nreq, 0);
    stop(&loop);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    BX_RUN(test_streamed_past_max_body);
    BX_RUN(test_reader_refuses);
    BX_RUN(test_client_leaves_mid_body);
    return BX_REPORT();
}
