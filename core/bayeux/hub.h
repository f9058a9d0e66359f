/*
 * hub.h - the session hub: the "proxy" between the protocol and the engine
 * (Faye's engines/proxy.js), and the per-iteration delivery pass.
 *
 * The engine says which client has messages; the hub knows which clients
 * have a connection here (a held /meta/connect or a bound socket, both
 * registered by the transports above) and, once per loop iteration (an
 * entry of the later-turn queue, base/later.h, run before the next poll),
 * hands each of them everything pending in one go. It also runs the event
 * queue and the extension hooks installed from above.
 *
 * The hub knows nothing of HTTP or of the transports: they reach it through
 * bx_session_*() and it reaches them only through the function pointers of
 * bx_waiter_t and bx_sink_t.
 */
#ifndef BX_HUB_H
#define BX_HUB_H

#include <uv.h>
#include <jansson.h>
#include "base/buf.h"
#include "base/timeouts.h"
#include "engine/engine.h"

typedef struct bx_hub_s bx_hub_t;

/* The Bayeux options of a hub (the server's options pick them). */
typedef struct {
    double timeout;             /* seconds; default 60 */
    double interval;            /* seconds advised between connects; default 0 */
    size_t max_reply;           /* bytes of messages in one answer to a held
                                   /meta/connect; the rest wait for the next
                                   connect (one message always goes, whatever
                                   its size) */
    size_t max_channel_length;  /* bytes of a channel name or pattern; longer
                                   -> 405 Invalid channel */
    size_t max_channel_depth;   /* segments of one; more -> 405 */
    double publish_rate;        /* publishes per second one client may make
                                   over the network (a token bucket; the
                                   protocol keys it by live client id, ""
                                   for the rest); 0 = no limit */
    double publish_burst;       /* the bucket's size; 0 = one second's worth
                                   (at least 1) */
    size_t max_subscriptions;   /* channels one client may subscribe to over
                                   the network (the engine counts; in-process
                                   subscribes are not limited); 0 = no limit */
} bx_hub_opts_t;

struct bx_waiter_s;

/* What a kind of held connect does; one static table per kind (a pointer
 * in each waiter, which an idle client's held connect embeds). */
typedef struct {
    /* Ends the hold: `msgs` holds the messages to answer with (entries
     * stolen; may be empty). Called at most once per hold, from the
     * delivery pass or from a session ending, never from inside
     * bx_session_hold(). */
    void (*release)(struct bx_waiter_s *w, bx_chunkv_t *msgs);
    /* Borrowed: the HTTP request holding it, shown to outgoing extensions
     * on deliveries; NULL for none. May be NULL itself (none). */
    void *(*request)(struct bx_waiter_s *w);
} bx_waiter_ops_t;

/* A held /meta/connect waiting for messages. */
typedef struct bx_waiter_s {
    const bx_waiter_ops_t *ops; /* borrowed, static */
    int64_t ack;                /* acknowledged delivery (docs/delivery.md):
                                   the ext.ack id the connect carried, -1 for
                                   none; read by the hub while held */
    int64_t batch;              /* set by the hub: the ext.ack id its answer
                                   carries, -1 for none (a client that did
                                   not negotiate acknowledgements) */
} bx_waiter_t;

/* A socket-like consumer bound to a session (WebSocket, EventSource, an
 * in-process client). `push` gets every delivery batch and takes its
 * entries (stolen); a sink that can no longer write them (its socket is
 * closing, or too slow and dropped just now) leaves them all in `msgs`:
 * the hub then unbinds it at once, answers the client's held connect
 * (empty) and gives the messages back to the client's queue for its next
 * connection. `close` is called once when the session is destroyed. */
typedef struct bx_sink_s {
    void (*push)(struct bx_sink_s *sink, bx_chunkv_t *msgs);
    void (*close)(struct bx_sink_s *sink);
    int keepalive;              /* the hub pings the client (in-process);
                                   read when the sink is bound */
    void *request;              /* borrowed: the upgrade or stream request, as
                                   for bx_waiter_t; valid while bound */
} bx_sink_t;

/* Event listener: called on a later loop turn than the event, in order.
 * Arguments are borrowed for the duration of the call. */
typedef void (*bx_hub_event_cb)(void *ud, bx_event_t ev, const char *client_id,
                                const char *channel, const json_t *data);

/* Creates a hub on `loop` (`opts` copied). It has no engine until
 * bx_hub_attach(): the engine is made with bx_hub_proxy() first. */
bx_hub_t *bx_hub_new(uv_loop_t *loop, const bx_hub_opts_t *opts);

/* What the engine calls back (ud is the hub). */
bx_proxy_t bx_hub_proxy(bx_hub_t *h);

/* Sets the engine (borrowed: its owner closes it after the hub). */
void bx_hub_attach(bx_hub_t *h, bx_engine_t *engine);

/* The options in force (borrowed). */
const bx_hub_opts_t *bx_hub_opts(const bx_hub_t *h);

/* The engine (borrowed). */
bx_engine_t *bx_hub_engine(bx_hub_t *h);

/* The loop (borrowed). */
uv_loop_t *bx_hub_loop(bx_hub_t *h);

/* The deadlines of held connects (borrowed; closed with the hub). */
bx_timeouts_t *bx_hub_timeouts(bx_hub_t *h);

/* Sets the event listener (NULL for none). `mask` picks the events it gets,
 * bit (1 << ev) each: the others cost nothing (a publish's data is copied
 * only when someone listens to publishes). */
void bx_hub_on_event(bx_hub_t *h, bx_hub_event_cb cb, void *ud, unsigned mask);

/* Handshake listener: called when a handshake made a client, with the
 * handshake message as it left the incoming extensions (borrowed) and the
 * new id, before the reply goes out, so that what an extension decided
 * about the client (an identity) is in place when its next message comes.
 * Never called inside bx_protocol_process (the engine answers later). */
typedef void (*bx_hub_handshake_cb)(void *ud, const char *client_id, const json_t *msg);

/* Sets the handshake listener (NULL for none). */
void bx_hub_on_handshake(bx_hub_t *h, bx_hub_handshake_cb cb, void *ud);

/* Handshake hold: called after the listener, with the same arguments and
 * a continuation. Returns 1 when it keeps the reply back until it calls
 * resume(resume_ud) (exactly once, on a later turn: an identity being
 * written to the engine's shared store, so that a process serving the
 * client's next message finds it), 0 when the reply may go now. */
typedef int (*bx_hub_hold_cb)(void *ud, const char *client_id, const json_t *msg,
                              void (*resume)(void *resume_ud), void *resume_ud);

/* Sets the handshake hold (NULL for none). */
void bx_hub_on_handshake_hold(bx_hub_t *h, bx_hub_hold_cb cb, void *ud);

/* The protocol reports a handshake that made client `id` (see above).
 * Returns 1 when the hold keeps the reply: resume(resume_ud) comes later. */
int bx_hub_handshaken(bx_hub_t *h, const char *id, const json_t *msg,
                      void (*resume)(void *resume_ud), void *resume_ud);

/* Number of clients with a held connect or a bound socket here (kept as
 * a count: O(1)). */
size_t bx_hub_connected(const bx_hub_t *h);

/* Number of sessions: clients this hub holds a connection or messages
 * for, and those that negotiated acknowledged delivery here (their state
 * lives as long as the client). */
size_t bx_hub_sessions(const bx_hub_t *h);

/* Whether the hub is closing (bx_hub_close_begin was called). */
int bx_hub_closing(const bx_hub_t *h);

/* Calls fn(ud) once on a later loop turn (before the next poll), through
 * the loop's later-turn queue (base/later.h), in the order queued; calls
 * not run yet when the hub is freed are dropped. */
void bx_hub_defer(bx_hub_t *h, void (*fn)(void *ud), void *ud);

/* First stage of closing: extensions abandoned, every held connect
 * answered now with what it has (so the answers reach the sockets before
 * they close); no new hold or delivery after it. */
void bx_hub_close_begin(bx_hub_t *h);

/* Second stage (a closer of the server): held connects still there are
 * answered, sinks closed, sessions freed, the hub's handles closed. Returns
 * 1 and calls done(ud) once, on a later loop turn, when they are. The hub
 * is then inert until bx_hub_free. */
int bx_hub_close(bx_hub_t *h, void (*done)(void *ud), void *ud);

/* Frees a closed hub (NULL is ok). */
void bx_hub_free(bx_hub_t *h);

/* One object that lives as long as the hub, for a part above it that keeps
 * Bayeux state beside the sessions (retain.c): `free_fn(p)` runs when the
 * hub is freed. bx_hub_store is NULL until set. */
void bx_hub_set_store(bx_hub_t *h, void *p, void (*free_fn)(void *p));
void *bx_hub_store(bx_hub_t *h);

/* The same for channel history (history.c): NULL until set, which is the
 * fast path's test (no history configured, nothing else is looked at). */
void bx_hub_set_history(bx_hub_t *h, void *p, void (*free_fn)(void *p));
void *bx_hub_history(const bx_hub_t *h);

/* Extension hooks (the Lua layer installs them). Each gets a message (a new
 * reference it must pass on or drop) and calls `next` exactly once, never
 * inside the hook call itself, with the message to continue with (stolen)
 * or NULL to drop it. `request` is the transport's bx_http_req_t or NULL
 * (in-process clients, deliveries). `abandon` is called when the hub
 * starts closing, after which no hook is called: inside it, the extension
 * layer queues with bx_hub_defer the `next(next_ud, NULL)` of every
 * message it still holds (such calls run before the hub's own close
 * steps, so ops and batches complete and are freed); a hook's later
 * callbacks are ignored. */
typedef void (*bx_ext_next_cb)(void *next_ud, json_t *msg);
typedef void (*bx_ext_hook)(void *ud, json_t *msg, void *request, bx_ext_next_cb next,
                            void *next_ud);
void bx_hub_set_extensions(bx_hub_t *h, bx_ext_hook incoming, bx_ext_hook outgoing,
                           void (*abandon)(void *ud), void *ud);
/* The installed hooks (NULL when none: the fast path). */
bx_ext_hook bx_hub_incoming(const bx_hub_t *h, void **ud);
bx_ext_hook bx_hub_outgoing(const bx_hub_t *h, void **ud);

/* Takes a token from the publish bucket of `key` (`len` bytes: a client
 * id, or "" for publishes that name none). Returns 1 if the publish may
 * go, 0 if the bucket is empty; always 1 when opts.publish_rate is 0.
 * Buckets that have refilled are forgotten, so keys a client invents cost
 * memory only while they are in use. */
int bx_hub_publish_allowed(bx_hub_t *h, const char *key, size_t len);

/* ---- Browser binding (the opt-in cookie of the HTTP transports) ---- */

/* Binds client `id` to the browser id `browser` (copied): the session of
 * the cookie that handshook it. Forgotten when the client is destroyed. */
void bx_session_set_browser(bx_hub_t *h, const char *id, const char *browser);

/* The browser id `id` is bound to (borrowed, valid until the client is
 * destroyed), or NULL if it was not handshaken with one on this node. */
const char *bx_session_browser(bx_hub_t *h, const char *id);

/* ---- Sessions (the protocol and the transports register here) ---- */

/* Registers `w` as the held connect of `id`, pulling queued messages. An
 * older held connect of the same client is released at once (empty), on
 * this call's delivery pass. */
void bx_session_hold(bx_hub_t *s, const char *id, bx_waiter_t *w);

/* Releases the held connect of `id` on the next delivery pass, with
 * whatever is queued by then (a connect with timeout 0). */
void bx_session_release_soon(bx_hub_t *s, const char *id);

/* Forgets `w` without releasing it (its transport went away or it timed
 * out and will answer by itself). Undelivered messages stay queued. */
void bx_session_unhold(bx_hub_t *s, const char *id, bx_waiter_t *w);

/* Binds / unbinds a sink to `id`. Binding replaces (and closes) any
 * earlier sink of that client. */
void bx_session_bind(bx_hub_t *s, const char *id, bx_sink_t *sink);
void bx_session_unbind(bx_hub_t *s, const char *id, bx_sink_t *sink);

/* Whether `id` currently has a sink bound here. */
int bx_session_has_sink(bx_hub_t *s, const char *id);

/* Client `id` negotiated acknowledged delivery (ext.ack at handshake):
 * from now on its messages go only in answers to its connects, each batch
 * kept until a later connect acknowledges it (docs/delivery.md). The state
 * lives until the client is destroyed. */
void bx_session_ack_enable(bx_hub_t *s, const char *id);

/* Number of clients here that negotiated acknowledged delivery (O(1)). */
size_t bx_hub_acks(const bx_hub_t *h);

/* Gives back messages a held connect was answered with but its connection
 * never sent (it went away first): `msgs` (entries stolen) go in front of
 * the queue of `id`, in order, ahead of newer ones (engine requeue). Dropped
 * once the hub is closing. */
void bx_session_give_back(bx_hub_t *s, const char *id, bx_chunkv_t *msgs);

#endif
