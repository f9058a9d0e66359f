/*
 * http.h - HTTP/1.1 server on libuv and http-parser.
 *
 * Keep-alive, pipelined requests answered strictly in order (a request whose
 * response is not ready holds back the responses of the requests after it),
 * chunked request bodies, and limits:
 *   - a body larger than max_body       -> 413, connection closed
 *   - headers larger than max_header    -> 431, connection closed
 *   - a malformed request               -> 400, connection closed; the
 *     request head is read strictly (RFC 9112): a bare LF, an obs-folded
 *     line, a blank or other non-token byte in a field name (as in
 *     "Content-Length : 2"), a control byte -> 400
 *   - a request head not complete head_timeout after its first byte, or a
 *     body not complete body_timeout after its head -> 408, closed (closed
 *     silently if earlier answers are still owed)
 *   - no request in progress and no answer owed for idle_timeout
 *     -> the connection is closed silently
 *   - at max_conns connections, a new one sheds the oldest idle one, else
 *     the oldest with an unfinished head, else the oldest unfinished body;
 *     only with none of those is the new one closed at once
 *   - at max_conns_per_addr connections from one IP address (hijacked ones
 *     count until they close), a new one from it is answered 429 and closed
 *
 * A request is handed to the application once it is complete (headers and
 * the whole body). The application answers with bx_http_respond(), now or
 * later (a held long-poll). If the connection dies before that, the abort
 * callback runs once and the request is freed afterwards. A head callback
 * may instead take a body as a stream, as it arrives (an upload written to
 * disk), with its own limit in place of max_body.
 */
#ifndef BX_HTTP_H
#define BX_HTTP_H

#include <time.h>
#include <uv.h>
#include "base/buf.h"
#include "net/conn.h"

typedef struct bx_http_server_s bx_http_server_t;
typedef struct bx_http_req_s bx_http_req_t;

typedef struct {
    bx_str_t name;      /* as received (compare case-insensitively) */
    bx_str_t value;     /* leading/trailing blanks trimmed */
} bx_http_header_t;

struct bx_http_req_s {
    /* read-only, valid until the request is answered or aborted */
    const char *method;         /* "GET", "POST", ... */
    bx_str_t url;               /* raw request target, e.g. "/faye/x?a=1" */
    bx_str_t path;              /* target up to '?', not percent-decoded */
    bx_str_t query;             /* after '?', empty if none */
    bx_http_header_t *headers;
    size_t nheaders;
    bx_buf_t body;              /* decoded (de-chunked) body */
    int http_minor;             /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    int upgrade;                /* an Upgrade request (e.g. WebSocket) */
    const char *remote_addr;    /* peer IP, borrowed */
    uint64_t serial;            /* unique per request for the process's life:
                                   tells requests apart where a pointer may be
                                   reused (a cache keyed by request) */

    /* free for the application */
    void *data;
};

typedef struct {
    size_t max_body;            /* bytes; default 1 MiB */
    size_t max_header;          /* bytes of request line + headers; default 16 KiB */
    double idle_timeout;        /* seconds; default 120 */
    double head_timeout;        /* seconds from a head's first byte; default 30 */
    double body_timeout;        /* seconds from the end of the head; default 60 */
    unsigned max_conns;         /* default 10000 */
    int access_log;             /* not a limit: 1 = one log line per answer
                                   (base/log.h, component "access"); 0 */
    unsigned max_conns_per_addr;/* connections from one IP address, upgraded
                                   ones (WebSocket, EventSource) included;
                                   0 (default) = no limit; beyond: 429 and
                                   closed */
} bx_http_limits_t;

/* Fills `l` with the documented defaults. */
void bx_http_limits_default(bx_http_limits_t *l);

/* A complete request arrived. The request is borrowed; answer it with
 * bx_http_respond() (now or later) or take the connection over with
 * bx_http_hijack(). */
typedef void (*bx_http_request_cb)(void *ud, bx_http_req_t *req);

/* A body handed over as it arrives, instead of collected (see
 * bx_http_head_cb). */
typedef struct {
    /* The next `len` bytes of the (de-chunked) body. Returns 0,
     * BX_HTTP_BODY_PAUSE to stop reading the connection (what was already
     * read is still passed on) until bx_http_body_resume(), or an HTTP
     * status >= 400 that refuses the request: it is answered with that
     * status and the connection is closed. */
    int (*data)(void *ud, const char *data, size_t len);
    /* The request ended before it was handed to on_request (refused, or
     * its connection closed): the reader frees what it holds. Not called
     * once the request was handed over (the abort callback is then called
     * as for any request). Called outside the data callback. */
    void (*gone)(void *ud);
    void *ud;
} bx_http_body_t;

#define BX_HTTP_BODY_PAUSE 1

/* The head of a request with a body arrived (its headers, method, path and
 * remote address are set; the body is not). Returns 0 to have the body
 * collected into req->body (max_body applies), 1 to receive it through
 * *body as it arrives (max_body does not apply: the reader limits it; the
 * request is handed to on_request with an empty body once the body ended),
 * or an HTTP status >= 400 to refuse the request at once. Must not answer
 * the request. */
typedef int (*bx_http_head_cb)(void *ud, bx_http_req_t *req, bx_http_body_t *body);

/* The connection of an unanswered request closed. After this returns the
 * request is freed; it must not be answered. Called at most once per
 * request, never from inside a bx_http_* call. */
typedef void (*bx_http_abort_cb)(void *ud, bx_http_req_t *req);

/* Creates a server. Nothing listens until bx_http_listen(). `limits` is
 * copied; NULL means defaults. */
bx_http_server_t *bx_http_server_new(uv_loop_t *loop, const bx_http_limits_t *limits,
                                     bx_http_request_cb on_request, bx_http_abort_cb on_abort,
                                     void *ud);

/* Sets the head callback (NULL: every body is collected). */
void bx_http_server_on_head(bx_http_server_t *s, bx_http_head_cb on_head);

/* Reads the connection of a streamed body again after its data callback
 * answered BX_HTTP_BODY_PAUSE. Harmless once the body has ended. */
void bx_http_body_resume(bx_http_req_t *req);

/* Makes the server speak HTTPS: every connection accepted from now on is
 * the server side of a TLS session of `ctx` (a reference is taken; NULL
 * goes back to plain HTTP). Call before bx_http_listen. */
void bx_http_server_set_tls(bx_http_server_t *s, bx_tls_ctx_t *ctx);

/* Binds and listens on host:port (port 0 = ephemeral). Returns 0 or a
 * negative libuv error (e.g. UV_EADDRINUSE). */
int bx_http_listen(bx_http_server_t *s, const char *host, int port);

/* bx_http_listen, and with `reuseport` non-zero the socket has
 * SO_REUSEPORT: other processes may listen on the same port (same user)
 * and the kernel spreads the connections over them. */
int bx_http_listen_ex(bx_http_server_t *s, const char *host, int port, int reuseport);

/* Serves `tcp`, a stream connected already (accepted elsewhere, or one end
 * of a socketpair opened with uv_tcp_open: the fuzz targets drive the
 * server so, without a TCP handshake per input), as if it had just been
 * accepted: the per-address and max_conns checks apply. `tcp` must come
 * from bx_malloc and be initialised on the server's loop; it is stolen
 * (closed and freed with its connection, or at once if the server is
 * closing). */
void bx_http_adopt(bx_http_server_t *s, uv_tcp_t *tcp);

/* The port actually bound (useful with port 0), or -1 if not listening. */
int bx_http_port(const bx_http_server_t *s);

/* Stops listening and closes every connection; unanswered requests get
 * their abort callback. The server is freed once all handles are closed;
 * `done` (may be NULL) is then called exactly once, on a later loop turn. */
void bx_http_server_close(bx_http_server_t *s, void (*done)(void *ud), void *ud);

/* Looks up a header by name, case-insensitively. Returns NULL if absent;
 * the value is borrowed from `req`. */
const bx_str_t *bx_http_header(const bx_http_req_t *req, const char *name);

/* Response flags. */
#define BX_HTTP_CLOSE   1   /* close the connection after this response */

/* Answers `req`. `status` is the HTTP status; `headers` is zero or more
 * "Name: value\r\n" lines (borrowed, copied); `body` entries are stolen (the
 * vector is left empty; NULL means no body). The layer adds the status line,
 * Content-Length, Date and Connection headers. After this call `req` belongs
 * to the layer again and must not be used. */
void bx_http_respond(bx_http_req_t *req, int status, const char *headers, bx_chunkv_t *body,
                     int flags);

/* Answers `req` with the contents of the regular file at `path` (copied),
 * read with uv_fs_* in chunks no faster than the connection drains, so the
 * loop never waits for the disk and memory stays bounded whatever the
 * file's size. Content-Length is the file's size once opened; a HEAD request
 * opens and stats the file but reads nothing. `status` and `headers` as for
 * bx_http_respond; when the file cannot be opened they are dropped and the
 * answer is 404 (missing), 403 (not readable) or 500, in plain text. A file
 * that shrinks while it is sent cuts the connection (the length was
 * promised). After this call `req` belongs to the layer again. */
void bx_http_respond_file(bx_http_req_t *req, int status, const char *headers,
                          const char *path, int flags);

/* Convenience: answers with a plain-text body (copied). */
void bx_http_respond_text(bx_http_req_t *req, int status, const char *content_type,
                          const char *text, int flags);

/* Takes the connection over from HTTP (WebSocket upgrade, EventSource).
 * Only valid on the oldest unanswered request of its connection. On success
 * *req is replaced by a compact copy of the request (new: method, url,
 * headers, peer address, serial and data; no body) which stays valid until
 * bx_http_hijack_done(), and the original is freed: it must not be answered
 * any more. From now on the caller owns the connection: its callbacks are
 * replaced by the given ones and any bytes already read past the request are
 * handed to `on_read` on a later loop turn. On failure (NULL) *req is left
 * as it was, still to be answered. */
bx_conn_t *bx_http_hijack(bx_http_req_t **req, bx_conn_read_cb on_read,
                          bx_conn_close_cb on_close, void *ud);

/* Frees a hijacked request (the copy bx_http_hijack() gave). */
void bx_http_hijack_done(bx_http_req_t *req);

/* The value of cookie `name` in the request's Cookie headers (every
 * occurrence; "a=1; b=2"), borrowed from `req` with its length in *len, or
 * NULL if it is not there. */
const char *bx_http_cookie(const bx_http_req_t *req, const char *name, size_t *len);

/* Whether a header `name` of `req` (every occurrence) lists `token` among
 * its comma-separated elements, compared whole and case-insensitively:
 * "Connection: keep-alive, Upgrade" has "upgrade"; "Accept:
 * text/event-streaming" does not have "text/event-stream". */
int bx_http_header_has(const bx_http_req_t *req, const char *name, const char *token);

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 5.6.7) is
 * this long, its NUL included. */
#define BX_HTTP_DATE_SIZE 30

/* Writes `t` (seconds since the epoch, UTC) as an IMF-fixdate into `out`.
 * Built by hand: the C locale an embedding program sets (LC_TIME) cannot
 * change the day and month names, as it does for strftime. */
void bx_http_date_format(time_t t, char out[BX_HTTP_DATE_SIZE]);

/* Parses an IMF-fixdate of `len` bytes (nothing else is accepted, as the
 * obsolete forms are not used by clients that matter). Returns 0 and sets
 * *t, or -1. */
int bx_http_date_parse(const char *s, size_t len, time_t *t);

/* The standard reason phrase for a status ("OK", "Not Found", ...). */
const char *bx_http_reason(int status);

#endif
