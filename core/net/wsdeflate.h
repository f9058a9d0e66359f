/*
 * wsdeflate.h - permessage-deflate (RFC 7692) for the frame layer
 * (wsframe.c): the handshake's negotiation, and the codec of one message.
 *
 * No context takeover either way. The server always answers with
 * server_no_context_takeover (the RFC lets it add that parameter) and
 * client_no_context_takeover (likewise), so every message is compressed
 * on its own: a socket keeps no zlib state at all, idle or not, and one
 * inflater and one deflater per window size serve the whole process.
 *
 * Because a compressed message depends only on its bytes (and the window
 * size), the compressed form of a frame payload is shared: a payload is
 * compressed once per turn of the loop, and every socket that sends the
 * same payload in that turn gets the same compressed chunk. The same
 * payload is recognised by its chunks (a delivery serialized once, with
 * the static "[" and "]" around it: pointers compared) or by its bytes
 * (several deliveries joined into a chunk of each socket's own: lengths,
 * then memcmp). The last 32 payloads of the turn are remembered.
 *
 * A payload under BX_WSDEFLATE_MIN bytes, or one that would not shrink,
 * is sent as it is (the RFC leaves the choice to each message). zlib
 * spends ~80k instructions on any flushed block, however short (it builds
 * the Huffman trees to choose between them), more than a short frame's
 * write costs: a payload under BX_WSDEFLATE_EAGER bytes goes as it is the
 * first time in a turn, and is compressed when a second socket sends it
 * (a fan-out, where the cost is shared). So a socket's own short replies
 * are never compressed.
 */
#ifndef BX_WSDEFLATE_H
#define BX_WSDEFLATE_H

#include <stddef.h>
#include <uv.h>
#include "base/buf.h"

/* Payloads shorter than this go uncompressed: a short JSON message saves
 * a few bytes at most and costs a deflate call. */
#define BX_WSDEFLATE_MIN 128

/* Payloads this long are compressed the first time they are sent. */
#define BX_WSDEFLATE_EAGER 1024

/* Parses the Sec-WebSocket-Extensions offers `offers` (`len` bytes, every
 * header of the request joined with ","). Accepts the first
 * permessage-deflate offer it can honour: returns the window bits of our
 * compression (9..15) and appends the extension's answer to `answer` (the
 * value of a Sec-WebSocket-Extensions response header). Returns 0, adding
 * nothing, when no offer can be accepted (none made, malformed, or asking
 * for what zlib cannot do: server_max_window_bits=8). */
int bx_wsdeflate_negotiate(const char *offers, size_t len, bx_buf_t *answer);

/* What a client offers (a Sec-WebSocket-Extensions header value). */
#define BX_WSDEFLATE_OFFER \
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* A client's check of the server's answer `answer` (`len` bytes) to
 * BX_WSDEFLATE_OFFER: returns the window bits our compression may use
 * (9..15), or -1 when the answer is not one we can take (the connection
 * must fail, RFC 7692 section 5): another or a second extension, unknown
 * or repeated parameters, no server_no_context_takeover,
 * client_max_window_bits=8. */
int bx_wsdeflate_accept(const char *answer, size_t len);

/* Compresses `payload` (borrowed) with a window of `bits`, or finds it
 * compressed earlier in this turn of `loop`. Returns a new reference to
 * the compressed bytes (without the final 00 00 ff ff), or NULL: send the
 * payload as it is (short, or it would not shrink). */
bx_chunk_t *bx_wsdeflate_deflate(uv_loop_t *loop, unsigned bits, const bx_chunkv_t *payload);

/* Inflates one message `in` into `out` (reset first). Returns 0; 1009
 * when it inflates to more than `limit` bytes (stopped there: a bomb is
 * not inflated past the limit); 1007 when the bytes are not a deflate
 * stream, or `text` is set and the result is not UTF-8. */
unsigned bx_wsdeflate_inflate(const uint8_t *in, size_t len, size_t limit, int text,
                              bx_buf_t *out);

/* Counters, for tests and the bench. */
typedef struct {
    uint64_t deflates;          /* payloads compressed */
    uint64_t shared;            /* payloads found compressed in this turn */
    uint64_t inflated;          /* bytes produced by inflate */
} bx_wsdeflate_stats_t;

extern bx_wsdeflate_stats_t bx_wsdeflate_stats;

#endif
