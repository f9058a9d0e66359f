/*
 * ws.h - Bayeux over WebSocket (RFC 6455), as Faye's node adapter serves it
 * (reference/bayeux-faye.md §8).
 *
 * The upgrade is accepted on any path under the mount. Frames are read with
 * wslay's event API (fragmentation, ping/pong, the close handshake, masking,
 * UTF-8 and size checks); frames are written here, unmasked, straight from
 * the shared chunks the engine serialized once.
 *
 *   - each text frame holds a JSON array of messages (or one object); its
 *     replies go back as ONE frame; `[]` is answered with `[]`; a frame that
 *     is not JSON is ignored (the socket stays open)
 *   - a frame holding a /meta/connect binds the socket (as a sink) to that
 *     clientId; deliveries are then pushed as they happen, everything
 *     pending for the socket in one loop iteration as ONE frame [m1,m2,...]
 *   - a clientId bound to another live socket or stream cannot be bound:
 *     every message of such a frame is answered "409:<id>:Client bound to
 *     another connection" with advice retry, and nothing of it is processed
 *   - a socket silent for `idle_timeout` gets a ping; still silent as long
 *     again, or a fragmented message unfinished for `idle_timeout` -> 1001
 *   - a successful /meta/disconnect, or the session being destroyed, closes
 *     the socket with 1000 once the replies in flight are written
 *   - a message larger than the server's `max_frame` -> close 1009, as soon
 *     as a frame header declares it; a 1-byte close payload -> 1002; invalid
 *     UTF-8 -> 1007; an unmasked or otherwise malformed frame -> 1002
 *   - more than `max_output` bytes waiting to be sent to the socket: the
 *     reader is too slow; the socket is dropped (logged)
 *   - `ping` (seconds) > 0: a ping frame ("1", "2", ...) every `ping` s
 *   - a closed socket unbinds its sink and cancels its batches in flight;
 *     the session and its queue live on until expiry
 *
 * Memory: an idle socket holds no wslay context (one is created when bytes
 * arrive and freed once they form complete messages) and no buffers.
 */
#ifndef BX_WS_H
#define BX_WS_H

#include <stddef.h>
#include "net/http.h"

struct bx_endpoint_s;

/* Whether `req` asks for a WebSocket upgrade (Upgrade: websocket). */
int bx_ws_is_upgrade(const bx_http_req_t *req);

/* Handles an upgrade request under the mount: validates it (400 if it is
 * not a usable RFC 6455 handshake), answers 101 and takes the connection
 * over. */
void bx_ws_handle(struct bx_endpoint_s *s, bx_http_req_t *req);

/* Computes Sec-WebSocket-Accept for `key` into `out` (29 bytes: 28 + NUL). */
void bx_ws_accept_key(const char *key, size_t len, char out[29]);

/* The server is closing: every socket of `s` is unbound and closed (1001).
 * Returns 0 if there was nothing to close, or 1 and then calls done(ud)
 * once, on a later loop turn, when every socket has been freed. */
int bx_ws_server_close(struct bx_endpoint_s *s, void (*done)(void *ud), void *ud);

/* Number of live WebSocket connections (for tests and stats). */
size_t bx_ws_count(void);

#endif
