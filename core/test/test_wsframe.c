/*
 * test_wsframe.c - the RFC 6455 framing shared by server and client
 * (net/wsframe.c), over a real loopback TCP connection: a client-mode
 * frame layer talking to a server-mode one both ways (the server side
 * rejects unmasked frames, so this checks the client masks), fragments,
 * then raw bytes against the server side: an oversized message refused
 * with 1009 on its header alone, a one-byte close payload answered 1002,
 * a close echoed, and wslay's context given back at message boundaries.
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/wsframe.h"

#include <stdlib.h>

typedef struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t *ctcp;
    uv_connect_t creq;
    bx_conn_t *sconn, *cconn;
    bx_wsframe_t sf, cf;
    int client_frames;          /* the client side uses a wsframe (else raw) */
    size_t max_msg;
    int sresult;                /* the server side's last non-OK read */
    int sclosed, cclosed;
    int nsmsg, ncmsg;
    bx_buf_t smsgs, cmsgs;      /* messages, one per line */
    bx_buf_t craw;              /* raw bytes the client got */
} env_t;

static env_t *E;

static void add_line(bx_buf_t *b, const uint8_t *data, size_t len)
{
    bx_buf_append(b, data, len);
    bx_buf_puts(b, "\n");
    bx_buf_reserve(b, 1);
    b->data[b->len] = '\0';
}

static void s_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    env_t *e = ud;
    e->nsmsg++;
    add_line(&e->smsgs, data, len);
    if (len == 4 && memcmp(data, "echo", 4) == 0) {
        bx_chunkv_t v = BX_CHUNKV_INIT;
        bx_chunkv_push_new(&v, bx_chunk_new("echoed", 6));
        bx_wsframe_send(&e->sf, opcode, &v);
        bx_chunkv_free(&v);
    }
}

static void c_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    env_t *e = ud;
    (void)opcode;
    e->ncmsg++;
    add_line(&e->cmsgs, data, len);
}

static const bx_wsframe_cb_t s_cb = { s_message, NULL };
static const bx_wsframe_cb_t c_cb = { c_message, NULL };

static void s_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    env_t *e = ud;
    (void)c;
    if (status < 0)
        return;
    int r = bx_wsframe_read(&e->sf, data, len);
    if (r != BX_WSF_OK)
        e->sresult = r;
}

static void s_close(bx_conn_t *c, void *ud)
{
    env_t *e = ud;
    (void)c;
    bx_wsframe_free(&e->sf);
    e->sclosed = 1;
}

static void c_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    env_t *e = ud;
    (void)c;
    if (status < 0)
        return;
    if (e->client_frames)
        bx_wsframe_read(&e->cf, data, len);
    else
        bx_buf_append(&e->craw, data, len);
}

static void c_close(bx_conn_t *c, void *ud)
{
    env_t *e = ud;
    (void)c;
    bx_wsframe_free(&e->cf);
    e->cclosed = 1;
}

static void on_conn(uv_stream_t *l, int status)
{
    env_t *e = l->data;
    uv_tcp_t *t = malloc(sizeof(*t));
    (void)status;
    uv_tcp_init(&e->loop, t);
    if (uv_accept(l, (uv_stream_t *)t) != 0) {
        free(t);
        return;
    }
    e->sconn = bx_conn_new(&e->loop, t, s_read, s_close, e);
    bx_wsframe_init(&e->sf, e->sconn, 0, e->max_msg, &s_cb, e);
}

static void on_connected(uv_connect_t *r, int status)
{
    env_t *e = r->data;
    if (status < 0)
        return;
    e->cconn = bx_conn_new(&e->loop, e->ctcp, c_read, c_close, e);
    bx_wsframe_init(&e->cf, e->cconn, 1, 0, &c_cb, e);
}

static int pred_up(void) { return E->sconn && E->cconn; }
static int want;
static int pred_smsg(void) { return E->nsmsg >= want; }
static int pred_cmsg(void) { return E->ncmsg >= want; }
static int pred_both_closed(void) { return E->sclosed && E->cclosed; }
static int pred_sres(void) { return E->sresult != 0; }

static int env_open(env_t *e, int client_frames, size_t max_msg)
{
    struct sockaddr_in a;
    int len = sizeof(a);

    memset(e, 0, sizeof(*e));
    E = e;
    e->client_frames = client_frames;
    e->max_msg = max_msg;
    uv_loop_init(&e->loop);
    uv_tcp_init(&e->loop, &e->listener);
    e->listener.data = e;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&e->listener, (const struct sockaddr *)&a, 0);
    if (uv_listen((uv_stream_t *)&e->listener, 8, on_conn) != 0)
        return -1;
    uv_tcp_getsockname(&e->listener, (struct sockaddr *)&a, &len);
    e->ctcp = malloc(sizeof(*e->ctcp));
    uv_tcp_init(&e->loop, e->ctcp);
    e->creq.data = e;
    uv_tcp_connect(&e->creq, e->ctcp, (const struct sockaddr *)&a, on_connected);
    return run_until(&e->loop, pred_up, 5000) ? 0 : -1;
}

static void env_close(env_t *e)
{
    if (!e->sclosed)
        bx_conn_close(e->sconn);
    if (!e->cclosed)
        bx_conn_close(e->cconn);
    run_until(&e->loop, pred_both_closed, 5000);
    uv_close((uv_handle_t *)&e->listener, NULL);
    bx_buf_free(&e->smsgs);
    bx_buf_free(&e->cmsgs);
    bx_buf_free(&e->craw);
    bx_conn_cleanup(&e->loop);
}

/* A raw frame from the client: masked (key 0), FIN as given. */
static void raw_frame(env_t *e, int fin, unsigned opcode, const char *payload, size_t len)
{
    uint8_t h[14];
    size_t n = 0;

    h[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[n++] = (uint8_t)(0x80 | len);
    } else {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    }
    memset(h + n, 0, 4);        /* a zero key leaves the payload as it is */
    n += 4;
    bx_conn_write_copy(e->cconn, h, n);
    if (len)
        bx_conn_write_copy(e->cconn, payload, len);
}

static void test_round_trip(void)
{
    env_t e;
    char big[70000];

    BX_CHECK_INT(env_open(&e, 1, 0), 0);
    bx_chunkv_t v = BX_CHUNKV_INIT;
    bx_chunkv_push_new(&v, bx_chunk_new("hel", 3));
    bx_chunkv_push_new(&v, bx_chunk_new("lo", 2));
    bx_wsframe_send(&e.cf, BX_WS_TEXT, &v);      /* masked: the server accepts it */
    BX_CHECK_INT(v.n, 0);
    bx_chunkv_push_new(&v, bx_chunk_new("echo", 4));
    bx_wsframe_send(&e.cf, BX_WS_TEXT, &v);
    /* a payload that needs the 64-bit length, masked across chunks */
    memset(big, 'x', sizeof(big));
    big[0] = '<';
    big[sizeof(big) - 1] = '>';
    bx_chunkv_push_new(&v, bx_chunk_new(big, 1001));
    bx_chunkv_push_new(&v, bx_chunk_new(big + 1001, sizeof(big) - 1001));
    bx_wsframe_send(&e.cf, BX_WS_BINARY, &v);
    bx_chunkv_free(&v);
    want = 3;
    BX_CHECK(run_until(&e.loop, pred_smsg, 5000));
    BX_CHECK(strncmp(e.smsgs.data, "hello\necho\n<xx", 14) == 0);
    BX_CHECK_INT(e.smsgs.len, 11 + sizeof(big) + 1);
    BX_CHECK(e.smsgs.data[e.smsgs.len - 2] == '>');
    want = 1;
    BX_CHECK(run_until(&e.loop, pred_cmsg, 5000));
    BX_CHECK_STR(e.cmsgs.data, "echoed\n");
    BX_CHECK(e.sf.ctx == NULL);                     /* boundaries: given back */
    BX_CHECK_INT(e.sresult, 0);

    /* the client closes: the server echoes and both ends close */
    bx_wsframe_close(&e.cf, 1000, "bye");
    BX_CHECK(e.cf.closing);
    BX_CHECK(run_until(&e.loop, pred_both_closed, 5000));
    BX_CHECK_INT(e.sresult, BX_WSF_CLOSED);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);
}

static void test_fragments_keep_context(void)
{
    env_t e;

    BX_CHECK_INT(env_open(&e, 0, 0), 0);
    raw_frame(&e, 0, BX_WS_TEXT, "ab", 2);
    raw_frame(&e, 0, 0, "cd", 2);
    for (int i = 0; i < 20 && !e.sf.fragmented; i++)
        uv_run(&e.loop, UV_RUN_ONCE);
    BX_CHECK(e.sf.fragmented);
    BX_CHECK(e.sf.ctx != NULL);                     /* mid-message: kept */
    BX_CHECK_INT(e.nsmsg, 0);
    raw_frame(&e, 1, 0, "ef", 2);
    want = 1;
    BX_CHECK(run_until(&e.loop, pred_smsg, 5000));
    BX_CHECK_STR(e.smsgs.data, "abcdef\n");
    BX_CHECK(!e.sf.fragmented);
    BX_CHECK(e.sf.ctx == NULL);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);
}

/* The close frame the client got: its code, or -1. */
static int close_code(const env_t *e)
{
    const uint8_t *p = (const uint8_t *)e->craw.data;
    if (e->craw.len < 4 || p[0] != 0x88 || (p[1] & 0x7f) < 2)
        return -1;
    return p[2] << 8 | p[3];
}

static void test_oversize_refused_on_header(void)
{
    env_t e;
    uint8_t h[14] = { 0x81, 0x80 | 127, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0 };

    BX_CHECK_INT(env_open(&e, 0, 1000), 0);
    /* a header declaring 2^36 bytes, and not one byte of them */
    bx_conn_write_copy(e.cconn, h, sizeof(h));
    BX_CHECK(run_until(&e.loop, pred_sres, 5000));
    BX_CHECK_INT(e.sresult, BX_WSF_ERROR);
    BX_CHECK(run_until(&e.loop, pred_both_closed, 5000));
    BX_CHECK_INT(close_code(&e), 1009);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);
}

static void test_oversize_across_fragments(void)
{
    env_t e;
    char p[600];

    memset(p, 'a', sizeof(p));
    BX_CHECK_INT(env_open(&e, 0, 1000), 0);
    raw_frame(&e, 0, BX_WS_TEXT, p, sizeof(p));
    raw_frame(&e, 1, 0, p, sizeof(p));              /* 1200 in all */
    BX_CHECK(run_until(&e.loop, pred_both_closed, 5000));
    BX_CHECK_INT(e.sresult, BX_WSF_ERROR);
    BX_CHECK_INT(close_code(&e), 1009);
    BX_CHECK_INT(e.nsmsg, 0);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);
}

static void test_close_payload_rules(void)
{
    env_t e;

    BX_CHECK_INT(env_open(&e, 0, 0), 0);
    raw_frame(&e, 1, BX_WS_CLOSE, "x", 1);          /* neither empty nor a code */
    BX_CHECK(run_until(&e.loop, pred_both_closed, 5000));
    BX_CHECK_INT(e.sresult, BX_WSF_ERROR);
    BX_CHECK_INT(close_code(&e), 1002);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);

    /* a proper close is echoed with its code */
    BX_CHECK_INT(env_open(&e, 0, 0), 0);
    raw_frame(&e, 1, BX_WS_CLOSE, "\x0f\xa0", 2);   /* 4000 */
    BX_CHECK(run_until(&e.loop, pred_both_closed, 5000));
    BX_CHECK_INT(e.sresult, BX_WSF_CLOSED);
    BX_CHECK_INT(close_code(&e), 4000);
    env_close(&e);
    BX_LOOP_CLOSE(&e.loop);
}

/* Every WebSocket embeds a bx_wsframe_t: at 96 bytes ws_t (232) stays in
 * glibc's 240-byte class, at 104 it took 256 (idle memory per session,
 * docs/benchmarks.md). A limit past 32 bits is kept as the largest one. */
static void test_frame_state_size(void)
{
    bx_wsframe_t f;

    BX_CHECK(sizeof(bx_wsframe_t) <= 96);
    bx_wsframe_init(&f, NULL, 0, (size_t)1 << 40, NULL, NULL);
    BX_CHECK(f.max_msg == UINT32_MAX);
    bx_wsframe_init(&f, NULL, 0, 0, NULL, NULL);
    BX_CHECK(f.max_msg == 0);
}

int main(void)
{
    BX_RUN(test_round_trip);
    BX_RUN(test_fragments_keep_context);
    BX_RUN(test_oversize_refused_on_header);
    BX_RUN(test_oversize_across_fragments);
    BX_RUN(test_close_payload_rules);
    BX_RUN(test_frame_state_size);
    return BX_REPORT();
}
