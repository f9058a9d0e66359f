/*
 * server.h - a Bayeux server: options, the engine, local sessions and the
 * per-iteration delivery pass, the HTTP listener and its routing.
 *
 * This is the "proxy" between the protocol and the engine (Faye's
 * engines/proxy.js): the engine says which client has messages; the server
 * knows which clients have a connection here (a held /meta/connect or a
 * bound socket) and, once per loop iteration (a uv_check pass after I/O),
 * hands each of them everything pending in one go.
 */
#ifndef BX_SERVER_H
#define BX_SERVER_H

#include <uv.h>
#include <jansson.h>
#include "base/buf.h"
#include "engine/engine.h"
#include "net/http.h"
#include "base/timeouts.h"

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
    const char *client_script;  /* file served as <mount>/client.js; copied */
    bx_http_limits_t http;      /* HTTP limits (see http.h) */
} bx_server_opts_t;

/* Fills `o` with the documented defaults. */
void bx_server_opts_default(bx_server_opts_t *o);

/* A held /meta/connect waiting for messages. `release` ends the hold:
 * `msgs` holds the messages to answer with (entries stolen; may be empty).
 * Called at most once per hold, from the delivery pass or from a session
 * ending, never from inside bx_session_hold(). */
typedef struct bx_waiter_s {
    void (*release)(struct bx_waiter_s *w, bx_chunkv_t *msgs);
    void *request;              /* borrowed: the HTTP request holding it, shown
                                   to outgoing extensions on deliveries; NULL
                                   for none; valid while held */
} bx_waiter_t;

/* A socket-like consumer bound to a session (WebSocket, EventSource, an
 * in-process client). `push` gets every delivery batch and takes its
 * entries (stolen); a sink that can no longer write them (its socket is
 * closing, or too slow and dropped just now) leaves them all in `msgs`:
 * the server then unbinds it at once, answers the client's held connect
 * (empty) and gives the messages back to the client's queue for its next
 * connection. `close` is called once when the session is destroyed. */
typedef struct bx_sink_s {
    void (*push)(struct bx_sink_s *sink, bx_chunkv_t *msgs);
    void (*close)(struct bx_sink_s *sink);
    int keepalive;              /* the server pings the client (in-process);
                                   read when the sink is bound */
    void *request;              /* borrowed: the upgrade or stream request, as
                                   for bx_waiter_t; valid while bound */
} bx_sink_t;

/* Event listener: called on a later loop turn than the event, in order.
 * Arguments are borrowed for the duration of the call. */
typedef void (*bx_server_event_cb)(void *ud, bx_event_t ev, const char *client_id,
                                   const char *channel, const json_t *data);

/* A request outside the mount: answer it with bx_http_respond(). The abort
 * callback runs instead if its connection closes first. */
typedef void (*bx_server_app_cb)(void *ud, bx_http_req_t *req);

/* Creates a server on `loop` with the memory engine. `opts` is copied; the
 * client script (opts->client_script, else the built-in one) is loaded now.
 * Returns NULL with a message in `err` (`errlen` bytes) if it cannot be. */
bx_server_t *bx_server_new(uv_loop_t *loop, const bx_server_opts_t *opts, char *err,
                           size_t errlen);

struct bx_script_s;
/* The client script served at <mount>/client.js (borrowed). */
const struct bx_script_s *bx_server_script(const bx_server_t *s);

/* The options in force (borrowed). */
const bx_server_opts_t *bx_server_opts(const bx_server_t *s);

/* The engine (borrowed). */
bx_engine_t *bx_server_engine(bx_server_t *s);

/* The loop (borrowed). */
uv_loop_t *bx_server_loop(bx_server_t *s);

/* The deadlines of held connects (borrowed; closed with the server). */
bx_timeouts_t *bx_server_timeouts(bx_server_t *s);

/* Listens for HTTP on host:port (0 = ephemeral). Returns 0 or a negative
 * libuv error. May be called once. */
int bx_server_listen(bx_server_t *s, const char *host, int port);

/* The bound port, or -1. */
int bx_server_port(const bx_server_t *s);

/* Sets the event listener and the application handler (either may be
 * NULL; without an application every other path answers 404). `mask` picks
 * the events the listener gets, bit (1 << ev) each: the others cost nothing
 * (a publish's data is copied only when someone listens to publishes). */
void bx_server_on_event(bx_server_t *s, bx_server_event_cb cb, void *ud, unsigned mask);
void bx_server_on_app(bx_server_t *s, bx_server_app_cb cb, bx_server_app_cb abort_cb,
                      void *ud);

/* Closes the server: held connects are answered, sockets closed, the
 * listener and the engine shut. `done` (may be NULL) is called once, on a
 * later loop turn, after which `s` is freed. */
void bx_server_close(bx_server_t *s, void (*done)(void *ud), void *ud);

/* Number of clients with a held connect or a bound socket here (kept as
 * a count: O(1)). */
size_t bx_server_connected(const bx_server_t *s);

/* Whether bx_server_close has been called. */
int bx_server_closing(const bx_server_t *s);

/* Calls fn(ud) once on a later loop turn (before the next poll). */
void bx_server_defer(bx_server_t *s, void (*fn)(void *ud), void *ud);

/* Extension hooks (the Lua layer installs them). Each gets a message (a new
 * reference it must pass on or drop) and calls `next` exactly once, never
 * inside the hook call itself, with the message to continue with (stolen)
 * or NULL to drop it. `request` is the transport's bx_http_req_t or NULL
 * (in-process clients, deliveries). `abandon` is called when the server
 * starts closing, after which no hook is called: inside it, the extension
 * layer queues with bx_server_defer the `next(next_ud, NULL)` of every
 * message it still holds (such calls run before the server's own close
 * steps, so ops and batches complete and are freed); a hook's later
 * callbacks are ignored. */
typedef void (*bx_ext_next_cb)(void *next_ud, json_t *msg);
typedef void (*bx_ext_hook)(void *ud, json_t *msg, void *request, bx_ext_next_cb next,
                            void *next_ud);
void bx_server_set_extensions(bx_server_t *s, bx_ext_hook incoming, bx_ext_hook outgoing,
                              void (*abandon)(void *ud), void *ud);
/* The installed hooks (NULL when none: the fast path). */
bx_ext_hook bx_server_incoming(const bx_server_t *s, void **ud);
bx_ext_hook bx_server_outgoing(const bx_server_t *s, void **ud);

/* ---- Sessions (used by the protocol and the transports) ---- */

/* Registers `w` as the held connect of `id`, pulling queued messages. An
 * older held connect of the same client is released at once (empty), on
 * this call's delivery pass. */
void bx_session_hold(bx_server_t *s, const char *id, bx_waiter_t *w);

/* Releases the held connect of `id` on the next delivery pass, with
 * whatever is queued by then (a connect with timeout 0). */
void bx_session_release_soon(bx_server_t *s, const char *id);

/* Forgets `w` without releasing it (its transport went away or it timed
 * out and will answer by itself). Undelivered messages stay queued. */
void bx_session_unhold(bx_server_t *s, const char *id, bx_waiter_t *w);

/* Binds / unbinds a sink to `id`. Binding replaces (and closes) any
 * earlier sink of that client. */
void bx_session_bind(bx_server_t *s, const char *id, bx_sink_t *sink);
void bx_session_unbind(bx_server_t *s, const char *id, bx_sink_t *sink);

/* Whether `id` currently has a sink bound here. */
int bx_session_has_sink(bx_server_t *s, const char *id);

/* Gives back messages a held connect was answered with but its connection
 * never sent (it went away first): `msgs` (entries stolen) go in front of
 * the queue of `id`, in order, ahead of newer ones (engine requeue). Dropped
 * once the server is closing. */
void bx_session_give_back(bx_server_t *s, const char *id, bx_chunkv_t *msgs);

/* Number of sessions: clients this server holds a connection or messages
 * for. */
size_t bx_server_sessions(const bx_server_t *s);

#endif
