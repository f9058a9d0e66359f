/*
 * wsc.h - a WebSocket client on libuv (RFC 6455, text messages), for the
 * network Bayeux client's websocket transport.
 *
 * It resolves, connects, sends the upgrade request and checks the answer
 * (101 and the Sec-WebSocket-Accept of its key); then frames go both ways
 * through wslay in client mode (outgoing frames masked). It offers
 * permessage-deflate without context takeover either way (wsdeflate.h);
 * an answer it cannot take fails the upgrade ("bad upgrade answer").
 */
#ifndef BX_WSC_H
#define BX_WSC_H

#include <stddef.h>
#include <uv.h>
#include "net/tls.h"

typedef struct bx_wsc_s bx_wsc_t;

enum { BX_WSC_OPEN, BX_WSC_MESSAGE, BX_WSC_CLOSED };

/* Events, never called inside the call that caused them:
 *   BX_WSC_OPEN      the upgrade succeeded (data NULL);
 *   BX_WSC_MESSAGE   one whole text message, data/len borrowed for the call;
 *   BX_WSC_CLOSED    the socket is gone (exactly once, also when it never
 *                    opened); data is a short reason ("refused", "closed",
 *                    "timeout", "bad upgrade answer", ...). The object is
 *                    freed after this callback returns. */
typedef void (*bx_wsc_cb)(void *ud, int event, const char *data, size_t len);

/* Opens ws://host:port/path. `headers`: extra "Name: value\r\n" lines or
 * NULL (copied). The upgrade must complete within `timeout_ms` (0: no
 * limit). Returns a new socket; cb then reports its life. */
bx_wsc_t *bx_wsc_open(uv_loop_t *loop, const char *host, int port, const char *path,
                      const char *headers, unsigned timeout_ms, bx_wsc_cb cb, void *ud);

/* bx_wsc_open for wss://host:port/path when `tls` (a client context,
 * net/tls.h; a reference is taken) is not NULL: the server's certificate
 * must name `host`. A failed handshake closes with a reason "TLS: ...". */
bx_wsc_t *bx_wsc_open_tls(uv_loop_t *loop, const char *host, int port, const char *path,
                          const char *headers, unsigned timeout_ms, bx_tls_ctx_t *tls,
                          bx_wsc_cb cb, void *ud);

/* Queues one text message (copied). Returns 0, or -1 when the socket is not
 * open (not yet, or closing). */
int bx_wsc_send(bx_wsc_t *w, const char *text, size_t len);

/* Closes (a close frame when open); BX_WSC_CLOSED follows later. After it
 * no event but BX_WSC_CLOSED is reported. Idempotent. */
void bx_wsc_close(bx_wsc_t *w);

#endif
