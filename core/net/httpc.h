/*
 * httpc.h - an HTTP/1.1 client on libuv, for the network Bayeux client.
 *
 * One bx_httpc_t talks to one origin (host, port). It keeps finished
 * connections open for the next request (keep-alive) and opens another one
 * when all are busy (a long-poll held by the server and a publish beside
 * it). Responses may be chunked or sized by Content-Length; http_parser
 * decodes both. Every request has a timeout.
 *
 * Idle kept-alive connections do not keep the loop alive (their handles are
 * unref'd): a script whose work is done ends even though they are open.
 */
#ifndef BX_HTTPC_H
#define BX_HTTPC_H

#include <stddef.h>
#include <uv.h>
#include "net/tls.h"

typedef struct bx_httpc_s bx_httpc_t;

/* The answer to one request, called exactly once, never inside
 * bx_httpc_request(). On success `err` is NULL, `status` the HTTP status and
 * body/len the decoded body (borrowed for the call). On failure `status` is
 * 0 and `err` a short message ("timeout", "connection refused", "aborted",
 * ...), borrowed for the call. */
typedef void (*bx_httpc_cb)(void *ud, int status, const char *body, size_t len,
                            const char *err);

/* A client for http://host:port. `host` is copied. Returns a new client. */
bx_httpc_t *bx_httpc_new(uv_loop_t *loop, const char *host, int port);

/* Makes the client speak https: every connection opened from now on is a
 * TLS client of `ctx` (a reference is taken), checking that the server's
 * certificate names the host. Call before the first request. */
void bx_httpc_set_tls(bx_httpc_t *h, bx_tls_ctx_t *ctx);

/* Sends one request. `path` is the request target; `headers` extra header
 * lines, each ending in "\r\n" (may be NULL); body/len the request body
 * (copied; Content-Length is added when len > 0 or the method is POST).
 * `timeout_ms` bounds the whole exchange (0: none). Returns 0 and calls cb
 * later, or -1 (client closed) and never calls it. */
int bx_httpc_request(bx_httpc_t *h, const char *method, const char *path, const char *headers,
                     const char *body, size_t len, unsigned timeout_ms, bx_httpc_cb cb, void *ud);

/* Fails every request in flight with "aborted" (on a later turn), closes the
 * connections, and frees the client once they are closed. `h` must not be
 * used afterwards. May be called from inside a request's callback. */
void bx_httpc_close(bx_httpc_t *h);

/* Connections the client has open (busy or idle), for tests. */
int bx_httpc_conn_count(const bx_httpc_t *h);

#endif
