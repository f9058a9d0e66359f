/*
 * test_wsc.c - the WebSocket client against the project's server on a
 * loopback port: a Bayeux handshake and a subscribe/publish round trip over
 * the socket (the server rejects unmasked frames, so this also checks the
 * client masks), a refused connection, a path that is no WebSocket
 * endpoint, and closing from inside a message callback.
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/wsc.h"
#include "net/wsdeflate.h"
#include "server.h"

#include <signal.h>
#include <stdlib.h>

typedef struct {
    int opened, closed, nmsg;
    char reason[64];
    bx_buf_t msgs;              /* every message, one per line */
    int close_on_msg;
    bx_wsc_t *w;
} obs_t;

static obs_t *g_obs;

static void on_event(void *ud, int event, const char *data, size_t len)
{
    obs_t *o = ud;
    if (event == BX_WSC_OPEN) {
        o->opened++;
    } else if (event == BX_WSC_MESSAGE) {
        o->nmsg++;
        bx_buf_append(&o->msgs, data, len);
        bx_buf_puts(&o->msgs, "\n");
        bx_buf_reserve(&o->msgs, 1);
        o->msgs.data[o->msgs.len] = '\0';
        if (o->close_on_msg)
            bx_wsc_close(o->w);
    } else {
        o->closed++;
        snprintf(o->reason, sizeof(o->reason), "%.*s", (int)len, data);
    }
}

static int pred_open(void) { return g_obs->opened || g_obs->closed; }
static int pred_closed(void) { return g_obs->closed > 0; }
static int want_msgs;
static int pred_msgs(void) { return g_obs->nmsg >= want_msgs || g_obs->closed; }

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

/* The client id in the first handshake reply of the messages so far. */
static void client_id(const obs_t *o, char *out, size_t n)
{
    const char *p = strstr(o->msgs.data, "\"clientId\":\"");
    out[0] = '\0';
    if (!p)
        return;
    p += 12;
    size_t k = strcspn(p, "\"");
    snprintf(out, n, "%.*s", (int)k, p);
}

static void test_bayeux_round_trip(void)
{
    uv_loop_t loop;
    bx_server_opts_t so;
    obs_t o = { 0 };
    char cid[64], m[512];

    uv_loop_init(&loop);
    bx_server_opts_default(&so);
    so.mount = "/faye";
    so.timeout = 2;
    bx_server_t *s = bx_server_new(&loop, &so, NULL, 0);
    BX_CHECK_INT(bx_server_listen(s, "127.0.0.1", 0), 0);
    g_obs = &o;
    o.w = bx_wsc_open(&loop, "127.0.0.1", bx_server_port(s), "/faye", NULL, 5000, on_event, &o);
    BX_CHECK_INT(o.opened, 0);          /* never inside the call */
    BX_CHECK(run_until(&loop, pred_open, 5000));
    BX_CHECK_INT(o.opened, 1);

    const char *hs = "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                     "\"supportedConnectionTypes\":[\"websocket\"],\"id\":\"1\"}]";
    BX_CHECK_INT(bx_wsc_send(o.w, hs, strlen(hs)), 0);
    want_msgs = 1;
    BX_CHECK(run_until(&loop, pred_msgs, 5000));
    client_id(&o, cid, sizeof(cid));
    BX_CHECK(cid[0] != '\0');

    snprintf(m, sizeof(m),
             "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/a/*\",\"id\":\"2\"}]",
             cid);
    bx_wsc_send(o.w, m, strlen(m));
    want_msgs = 2;
    BX_CHECK(run_until(&loop, pred_msgs, 5000));
    snprintf(m, sizeof(m),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":\"websocket\",\"id\":\"3\"},"
             "{\"channel\":\"/a/b\",\"clientId\":\"%s\",\"data\":{\"x\":1},\"id\":\"4\"}]",
             cid, cid);
    bx_wsc_send(o.w, m, strlen(m));
    want_msgs = 3;
    BX_CHECK(run_until(&loop, pred_msgs, 5000));
    /* the delivery reaches us (in whichever frame the server chose) */
    for (int i = 0; i < 50 && !strstr(o.msgs.data, "\"data\":{\"x\":1}"); i++) {
        want_msgs = o.nmsg + 1;
        run_until(&loop, pred_msgs, 100);
    }
    BX_CHECK(strstr(o.msgs.data, "\"data\":{\"x\":1}") != NULL);
    BX_CHECK_INT(o.closed, 0);

    /* closing from inside a message callback */
    o.close_on_msg = 1;
    snprintf(m, sizeof(m),
             "[{\"channel\":\"/a/c\",\"clientId\":\"%s\",\"data\":2,\"id\":\"5\"}]", cid);
    bx_wsc_send(o.w, m, strlen(m));
    BX_CHECK(run_until(&loop, pred_closed, 5000));
    BX_CHECK_INT(o.closed, 1);

    int done = 0;
    bx_server_close(s, closed_cb, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    bx_buf_free(&o.msgs);
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

/* The client offers permessage-deflate and the server takes it: a 3 KB
 * publish goes compressed, comes back compressed, and arrives intact. */
static void test_deflate(void)
{
    uv_loop_t loop;
    bx_server_opts_t so;
    obs_t o = { 0 };
    char cid[64], text[3001];
    bx_buf_t m = BX_BUF_INIT;

    uv_loop_init(&loop);
    bx_server_opts_default(&so);
    so.mount = "/faye";
    so.timeout = 2;
    bx_server_t *s = bx_server_new(&loop, &so, NULL, 0);
    BX_CHECK_INT(bx_server_listen(s, "127.0.0.1", 0), 0);
    g_obs = &o;
    o.w = bx_wsc_open(&loop, "127.0.0.1", bx_server_port(s), "/faye", NULL, 5000, on_event, &o);
    BX_CHECK(run_until(&loop, pred_open, 5000));
    BX_CHECK_INT(o.opened, 1);
    const char *hs = "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                     "\"supportedConnectionTypes\":[\"websocket\"],\"id\":\"1\"}]";
    bx_wsc_send(o.w, hs, strlen(hs));
    want_msgs = 1;
    BX_CHECK(run_until(&loop, pred_msgs, 5000));
    client_id(&o, cid, sizeof(cid));
    bx_buf_printf(&m, "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                      "\"subscription\":\"/z\",\"id\":\"2\"}]", cid);
    bx_wsc_send(o.w, m.data, m.len);
    want_msgs = 2;
    BX_CHECK(run_until(&loop, pred_msgs, 5000));
    bx_buf_reset(&m);
    bx_buf_printf(&m, "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
                      "\"connectionType\":\"websocket\",\"id\":\"3\"}]", cid);
    bx_wsc_send(o.w, m.data, m.len);
    for (int i = 0; i < 3000; i++)
        text[i] = "abcdefghij"[i % 10];
    text[3000] = '\0';
    bx_buf_reset(&m);
    bx_buf_printf(&m, "[{\"channel\":\"/z\",\"clientId\":\"%s\",\"data\":\"%s\",\"id\":\"4\"}]",
                  cid, text);
    bx_wsdeflate_stats_t before = bx_wsdeflate_stats;
    bx_wsc_send(o.w, m.data, m.len);
    for (int i = 0; i < 50 && !strstr(o.msgs.data, text); i++) {
        want_msgs = o.nmsg + 1;
        run_until(&loop, pred_msgs, 100);
    }
    BX_CHECK(strstr(o.msgs.data, text) != NULL);
    /* compressed by the client and by the server, inflated by both */
    BX_CHECK(bx_wsdeflate_stats.deflates - before.deflates >= 2);
    BX_CHECK(bx_wsdeflate_stats.inflated - before.inflated >= 2 * 3000);
    BX_CHECK_INT(o.closed, 0);
    bx_wsc_close(o.w);
    BX_CHECK(run_until(&loop, pred_closed, 5000));

    int done = 0;
    bx_server_close(s, closed_cb, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    bx_buf_free(&m);
    bx_buf_free(&o.msgs);
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_failures(void)
{
    uv_loop_t loop;
    bx_server_opts_t so;
    obs_t o = { 0 }, o2 = { 0 };

    uv_loop_init(&loop);
    /* a bound port that does not listen refuses */
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    uv_tcp_init(&loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &n);
    g_obs = &o;
    o.w = bx_wsc_open(&loop, "127.0.0.1", ntohs(((struct sockaddr_in *)&ss)->sin_port), "/",
                      NULL, 5000, on_event, &o);
    BX_CHECK(run_until(&loop, pred_closed, 5000));
    BX_CHECK_INT(o.opened, 0);
    BX_CHECK_STR(o.reason, "refused");
    uv_close((uv_handle_t *)&t, NULL);

    /* not a WebSocket endpoint: the answer is no 101 */
    bx_server_opts_default(&so);
    so.mount = "/faye";
    bx_server_t *s = bx_server_new(&loop, &so, NULL, 0);
    bx_server_listen(s, "127.0.0.1", 0);
    g_obs = &o2;
    o2.w = bx_wsc_open(&loop, "localhost", bx_server_port(s), "/elsewhere", NULL, 5000,
                       on_event, &o2);
    BX_CHECK(run_until(&loop, pred_closed, 5000));
    BX_CHECK_INT(o2.opened, 0);
    BX_CHECK_STR(o2.reason, "bad upgrade answer");

    int done = 0;
    bx_server_close(s, closed_cb, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    bx_conn_cleanup(&loop);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    BX_RUN(test_bayeux_round_trip);
    BX_RUN(test_deflate);
    BX_RUN(test_failures);
    return BX_REPORT();
}
