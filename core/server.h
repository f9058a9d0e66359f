/*
 * server.h - a Bayeux server: the composition root of the levels below.
 *
 * bx_server_new() wires engine -> hub -> router -> HTTP listener:
 *
 *   engine (engine/)      where clients, subscriptions and queues live
 *   hub (bayeux/hub.h)    sessions, the delivery pass, events, extensions
 *   router (transport/)   the mount: long-polling, WebSocket, EventSource
 *   HTTP (net/http.h)     the listener; requests outside the mount go to
 *                         the application
 *
 * and shuts them down through its list of closers, run in the order they
 * were registered: the sockets (router), the hub, the listener, the engine.
 * Everything else is done on the parts themselves: bx_server_hub() gives
 * the hub (sessions, events, extensions, deferrals).
 */
#ifndef BX_SERVER_H
#define BX_SERVER_H

#include <uv.h>
#include "bayeux/hub.h"
#include "engine/engine.h"
#include "net/http.h"

typedef struct bx_server_s bx_server_t;

typedef struct {
    const char *mount;          /* default "/bayeux"; copied */
    double timeout;             /* seconds; default 60 */
    double interval;            /* seconds advised between connects; default 0 */
    double ping;                /* seconds between socket pings; 0 = off */
    size_t queue_limit;         /* per-client queue; default 1000 */
    size_t max_frame;           /* bytes of one incoming WebSocket message;
                                   default 1 MiB; larger -> close 1009 */
    size_t max_output;          /* bytes waiting to be sent to one WebSocket or
                                   EventSource before it is dropped as a slow
                                   reader; default 4 MiB */
    size_t max_reply;           /* bytes of messages in one answer to a held
                                   /meta/connect; the rest wait for the next
                                   connect (one message always goes, whatever
                                   its size); default 1 MiB */
    size_t max_channel_length;  /* bytes of a channel name or pattern; default
                                   4096; longer -> 405 Invalid channel */
    size_t max_channel_depth;   /* segments of one; default 128; more -> 405 */
    size_t max_subscriptions;   /* channels one client may subscribe to over
                                   the network (in-process clients: no
                                   limit); default 1000; 0 = no limit; more
                                   -> 403 Too many subscriptions */
    size_t max_channels;        /* distinct channels and patterns subscribed
                                   to on this node; default 1000000; more ->
                                   403 Too many channels; 0 = no limit */
    double publish_rate;        /* publishes per second per live client over
                                   the network (no clientId or an unknown
                                   one: one shared bucket); default 0 = no
                                   limit; more -> 429 Too many publishes */
    double publish_burst;       /* publishes a client may make at once;
                                   default 0 = publish_rate (at least 1) */
    const char *const *allowed_origins; /* NULL-terminated list of origins
                                   ("https://example.com") allowed for CORS,
                                   WebSocket and JSONP; NULL = any; copied */
    int browser_cookie;         /* bind clients handshaken over the HTTP
                                   transports to a BAYEUX_BROWSER cookie */
    int deflate;                /* accept permessage-deflate (RFC 7692) on
                                   WebSockets that offer it; default 1 */
    const char *client_script;  /* file served as <mount>/client.js; copied */
    const char *metrics;        /* path answering GET with the Prometheus
                                   exposition (core/metrics.h); NULL = none;
                                   copied */
    const char *engine;         /* engine type (engine.h's factory): "memory"
                                   (default) or a Redis URL; borrowed */
    bx_http_limits_t http;      /* HTTP limits (see http.h) */
} bx_server_opts_t;

/* Fills `o` with the documented defaults. */
void bx_server_opts_default(bx_server_opts_t *o);

/* A request outside the mount: answer it with bx_http_respond(). The abort
 * callback runs instead if its connection closes first. */
typedef void (*bx_server_app_cb)(void *ud, bx_http_req_t *req);

/* Creates a server on `loop` with the memory engine. `opts` is copied; the
 * client script (opts->client_script, else the built-in one) is loaded now.
 * Returns NULL with a message in `err` (`errlen` bytes) if it cannot be. */
bx_server_t *bx_server_new(uv_loop_t *loop, const bx_server_opts_t *opts, char *err,
                           size_t errlen);

/* The options in force (borrowed; the mount without its trailing slash). */
const bx_server_opts_t *bx_server_opts(const bx_server_t *s);

/* The hub (borrowed; lives until the server is freed). */
bx_hub_t *bx_server_hub(bx_server_t *s);

/* The engine (borrowed). */
bx_engine_t *bx_server_engine(bx_server_t *s);

/* Listens for HTTP on host:port (0 = ephemeral). Returns 0 or a negative
 * libuv error. May be called once. */
int bx_server_listen(bx_server_t *s, const char *host, int port);

/* bx_server_listen; `reuseport` non-zero: with SO_REUSEPORT, so that
 * several processes (bayeux serve --workers) share the port. */
int bx_server_listen_ex(bx_server_t *s, const char *host, int port, int reuseport);

/* bx_server_listen_ex speaking HTTPS (and WSS, EventSource over TLS) with
 * the certificate of `tls` (borrowed: the listener takes a reference);
 * NULL: plain HTTP. */
int bx_server_listen_tls(bx_server_t *s, const char *host, int port, int reuseport,
                         bx_tls_ctx_t *tls);

/* The bound port, or -1. */
int bx_server_port(const bx_server_t *s);

/* Serves a stream connected already, as if the listener had accepted it
 * (net/http.h's bx_http_adopt: `tcp` from bx_malloc, stolen). The server
 * must be listening (bx_server_listen); else `tcp` is closed. */
void bx_server_adopt(bx_server_t *s, uv_tcp_t *tcp);

/* Sets the application handler (NULL: every path outside the mount
 * answers 404). */
void bx_server_on_app(bx_server_t *s, bx_server_app_cb cb, bx_server_app_cb abort_cb,
                      void *ud);

/* Sets the application's head callback (net/http.h's bx_http_head_cb, with
 * the application's `ud`): a request outside the mount may have its body
 * streamed instead of collected. NULL: every body is collected. */
void bx_server_on_app_head(bx_server_t *s, bx_http_head_cb cb);

/* Closes the server: held connects are answered, sockets closed, the
 * listener and the engine shut. `done` (may be NULL) is called once, on a
 * later loop turn, after which `s` is freed. */
void bx_server_close(bx_server_t *s, void (*done)(void *ud), void *ud);

#endif
