/*
 * fuzz_ws.c - libFuzzer target: WebSocket frames after the upgrade
 * (core/transport/ws.c with wslay, the frame limits and the idle checks'
 * state, then the Bayeux messages the frames carry: socket binding, the
 * protocol, deliveries back over the socket).
 *
 * Each input is one connection to a whole server (fuzz_net.h): a valid
 * upgrade request, then what the input makes of the rest. Its first byte
 * picks the form:
 *   odd   the remaining bytes go out raw (unmasked frames, bad lengths,
 *         reserved bits: whatever wslay and ws.c's own header checks see)
 *   even  the remaining bytes are read as frames to build, each
 *           [flags: FIN 0x80, RSV 0x70, opcode 0x0f][length][payload]
 *         masked as a client must, so that text frames reach the JSON and
 *         Bayeux layers ("@@" is replaced by a live clientId first)
 */
#include "fuzz_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char upgrade[] =
    "GET /bayeux HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Appends one masked client frame. */
static void frame(bx_buf_t *out, uint8_t flags, const char *payload, size_t n)
{
    static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
    uint8_t h[14];
    char m[256];                /* n < 256: the length is one input byte */
    size_t hl = 2;

    h[0] = flags;
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    }
    memcpy(h + hl, key, 4);
    bx_buf_append(out, (const char *)h, hl + 4);
    for (size_t i = 0; i < n; i++)
        m[i] = (char)(payload[i] ^ key[i & 3]);
    bx_buf_append(out, m, n);
}

static void setup_opts(bx_server_opts_t *o)
{
    o->max_frame = 4096;        /* the 1009 path within reach of small inputs */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    bx_buf_t raw = BX_BUF_INIT, out = BX_BUF_INIT;

    if (!ready) {
        fuzz_setup(setup_opts);
        ready = 1;
    }
    if (size == 0)
        return 0;
    bx_buf_puts(&out, upgrade);
    fuzz_subst(data + 1, size - 1, NULL, &raw);
    if (data[0] & 1) {
        if (raw.len)
            bx_buf_append(&out, raw.data, raw.len);
    } else {
        /* [flags][len][payload]...; a length past the end takes the rest */
        size_t i = 0;
        while (i + 2 <= raw.len) {
            uint8_t flags = (uint8_t)raw.data[i];
            size_t n = (uint8_t)raw.data[i + 1];
            i += 2;
            if (n > raw.len - i)
                n = raw.len - i;
            frame(&out, flags, raw.data + i, n);
            i += n;
        }
    }
    fuzz_exchange(out.data, out.len);
    bx_buf_free(&raw);
    bx_buf_free(&out);
    return 0;
}
