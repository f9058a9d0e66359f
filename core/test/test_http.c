/*
 * test_http.c - the HTTP server over real loopback sockets.
 *
 * Every test runs a server on 127.0.0.1 with an ephemeral port and talks to
 * it with a libuv client on the same loop, so everything is deterministic
 * apart from the kernel's packetisation, which no assertion depends on.
 * run_until() bounds every wait with a timer.
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/http.h"

#include <signal.h>
#include <stdlib.h>


static void client_sends(client_t *cl, const char *s)
{
    client_send(cl, s, strlen(s));
}

/* The received bytes as a C string (they are text in these tests). */
static const char *cl_text(client_t *cl)
{
    bx_buf_reserve(&cl->in, 1);
    cl->in.data[cl->in.len] = '\0';
    return cl->in.data;
}

static int count_str(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ---- Server side of the tests ---- */

typedef struct {
    void (*handler)(bx_http_req_t *req);
    int nreq, naborts, done;
    bx_http_req_t *held[32];
    int nheld;
    bx_http_req_t *aborted[8];
    int in_call;                /* set around our own bx_http_* calls */
    int abort_in_call;
    uv_loop_t *loop;
    bx_http_server_t *s;
    /* hijack */
    bx_conn_t *hj_conn;
    bx_buf_t hj_in;
    int hj_closed, hj_sync;
    uint64_t writes_before, writes_after;
    /* misc */
    char seen[256];
    client_t *cl[4];
    int want_responses;
} ctx_t;

static ctx_t T;

static void on_request(void *ud, bx_http_req_t *req)
{
    T.nreq++;
    T.handler(req);
}

static void on_abort(void *ud, bx_http_req_t *req)
{
    if (T.in_call)
        T.abort_in_call = 1;
    if (T.naborts < 8)
        T.aborted[T.naborts] = req;
    T.naborts++;
}

static void server_done(void *ud)
{
    T.done++;
}

static bx_http_server_t *start_server(uv_loop_t *loop, const bx_http_limits_t *lim,
                                      void (*handler)(bx_http_req_t *))
{
    bx_http_server_t *s;

    bx_buf_free(&T.hj_in);
    memset(&T, 0, sizeof(T));
    T.handler = handler;
    T.loop = loop;
    s = bx_http_server_new(loop, lim, on_request, on_abort, NULL);
    if (bx_http_listen(s, "127.0.0.1", 0) != 0)
        return NULL;
    T.s = s;
    return s;
}

static void respond(bx_http_req_t *req, int status, const char *text)
{
    T.in_call = 1;
    bx_http_respond_text(req, status, "text/plain", text, 0);
    T.in_call = 0;
}

static int pred_done(void)
{
    for (int i = 0; i < 4; i++)
        if (T.cl[i] && !T.cl[i]->closed)
            return 0;
    return T.done == 1 && bx_conn_count() == 0;
}

/* Closes clients and server, checks `done` is asynchronous and the loop is
 * left clean. */
static void finish(uv_loop_t *loop, client_t *a, client_t *b, client_t *c)
{
    client_t *cls[3] = { a, b, c };

    for (int i = 0; i < 3; i++) {
        T.cl[i] = cls[i];
        if (cls[i])
            client_close(cls[i]);
    }
    T.in_call = 1;
    bx_http_server_close(T.s, server_done, NULL);
    T.in_call = 0;
    BX_CHECK_INT(T.done, 0);
    BX_CHECK(run_until(loop, pred_done, 3000));
    BX_CHECK_INT(T.abort_in_call, 0);
    for (int i = 0; i < 3; i++)
        if (cls[i]) {
            bx_buf_free(&cls[i]->in);
            bx_buf_free(&cls[i]->unsent);
        }
    bx_buf_free(&T.hj_in);
    bx_conn_cleanup(loop);
    BX_LOOP_CLOSE(loop);
}

/* ---- Tests ---- */

static client_t C1, C2, C3;

static int pred_c1_has_response(void)
{
    const char *t = cl_text(&C1);
    const char *h = strstr(t, "\r\n\r\n");
    return h && strstr(h, T.seen[0] ? T.seen : "") && count_str(t, "HTTP/1.1 ") >= T.want_responses;
}

static void h_echo(bx_http_req_t *req)
{
    const bx_str_t *v = bx_http_header(req, "x-TEST");
    bx_buf_t b = BX_BUF_INIT;

    bx_buf_printf(&b, "%s %.*s|%.*s|%.*s|%.*s|%d|%s|%.*s", req->method, (int)req->path.len,
                  req->path.base, (int)req->query.len, req->query.base, (int)req->url.len,
                  req->url.base, v ? (int)v->len : 0, v ? v->base : "", req->http_minor,
                  req->remote_addr, (int)req->body.len, req->body.data ? req->body.data : "");
    bx_buf_append(&b, "", 1);
    respond(req, 200, b.data);
    bx_buf_free(&b);
}

static void test_simple_get(void)
{
    uv_loop_t loop;
    const char *t;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    BX_CHECK(bx_http_port(T.s) > 0);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_sends(&C1, "GET /faye/x?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test:  Hello  \r\n\r\n");
    T.want_responses = 1;
    snprintf(T.seen, sizeof(T.seen), "127.0.0.1|");
    BX_CHECK(run_until(&loop, pred_c1_has_response, 2000));
    t = cl_text(&C1);
    BX_CHECK(strncmp(t, "HTTP/1.1 200 OK\r\n", 17) == 0);
    BX_CHECK(strstr(t, "\r\nContent-Type: text/plain\r\n"));
    BX_CHECK(strstr(t, "\r\nDate: "));
    BX_CHECK(strstr(t, " GMT\r\n"));
    BX_CHECK(strstr(t, "\r\nConnection: keep-alive\r\n"));
    BX_CHECK(strstr(t, "\r\n\r\nGET /faye/x|a=1&b=2|/faye/x?a=1&b=2|Hello|1|127.0.0.1|"));
    {
        const char *body = strstr(t, "\r\n\r\n") + 4;
        char cl[64];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
        BX_CHECK(strstr(t, cl));
    }
    BX_CHECK_INT(T.nreq, 1);
    finish(&loop, &C1, NULL, NULL);
}

static void test_post_keepalive(void)
{
    uv_loop_t loop;
    const char *body = "{\"channel\":\"/meta/handshake\"}";
    char req[256];
    const char *t;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    snprintf(req, sizeof(req),
             "POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
    client_sends(&C1, req);
    T.want_responses = 1;
    snprintf(T.seen, sizeof(T.seen), "%s", body);
    BX_CHECK(run_until(&loop, pred_c1_has_response, 2000));
    /* A second request on the same connection, after the first answer. */
    client_sends(&C1, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    T.want_responses = 2;
    snprintf(T.seen, sizeof(T.seen), "GET /second|");
    BX_CHECK(run_until(&loop, pred_c1_has_response, 2000));
    t = cl_text(&C1);
    BX_CHECK(strstr(t, "POST /faye||/faye||1|127.0.0.1|{\"channel\":\"/meta/handshake\"}"));
    BX_CHECK_INT(T.nreq, 2);
    BX_CHECK_INT(bx_conn_count(), 1);
    BX_CHECK(!C1.eof);
    finish(&loop, &C1, NULL, NULL);
}

/* /slow is held and answered from a timer; everything else at once. */
static uv_timer_t slow_timer;
static int before_slow_len = -1;

static void slow_timer_cb(uv_timer_t *t)
{
    before_slow_len = (int)C1.in.len;
    for (int i = 0; i < T.nheld; i++)
        respond(T.held[i], 200, "slow");
    T.nheld = 0;
}

static void h_pipeline(bx_http_req_t *req)
{
    if (req->path.len == 5 && memcmp(req->path.base, "/slow", 5) == 0) {
        T.held[T.nheld++] = req;
        uv_timer_start(&slow_timer, slow_timer_cb, 60, 0);
        return;
    }
    {
        char text[64];
        snprintf(text, sizeof(text), "r%.*s", (int)req->path.len - 1, req->path.base + 1);
        respond(req, 200, text);
    }
}

static void test_pipeline_in_order(void)
{
    uv_loop_t loop;
    bx_buf_t all = BX_BUF_INIT;
    const char *t, *p;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &slow_timer);
    BX_CHECK(start_server(&loop, NULL, h_pipeline) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    /* 20 requests in one write: more than the server's pipeline window, so
     * parsing is suspended and resumed as answers drain. */
    bx_buf_puts(&all, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 1; i < 20; i++)
        bx_buf_printf(&all, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
    client_send(&C1, all.data, all.len);
    bx_buf_free(&all);
    T.want_responses = 20;
    snprintf(T.seen, sizeof(T.seen), "r19");
    BX_CHECK(run_until(&loop, pred_c1_has_response, 3000));
    BX_CHECK_INT(before_slow_len, 0);   /* nothing overtook the held answer */
    BX_CHECK_INT(T.nreq, 20);
    t = cl_text(&C1);
    BX_CHECK_INT(count_str(t, "HTTP/1.1 200 OK"), 20);
    p = strstr(t, "\r\n\r\nslow");
    BX_CHECK(p != NULL);
    for (int i = 1; i < 20; i++) {
        char want[16];
        const char *q;
        snprintf(want, sizeof(want), "\r\n\r\nr%d", i);
        q = strstr(t, want);
        BX_CHECK(q != NULL && q > p);
        p = q;
    }
    uv_close((uv_handle_t *)&slow_timer, NULL);
    finish(&loop, &C1, NULL, NULL);
}

static void test_chunked_body(void)
{
    uv_loop_t loop;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_sends(&C1, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n\r\n4\r\nmess");
    client_sends(&C1, "\r\n7\r\nage=%5B\r\n0\r\nX-Trailer: yes\r\n\r\n");
    T.want_responses = 1;
    snprintf(T.seen, sizeof(T.seen), "|message=%%5B");
    BX_CHECK(run_until(&loop, pred_c1_has_response, 2000));
    BX_CHECK(strstr(cl_text(&C1), "\r\n\r\nPOST /c|"));
    finish(&loop, &C1, NULL, NULL);
}

static int pred_c12_eof(void)
{
    return C1.eof && C2.eof;
}

static void test_413(void)
{
    uv_loop_t loop;
    bx_http_limits_t lim = { .max_body = 100 };
    char big[300];

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, &lim, h_echo) != NULL);
    memset(big, 'a', sizeof(big));
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    /* Declared too large: refused before the body. */
    client_sends(&C1, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n");
    client_send(&C1, big, sizeof(big));
    /* Chunked: found too large while reading. */
    client_sends(&C2, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n12c\r\n");
    client_send(&C2, big, sizeof(big));
    client_sends(&C2, "\r\n0\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c12_eof, 4000));
    BX_CHECK(strncmp(cl_text(&C1), "HTTP/1.1 413 Payload Too Large\r\n", 32) == 0);
    BX_CHECK(strstr(cl_text(&C1), "\r\nConnection: close\r\n"));
    BX_CHECK(strncmp(cl_text(&C2), "HTTP/1.1 413 ", 13) == 0);
    BX_CHECK_INT(T.nreq, 0);
    finish(&loop, &C1, &C2, NULL);
}

static void test_431(void)
{
    uv_loop_t loop;
    bx_buf_t req = BX_BUF_INIT;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    bx_buf_puts(&req, "GET / HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 20000; i++)
        bx_buf_append(&req, "b", 1);
    bx_buf_puts(&req, "\r\n\r\n");
    client_send(&C1, req.data, req.len);
    /* Many small headers add up too. */
    bx_buf_reset(&req);
    bx_buf_puts(&req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 2000; i++)
        bx_buf_printf(&req, "X-%d: v\r\n", i);
    bx_buf_puts(&req, "\r\n");
    client_send(&C2, req.data, req.len);
    bx_buf_free(&req);
    BX_CHECK(run_until(&loop, pred_c12_eof, 4000));
    BX_CHECK(strncmp(cl_text(&C1), "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46) == 0);
    BX_CHECK(strncmp(cl_text(&C2), "HTTP/1.1 431 ", 13) == 0);
    BX_CHECK(strstr(cl_text(&C1), "\r\nConnection: close\r\n"));
    BX_CHECK_INT(T.nreq, 0);
    finish(&loop, &C1, &C2, NULL);
}

static void test_400_after_held(void)
{
    uv_loop_t loop;
    const char *t, *a, *b;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &slow_timer);
    before_slow_len = -1;
    BX_CHECK(start_server(&loop, NULL, h_pipeline) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    /* The 400 waits behind the held answer, then the connection closes. */
    client_sends(&C1, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n");
    client_sends(&C2, "GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c12_eof, 3000));
    BX_CHECK_INT(before_slow_len, 0);
    t = cl_text(&C1);
    a = strstr(t, "HTTP/1.1 200 OK\r\n");
    b = strstr(t, "HTTP/1.1 400 Bad Request\r\n");
    BX_CHECK(a && b && a < b);
    BX_CHECK(strstr(b, "Content-Type: text/plain\r\n"));
    BX_CHECK(strstr(b, "\r\n\r\nBad request"));
    BX_CHECK(strncmp(cl_text(&C2), "HTTP/1.1 400 ", 13) == 0);
    BX_CHECK_INT(T.nreq, 1);
    uv_close((uv_handle_t *)&slow_timer, NULL);
    finish(&loop, &C1, &C2, NULL);
}

static uint64_t held_answered_at;

static void held_timer_cb(uv_timer_t *t)
{
    held_answered_at = uv_now(t->loop);
    respond(T.held[0], 200, "late");
}

static void h_hold(bx_http_req_t *req)
{
    T.held[T.nheld++] = req;
}

static int pred_idle_all(void)
{
    return C1.eof && C2.eof && C3.eof;
}

static void test_idle_timeout(void)
{
    uv_loop_t loop;
    bx_http_limits_t lim = { .idle_timeout = 0.2 };
    uv_timer_t answer;
    uint64_t t0;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, &lim, h_hold) != NULL);
    uv_timer_init(&loop, &answer);
    uv_timer_start(&answer, held_timer_cb, 450, 0);
    t0 = uv_now(&loop);
    client_open(&loop, &C1, bx_http_port(T.s));     /* says nothing */
    client_open(&loop, &C2, bx_http_port(T.s));     /* stuck mid-headers */
    client_sends(&C2, "GET / HTTP/1.1\r\nHo");
    client_open(&loop, &C3, bx_http_port(T.s));     /* held request: kept */
    client_sends(&C3, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_idle_all, 3000));
    /* not before the idle timeout; no upper bound (a loaded machine is
     * slow): without the idle close run_until() above times out */
    BX_CHECK(C1.eof_at - t0 >= 150);
    BX_CHECK(C2.eof_at - t0 >= 150);
    BX_CHECK_INT(C1.in.len, 0);
    BX_CHECK_INT(C2.in.len, 0);
    /* The held one survived past the timeout, got its answer, then idled. */
    BX_CHECK(held_answered_at > 0);
    BX_CHECK(strstr(cl_text(&C3), "\r\n\r\nlate"));
    BX_CHECK(C3.eof_at >= held_answered_at + 150);
    BX_CHECK_INT(T.naborts, 0);
    uv_close((uv_handle_t *)&answer, NULL);
    finish(&loop, &C1, &C2, &C3);
}

static int pred_two_conns(void)
{
    return bx_conn_count() == 2;
}

static int pred_c2_answered(void)
{
    return strstr(cl_text(&C2), "\r\n\r\nGET /ok|") != NULL;
}

static int pred_c1_eof_c3_answered(void)
{
    return C1.eof && strstr(cl_text(&C3), "\r\n\r\nGET /new|");
}

static int pred_two_held(void)
{
    return T.nheld == 2;
}

static int pred_c3_eof(void)
{
    return C3.eof;
}

/* Every slot owes an answer: a new connection is refused. */
static void test_max_conns(void)
{
    uv_loop_t loop;
    bx_http_limits_t lim = { .max_conns = 2 };

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, &lim, h_hold) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    client_sends(&C1, "GET /held1 HTTP/1.1\r\nHost: x\r\n\r\n");
    client_sends(&C2, "GET /held2 HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_two_held, 2000));
    client_open(&loop, &C3, bx_http_port(T.s));
    client_sends(&C3, "GET /refused HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c3_eof, 2000));
    BX_CHECK_INT(C3.in.len, 0);
    BX_CHECK_INT(T.nheld, 2);
    finish(&loop, &C1, &C2, &C3);
}

/* At the limit an idle connection (the oldest) gives its slot to a new
 * one, which is served. */
static void test_max_conns_sheds_idle(void)
{
    uv_loop_t loop;
    bx_http_limits_t lim = { .max_conns = 2 };

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, &lim, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    BX_CHECK(run_until(&loop, pred_two_conns, 2000));
    /* C2 was active last: C1 is the oldest idle one */
    client_sends(&C2, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c2_answered, 2000));
    client_open(&loop, &C3, bx_http_port(T.s));
    client_sends(&C3, "GET /new HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c1_eof_c3_answered, 2000));
    BX_CHECK_INT(C1.in.len, 0);
    finish(&loop, &C1, &C2, &C3);
}

static int pred_held1(void)
{
    return T.nheld == 1;
}

static int pred_abort1(void)
{
    return T.naborts == 1;
}

static void test_abort_on_close(void)
{
    uv_loop_t loop;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_hold) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    client_sends(&C1, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_held1, 2000));
    client_close(&C1);
    BX_CHECK(run_until(&loop, pred_abort1, 2000));
    BX_CHECK(T.aborted[0] == T.held[0]);
    /* Closing the server aborts a request still held there. */
    client_sends(&C2, "GET /held2 HTTP/1.1\r\nHost: x\r\n\r\n");
    T.nheld = 0;
    BX_CHECK(run_until(&loop, pred_held1, 2000));
    T.cl[0] = &C1;
    finish(&loop, &C1, &C2, NULL);
    BX_CHECK_INT(T.naborts, 2);
    BX_CHECK(T.aborted[1] == T.held[0]);
}

/* ---- Hijack ---- */

static bx_http_req_t *hj_req;

static void hj_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    if (T.in_call)
        T.hj_sync = 1;
    if (len)
        bx_buf_append(&T.hj_in, data, len);
    if (T.hj_in.len == 12 && memcmp(T.hj_in.data, "LEFTOVERMORE", 12) == 0) {
        /* Two writes in one turn leave in a single uv_write. */
        T.writes_before = bx_conn_write_calls();
        bx_conn_write_copy(c, "x", 1);
        bx_conn_write_copy(c, "y", 1);
    }
}

static void hj_close(bx_conn_t *c, void *ud)
{
    T.hj_closed++;
}

/* An EventSource-style takeover of a plain GET, later from a timer. */
static bx_http_req_t *es_req;
static bx_conn_t *es_conn;

static void es_timer_cb(uv_timer_t *t)
{
    T.in_call = 1;
    es_conn = bx_http_hijack(&es_req, NULL, hj_close, NULL);
    T.in_call = 0;
    if (es_conn) {
        bx_conn_write_copy(es_conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
                           52);
        bx_conn_write_copy(es_conn, "data: hi\n\n", 10);
    }
}

static void h_hijack(bx_http_req_t *req)
{
    if (req->path.len == 7 && memcmp(req->path.base, "/events", 7) == 0) {
        es_req = req;
        uv_timer_start(&slow_timer, es_timer_cb, 20, 0);
        return;
    }
    if (!req->upgrade) {
        respond(req, 400, "no");
        return;
    }
    T.in_call = 1;
    T.hj_conn = bx_http_hijack(&req, hj_read, hj_close, NULL);
    hj_req = req;
    if (T.hj_conn)
        bx_conn_write_copy(T.hj_conn, "HTTP/1.1 101 Switching Protocols\r\n\r\n", 36);
    T.in_call = 0;
}

static int pred_leftover(void)
{
    return T.hj_in.len >= 8 && strstr(cl_text(&C1), "101");
}

static int pred_xy(void)
{
    return strstr(cl_text(&C1), "\r\n\r\nxy") != NULL;
}

static int pred_hj_closed(void)
{
    return T.hj_closed == 1 && C1.eof;
}

static int pred_es(void)
{
    return strstr(cl_text(&C2), "data: hi\n\n") != NULL;
}

static int pred_es_closed(void)
{
    return T.hj_closed == 2;
}

static void test_hijack(void)
{
    uv_loop_t loop;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &slow_timer);
    BX_CHECK(start_server(&loop, NULL, h_hijack) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_sends(&C1, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\nLEFTOVER");
    BX_CHECK(run_until(&loop, pred_leftover, 2000));
    BX_CHECK(T.hj_conn != NULL);
    BX_CHECK_INT(T.hj_sync, 0);
    BX_CHECK_INT(T.hj_in.len, 8);
    BX_CHECK(memcmp(T.hj_in.data, "LEFTOVER", 8) == 0);
    BX_CHECK(strncmp(cl_text(&C1), "HTTP/1.1 101 Switching Protocols\r\n\r\n", 36) == 0);
    BX_CHECK(strcmp(hj_req->method, "GET") == 0);       /* still valid */
    /* the compact copy the hijacker keeps: headers, path, peer address */
    BX_CHECK(bx_http_header_has(hj_req, "Upgrade", "websocket"));
    BX_CHECK(hj_req->path.len == 3 && memcmp(hj_req->path.base, "/ws", 3) == 0);
    BX_CHECK_INT(hj_req->query.len, 0);
    BX_CHECK(strcmp(hj_req->remote_addr, "127.0.0.1") == 0);
    client_sends(&C1, "MORE");
    BX_CHECK(run_until(&loop, pred_xy, 2000));
    BX_CHECK_INT(bx_conn_write_calls() - T.writes_before, 1);
    bx_conn_close(T.hj_conn);
    BX_CHECK(run_until(&loop, pred_hj_closed, 2000));
    bx_http_hijack_done(hj_req);

    client_open(&loop, &C2, bx_http_port(T.s));
    client_sends(&C2, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_es, 2000));
    BX_CHECK(es_conn != NULL);
    BX_CHECK(strncmp(cl_text(&C2), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream", 48) == 0);
    client_close(&C2);          /* the new owner hears of it */
    BX_CHECK(run_until(&loop, pred_es_closed, 2000));
    bx_http_hijack_done(es_req);
    BX_CHECK_INT(T.naborts, 0);
    uv_close((uv_handle_t *)&slow_timer, NULL);
    finish(&loop, &C1, &C2, NULL);
}

/* ---- Coalescing ---- */

static void both_timer_cb(uv_timer_t *t)
{
    bx_chunkv_t body = BX_CHUNKV_INIT;

    T.writes_before = bx_conn_write_calls();
    for (int i = 0; i < T.nheld; i++) {
        /* Several body chunks, plus a second response, in one turn. */
        bx_chunkv_push_new(&body, bx_chunk_new("[", 1));
        bx_chunkv_push_new(&body, bx_chunk_new("{}", 2));
        bx_chunkv_push_new(&body, bx_chunk_new("]", 1));
        T.in_call = 1;
        bx_http_respond(T.held[i], 200, "Content-Type: application/json\r\n", &body, 0);
        T.in_call = 0;
    }
    bx_chunkv_free(&body);
    T.nheld = 0;
}

static void h_hold_two(bx_http_req_t *req)
{
    T.held[T.nheld++] = req;
    if (T.nheld == 2)
        uv_timer_start(&slow_timer, both_timer_cb, 10, 0);
}

static int pred_two_json(void)
{
    return count_str(cl_text(&C1), "\r\n\r\n[{}]") == 2;
}

static void test_one_write_per_turn(void)
{
    uv_loop_t loop;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &slow_timer);
    BX_CHECK(start_server(&loop, NULL, h_hold_two) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_sends(&C1, "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]"
                      "POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]");
    BX_CHECK(run_until(&loop, pred_two_json, 2000));
    BX_CHECK_INT(bx_conn_write_calls() - T.writes_before, 1);
    BX_CHECK(strstr(cl_text(&C1), "Content-Type: application/json\r\nDate: "));
    BX_CHECK(strstr(cl_text(&C1), "Content-Length: 4\r\n"));
    uv_close((uv_handle_t *)&slow_timer, NULL);
    finish(&loop, &C1, NULL, NULL);
}

/* ---- Connection header ---- */

static int pred_three_eof_or_answered(void)
{
    return C1.eof && C2.eof && strstr(cl_text(&C3), "\r\n\r\nGET /3|");
}

static void test_connection_header(void)
{
    uv_loop_t loop;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_open(&loop, &C2, bx_http_port(T.s));
    client_open(&loop, &C3, bx_http_port(T.s));
    /* HTTP/1.0 closes by default; anything after is ignored. */
    client_sends(&C1, "GET /1 HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n");
    client_sends(&C2, "GET /2 HTTP/1.1\r\nConnection: close\r\n\r\n");
    client_sends(&C3, "GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_three_eof_or_answered, 2000));
    BX_CHECK(strstr(cl_text(&C1), "\r\nConnection: close\r\n"));
    BX_CHECK(strstr(cl_text(&C1), "\r\n\r\nGET /1||/1||0|"));
    BX_CHECK_INT(count_str(cl_text(&C1), "HTTP/1.1"), 1);
    BX_CHECK(strstr(cl_text(&C2), "\r\nConnection: close\r\n"));
    BX_CHECK(strstr(cl_text(&C3), "\r\nConnection: keep-alive\r\n"));
    BX_CHECK(!C3.eof);
    BX_CHECK_INT(T.nreq, 3);
    finish(&loop, &C1, &C2, &C3);
}

static int s2_closed;

static void s2_done(void *ud)
{
    s2_closed++;
}

static void test_listen_errors(void)
{
    uv_loop_t loop;
    bx_http_server_t *s2;

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, NULL, h_echo) != NULL);
    s2 = bx_http_server_new(&loop, NULL, on_request, on_abort, NULL);
    BX_CHECK_INT(bx_http_port(s2), -1);
    BX_CHECK(bx_http_listen(s2, "127.0.0.1", bx_http_port(T.s)) == UV_EADDRINUSE);
    BX_CHECK(bx_http_listen(s2, "not-an-ip", 0) < 0);
    bx_http_server_close(s2, s2_done, NULL);
    BX_CHECK_INT(s2_closed, 0);
    BX_CHECK_STR(bx_http_reason(404), "Not Found");
    BX_CHECK_STR(bx_http_reason(431), "Request Header Fields Too Large");
    finish(&loop, NULL, NULL, NULL);
    BX_CHECK_INT(s2_closed, 1);
}

static int pred_c1_answered_a(void)
{
    return strstr(cl_text(&C1), "\r\n\r\nGET /a|") != NULL;
}

static int pred_c2_eof(void)
{
    return C2.eof;
}

/* At max_conns_per_addr a new connection from the address is answered 429
 * and closed; one that keeps its side open is closed with the server (the
 * server's close waits for it), so nothing outlives the server. */
static void test_max_conns_per_addr(void)
{
    uv_loop_t loop;
    bx_http_limits_t lim = { .max_conns_per_addr = 1 };

    uv_loop_init(&loop);
    BX_CHECK(start_server(&loop, &lim, h_echo) != NULL);
    client_open(&loop, &C1, bx_http_port(T.s));
    client_sends(&C1, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    BX_CHECK(run_until(&loop, pred_c1_answered_a, 2000));
    client_open(&loop, &C2, bx_http_port(T.s));
    BX_CHECK(run_until(&loop, pred_c2_eof, 2000));
    BX_CHECK(strncmp(cl_text(&C2), "HTTP/1.1 429 Too Many Requests\r\n", 32) == 0);
    BX_CHECK(strstr(cl_text(&C2), "Too many connections from your address") != NULL);
    /* C2 has not closed: the server lingers on it until its close */
    T.in_call = 1;
    bx_http_server_close(T.s, server_done, NULL);
    T.in_call = 0;
    BX_CHECK(run_until(&loop, pred_done, 3000));
    BX_CHECK_INT(bx_conn_count(), 0);
    client_close_wait(&C1);
    client_close_wait(&C2);
    bx_buf_free(&T.hj_in);
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    BX_RUN(test_simple_get);
    BX_RUN(test_post_keepalive);
    BX_RUN(test_pipeline_in_order);
    BX_RUN(test_chunked_body);
    BX_RUN(test_413);
    BX_RUN(test_431);
    BX_RUN(test_400_after_held);
    BX_RUN(test_idle_timeout);
    BX_RUN(test_max_conns);
    BX_RUN(test_max_conns_sheds_idle);
    BX_RUN(test_max_conns_per_addr);
    BX_RUN(test_abort_on_close);
    BX_RUN(test_hijack);
    BX_RUN(test_one_write_per_turn);
    BX_RUN(test_connection_header);
    BX_RUN(test_listen_errors);
    return BX_REPORT();
}
