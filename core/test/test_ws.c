/*
 * test_ws.c - the WebSocket transport over real loopback sockets.
 *
 * Each test runs a bx_server on 127.0.0.1 (ephemeral port) and talks to it
 * with a raw libuv client on the same loop: the upgrade, masked frames,
 * fragmentation, control frames and every close code; Bayeux over the
 * socket (binding, coalesced deliveries); the slow reader; closing the
 * server with sockets open. Every wait is bounded.
 */
#include "bx_test.h"
#include "bx_client.h"
#include "base/buf.h"
#include "net/conn.h"
#include "base/json.h"
#include "bayeux/protocol.h"
#include "server.h"
#include "transport/ws.h"

#include <stdlib.h>
#include <malloc.h>


/* Sends one client frame: masked unless `unmasked`. */
static void send_frame(client_t *cl, int fin, unsigned op, const void *data, size_t len,
                       int unmasked)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    bx_buf_t b = BX_BUF_INIT;
    uint8_t h[14];
    size_t n = 2;

    h[0] = (uint8_t)((fin ? 0x80 : 0) | op);
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
    if (!unmasked) {
        h[1] |= 0x80;
        memcpy(h + n, key, 4);
        n += 4;
    }
    bx_buf_append(&b, h, n);
    char *p = bx_buf_reserve(&b, len);
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(((const uint8_t *)data)[i] ^ (unmasked ? 0 : key[i % 4]));
    b.len += len;
    client_send(cl, b.data, b.len);
    bx_buf_free(&b);
}

static void send_text(client_t *cl, const char *s)
{
    send_frame(cl, 1, 1, s, strlen(s), 0);
}

/* Takes the next complete server frame: returns its opcode (or -1 when none
 * is complete yet); `payload` gets a NUL-terminated copy. */
static int next_frame(client_t *cl, bx_buf_t *payload)
{
    size_t hl;
    uint64_t len;
    const uint8_t *p = client_frame(cl, &hl, &len);
    if (!p)
        return -1;
    bx_buf_reset(payload);
    bx_buf_append(payload, p + hl, (size_t)len);
    bx_buf_reserve(payload, 1);
    payload->data[payload->len] = '\0';
    cl->off += hl + (size_t)len;
    return p[0] & 0x0f;
}

/* ---- Environment ---- */

typedef struct {
    uv_loop_t loop;
    bx_server_t *s;
    int port;
} env_t;

static env_t *g_env;
static client_t *g_cl;

static void env_open(env_t *env, void (*tweak)(bx_server_opts_t *o))
{
    bx_server_opts_t o;
    uv_loop_init(&env->loop);
    bx_server_opts_default(&o);
    o.mount = "/faye";
    o.timeout = 2;
    if (tweak)
        tweak(&o);
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

static int pred_upgraded(void)
{
    parse_upgrade(g_cl);
    return g_cl->upgraded || g_cl->status || g_cl->eof;
}

static int pred_eof(void)
{
    return g_cl->eof;
}

static void ws_open(env_t *env, client_t *cl, const char *path, const char *extra)
{
    char req[512];
    client_open(&env->loop, cl, env->port);
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", path,
             extra ? extra : "Sec-WebSocket-Version: 13\r\n");
    client_send(cl, req, strlen(req));
    g_cl = cl;
    run_until(&env->loop, pred_upgraded, 2000);
}

/* Waits for the next frame; returns its opcode or -1 on timeout/EOF. */
static bx_buf_t *g_payload;
static int g_op;

static int pred_frame(void)
{
    g_op = next_frame(g_cl, g_payload);
    return g_op >= 0 || g_cl->eof;
}

static int wait_frame(env_t *env, client_t *cl, bx_buf_t *payload, uint64_t ms)
{
    g_cl = cl;
    g_payload = payload;
    g_op = -1;
    run_until(&env->loop, pred_frame, ms);
    if (g_op < 0)
        g_op = next_frame(cl, payload);
    return g_op;
}

/* Waits for a text frame, skipping control frames. */
static int wait_text(env_t *env, client_t *cl, bx_buf_t *payload, uint64_t ms)
{
    for (;;) {
        int op = wait_frame(env, cl, payload, ms);
        if (op < 0 || op == 1 || op == 8)
            return op;
    }
}

static unsigned close_code(const bx_buf_t *p)
{
    return p->len >= 2 ? (unsigned)((uint8_t)p->data[0] << 8 | (uint8_t)p->data[1]) : 0;
}

/* ---- Tests: handshake ---- */

static void test_accept_key(void)
{
    char out[29];
    bx_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    BX_CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_upgrade(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye/any/path", NULL);
    BX_CHECK_INT(cl.status, 101);
    BX_CHECK(strstr(cl.in.data, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    BX_CHECK(strstr(cl.in.data, "Upgrade: websocket\r\n"));
    BX_CHECK(!strstr(cl.in.data, "Sec-WebSocket-Extensions"));
    BX_CHECK(!strstr(cl.in.data, "Sec-WebSocket-Protocol"));
    BX_CHECK_INT(bx_ws_count(), 1);
    send_text(&cl, "[]");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[]");
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void no_deflate(bx_server_opts_t *o)
{
    o->deflate = 0;
}

/* Accepted by default: test_wsdeflate.c. */
static void test_deflate_declined(void)
{
    env_t env;
    client_t cl;
    env_open(&env, no_deflate);
    ws_open(&env, &cl, "/faye", "Sec-WebSocket-Version: 13\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate; "
                                "client_max_window_bits\r\n");
    BX_CHECK_INT(cl.status, 101);
    BX_CHECK(!strstr(cl.in.data, "Sec-WebSocket-Extensions"));
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_bad_upgrades(void)
{
    env_t env;
    client_t cl;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", "Sec-WebSocket-Version: 8\r\n");
    BX_CHECK_INT(cl.status, 426);
    BX_CHECK(strstr(cl.in.data, "Sec-WebSocket-Version: 13\r\n"));
    client_close_wait(&cl);

    client_open(&env.loop, &cl, env.port);
    const char *nokey = "GET /faye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    client_send(&cl, nokey, strlen(nokey));
    g_cl = &cl;
    run_until(&env.loop, pred_upgraded, 2000);
    BX_CHECK_INT(cl.status, 400);
    client_close_wait(&cl);
    BX_CHECK_INT(bx_ws_count(), 0);
    ENV_CLOSE(&env);
}

/* ---- Tests: frames ---- */

static void test_garbage_ignored(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    send_text(&cl, "this is not json");
    send_text(&cl, "{\"unterminated\":");
    send_text(&cl, "[]");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[]");
    /* one object instead of an array is accepted */
    send_text(&cl, "{\"channel\":\"/meta/nope\",\"id\":\"9\"}");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 1);
    json_t *r = bx_json_parse(p.data, p.len);
    BX_CHECK(json_is_array(r) && json_array_size(r) == 1);
    BX_CHECK_STR(bx_json_str(json_array_get(r, 0), "id"), "9");
    json_decref(r);
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_fragments_and_ping(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    send_frame(&cl, 0, 1, "[", 1, 0);
    send_frame(&cl, 1, 9, "hello", 5, 0);       /* a ping between fragments */
    send_frame(&cl, 0, 0, " ", 1, 0);
    send_frame(&cl, 1, 0, "]", 1, 0);
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 10);     /* pong */
    BX_CHECK_STR(p.data, "hello");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[]");
    /* a frame split across several TCP writes */
    bx_buf_t big = BX_BUF_INIT;
    bx_buf_puts(&big, "[");
    for (int i = 0; i < 2000; i++)
        bx_buf_puts(&big, i ? ",null" : "null");
    bx_buf_puts(&big, "]");
    send_frame(&cl, 1, 1, big.data, big.len, 0);
    bx_buf_free(&big);
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[]");
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void check_close(env_t *env, client_t *cl, unsigned want)
{
    bx_buf_t p = BX_BUF_INIT;
    int op = wait_text(env, cl, &p, 2000);
    unsigned code = close_code(&p);
    bx_buf_free(&p);
    BX_CHECK_INT(op, 8);
    BX_CHECK_INT(code, want);
    g_cl = cl;
    BX_CHECK(run_until(&env->loop, pred_eof, 3000));
}

/* One frame on a fresh socket, answered by a close with `code`. */
static void expect_close(unsigned op, const char *data, size_t len, int unmasked, unsigned code)
{
    env_t env;
    client_t cl;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    send_frame(&cl, 1, op, data, len, unmasked);
    check_close(&env, &cl, code);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_close_echo(void)
{
    expect_close(8, "\x03\xe8" "bye", 5, 0, 1000);
}

static void test_unmasked(void)
{
    expect_close(1, "[]", 2, 1, 1002);
}

static void test_invalid_utf8(void)
{
    expect_close(1, "[\"\xc3\x28\"]", 5, 0, 1007);
}

static void small_frames(bx_server_opts_t *o)
{
    o->max_frame = 100;
}

static void test_oversize(void)
{
    env_t env;
    client_t cl;
    char big[200];
    env_open(&env, small_frames);
    ws_open(&env, &cl, "/faye", NULL);
    memset(big, ' ', sizeof(big));
    big[0] = '[';
    big[sizeof(big) - 1] = ']';
    send_frame(&cl, 1, 1, big, sizeof(big), 0);
    check_close(&env, &cl, 1009);
    client_close_wait(&cl);

    /* the same limit over fragments */
    ws_open(&env, &cl, "/faye", NULL);
    send_frame(&cl, 0, 1, big, 80, 0);
    send_frame(&cl, 1, 0, big + 80, 80, 0);
    check_close(&env, &cl, 1009);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_garbage_bytes(void)
{
    env_t env;
    client_t cl, other;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env, NULL);
    ws_open(&env, &other, "/faye", NULL);
    ws_open(&env, &cl, "/faye", NULL);
    client_send(&cl, "\x8f\xff\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 12);
    check_close(&env, &cl, 1002);
    client_close_wait(&cl);
    /* the other socket is still served */
    send_text(&other, "[]");
    BX_CHECK_INT(wait_frame(&env, &other, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[]");
    bx_buf_free(&p);
    client_close_wait(&other);
    ENV_CLOSE(&env);
}

/* ---- Tests: Bayeux over the socket ---- */

static char g_id[32];

/* Handshakes over the socket; fills g_id. */
static int ws_handshake(env_t *env, client_t *cl)
{
    bx_buf_t p = BX_BUF_INIT;
    send_text(cl, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                  "\"supportedConnectionTypes\":[\"websocket\"],\"id\":\"1\"}]");
    int op = wait_text(env, cl, &p, 2000);
    json_t *r = op == 1 ? bx_json_parse(p.data, p.len) : NULL;
    const char *id = bx_json_str(json_array_get(r, 0), "clientId");
    snprintf(g_id, sizeof(g_id), "%s", id ? id : "");
    if (r)
        json_decref(r);
    bx_buf_free(&p);
    return id ? 0 : -1;
}

static void ignore_reply(void *ud, bx_chunkv_t *reply, size_t n)
{
    (void)n;
    (*(int *)ud)++;
    bx_chunkv_clear(reply);
}

static void publish_local(env_t *env, const char *channel, int n, int *acks)
{
    json_t *m = json_pack("{s:s,s:i}", "channel", channel, "data", n);
    bx_protocol_process(bx_server_hub(env->s), m, NULL, BX_PROTO_LOCAL, ignore_reply, acks);
    json_decref(m);
}

static void test_bayeux_coalesced(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    char text[512];
    int acks = 0;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &cl), 0);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/c\","
             "\"id\":\"2\"}]", g_id);
    send_text(&cl, text);
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK(strstr(p.data, "\"successful\":true"));
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
             "\"websocket\",\"id\":\"3\"}]", g_id);
    send_text(&cl, text);
    g_cl = &cl;
    for (int i = 0; i < 5; i++)
        uv_run(&env.loop, UV_RUN_NOWAIT);
    BX_CHECK(bx_session_has_sink(bx_server_hub(env.s), g_id));

    /* three publishes in one loop iteration -> one frame */
    uint64_t writes = bx_conn_write_calls();
    publish_local(&env, "/c", 1, &acks);
    publish_local(&env, "/c", 2, &acks);
    publish_local(&env, "/c", 3, &acks);
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[{\"channel\":\"/c\",\"data\":1},{\"channel\":\"/c\",\"data\":2},"
                         "{\"channel\":\"/c\",\"data\":3}]");
    BX_CHECK(bx_conn_write_calls() - writes <= 2);
    BX_CHECK_INT(acks, 3);

    /* the connect is answered at its timeout (2 s), not by deliveries */
    BX_CHECK_INT(wait_text(&env, &cl, &p, 3000), 1);
    BX_CHECK(strstr(p.data, "\"channel\":\"/meta/connect\""));
    BX_CHECK(strstr(p.data, "\"id\":\"3\""));

    /* disconnect: reply, then close 1000 */
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/disconnect\",\"clientId\":\"%s\",\"id\":\"4\"}]", g_id);
    send_text(&cl, text);
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK(strstr(p.data, "\"channel\":\"/meta/disconnect\""));
    bx_buf_free(&p);
    check_close(&env, &cl, 1000);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static int g_nsockets_target;

static int pred_count(void)
{
    return bx_ws_count() == (size_t)g_nsockets_target;
}

static void test_socket_close_keeps_session(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    char text[512];
    int acks = 0;
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &cl), 0);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/k\","
             "\"id\":\"2\"},{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
             "\"connectionType\":\"websocket\",\"id\":\"3\",\"advice\":{\"timeout\":0}}]",
             g_id, g_id);
    send_text(&cl, text);
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK(strstr(p.data, "/meta/connect"));
    BX_CHECK(bx_session_has_sink(bx_server_hub(env.s), g_id));
    client_close_wait(&cl);
    g_nsockets_target = 0;
    BX_CHECK(run_until(&env.loop, pred_count, 2000));
    BX_CHECK(!bx_session_has_sink(bx_server_hub(env.s), g_id));

    /* published while away: waits in the queue for the next socket */
    publish_local(&env, "/k", 7, &acks);
    for (int i = 0; i < 5; i++)
        uv_run(&env.loop, UV_RUN_NOWAIT);
    ws_open(&env, &cl, "/faye", NULL);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
             "\"websocket\",\"id\":\"5\",\"advice\":{\"timeout\":0}}]", g_id);
    send_text(&cl, text);
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK_STR(p.data, "[{\"channel\":\"/k\",\"data\":7}]");
    BX_CHECK_INT(wait_text(&env, &cl, &p, 2000), 1);
    BX_CHECK(strstr(p.data, "\"id\":\"5\""));
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void fast_ping(bx_server_opts_t *o)
{
    o->ping = 0.05;
}

static void test_ping_option(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    env_open(&env, fast_ping);
    ws_open(&env, &cl, "/faye", NULL);
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 9);
    BX_CHECK_STR(p.data, "1");
    BX_CHECK_INT(wait_frame(&env, &cl, &p, 2000), 9);
    BX_CHECK_STR(p.data, "2");
    bx_buf_free(&p);
    client_close_wait(&cl);
    ENV_CLOSE(&env);
}

static void test_server_close(void)
{
    env_t env;
    client_t cl;
    bx_buf_t p = BX_BUF_INIT;
    char text[512];
    env_open(&env, NULL);
    ws_open(&env, &cl, "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &cl), 0);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
             "\"websocket\",\"id\":\"3\"}]", g_id);
    send_text(&cl, text);
    for (int i = 0; i < 5; i++)
        uv_run(&env.loop, UV_RUN_NOWAIT);
    int done = 0;
    bx_server_close(env.s, closed, &done);
    uv_run(&env.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_CHECK_INT(bx_ws_count(), 0);
    /* the held connect was answered, then the socket closed with 1001 */
    BX_CHECK_INT(next_frame(&cl, &p), 1);
    BX_CHECK(strstr(p.data, "\"id\":\"3\""));
    BX_CHECK_INT(next_frame(&cl, &p), 8);
    BX_CHECK_INT(close_code(&p), 1001);
    bx_buf_free(&p);
    client_close_wait(&cl);
    bx_conn_cleanup(&env.loop);
    BX_LOOP_CLOSE(&env.loop);
}

static void small_output(bx_server_opts_t *o)
{
    o->max_output = 64 * 1024;
}

static void test_slow_reader(void)
{
    env_t env;
    client_t slow, fast;
    bx_buf_t p = BX_BUF_INIT;
    char text[512], fast_id[32];
    int acks = 0;
    env_open(&env, small_output);
    ws_open(&env, &fast, "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &fast), 0);
    memcpy(fast_id, g_id, sizeof(fast_id));
    ws_open(&env, &slow, "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &slow), 0);
    client_t *both[2] = { &slow, &fast };
    const char *ids[2] = { g_id, fast_id };
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof(text),
                 "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/s\","
                 "\"id\":\"2\"},{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
                 "\"connectionType\":\"websocket\",\"id\":\"3\",\"advice\":{\"timeout\":0}}]",
                 ids[i], ids[i]);
        send_text(both[i], text);
        BX_CHECK_INT(wait_text(&env, both[i], &p, 2000), 1);
    }
    uv_read_stop((uv_stream_t *)&slow.tcp);     /* never reads again */

    /* 16 KB messages until the slow reader is cut off */
    bx_buf_t big = BX_BUF_INIT;
    for (int i = 0; i < 16 * 1024; i++)
        bx_buf_append(&big, "x", 1);
    bx_buf_append(&big, "", 1);
    g_nsockets_target = 1;
    int sent = 0;
    while (bx_ws_count() > 1 && sent < 2000) {
        json_t *m = json_pack("{s:s,s:s}", "channel", "/s", "data", big.data);
        bx_protocol_process(bx_server_hub(env.s), m, NULL, BX_PROTO_LOCAL, ignore_reply, &acks);
        json_decref(m);
        sent++;
        /* the fast one reads each delivery before the next publish, so it
         * never falls behind however slowly this machine runs */
        BX_CHECK_INT(wait_text(&env, &fast, &p, 5000), 1);
        while (next_frame(&fast, &p) >= 0)
            ;
    }
    bx_buf_free(&big);
    BX_CHECK_INT(bx_ws_count(), 1);
    BX_CHECK(sent < 2000);
    /* the fast one still gets deliveries */
    publish_local(&env, "/s", 42, &acks);
    int got = 0;
    for (int i = 0; i < 20 && !got; i++) {
        if (wait_text(&env, &fast, &p, 2000) != 1)
            break;
        got = strstr(p.data, "\"data\":42") != NULL;
    }
    BX_CHECK(got);
    bx_buf_free(&p);
    client_close_wait(&slow);
    client_close_wait(&fast);
    ENV_CLOSE(&env);
}

/* ---- Memory of an idle session ---- */

#define IDLE_N 200
/* The heap an idle WebSocket session costs the server (handshaken,
 * subscribed, its connect held), allocator headers included: the session,
 * its socket, its upgrade request kept for extensions, the held connect.
 * The target is 2 KB (docs/benchmarks.md); this bound guards what was
 * reached: 2,857 B before the upgrade request was kept compact and idle
 * connections let go of their output arrays, 2,666 B after; 2,494 B at
 * bdd33c0, 2,379 B once the hub's sessions and the memory engine's
 * clients were keyed by their own ids (no 64-byte dict entry each; this
 * figure moves by ~120 B from run to run, test_engine.c checks that step
 * exactly). */
#define IDLE_MAX_BYTES 2750

static void test_idle_session_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("# skipped: the sanitizer's allocator keeps its own books\n");
#else
    static client_t cl[IDLE_N];
    env_t env;
    bx_buf_t p = BX_BUF_INIT;
    char text[512];

    env_open(&env, NULL);
    /* warm up what every server has once (the read buffer, the tables) */
    ws_open(&env, &cl[0], "/faye", NULL);
    BX_CHECK_INT(ws_handshake(&env, &cl[0]), 0);
    client_close_wait(&cl[0]);
    for (int i = 0; i < 5; i++)
        uv_run(&env.loop, UV_RUN_NOWAIT);

    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < IDLE_N; i++) {
        ws_open(&env, &cl[i], "/faye", NULL);
        BX_CHECK_INT(ws_handshake(&env, &cl[i]), 0);
        snprintf(text, sizeof(text),
                 "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                 "\"subscription\":\"/idle\",\"id\":\"2\"}]", g_id);
        send_text(&cl[i], text);
        BX_CHECK_INT(wait_text(&env, &cl[i], &p, 2000), 1);
        snprintf(text, sizeof(text),
                 "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
                 "\"websocket\",\"id\":\"3\"}]", g_id);
        send_text(&cl[i], text);
    }
    for (int i = 0; i < 5; i++)
        uv_run(&env.loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(bx_hub_connected(bx_server_hub(env.s)), IDLE_N);
    bx_buf_free(&p);
    for (int i = 0; i < IDLE_N; i++) {
        bx_buf_free(&cl[i].in);     /* the clients' side is not the server's */
        cl[i].off = 0;
    }
    size_t after = mallinfo2().uordblks;
    size_t per = after > before ? (after - before) / IDLE_N : 0;
    printf("# heap per idle WebSocket session: %zu bytes\n", per);
    BX_CHECK(per > 0);
    BX_CHECK(per <= IDLE_MAX_BYTES);

    for (int i = 0; i < IDLE_N; i++)
        client_close_wait(&cl[i]);
    ENV_CLOSE(&env);
#endif
}

int main(void)
{
    BX_RUN(test_accept_key);
    BX_RUN(test_upgrade);
    BX_RUN(test_deflate_declined);
    BX_RUN(test_bad_upgrades);
    BX_RUN(test_garbage_ignored);
    BX_RUN(test_fragments_and_ping);
    BX_RUN(test_close_echo);
    BX_RUN(test_unmasked);
    BX_RUN(test_invalid_utf8);
    BX_RUN(test_oversize);
    BX_RUN(test_garbage_bytes);
    BX_RUN(test_bayeux_coalesced);
    BX_RUN(test_socket_close_keeps_session);
    BX_RUN(test_ping_option);
    BX_RUN(test_server_close);
    BX_RUN(test_slow_reader);
    BX_RUN(test_idle_session_memory);
    return BX_REPORT();
}
