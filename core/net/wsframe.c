/*
 * wsframe.c - RFC 6455 framing shared by server and client (wsframe.h).
 */
#include <string.h>
#include <openssl/rand.h>
#include "net/wsdeflate.h"
#include "net/wsframe.h"

/* ---- wslay glue ---- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud)
{
    bx_wsframe_t *f = ud;
    (void)flags;
    if (f->inlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > f->inlen)
        len = f->inlen;
    memcpy(buf, f->in, len);
    f->in += len;
    f->inlen -= len;
    return (ssize_t)len;
}

/* wslay writes only what it owes: pongs and the close echo. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    bx_wsframe_t *f = ud;
    (void)ctx;
    (void)flags;
    bx_conn_write_copy(f->conn, data, len);
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ctx;
    (void)ud;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

/* wslay's own limit when we set none. */
#define WSLAY_DEFAULT_MAX ((size_t)1 << 31)

/* Every data message received goes through here. RSV1 (wslay lets it
 * through only when the extension was negotiated, and only on a first
 * frame) means compressed: inflated, within the message limit, before the
 * owner sees it. A refusal is noted for bx_wsframe_read, which closes. */
static void deliver(bx_wsframe_t *f, unsigned opcode, unsigned rsv, const uint8_t *data,
                    size_t len)
{
    if (wslay_get_rsv1(rsv)) {
        bx_buf_t out = BX_BUF_INIT;
        unsigned code = bx_wsdeflate_inflate(data, len, f->max_msg ? f->max_msg
                                                                   : WSLAY_DEFAULT_MAX,
                                             opcode == BX_WS_TEXT, &out);
        if (code)
            f->refuse = code;
        else
            f->cb->message(f->ud, opcode, (const uint8_t *)(out.data ? out.data : ""),
                           out.len);
        bx_buf_free(&out);
        return;
    }
    f->cb->message(f->ud, opcode, data, len);
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    bx_wsframe_t *f = ud;
    (void)ctx;
    if (f->closing || f->refuse)
        return;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        deliver(f, arg->opcode, arg->rsv, arg->msg, arg->msg_length);
    else if ((arg->opcode == WSLAY_PING || arg->opcode == WSLAY_PONG) && f->cb->control)
        f->cb->control(f->ud, arg->opcode, arg->msg, arg->msg_length);
}

static const struct wslay_event_callbacks callbacks = {
    recv_cb, send_cb, genmask_cb, NULL, NULL, NULL, msg_cb
};

/* ---- The frame tracker ---- */

/* Follows frame boundaries over `n` input bytes, noting in f->refuse the
 * close code a frame header earns. */
static void track(bx_wsframe_t *f, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (f->in_payload) {
            size_t k = f->left < n ? (size_t)f->left : n;
            f->left -= k;
            p += k;
            n -= k;
            if (f->left == 0)
                f->in_payload = 0;
            continue;
        }
        f->hdr[f->hdrlen++] = *p++;
        n--;
        if (f->hdrlen < 2)
            continue;
        unsigned l7 = f->hdr[1] & 0x7f;
        size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((f->hdr[1] & 0x80) ? 4 : 0);
        if (f->hdrlen < need)
            continue;
        uint64_t len = l7;
        if (l7 == 126)
            len = (uint64_t)f->hdr[2] << 8 | f->hdr[3];
        else if (l7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f->hdr[2 + i];
        }
        unsigned op = f->hdr[0] & 0x0f;
        if (op < 8) {           /* data or continuation: FIN ends the message */
            if (!f->fragmented && !(f->hdr[0] & 0x80))
                f->msg_since = uv_now(bx_conn_loop(f->conn));
            f->fragmented = !(f->hdr[0] & 0x80);
            /* refused on its header, not once max_msg bytes have come:
             * a declared 2^62 would otherwise hold the socket open */
            f->msg_len = op == 0 ? f->msg_len + len : len;
            if (f->max_msg && f->msg_len > f->max_msg && !f->refuse)
                f->refuse = 1009;
            if (!f->fragmented)
                f->msg_len = 0;
        } else if (op == 8 && len == 1 && !f->refuse) {
            f->refuse = 1002;   /* a close payload is empty or holds a code */
        }
        f->hdrlen = 0;
        if (len) {
            f->in_payload = 1;
            f->left = len;
        }
    }
}

/* ---- Public ---- */

void bx_wsframe_init(bx_wsframe_t *f, bx_conn_t *conn, int client, size_t max_msg,
                     const bx_wsframe_cb_t *cb, void *ud)
{
    memset(f, 0, sizeof(*f));
    f->conn = conn;
    f->client = client ? 1 : 0;
    f->max_msg = max_msg > UINT32_MAX ? UINT32_MAX : (uint32_t)max_msg;
    f->cb = cb;
    f->ud = ud;
}

int bx_wsframe_read(bx_wsframe_t *f, const char *data, size_t len)
{
    int r;

    if (f->closing || len == 0)
        return BX_WSF_OK;
    if (!f->ctx) {
        r = f->client ? wslay_event_context_client_init(&f->ctx, &callbacks, f)
                      : wslay_event_context_server_init(&f->ctx, &callbacks, f);
        if (r != 0) {
            f->ctx = NULL;
            bx_wsframe_drop(f);
            return BX_WSF_ERROR;
        }
        if (f->max_msg)
            wslay_event_config_set_max_recv_msg_length(f->ctx, f->max_msg);
        if (f->deflate)
            wslay_event_config_set_allowed_rsv_bits(f->ctx, WSLAY_RSV1_BIT);
    }
    track(f, (const uint8_t *)data, len);
    if (f->refuse) {
        bx_wsframe_close(f, f->refuse, NULL);
        return BX_WSF_ERROR;
    }
    f->in = data;
    f->inlen = len;
    r = wslay_event_recv(f->ctx);
    f->in = NULL;
    f->inlen = 0;
    if (f->closing)
        return BX_WSF_OK;       /* a message's handler closed the socket */
    if (f->refuse) {
        /* a compressed message would not inflate (1007) or inflates past
         * the limit (1009) */
        bx_wsframe_close(f, f->refuse, NULL);
        return BX_WSF_ERROR;
    }
    if (r != 0) {
        /* a malformed frame header (reserved opcode, bad length...):
         * wslay queued a close without a status; say 1002 instead */
        bx_wsframe_close(f, 1002, NULL);
        return BX_WSF_ERROR;
    }
    if (wslay_event_send(f->ctx) != 0 || wslay_event_get_close_sent(f->ctx) ||
        !wslay_event_get_read_enabled(f->ctx)) {
        /* the close frame wslay owed (an echo of the peer's, or 1002,
         * 1007, 1009) is written: the socket ends here */
        int peer = wslay_event_get_close_received(f->ctx);
        if (!wslay_event_get_close_sent(f->ctx))
            bx_wsframe_close(f, 1002, NULL);
        f->closing = 1;
        bx_conn_close_after_write(f->conn);
        return peer ? BX_WSF_CLOSED : BX_WSF_ERROR;
    }
    if (!f->in_payload && f->hdrlen == 0 && !f->fragmented) {
        /* a message boundary: give the ~9 KB context back */
        wslay_event_context_free(f->ctx);
        f->ctx = NULL;
    }
    return BX_WSF_OK;
}

bx_chunk_t *bx_wsframe_header(unsigned opcode, size_t len)
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

/* A client's frame: header with the mask bit and key, then the payload
 * masked (RFC 6455 section 5.3), in one new buffer. `rsv1`: compressed. */
static void send_masked(bx_wsframe_t *f, unsigned opcode, int rsv1, const bx_chunkv_t *payload)
{
    size_t len = bx_chunkv_bytes(payload), k = 0;
    bx_chunk_t *h = bx_wsframe_header(opcode, len);
    bx_buf_t out = BX_BUF_INIT;
    uint8_t key[4];

    if (rsv1)
        h->data[0] |= 0x40;
    if (RAND_bytes(key, sizeof(key)) != 1)
        memset(key, 0x5a, sizeof(key));     /* masking is not secrecy */
    bx_buf_append(&out, h->data, h->len);
    bx_chunk_unref(h);
    ((uint8_t *)out.data)[1] |= 0x80;
    bx_buf_append(&out, key, sizeof(key));
    for (size_t i = 0; i < payload->n; i++) {
        const uint8_t *p = (const uint8_t *)payload->v[i]->data;
        size_t start = out.len;
        bx_buf_append(&out, p, payload->v[i]->len);
        for (size_t j = 0; j < payload->v[i]->len; j++, k++)
            ((uint8_t *)out.data)[start + j] ^= key[k & 3];
    }
    bx_conn_write_copy(f->conn, out.data, out.len);
    bx_buf_free(&out);
}

void bx_wsframe_deflate(bx_wsframe_t *f, unsigned bits)
{
    f->deflate = (uint8_t)bits;
}

void bx_wsframe_send(bx_wsframe_t *f, unsigned opcode, bx_chunkv_t *payload)
{
    int rsv1 = 0;

    /* every data message sent goes through here: compressed when the
     * extension is on and it pays (control frames never are) */
    if (f->closing || bx_conn_is_closing(f->conn)) {
        bx_chunkv_clear(payload);
        return;
    }
    if (f->deflate && opcode < 8) {
        bx_chunk_t *z = bx_wsdeflate_deflate(bx_conn_loop(f->conn), f->deflate, payload);
        if (z) {
            bx_chunkv_clear(payload);
            bx_chunkv_push_new(payload, z);
            rsv1 = 1;
        }
    }
    if (f->client) {
        send_masked(f, opcode, rsv1, payload);
        bx_chunkv_clear(payload);
        return;
    }
    bx_chunk_t *h = bx_wsframe_header(opcode, bx_chunkv_bytes(payload));
    if (rsv1)
        h->data[0] |= 0x40;
    bx_conn_write_chunk(f->conn, h);
    bx_conn_write(f->conn, payload);
}

void bx_wsframe_close(bx_wsframe_t *f, unsigned code, const char *reason)
{
    uint8_t p[2 + 123];
    size_t n = 0;
    bx_chunkv_t v = BX_CHUNKV_INIT;

    if (f->closing)
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
    if (n)
        bx_chunkv_push_new(&v, bx_chunk_new(p, n));
    bx_wsframe_send(f, BX_WS_CLOSE, &v);
    bx_chunkv_free(&v);
    f->closing = 1;
    bx_conn_close_after_write(f->conn);
}

void bx_wsframe_drop(bx_wsframe_t *f)
{
    f->closing = 1;
    bx_conn_close(f->conn);
}

void bx_wsframe_free(bx_wsframe_t *f)
{
    if (f->ctx)
        wslay_event_context_free(f->ctx);
    f->ctx = NULL;
}
