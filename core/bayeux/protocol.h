/*
 * protocol.h - Bayeux semantics: validation, the meta channels, advice and
 * errors, exactly as Faye answers them (reference/bayeux-faye.md §1-§6).
 *
 * A transport hands over a parsed JSON value (an object, an array of them,
 * or null) and gets back, once every message is done, the reply: a JSON
 * array as a list of chunks, "[" replies..., connect reply, deliveries "]".
 * Delivered messages are the shared chunks the engine serialized once.
 */
#ifndef BX_PROTOCOL_H
#define BX_PROTOCOL_H

#include <jansson.h>
#include "base/buf.h"
#include "bayeux/hub.h"

typedef struct bx_batch_s bx_batch_t;

/* The reply is ready: `reply` holds the pieces of one JSON array (entries
 * stolen). `nmsgs` is the number of elements in it. */
typedef void (*bx_protocol_reply_cb)(void *ud, bx_chunkv_t *reply, size_t nmsgs);

#define BX_PROTO_LOCAL  1       /* an in-process client: may use /service, /meta */

/* Processes `msgs` (borrowed; its message objects are taken by reference
 * and may be changed, so the caller must not use them after the call, only
 * release them). `request` is passed to extensions (NULL for
 * in-process). `cb` is called exactly once, on a later loop turn, unless
 * the batch is canceled first. Returns the batch handle. */
bx_batch_t *bx_protocol_process(bx_hub_t *h, const json_t *msgs, void *request, int flags,
                                bx_protocol_reply_cb cb, void *ud);

/* bx_protocol_process for a request of the HTTP transports with cookie
 * binding on: `browser` (copied; "" when the request carries no cookie) is
 * the browser id of the request. A handshake binds the new client to it;
 * a connect, subscribe, unsubscribe or disconnect for a client bound to
 * another browser id is refused, 409:<clientId>:Client bound to another
 * browser. NULL: no binding, as bx_protocol_process. */
bx_batch_t *bx_protocol_process_browser(bx_hub_t *h, const json_t *msgs, void *request,
                                        int flags, const char *browser,
                                        bx_protocol_reply_cb cb, void *ud);

/* The transport went away: `cb` will not be called. A held connect is let
 * go and its undelivered messages stay queued for the next connect. */
void bx_batch_cancel(bx_batch_t *b);

/* The connection types the server lists, in Faye's order. */
extern const char *const bx_connection_types[];

/* Formats a Bayeux error "code:args:text" into `out` (size `n`). */
void bx_protocol_error(char *out, size_t n, int code, const char *args);

#endif
