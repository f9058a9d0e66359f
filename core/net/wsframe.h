/*
 * wsframe.h - RFC 6455 framing on a bx_conn_t, shared by the WebSocket
 * server (transport/ws.c) and client (net/wsc.c).
 *
 * Reading: wslay's event API does the protocol work (masking, reserved
 * bits, fragmentation, control frames, UTF-8) and queues the answers it
 * owes (pong, close echo), which go out through the connection. A small
 * tracker follows the frame headers of the byte stream ahead of wslay, so
 * that a message over `max_msg` is refused (1009) on its header, not once
 * its bytes have come, and a close frame with a one-byte payload (neither
 * empty nor a code) gets 1002. wslay's context (~9 KB) exists only while
 * a message is being received: it is freed whenever the input ends on a
 * message boundary.
 *
 * Writing: frames are built here, not by wslay, so that a server's data
 * frame goes out as a header chunk followed by the very payload chunks it
 * was given (a delivery's chunk, serialized once, is never copied); a
 * client's frames are masked (a copy, as masking changes the bytes).
 *
 * A data message in or out passes through one function each way
 * (deliver() and bx_wsframe_send() in wsframe.c): that is where
 * permessage-deflate (net/wsdeflate.c) sits, between wslay and the
 * connection, once the owner has negotiated it (bx_wsframe_deflate): a
 * message whose first frame has RSV1 is inflated (at most max_msg bytes,
 * else 1009), and a data frame sent is compressed when that pays, with
 * the compressed bytes shared by every socket sending the same chunks in
 * the same turn. RSV1 without the extension, or on a control or
 * continuation frame, is refused (1002) by wslay.
 *
 * Nothing here closes the connection behind its owner's back except
 * through bx_wsframe_close / bx_wsframe_drop and the results of
 * bx_wsframe_read; the owner frees the frame state (bx_wsframe_free) in
 * its connection's close callback.
 */
#ifndef BX_WSFRAME_H
#define BX_WSFRAME_H

#include <stdint.h>
#include <wslay/wslay.h>
#include "base/buf.h"
#include "net/conn.h"

/* Opcodes (RFC 6455 section 5.2). */
enum {
    BX_WS_TEXT = 1,
    BX_WS_BINARY = 2,
    BX_WS_CLOSE = 8,
    BX_WS_PING = 9,
    BX_WS_PONG = 10
};

/* What a frame reader hands up. */
typedef struct {
    /* A complete text or binary message (`data` borrowed for the call).
     * It may close the connection (bx_wsframe_close / _drop). */
    void (*message)(void *ud, unsigned opcode, const uint8_t *data, size_t len);
    /* A ping or pong arrived (wslay answers pings itself). May be NULL. */
    void (*control)(void *ud, unsigned opcode, const uint8_t *data, size_t len);
} bx_wsframe_cb_t;

/* Embedded in a WebSocket's owner; all fields are the frame layer's, the
 * owner may read `closing`, `fragmented` and `msg_since`. */
typedef struct {
    bx_conn_t *conn;            /* borrowed */
    const bx_wsframe_cb_t *cb;  /* borrowed */
    void *ud;
    wslay_event_context_ptr ctx;
    const char *in;             /* the read being fed to wslay */
    size_t inlen;
    uint8_t hdr[14];            /* the frame header being tracked */
    uint8_t hdrlen;
    uint8_t deflate;            /* permessage-deflate: our window bits (0: off) */
    uint64_t left;              /* payload bytes left in the current frame */
    uint64_t msg_len;           /* declared bytes of the data message so far */
    uint64_t msg_since;         /* loop time a fragmented message began */
    /* the rest in 8 bytes: every WebSocket has one of these, and 96 bytes
     * keep ws_t in a smaller allocator class than 104 did */
    uint32_t max_msg;           /* 0: no limit of ours (larger: 4 GiB - 1) */
    uint16_t refuse;            /* close code owed for a frame header or an
                                   undecodable message (0: none) */
    unsigned client : 1;        /* masks its frames; wslay in client mode */
    unsigned in_payload : 1;
    unsigned fragmented : 1;    /* a data message continues in later frames */
    unsigned closing : 1;       /* close frame sent or connection dropped */
} bx_wsframe_t;

/* Results of bx_wsframe_read. */
enum {
    BX_WSF_OK = 0,              /* go on (or the owner closed meanwhile) */
    BX_WSF_CLOSED = 1,          /* the peer closed: echoed, closing after write */
    BX_WSF_ERROR = 2            /* refused (1002, 1007, 1009...): close frame
                                   sent, closing after write */
};

/* Sets up `f` on `conn` (the upgrade done). `client`: we are the client.
 * `max_msg`: the largest data message accepted (0: wslay's default). */
void bx_wsframe_init(bx_wsframe_t *f, bx_conn_t *conn, int client, size_t max_msg,
                     const bx_wsframe_cb_t *cb, void *ud);

/* Turns permessage-deflate on (the handshake accepted it), compressing
 * with a window of `bits` (wsdeflate.h's bx_wsdeflate_negotiate). */
void bx_wsframe_deflate(bx_wsframe_t *f, unsigned bits);

/* Feeds `len` bytes read from the connection: messages go to cb->message,
 * owed answers to the connection. Ignored once closing. */
int bx_wsframe_read(bx_wsframe_t *f, const char *data, size_t len);

/* Queues one frame of `opcode` holding `payload` (entries stolen; the
 * vector is left empty). Nothing once closing. */
void bx_wsframe_send(bx_wsframe_t *f, unsigned opcode, bx_chunkv_t *payload);

/* Queues a close frame (code 0: without a status; `reason` may be NULL,
 * cut at 123 bytes) and closes the connection once it is written. Nothing
 * once closing. */
void bx_wsframe_close(bx_wsframe_t *f, unsigned code, const char *reason);

/* Drops the connection now (no close frame). */
void bx_wsframe_drop(bx_wsframe_t *f);

/* Frees wslay's context (from the owner's connection close callback). */
void bx_wsframe_free(bx_wsframe_t *f);

/* The header of an unmasked frame of `opcode` with a `len`-byte payload,
 * FIN set: a new chunk. */
bx_chunk_t *bx_wsframe_header(unsigned opcode, size_t len);

#endif
