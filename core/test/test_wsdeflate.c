/*
 * test_wsdeflate.c - permessage-deflate (RFC 7692): the offer parser, the
 * codec, and a server over loopback sockets: compressed messages both
 * ways, one compression shared by every recipient of a publish, the limits
 * (a zip bomb closes 1009 without being inflated past the limit) and the
 * refusals (RSV1 without the extension, on a control frame or on a
 * continuation: 1002; bytes that do not inflate: 1007).
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/later.h"
#include "bayeux/protocol.h"
#include "net/conn.h"
#include "net/wsdeflate.h"
#include "server.h"
#include "transport/ws.h"

#include <stdlib.h>
#include <zlib.h>

/* ---- Raw deflate, as a client does ---- */

/* `in` compressed with no context, the 00 00 ff ff tail dropped. */
static void zcompress(const void *in, size_t len, bx_buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    bx_buf_reset(out);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    do {
        z.next_out = (Bytef *)bx_buf_reserve(out, 65536);
        z.avail_out = 65536;
        deflate(&z, Z_SYNC_FLUSH);
        out->len += 65536 - z.avail_out;
    } while (z.avail_out == 0);
    deflateEnd(&z);
    out->len -= 4;
}

/* ---- Negotiation ---- */

static unsigned nego(const char *offers, char *answer, size_t cap)
{
    bx_buf_t a = BX_BUF_INIT;
    int bits = bx_wsdeflate_negotiate(offers, strlen(offers), &a);
    snprintf(answer, cap, "%.*s", (int)a.len, a.data ? a.data : "");
    bx_buf_free(&a);
    return (unsigned)bits;
}

static void test_negotiate(void)
{
    char a[256];
    const char *base = "permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover";

    /* what browsers offer */
    BX_CHECK_INT(nego("permessage-deflate; client_max_window_bits", a, sizeof(a)), 15);
    BX_CHECK_STR(a, base);
    BX_CHECK_INT(nego("permessage-deflate", a, sizeof(a)), 15);
    BX_CHECK_STR(a, base);
    /* npm ws, Faye's permessage-deflate */
    BX_CHECK_INT(nego("permessage-deflate; client_max_window_bits=15;"
                      " server_no_context_takeover", a, sizeof(a)), 15);
    BX_CHECK_STR(a, base);
    /* a server window asked for is echoed, quoted or not */
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits=10", a, sizeof(a)), 10);
    BX_CHECK(strstr(a, "; server_max_window_bits=10"));
    BX_CHECK_INT(nego("permessage-deflate;server_max_window_bits=\"12\"", a, sizeof(a)), 12);
    BX_CHECK(strstr(a, "; server_max_window_bits=12"));
    /* 8 is not a raw deflate window zlib makes: that offer is declined,
     * the next one taken */
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits=8, "
                      "permessage-deflate; client_no_context_takeover", a, sizeof(a)), 15);
    BX_CHECK_STR(a, base);
    /* other extensions before ours are skipped */
    BX_CHECK_INT(nego("x-webkit-deflate-frame; no_context_takeover, PerMessage-Deflate",
                      a, sizeof(a)), 15);
    /* offers that cannot be accepted */
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits=16", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits=09", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; client_max_window_bits=7", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; server_no_context_takeover=1", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; client_no_context_takeover; "
                      "client_no_context_takeover", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; foo", a, sizeof(a)), 0);
    BX_CHECK_STR(a, "");
    BX_CHECK_INT(nego("x-other", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate; server_max_window_bits=\"1", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("permessage-deflate junk", a, sizeof(a)), 0);
    BX_CHECK_INT(nego("", a, sizeof(a)), 0);
}

static int acc(const char *a)
{
    return bx_wsdeflate_accept(a, strlen(a));
}

/* A client's check of the server's answer. */
static void test_accept(void)
{
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover; "
                     "client_no_context_takeover"), 15);
    BX_CHECK_INT(acc("permessage-deflate;server_no_context_takeover;"
                     "client_max_window_bits=10"), 10);
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover; "
                     "server_max_window_bits=\"12\""), 15);
    /* the server would keep its context: we asked it not to */
    BX_CHECK_INT(acc("permessage-deflate"), -1);
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover; "
                     "client_max_window_bits=8"), -1);
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover; x=1"), -1);
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover; "
                     "server_no_context_takeover"), -1);
    BX_CHECK_INT(acc("permessage-deflate; server_no_context_takeover, x-other"), -1);
    BX_CHECK_INT(acc("x-other"), -1);
}

/* ---- Codec ---- */

static void test_round_trip(void)
{
    uv_loop_t loop;
    bx_buf_t text = BX_BUF_INIT, out = BX_BUF_INIT;
    bx_chunkv_t v = BX_CHUNKV_INIT;

    uv_loop_init(&loop);
    for (int i = 0; i < 200; i++)
        bx_buf_printf(&text, "{\"channel\":\"/chat/%d\",\"data\":\"h\xc3\xa9llo\"},", i % 7);
    /* in three chunks, one of them ours alone */
    bx_chunkv_push_new(&v, bx_chunk_new("[", 1));
    bx_chunkv_push_new(&v, bx_chunk_new(text.data, text.len - 1));
    bx_chunkv_push_new(&v, bx_chunk_new("]", 1));
    bx_chunk_t *z = bx_wsdeflate_deflate(&loop, 15, &v);
    BX_CHECK(z != NULL);
    BX_CHECK(z->len < text.len / 4);
    BX_CHECK_INT(bx_wsdeflate_inflate((const uint8_t *)z->data, z->len, 1 << 20, 1, &out), 0);
    BX_CHECK_INT(out.len, text.len + 1);
    BX_CHECK(out.data[0] == '[' && memcmp(out.data + 1, text.data, text.len - 1) == 0);
    bx_chunk_unref(z);
    /* short: as it is */
    bx_chunkv_clear(&v);
    bx_chunkv_push_new(&v, bx_chunk_new("[{\"a\":1}]", 9));
    BX_CHECK(bx_wsdeflate_deflate(&loop, 15, &v) == NULL);
    /* not smaller once compressed: as it is */
    bx_chunkv_clear(&v);
    bx_buf_reset(&text);
    srand(7);
    for (int i = 0; i < 300; i++)
        bx_buf_printf(&text, "%c", 1 + rand() % 255);
    bx_chunkv_push_new(&v, bx_chunk_new(text.data, text.len));
    BX_CHECK(bx_wsdeflate_deflate(&loop, 15, &v) == NULL);
    /* not UTF-8 in a text message; not deflate at all */
    bx_buf_t zb = BX_BUF_INIT;
    zcompress("[\"\xc3\x28\"]", 5, &zb);
    BX_CHECK_INT(bx_wsdeflate_inflate((const uint8_t *)zb.data, zb.len, 100, 1, &out), 1007);
    BX_CHECK_INT(bx_wsdeflate_inflate((const uint8_t *)zb.data, zb.len, 100, 0, &out), 0);
    BX_CHECK_INT(bx_wsdeflate_inflate((const uint8_t *)"\xff\xff\xff", 3, 100, 0, &out), 1007);
    bx_buf_free(&zb);
    bx_chunkv_free(&v);
    bx_buf_free(&text);
    bx_buf_free(&out);
    bx_later_drain(&loop);
    BX_LOOP_CLOSE(&loop);
}

static void test_bomb_stops_at_limit(void)
{
    size_t big = 64u << 20, limit = 1 << 20;
    char *zeros = calloc(1, big);
    bx_buf_t zb = BX_BUF_INIT, out = BX_BUF_INIT;

    zcompress(zeros, big, &zb);
    free(zeros);
    BX_CHECK(zb.len < 100 * 1024);
    uint64_t before = bx_wsdeflate_stats.inflated;
    BX_CHECK_INT(bx_wsdeflate_inflate((const uint8_t *)zb.data, zb.len, limit, 0, &out), 1009);
    /* stopped one byte past the limit, not at 64 MiB */
    BX_CHECK_INT(bx_wsdeflate_stats.inflated - before, limit + 1);
    BX_CHECK(out.cap < 4 * limit);
    bx_buf_free(&zb);
    bx_buf_free(&out);
}

/* ---- Over sockets ---- */

typedef struct {
    uv_loop_t loop;
    bx_server_t *s;
    int port;
} env_t;

static env_t *g_env;
static client_t *g_cl;
static size_t g_max_frame;
static int g_deflate_off;

static void env_open(env_t *env)
{
    bx_server_opts_t o;
    uv_loop_init(&env->loop);
    bx_server_opts_default(&o);
    o.mount = "/faye";
    o.timeout = 30;
    if (g_max_frame)
        o.max_frame = g_max_frame;
    if (g_deflate_off)
        o.deflate = 0;
    env->s = bx_server_new(&env->loop, &o, NULL, 0);
    bx_server_listen(env->s, "127.0.0.1", 0);
    env->port = bx_server_port(env->s);
    g_env = env;
}

static void closed(void *ud)
{
    (*(int *)ud)++;
}

#define ENV_CLOSE(env)                                                        \
    do {                                                                      \
        int closed_ = 0;                                                      \
        bx_server_close((env)->s, closed, &closed_);                          \
        uv_run(&(env)->loop, UV_RUN_DEFAULT);                                 \
        BX_CHECK_INT(closed_, 1);                                             \
        BX_CHECK_INT(bx_ws_count(), 0);                                       \
        bx_conn_cleanup(&(env)->loop);                                        \
        BX_LOOP_CLOSE(&(env)->loop);                                          \
    } while (0)

/* Sends one masked client frame; `b0` is its first byte (FIN, RSV, op). */
static void send_frame(client_t *cl, uint8_t b0, const void *data, size_t len)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    bx_buf_t b = BX_BUF_INIT;
    uint8_t h[14];
    size_t n = 2;

    h[0] = b0;
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    h[1] |= 0x80;
    memcpy(h + n, key, 4);
    n += 4;
    bx_buf_append(&b, h, n);
    char *p = bx_buf_reserve(&b, len);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(((const uint8_t *)data)[i] ^ key[i % 4]);
    b.len += len;
    client_send(cl, b.data, b.len);
    bx_buf_free(&b);
}

/* A text message, compressed. */
static void send_deflated(client_t *cl, const char *s)
{
    bx_buf_t z = BX_BUF_INIT;
    zcompress(s, strlen(s), &z);
    send_frame(cl, 0xc1, z.data, z.len);
    bx_buf_free(&z);
}

/* The next complete server frame: its first byte (-1: none yet), the
 * payload, inflated when RSV1 is set, NUL-terminated in `payload`. */
static int next_frame(client_t *cl, bx_buf_t *payload)
{
    size_t hl;
    uint64_t len;
    const uint8_t *p = client_frame(cl, &hl, &len);
    if (!p)
        return -1;
    if (p[0] & 0x40) {
        if (bx_wsdeflate_inflate(p + hl, (size_t)len, 1 << 24, 0, payload) != 0)
            bx_buf_reset(payload);
    } else {
        bx_buf_reset(payload);
        bx_buf_append(payload, p + hl, (size_t)len);
    }
    bx_buf_reserve(payload, 1);
    payload->data[payload->len] = '\0';
    cl->off += hl + (size_t)len;
    return p[0];
}

static int pred_upgraded(void)
{
    parse_upgrade(g_cl);
    return g_cl->upgraded || g_cl->status || g_cl->eof;
}

static int pred_eof(void)
{
    return g_cl->eof;
}

static const char *OFFER = "Sec-WebSocket-Extensions: permessage-deflate; "
                           "client_max_window_bits\r\n";

static void ws_open(env_t *env, client_t *cl, const char *ext)
{
    char req[512];
    client_open(&env->loop, cl, env->port);
    snprintf(req, sizeof(req),
             "GET /faye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "%s\r\n", ext ? ext : "");
    client_send(cl, req, strlen(req));
    g_cl = cl;
    run_until(&env->loop, pred_upgraded, 2000);
}

static bx_buf_t *g_payload;
static int g_b0;

static int pred_frame(void)
{
    g_b0 = next_frame(g_cl, g_payload);
    return g_b0 >= 0 || g_cl->eof;
}

/* The next frame's first byte (-1: none within `ms`). */
static int wait_frame(env_t *env, client_t *cl, bx_buf_t *payload, uint64_t ms)
{
    g_cl = cl;
    g_payload = payload;
    g_b0 = -1;
    run_until(&env->loop, pred_frame, ms);
    if (g_b0 < 0)
        g_b0 = next_frame(cl, payload);
    return g_b0;
}

static unsigned close_code(const bx_buf_t *p)
{
    return p->len >= 2 ? (unsigned)((uint8_t)p->data[0] << 8 | (uint8_t)p->data[1]) : 0;
}

static void check_close(env_t *env, client_t *cl, unsigned want)
{
    bx_buf_t p = BX_BUF_INIT;
    int b0;
    do
        b0 = wait_frame(env, cl, &p, 3000);
    while (b0 >= 0 && (b0 & 0x0f) != 8);
    unsigned code = close_code(&p);
    bx_buf_free(&p);
    BX_CHECK_INT(b0 & 0x0f, 8);
    BX_CHECK_INT(code, want);
    g_cl = cl;
    BX_CHECK(run_until(&env->loop, pred_eof, 3000));
}

/* A long handshake (the reply is long enough to be compressed). */
static const char *HANDSHAKE =
    "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\",\"supportedConnectionTypes\":"
    "[\"websocket\",\"long-polling\",\"callback-polling\",\"eventsource\"],\"id\":\"1\","
    "\"ext\":{\"padding\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}]";

static void test_negotiated_round_trip(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env);
    ws_open(&env, &cl, OFFER);
    BX_CHECK_INT(cl.status, 101);
    BX_CHECK(strstr(cl.in.data, "Sec-WebSocket-Extensions: permessage-deflate; "
                                "server_no_context_takeover; client_no_context_takeover\r\n"));
    /* compressed in; the reply, short and this socket's own, goes as it
     * is (BX_WSDEFLATE_EAGER) */
    send_deflated(&cl, HANDSHAKE);
    int b0 = wait_frame(&env, &cl, &p, 2000);
    BX_CHECK_INT(b0, 0x81);
    BX_CHECK(strstr(p.data, "\"channel\":\"/meta/handshake\""));
    BX_CHECK(strstr(p.data, "\"successful\":true"));
    /* plain in, and a short reply goes plain */
    send_frame(&cl, 0x81, "[]", 2);
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 0x81);
    BX_CHECK_STR(p.data, "[]");
    /* a compressed message in fragments: RSV1 on the first only */
    bx_buf_t z = BX_BUF_INIT;
    zcompress(HANDSHAKE, strlen(HANDSHAKE), &z);
    send_frame(&cl, 0x41, z.data, 10);
    send_frame(&cl, 0x89, "hi", 2);            /* a ping between fragments */
    send_frame(&cl, 0x00, z.data + 10, 10);
    send_frame(&cl, 0x80, z.data + 20, z.len - 20);
    bx_buf_free(&z);
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 0x8a);
    BX_CHECK_STR(p.data, "hi");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 0x81);
    BX_CHECK(strstr(p.data, "\"successful\":true"));
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_off(void)
{
    env_t env;
    client_t cl;
    g_deflate_off = 1;
    env_open(&env);
    g_deflate_off = 0;
    ws_open(&env, &cl, OFFER);
    BX_CHECK_INT(cl.status, 101);
    BX_CHECK(!strstr(cl.in.data, "Sec-WebSocket-Extensions"));
    /* without the extension, RSV1 is a protocol error */
    send_deflated(&cl, HANDSHAKE);
    check_close(&env, &cl, 1002);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

/* One frame on a socket that negotiated the extension, answered by a
 * close with `code`. */
static void expect_close(uint8_t b0, const void *data, size_t len, uint8_t b0b,
                         const void *data2, size_t len2, unsigned code)
{
    env_t env;
    client_t cl;
    env_open(&env);
    ws_open(&env, &cl, OFFER);
    send_frame(&cl, b0, data, len);
    if (data2)
        send_frame(&cl, b0b, data2, len2);
    check_close(&env, &cl, code);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_refusals(void)
{
    bx_buf_t z = BX_BUF_INIT;
    zcompress("hello", 5, &z);
    /* a compressed ping, a compressed close */
    expect_close(0xc9, z.data, z.len, 0, NULL, 0, 1002);
    expect_close(0xc8, z.data, z.len, 0, NULL, 0, 1002);
    /* RSV1 on a continuation */
    expect_close(0x01, "[", 1, 0xc0, "]", 1, 1002);
    /* RSV2 is still no one's */
    expect_close(0xa1, "[]", 2, 0, NULL, 0, 1002);
    /* not deflate data */
    expect_close(0xc1, "\xff\xff\xff\xff", 4, 0, NULL, 0, 1007);
    /* deflated, but not UTF-8 */
    zcompress("[\"\xc3\x28\"]", 5, &z);
    expect_close(0xc1, z.data, z.len, 0, NULL, 0, 1007);
    bx_buf_free(&z);
}

static void test_bomb_closes_1009(void)
{
    size_t big = 8u << 20;
    char *zeros = malloc(big);
    bx_buf_t z = BX_BUF_INIT;

    memset(zeros, ' ', big);
    zeros[0] = '[';
    zeros[big - 1] = ']';
    zcompress(zeros, big, &z);
    free(zeros);
    g_max_frame = 64 * 1024;
    BX_CHECK(z.len < g_max_frame);   /* the frame itself is within the limit */
    uint64_t before = bx_wsdeflate_stats.inflated;
    expect_close(0xc1, z.data, z.len, 0, NULL, 0, 1009);
    g_max_frame = 0;
    BX_CHECK(bx_wsdeflate_stats.inflated - before <= 64 * 1024 + 1);
    bx_buf_free(&z);
}

/* ---- Shared compression ---- */

static char g_id[32];

static int ws_subscribe(env_t *env, client_t *cl)
{
    bx_buf_t p = BX_BUF_INIT;
    char text[512];
    send_frame(cl, 0x81, HANDSHAKE, strlen(HANDSHAKE));
    wait_frame(env, cl, &p, 2000);
    json_t *r = bx_json_parse(p.data, p.len);
    const char *id = bx_json_str(json_array_get(r, 0), "clientId");
    snprintf(g_id, sizeof(g_id), "%s", id ? id : "");
    if (r)
        json_decref(r);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/c\","
             "\"id\":\"2\"}]", g_id);
    send_frame(cl, 0x81, text, strlen(text));
    wait_frame(env, cl, &p, 2000);
    int ok = strstr(p.data, "\"successful\":true") != NULL;
    /* the connect is held (30 s): it binds the socket */
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
             "\"connectionType\":\"websocket\",\"id\":\"3\"}]", g_id);
    send_frame(cl, 0x81, text, strlen(text));
    bx_buf_free(&p);
    return ok ? 0 : -1;
}

static void ignore_reply(void *ud, bx_chunkv_t *reply, size_t n)
{
    (void)n;
    (*(int *)ud)++;
    bx_chunkv_clear(reply);
}

#define NSOCK 8

static void test_shared_compression(void)
{
    env_t env;
    client_t cl[NSOCK + 1];
    bx_buf_t p = BX_BUF_INIT;
    int acks = 0;
    char data[1500];

    env_open(&env);
    for (int i = 0; i <= NSOCK; i++) {
        /* the last one did not offer the extension */
        ws_open(&env, &cl[i], i < NSOCK ? OFFER : NULL);
        BX_CHECK_INT(ws_subscribe(&env, &cl[i]), 0);
    }
    for (int k = 0; k < 5; k++)
        uv_run(&env.loop, UV_RUN_NOWAIT);
    memset(data, 'a', sizeof(data) - 1);
    data[sizeof(data) - 1] = '\0';
    json_t *m = json_pack("{s:s,s:{s:s}}", "channel", "/c", "data", "text", data);
    bx_wsdeflate_stats_t before = bx_wsdeflate_stats;
    bx_protocol_process(bx_server_hub(env.s), m, NULL, BX_PROTO_LOCAL, ignore_reply, &acks);
    json_decref(m);
    for (int i = 0; i <= NSOCK; i++) {
        BX_CHECK_INT(wait_frame(&env, &cl[i], &p, 3000), i < NSOCK ? 0xc1 : 0x81);
        BX_CHECK(strstr(p.data, "[{\"channel\":\"/c\",\"data\":{\"text\":\"aaaa"));
    }
    /* compressed once, shared by the other seven */
    BX_CHECK_INT(bx_wsdeflate_stats.deflates - before.deflates, 1);
    BX_CHECK_INT(bx_wsdeflate_stats.shared - before.shared, NSOCK - 1);

    /* three publishes in one turn: each socket's frame joins them into a
     * chunk of its own, with the same bytes: still compressed once */
    before = bx_wsdeflate_stats;
    for (int k = 0; k < 3; k++) {
        m = json_pack("{s:s,s:{s:s,s:i}}", "channel", "/c", "data", "text", data, "k", k);
        bx_protocol_process(bx_server_hub(env.s), m, NULL, BX_PROTO_LOCAL, ignore_reply, &acks);
        json_decref(m);
    }
    for (int i = 0; i <= NSOCK; i++) {
        BX_CHECK_INT(wait_frame(&env, &cl[i], &p, 3000), i < NSOCK ? 0xc1 : 0x81);
        BX_CHECK(strstr(p.data, "\"k\":0}}"));
        BX_CHECK(strstr(p.data, "\"k\":2}}]"));
    }
    BX_CHECK_INT(bx_wsdeflate_stats.deflates - before.deflates, 1);
    BX_CHECK_INT(bx_wsdeflate_stats.shared - before.shared, NSOCK - 1);

    /* a short one (under BX_WSDEFLATE_EAGER): the first socket gets it
     * as it is, the second one's compresses it for the rest */
    before = bx_wsdeflate_stats;
    data[300] = '\0';
    m = json_pack("{s:s,s:{s:s}}", "channel", "/c", "data", "text", data);
    bx_protocol_process(bx_server_hub(env.s), m, NULL, BX_PROTO_LOCAL, ignore_reply, &acks);
    json_decref(m);
    int plain = 0, compressed = 0;
    for (int i = 0; i < NSOCK; i++) {
        int b0 = wait_frame(&env, &cl[i], &p, 3000);
        BX_CHECK(b0 == 0x81 || b0 == 0xc1);
        BX_CHECK(strstr(p.data, "[{\"channel\":\"/c\",\"data\":{\"text\":\"aaaa"));
        if (b0 == 0x81)
            plain++;
        else
            compressed++;
    }
    BX_CHECK_INT(wait_frame(&env, &cl[NSOCK], &p, 3000), 0x81);
    BX_CHECK_INT(plain, 1);
    BX_CHECK_INT(compressed, NSOCK - 1);
    BX_CHECK_INT(bx_wsdeflate_stats.deflates - before.deflates, 1);
    BX_CHECK_INT(bx_wsdeflate_stats.shared - before.shared, NSOCK - 2);
    bx_buf_free(&p);
    for (int i = 0; i <= NSOCK; i++)
        client_close_wait(&cl[i]);
    ENV_CLOSE(&env);
}

int main(void)
{
    BX_RUN(test_negotiate);
    BX_RUN(test_accept);
    BX_RUN(test_round_trip);
    BX_RUN(test_bomb_stops_at_limit);
    BX_RUN(test_negotiated_round_trip);
    BX_RUN(test_off);
    BX_RUN(test_refusals);
    BX_RUN(test_bomb_closes_1009);
    BX_RUN(test_shared_compression);
    return BX_REPORT();
}
