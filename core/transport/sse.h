/*
 * sse.h - Bayeux deliveries over EventSource, as Faye's node adapter and
 * faye-websocket's EventSource serve them (reference/bayeux-faye.md §9).
 *
 * GET <mount>/<clientId> with Accept: text/event-stream. The client id is
 * whatever follows the last '/' of the request target (not validated, as
 * in Faye). The answer is written raw:
 *
 *   HTTP/1.1 200 OK
 *   Content-Type: text/event-stream
 *   Cache-Control: no-cache, no-store
 *   Connection: close
 *
 *   retry: 5000
 *
 * then every delivery batch as one event "data: [m1,m2,...]\r\n\r\n"
 * (everything pending for the stream in one loop iteration), and the
 * keep-alive comment ":\r\n\r\n" every `ping` seconds (10 s when `ping` is
 * 0). The stream is bound (as a sink) to the session; the Bayeux messages
 * themselves still come by HTTP POST with connectionType "eventsource".
 * A client id already bound to another live stream or WebSocket is
 * refused with 409 (a known clientId must not be enough to take over a
 * session's deliveries). Every `idle_timeout` the engine is asked whether
 * the client lives; a stream for one it does not know ends (nothing else
 * would end it). The session being destroyed ends the stream; the stream closing leaves
 * the session and its queue alive until expiry. A stream whose reader
 * falls more than `max_output` bytes behind is dropped (logged).
 */
#ifndef BX_SSE_H
#define BX_SSE_H

#include <stddef.h>
#include "net/http.h"

struct bx_endpoint_s;

/* Handles an EventSource request under the mount. */
void bx_sse_handle(struct bx_endpoint_s *s, bx_http_req_t *req);

/* The server is closing: every stream of `s` is unbound and ended.
 * Returns 0 if there was nothing to close, or 1 and then calls done(ud)
 * once, on a later loop turn, when every stream has been freed. */
int bx_sse_server_close(struct bx_endpoint_s *s, void (*done)(void *ud), void *ud);

/* Number of open streams (for tests and stats). */
size_t bx_sse_count(void);

#endif
