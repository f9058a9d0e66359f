/*
 * ws.c - Bayeux over WebSocket (see ws.h).
 *
 * The RFC 6455 framing (wslay, the size limit, close codes, and frames
 * written as a header chunk followed by the payload chunks, so a delivery
 * goes out as the very chunk the engine serialized once) is net/wsframe.c,
 * shared with the client; this file is the Bayeux side: handshake, the
 * session binding, pings and the idle check.
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
#include "base/json.h"
#include "base/list.h"
#include "base/metrics.h"
#include "bayeux/protocol.h"
#include "net/wsdeflate.h"
#include "net/wsframe.h"
#include "transport/endpoint.h"
#include "transport/streams.h"
#include "transport/ws.h"

/* The error code of a connect naming a client bound elsewhere (Bayeux
 * leaves 4xx codes to the server; 409 as HTTP's Conflict). */
#define BX_ERR_BOUND "409"

typedef struct ws ws_t;

/* A frame whose replies are being computed. */
typedef struct wsbatch {
    bx_list_t link;             /* on ws->batches */
    ws_t *ws;
    bx_batch_t *b;
    int disconnect;             /* the frame held a /meta/disconnect */
} wsbatch_t;

struct ws {
    bx_sink_t sink;             /* first: the server hands it back */
    bx_stream_t st;             /* in the server's set; st.conn is ours */
    bx_http_req_t *req;         /* the upgrade request, for extensions */
    bx_wsframe_t f;             /* the framing; f.closing: close frame sent
                                   or connection dropped */
    bx_list_t batches;          /* of wsbatch_t in flight, newest first */
    char id[32];                /* bound client id */
    uint32_t ping_id;
    unsigned idle_pinged : 1;   /* silent: pinged, waiting for any answer */
    unsigned bound : 1;
    unsigned close_soon : 1;    /* close once the batches in flight answer */
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

/* The permessage-deflate answer to the request's offers (every
 * Sec-WebSocket-Extensions header, in order), into `answer`: our window
 * bits, or 0 when none is accepted. */
static unsigned negotiate_deflate(const bx_http_req_t *req, bx_buf_t *answer)
{
    bx_buf_t offers = BX_BUF_INIT;
    unsigned bits;

    for (size_t i = 0; i < req->nheaders; i++) {
        const bx_http_header_t *h = &req->headers[i];
        if (h->name.len == 24 && strncasecmp(h->name.base, "Sec-WebSocket-Extensions", 24) == 0) {
            if (offers.len)
                bx_buf_append(&offers, ",", 1);
            bx_buf_append(&offers, h->value.base, h->value.len);
        }
    }
    bits = offers.len ? (unsigned)bx_wsdeflate_negotiate(offers.data, offers.len, answer) : 0;
    bx_buf_free(&offers);
    return bits;
}

/* ---- Writing ---- */

/* Queues one frame holding `payload` (entries stolen). */
static void send_frame(ws_t *w, unsigned opcode, bx_chunkv_t *payload)
{
    if (!w->f.closing && !bx_conn_is_closing(w->st.conn) &&
        bx_stream_too_slow(&w->st, "websocket"))
        w->f.closing = 1;
    bx_wsframe_send(&w->f, opcode, payload);
}

/* Sends a close frame and closes once it is written. */
static void start_close(ws_t *w, unsigned code, const char *reason)
{
    bx_wsframe_close(&w->f, code, reason);
}

#define WS_OF(stp) ((ws_t *)(void *)((char *)(stp) - offsetof(ws_t, st)))

/* The set's timer: one ping frame (payload: a counter) per socket. */
static void ping_one(bx_stream_t *st)
{
    ws_t *w = WS_OF(st);
    char id[16];

    bx_chunkv_t v = BX_CHUNKV_INIT;

    if (w->f.closing)
        return;
    int n = snprintf(id, sizeof(id), "%u", ++w->ping_id);
    bx_chunkv_push_new(&v, bx_chunk_new(id, (size_t)n));
    bx_wsframe_send(&w->f, BX_WS_PING, &v);
    bx_chunkv_free(&v);
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

    if (w->f.closing)
        return;
    if (w->idle_pinged || (w->f.fragmented && now - w->f.msg_since >= st->set->idle_ms)) {
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
    if (w->f.closing || bx_conn_is_closing(w->st.conn))
        return;                 /* refused: the server gives them back */
    if (bx_stream_too_slow(&w->st, "websocket")) {
        w->f.closing = 1;
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
    if (!bx_list_empty(&w->batches))
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

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    wsbatch_t *wb = ud;
    ws_t *w = wb->ws;
    int bye = wb->disconnect && disconnected(reply);

    (void)nmsgs;
    bx_list_remove(&wb->link);
    free(wb);
    send_frame(w, 1, reply);
    if (bye || (w->close_soon && bx_list_empty(&w->batches)))
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
    while (!bx_list_empty(&w->batches)) {
        wsbatch_t *wb = BX_CONTAINER(w->batches.next, wsbatch_t, link);
        bx_list_remove(&wb->link);
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

    if (!s || w->st.set->closing || w->f.closing)
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
    bx_list_push_head(&w->batches, &wb->link);
    /* with cookie binding on, a socket speaks for the browser whose
     * cookie its upgrade carried (as a long-poll does) */
    char browser[65] = "";
    if (s->opts.browser_cookie)
        bx_endpoint_browser(w->req, browser);
    wb->b = bx_protocol_process_browser(s->hub, v, w->req, 0,
                                        s->opts.browser_cookie ? browser : NULL, on_reply, wb);
    json_decref(v);
}

static void on_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    (void)opcode;
    handle_message(ud, data, len);
}

static const bx_wsframe_cb_t frame_cb = { on_message, NULL };

static void ws_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    ws_t *w = ud;

    (void)c;
    if (status < 0 || len == 0 || w->f.closing)
        return;                 /* closing: ws_closed follows */
    w->st.last_rx = uv_now(w->st.set->timer.loop);
    w->idle_pinged = 0;
    /* ended (the peer's close, or refused): closing after the close frame;
     * OK also when a reply or a push dropped the connection meanwhile */
    if (bx_wsframe_read(&w->f, data, len) != BX_WSF_OK)
        detach(w);
}

static void ws_closed(bx_conn_t *c, void *ud)
{
    ws_t *w = ud;

    (void)c;
    detach(w);
    bx_wsframe_free(&w->f);
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
    bx_list_init(&w->batches);
    w->st.conn = bx_http_hijack(&req, ws_read, ws_closed, w);
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
    bx_wsframe_init(&w->f, w->st.conn, 0, set->max_frame, &frame_cb, w);
    bx_streams_add(set, &w->st);
    nsockets++;
    bx_metrics.ws_opened++;

    bx_buf_t h = BX_BUF_INIT, ext = BX_BUF_INIT;
    unsigned bits = s->opts.deflate ? negotiate_deflate(req, &ext) : 0;
    if (bits)
        bx_wsframe_deflate(&w->f, bits);
    bx_buf_printf(&h, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n", accept);
    if (bits)
        bx_buf_printf(&h, "Sec-WebSocket-Extensions: %.*s\r\n", (int)ext.len, ext.data);
    bx_buf_puts(&h, "\r\n");
    bx_buf_free(&ext);
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
