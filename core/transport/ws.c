/*
 * ws.c - Bayeux over WebSocket (see ws.h).
 *
 * Reading: wslay's event API does the RFC 6455 work (masking, reserved
 * bits, fragmentation, control frames, UTF-8, the size limit) and queues
 * the answers it owes (pong, close) which go out through send_cb. Its
 * context costs ~9 KB, so a socket keeps one only while a message is being
 * received: a small tracker follows the frame boundaries of the byte stream
 * and the context is freed whenever the input ends on a complete message.
 *
 * Writing: frames are built here (servers do not mask) as a header chunk
 * followed by the payload chunks, so a delivery goes out as the very chunk
 * the engine serialized once, with one writev per socket per iteration.
 *
 * Re-entrancy: push() and close() are called from inside the server's
 * delivery pass and the reply callback from inside a batch completion; a
 * session must not be unbound nor a batch canceled from there. So those
 * paths only write and start closing; the socket detaches itself from the
 * server in its close callback (or directly from the read path, which the
 * server never calls into).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>
#include "base/json.h"
#include "bayeux/protocol.h"
#include "transport/endpoint.h"
#include "transport/streams.h"
#include "transport/ws.h"

/* The error code of a connect naming a client bound elsewhere (Bayeux
 * leaves 4xx codes to the server; 409 as HTTP's Conflict). */
#define BX_ERR_BOUND "409"

typedef struct ws ws_t;

/* A frame whose replies are being computed. */
typedef struct wsbatch {
    struct wsbatch *prev, *next;
    ws_t *ws;
    bx_batch_t *b;
    int disconnect;             /* the frame held a /meta/disconnect */
} wsbatch_t;

struct ws {
    bx_sink_t sink;             /* first: the server hands it back */
    bx_stream_t st;             /* in the server's set; st.conn is ours */
    bx_http_req_t *req;         /* the upgrade request, for extensions */
    wslay_event_context_ptr ctx;
    const char *in;             /* the read being fed to wslay */
    size_t inlen;
    wsbatch_t *batches;
    char id[32];                /* bound client id */
    uint32_t ping_id;
    /* frame boundary tracker */
    uint8_t hdr[14];
    uint8_t hdrlen;
    uint64_t left;              /* payload bytes left in the current frame */
    uint64_t msg_len;           /* declared bytes of the data message so far */
    unsigned refuse;            /* close code owed for a frame header (0: none) */
    uint64_t msg_since;         /* loop time a fragmented message began */
    unsigned idle_pinged : 1;   /* silent: pinged, waiting for any answer */
    unsigned in_payload : 1;
    unsigned fragmented : 1;    /* a data message continues in later frames */
    unsigned bound : 1;
    unsigned close_soon : 1;    /* close once the batches in flight answer */
    unsigned closing : 1;       /* close frame sent or connection dropped */
};

static bx_streams_t *sets;      /* one per server with sockets */
static size_t nsockets;

size_t bx_ws_count(void)
{
    return nsockets;
}

/* ---- Handshake ---- */

void bx_ws_accept_key(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH], in[64 + sizeof(guid)];

    if (len > 64)
        len = 64;               /* callers pass 24 bytes */
    memcpy(in, key, len);
    memcpy(in + len, guid, sizeof(guid) - 1);
    SHA1(in, len + sizeof(guid) - 1, md);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    out[28] = '\0';
}

int bx_ws_is_upgrade(const bx_http_req_t *req)
{
    return req->upgrade && bx_http_header_has(req, "Upgrade", "websocket");
}

static int valid_key(const bx_str_t *k)
{
    /* base64 of 16 bytes: 22 characters then "==" */
    if (!k || k->len != 24 || k->base[22] != '=' || k->base[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++) {
        char c = k->base[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

/* ---- Writing ---- */

static bx_chunk_t *frame_header(unsigned opcode, size_t len)
{
    uint8_t h[10];
    size_t n;

    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        n = 2;
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
    return bx_chunk_new(h, n);
}

/* Drops the connection now (its close callback detaches the socket). */
static void drop(ws_t *w)
{
    w->closing = 1;
    bx_conn_close(w->st.conn);
}

/* Queues one frame holding `payload` (entries stolen). */
static void send_frame(ws_t *w, unsigned opcode, bx_chunkv_t *payload)
{
    if (w->closing || bx_conn_is_closing(w->st.conn)) {
        bx_chunkv_clear(payload);
        return;
    }
    if (bx_stream_too_slow(&w->st, "websocket")) {
        w->closing = 1;
        bx_chunkv_clear(payload);
        return;
    }
    bx_conn_write_chunk(w->st.conn, frame_header(opcode, bx_chunkv_bytes(payload)));
    bx_conn_write(w->st.conn, payload);
}

/* Sends a close frame and closes once it is written. */
static void start_close(ws_t *w, unsigned code, const char *reason)
{
    uint8_t p[2 + 123];
    size_t n = 0;

    if (w->closing)
        return;
    if (code) {
        size_t r = reason ? strlen(reason) : 0;
        if (r > 123)
            r = 123;
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (r)
            memcpy(p + 2, reason, r);
        n = 2 + r;
    }
    bx_conn_write_chunk(w->st.conn, frame_header(8, n));
    if (n)
        bx_conn_write_copy(w->st.conn, p, n);
    w->closing = 1;
    bx_conn_close_after_write(w->st.conn);
}

#define WS_OF(stp) ((ws_t *)(void *)((char *)(stp) - offsetof(ws_t, st)))

/* The set's timer: one ping frame (payload: a counter) per socket. */
static void ping_one(bx_stream_t *st)
{
    ws_t *w = WS_OF(st);
    char id[16];

    if (w->closing)
        return;
    int n = snprintf(id, sizeof(id), "%u", ++w->ping_id);
    bx_conn_write_chunk(w->st.conn, frame_header(9, (size_t)n));
    bx_conn_write_copy(w->st.conn, id, (size_t)n);
}

static void detach(ws_t *w);

/* The set's idle check: a socket silent for idle_timeout gets a ping; one
 * still silent as long again, or whose fragmented message has not ended
 * within idle_timeout, is closed (1001). Pings are off by default, so
 * without this a dead peer's socket would stay open for ever. */
static void idle_one(bx_stream_t *st)
{
    ws_t *w = WS_OF(st);
    uint64_t now = uv_now(st->set->timer.loop);

    if (w->closing)
        return;
    if (w->idle_pinged || (w->fragmented && now - w->msg_since >= st->set->idle_ms)) {
        start_close(w, 1001, "idle");
        detach(w);
        return;
    }
    ping_one(st);
    w->idle_pinged = 1;
    st->last_rx = now;
}

/* ---- Server side: sink and replies ---- */

static void sink_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    BX_CHUNK_STATIC(open_bracket, "[");
    BX_CHUNK_STATIC(close_bracket, "]");
    ws_t *w = (ws_t *)sink;
    bx_chunkv_t frame = BX_CHUNKV_INIT;

    if (msgs->n == 0)
        return;
    if (w->closing || bx_conn_is_closing(w->st.conn))
        return;                 /* refused: the server gives them back */
    if (bx_stream_too_slow(&w->st, "websocket")) {
        w->closing = 1;
        return;                 /* likewise */
    }
    bx_chunkv_push(&frame, open_bracket);
    bx_chunkv_push_joined(&frame, msgs, 1);
    bx_chunkv_push(&frame, close_bracket);
    send_frame(w, 1, &frame);
    bx_chunkv_free(&frame);
    bx_chunkv_clear(msgs);
}

/* The session was destroyed (or another socket took it over): close once
 * the replies in flight have been written. The server already forgot us. */
static void sink_close(bx_sink_t *sink)
{
    ws_t *w = (ws_t *)sink;

    w->bound = 0;
    w->id[0] = '\0';
    if (w->batches)
        w->close_soon = 1;
    else
        start_close(w, 1000, NULL);
}

/* Whether a reply holds a successful /meta/disconnect. */
static int disconnected(const bx_chunkv_t *reply)
{
    bx_buf_t b = BX_BUF_INIT;
    int yes = 0;
    size_t i;
    json_t *m, *v;

    for (i = 0; i < reply->n; i++)
        bx_buf_append(&b, reply->v[i]->data, reply->v[i]->len);
    v = b.len ? bx_json_parse(b.data, b.len) : NULL;
    bx_buf_free(&b);
    json_array_foreach(v, i, m) {
        const char *ch = bx_json_str(m, "channel");
        if (ch && strcmp(ch, "/meta/disconnect") == 0 &&
            json_is_true(json_object_get(m, "successful")))
            yes = 1;
    }
    if (v)
        json_decref(v);
    return yes;
}

static void batch_unlink(ws_t *w, wsbatch_t *wb)
{
    if (wb->prev)
        wb->prev->next = wb->next;
    else
        w->batches = wb->next;
    if (wb->next)
        wb->next->prev = wb->prev;
}

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    wsbatch_t *wb = ud;
    ws_t *w = wb->ws;
    int bye = wb->disconnect && disconnected(reply);

    (void)nmsgs;
    batch_unlink(w, wb);
    free(wb);
    send_frame(w, 1, reply);
    if (bye || (w->close_soon && !w->batches))
        start_close(w, 1000, NULL);
}

/* Unbinds the sink and cancels the batches in flight. Never called from
 * inside a server callback (see the top of the file). */
static void detach(ws_t *w)
{
    bx_endpoint_t *s = w->st.set->s;

    if (w->bound && s)
        bx_session_unbind(s->hub, w->id, &w->sink);
    w->bound = 0;
    while (w->batches) {
        wsbatch_t *wb = w->batches;
        batch_unlink(w, wb);
        bx_batch_cancel(wb->b);
        free(wb);
    }
}

/* ---- Reading ---- */

/* The clientId of the first /meta/connect in `v` (Faye's
 * clientIdFromMessages), or NULL. */
static const char *connect_id(const json_t *v, int *disconnect)
{
    const char *id = NULL;
    int found = 0;
    size_t i, n = json_is_array(v) ? json_array_size(v) : 1;

    for (i = 0; i < n; i++) {
        const json_t *m = json_is_array(v) ? json_array_get(v, i) : v;
        const char *ch = bx_json_str(m, "channel");
        if (!ch)
            continue;
        if (!found && strcmp(ch, "/meta/connect") == 0) {
            found = 1;
            id = bx_json_str(m, "clientId");
        } else if (strcmp(ch, "/meta/disconnect") == 0) {
            *disconnect = 1;
        }
    }
    return id && *id ? id : NULL;
}

/* Binds the socket to `id`. Returns -1, changing nothing, when another
 * live socket or stream holds that client: knowing a clientId must not be
 * enough to take its deliveries (the owner's own reconnect comes after its
 * old socket closed, which unbound it); -2 when cookie binding is on and
 * the client belongs to another browser. */
static int bind_to(ws_t *w, const char *id)
{
    bx_endpoint_t *s = w->st.set->s;

    if (strlen(id) >= sizeof(w->id))
        return 0;               /* not an id this server could have issued */
    if (w->bound && strcmp(w->id, id) == 0)
        return 0;
    if (bx_session_has_sink(s->hub, id))
        return -1;
    if (s->opts.browser_cookie) {
        /* the client was handshaken by a browser (longpoll.c): only a
         * socket carrying its cookie may take its deliveries */
        const char *bound = bx_session_browser(s->hub, id);
        char browser[65];
        bx_endpoint_browser(w->req, browser);
        if (bound && strcmp(bound, browser) != 0)
            return -2;
    }
    if (w->bound)
        bx_session_unbind(s->hub, w->id, &w->sink);
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->bound = 1;
    bx_session_bind(s->hub, w->id, &w->sink);
    return 0;
}

/* Answers every message of a frame whose /meta/connect names a client bound
 * to another connection: refused, with advice to retry (the owner's stale
 * socket may yet be found dead by the idle check). */
static void refuse_bound(ws_t *w, const json_t *v, const char *id, const char *why)
{
    json_t *out = json_array();
    size_t i, n = json_is_array(v) ? json_array_size(v) : 1;
    bx_buf_t err = BX_BUF_INIT;

    bx_buf_printf(&err, "%s:%s:%s", BX_ERR_BOUND, id, why);
    for (i = 0; i < n; i++) {
        const json_t *m = json_is_array(v) ? json_array_get(v, i) : v;
        json_t *r = json_object();
        const char *ch = bx_json_str(m, "channel");
        json_t *mid = json_object_get(m, "id");
        if (mid)
            json_object_set(r, "id", mid);
        json_object_set_new(r, "channel", json_string(ch ? ch : ""));
        json_object_set_new(r, "clientId", json_string(id));
        json_object_set_new(r, "successful", json_false());
        json_object_set_new(r, "error", json_stringn(err.data, err.len));
        json_object_set_new(r, "advice", json_pack("{s:s,s:i}", "reconnect", "retry",
                                                   "interval", 1000));
        json_array_append_new(out, r);
    }
    char *text = json_dumps(out, JSON_COMPACT);
    bx_chunkv_t frame = BX_CHUNKV_INIT;
    if (text)
        bx_chunkv_push_new(&frame, bx_chunk_new(text, strlen(text)));
    send_frame(w, 1, &frame);
    bx_chunkv_free(&frame);
    free(text);
    bx_buf_free(&err);
    json_decref(out);
}

static void handle_message(ws_t *w, const uint8_t *data, size_t len)
{
    bx_endpoint_t *s = w->st.set->s;
    json_t *v;
    int disconnect = 0;

    if (!s || w->st.set->closing || w->closing)
        return;
    v = bx_json_parse((const char *)data, len);
    if (!v)
        return;                 /* not JSON: ignored, as Faye does */
    const char *id = connect_id(v, &disconnect);
    int bound = id ? bind_to(w, id) : 0;
    if (bound < 0) {
        refuse_bound(w, v, id, bound == -1 ? "Client bound to another connection"
                                           : "Client bound to another browser");
        json_decref(v);
        return;
    }
    wsbatch_t *wb = bx_calloc(1, sizeof(*wb));
    wb->ws = w;
    wb->disconnect = disconnect;
    wb->next = w->batches;
    if (wb->next)
        wb->next->prev = wb;
    w->batches = wb;
    /* with cookie binding on, a socket speaks for the browser whose
     * cookie its upgrade carried (as a long-poll does) */
    char browser[65] = "";
    if (s->opts.browser_cookie)
        bx_endpoint_browser(w->req, browser);
    wb->b = bx_protocol_process_browser(s->hub, v, w->req, 0,
                                        s->opts.browser_cookie ? browser : NULL, on_reply, wb);
    json_decref(v);
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud)
{
    ws_t *w = ud;
    (void)flags;
    if (w->inlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > w->inlen)
        len = w->inlen;
    memcpy(buf, w->in, len);
    w->in += len;
    w->inlen -= len;
    return (ssize_t)len;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    ws_t *w = ud;
    (void)ctx;
    (void)flags;
    bx_conn_write_copy(w->st.conn, data, len);
    return (ssize_t)len;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        handle_message(ud, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks callbacks = {
    recv_cb, send_cb, NULL, NULL, NULL, NULL, msg_cb
};

/* Follows frame boundaries over `n` input bytes. */
static void track(ws_t *w, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (w->in_payload) {
            size_t k = w->left < n ? (size_t)w->left : n;
            w->left -= k;
            p += k;
            n -= k;
            if (w->left == 0)
                w->in_payload = 0;
            continue;
        }
        w->hdr[w->hdrlen++] = *p++;
        n--;
        if (w->hdrlen < 2)
            continue;
        unsigned l7 = w->hdr[1] & 0x7f;
        size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((w->hdr[1] & 0x80) ? 4 : 0);
        if (w->hdrlen < need)
            continue;
        uint64_t len = l7;
        if (l7 == 126)
            len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
        else if (l7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | w->hdr[2 + i];
        }
        unsigned op = w->hdr[0] & 0x0f;
        if (op < 8) {           /* data or continuation: FIN ends the message */
            if (!w->fragmented && !(w->hdr[0] & 0x80))
                w->msg_since = uv_now(w->st.set->timer.loop);
            w->fragmented = !(w->hdr[0] & 0x80);
            /* refused on its header, not once max_frame bytes have come:
             * a declared 2^62 would otherwise hold the socket open */
            w->msg_len = op == 0 ? w->msg_len + len : len;
            if (w->st.set->max_frame && w->msg_len > w->st.set->max_frame && !w->refuse)
                w->refuse = 1009;
            if (!w->fragmented)
                w->msg_len = 0;
        } else if (op == 8 && len == 1 && !w->refuse) {
            w->refuse = 1002;   /* a close payload is empty or holds a code */
        }
        w->hdrlen = 0;
        if (len) {
            w->in_payload = 1;
            w->left = len;
        }
    }
}

static void ws_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    ws_t *w = ud;
    int r;

    (void)c;
    if (status < 0 || len == 0 || w->closing)
        return;                 /* closing: ws_closed follows */
    w->st.last_rx = uv_now(w->st.set->timer.loop);
    w->idle_pinged = 0;
    if (!w->ctx) {
        if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
            drop(w);
            return;
        }
        if (w->st.set->max_frame)
            wslay_event_config_set_max_recv_msg_length(w->ctx, w->st.set->max_frame);
    }
    track(w, (const uint8_t *)data, len);
    if (w->refuse) {
        start_close(w, w->refuse, NULL);
        detach(w);
        return;
    }
    w->in = data;
    w->inlen = len;
    r = wslay_event_recv(w->ctx);
    w->in = NULL;
    w->inlen = 0;
    if (w->closing)
        return;                 /* a reply or a push dropped the connection */
    if (r != 0) {
        /* a malformed frame header (reserved opcode, bad length...):
         * wslay queued a close without a status; say 1002 instead */
        start_close(w, 1002, NULL);
        detach(w);
        return;
    }
    if (wslay_event_send(w->ctx) != 0 || wslay_event_get_close_sent(w->ctx) ||
        !wslay_event_get_read_enabled(w->ctx)) {
        /* the close frame wslay owed (an echo of the peer's, or 1002,
         * 1007, 1009) is written: the server side ends here */
        if (!wslay_event_get_close_sent(w->ctx))
            start_close(w, 1002, NULL);
        w->closing = 1;
        bx_conn_close_after_write(w->st.conn);
        detach(w);
        return;
    }
    if (!w->in_payload && w->hdrlen == 0 && !w->fragmented) {
        /* a message boundary: give the ~9 KB context back */
        wslay_event_context_free(w->ctx);
        w->ctx = NULL;
    }
}

static void ws_closed(bx_conn_t *c, void *ud)
{
    ws_t *w = ud;

    (void)c;
    detach(w);
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    bx_http_hijack_done(w->req);
    bx_streams_remove(&w->st);
    free(w);
    nsockets--;
}

/* ---- Entry ---- */

void bx_ws_handle(bx_endpoint_t *s, bx_http_req_t *req)
{
    const bx_str_t *key = bx_http_header(req, "Sec-WebSocket-Key");
    const bx_str_t *ver = bx_http_header(req, "Sec-WebSocket-Version");
    char accept[29];

    if (bx_hub_closing(s->hub)) {
        bx_http_respond_text(req, 503, "text/plain; charset=utf-8", "Server closing", 0);
        return;
    }
    if (strcmp(req->method, "GET") != 0 || !bx_ws_is_upgrade(req) ||
        !bx_http_header_has(req, "Connection", "upgrade") || !valid_key(key) || !ver) {
        bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
        return;
    }
    if (ver->len != 2 || memcmp(ver->base, "13", 2) != 0) {
        bx_http_respond(req, 426, "Sec-WebSocket-Version: 13\r\n", NULL, 0);
        return;
    }
    bx_ws_accept_key(key->base, key->len, accept);

    ws_t *w = bx_calloc(1, sizeof(*w));
    w->st.conn = bx_http_hijack(req, ws_read, ws_closed, w);
    if (!w->st.conn) {
        free(w);
        bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
        return;
    }
    w->req = req;
    w->sink.push = sink_push;
    w->sink.close = sink_close;
    w->sink.request = req;
    bx_streams_t *set = bx_streams_get(&sets, s, (&s->opts)->ping, ping_one);
    bx_streams_watch(set, s->opts.idle_timeout, idle_one);
    bx_streams_add(set, &w->st);
    nsockets++;

    bx_buf_t h = BX_BUF_INIT;
    bx_buf_printf(&h, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
    bx_conn_write_chunk(w->st.conn, bx_chunk_from_buf(&h));
    bx_buf_free(&h);
}

/* Server shutdown: a socket leaves its session and says goodbye (1001). */
static void close_one(bx_stream_t *st)
{
    ws_t *w = WS_OF(st);

    detach(w);
    start_close(w, 1001, NULL);
}

int bx_ws_server_close(bx_endpoint_t *s, void (*done)(void *ud), void *ud)
{
    return bx_streams_close(&sets, s, close_one, done, ud);
}
