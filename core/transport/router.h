/*
 * router.h - the mount: which transport answers a request under it, and the
 * shutdown of the transports' long-lived sockets.
 *
 * Decision order for a request under the mount (reference §7.1):
 *   1. last path component ends in .js/.map  -> the client script (longpoll.c)
 *   2. OPTIONS, or Access-Control-Request-Method: POST -> CORS preflight
 *                                               (longpoll.c)
 *   3. Upgrade: websocket                    -> WebSocket (ws.c)
 *   4. GET accepting text/event-stream       -> EventSource (sse.c)
 *   5. GET                                   -> callback-polling (JSONP)
 *   6. POST                                  -> long-polling
 *   7. anything else                         -> 400 Bad request
 */
#ifndef BX_ROUTER_H
#define BX_ROUTER_H

#include <stddef.h>
#include "net/http.h"
#include "transport/endpoint.h"

/* Makes the endpoint of `hub` (borrowed; may be set later in ep->hub,
 * before the first request) at opts->mount (`opts` copied, the
 * trailing slashes of the mount dropped), loading the client script now.
 * Returns NULL with a message in `err` (`errlen` bytes) if it cannot be. */
bx_endpoint_t *bx_router_new(uv_loop_t *loop, bx_hub_t *hub, const bx_endpoint_opts_t *opts,
                             char *err, size_t errlen);

/* Whether `path` belongs to the endpoint: the mount itself, anything below
 * it, or the mount with an extension (".js"). */
int bx_router_owns(const bx_endpoint_t *ep, const char *path, size_t len);

/* Hands a request the endpoint owns to its transport. */
void bx_router_handle(bx_endpoint_t *ep, bx_http_req_t *req);

/* The connection of an unanswered request the endpoint owns closed. */
void bx_router_abort(bx_endpoint_t *ep, bx_http_req_t *req);

/* A closer of the server: every WebSocket and EventSource of `ep` is
 * unbound and closed. Returns 0 if nothing was open, or 1 and then calls
 * done(ud) once, on a later loop turn, when all are freed. */
int bx_router_close(bx_endpoint_t *ep, void (*done)(void *ud), void *ud);

/* Frees the endpoint (NULL is ok), once its sockets are closed. */
void bx_router_free(bx_endpoint_t *ep);

#endif
