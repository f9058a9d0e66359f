/*
 * engine.h - where Bayeux state lives: clients, subscriptions, queues.
 *
 * An engine is a struct of function pointers (Faye's engine API, nchan's
 * store vtable). The protocol validates everything before calling it.
 *
 * Callback contract (DESIGN.md "Contracts"): a function that takes a
 * callback either returns a negative error and never calls it, or returns 0
 * and calls it exactly once, on a later loop turn, never from inside the
 * call. The memory engine defers like a networked engine would, so both
 * behave the same.
 *
 * Deliveries: the engine queues each message for each recipient once (a
 * refcounted chunk serialized once per publish). When a recipient has a
 * connection on this node (proxy->has_connection), the engine tells the
 * proxy with proxy->wake(); the proxy then asks with take(), whose
 * callback, on a later turn, hands the queued messages over. What
 * the proxy took but no connection carried comes back with requeue(), in
 * front of the queue, so the client's next connection gets it in order;
 * the proxy takes again only once requeue has answered.
 *
 * Order: an engine applies calls in the order they are made (a networked
 * engine sends them down one connection), but their callbacks may come in
 * any order; a caller that needs one call's effect before the next waits
 * for its callback (the protocol chains a batch's messages so).
 *
 * The proxy's functions may be called from inside an engine call or from
 * the engine's own callbacks (a networked engine's I/O: a publish made on
 * another node wakes a client here); none of them calls the engine back
 * synchronously except has_connection's answer.
 *
 * Status codes: 0, or BX_ECANCELED (closing), BX_EUNKNOWN (no such
 * client), BX_EUNAVAILABLE (the engine cannot answer now: its store is out
 * of reach; the caller may retry later, nothing is known about the client).
 */
#ifndef BX_ENGINE_H
#define BX_ENGINE_H

#include <uv.h>
#include <jansson.h>
#include "base/buf.h"

typedef struct bx_engine_s bx_engine_t;

/* Events, as Faye emits them (reference §11.2). */
typedef enum {
    BX_EV_HANDSHAKE,    /* client_id */
    BX_EV_SUBSCRIBE,    /* client_id, channel */
    BX_EV_UNSUBSCRIBE,  /* client_id, channel */
    BX_EV_PUBLISH,      /* client_id (may be NULL), channel, data */
    BX_EV_DISCONNECT    /* client_id */
} bx_event_t;

/* What the engine needs from the server above it. All borrowed. */
typedef struct {
    void *ud;
    /* Whether `id` has a connection (held connect or socket) on this node. */
    int (*has_connection)(void *ud, const char *id);
    /* Messages are waiting for `id`: call take() soon. */
    void (*wake)(void *ud, const char *id);
    /* The client `id` was destroyed (disconnect, expiry, on any node): the
     * node holding its connection answers a held connect and closes a
     * bound socket. */
    void (*closed)(void *ud, const char *id);
    /* An event happened. `channel` and `data` may be NULL. */
    void (*trigger)(void *ud, bx_event_t ev, const char *id, const char *channel,
                    const json_t *data);
    /* Optional (NULL for none), for engines where another node takes a
     * client over (redis.c's handoff). `leave`: the client `id` moves away;
     * returns what the proxy keeps for it beside the engine's queue (an
     * unacknowledged batch, hub.c) as text (new, malloc'd, `*len` bytes),
     * or NULL for nothing, and forgets it. The engine carries the text to
     * the node taking the client over, whose `arrive` gets it (borrowed)
     * after the handed-over queue is in place and before that node's takes
     * for `id` are answered. */
    char *(*leave)(void *ud, const char *id, size_t *len);
    void (*arrive)(void *ud, const char *id, const char *state, size_t len);
} bx_proxy_t;

/* What an engine counts, as this node knows it now. */
typedef struct {
    size_t clients;             /* live clients */
    unsigned long dropped;      /* messages dropped because a queue was full */
    size_t subscriptions;       /* (client, channel) pairs */
    size_t channels;            /* channels or patterns with a subscriber */
} bx_engine_stats_t;

typedef void (*bx_engine_id_cb)(void *ud, int status, const char *client_id);
typedef void (*bx_engine_bool_cb)(void *ud, int status, int yes);
typedef void (*bx_engine_done_cb)(void *ud, int status);
/* The answer of take(): `msgs` holds the messages of `client_id`, oldest
 * first; the callback takes the entries it keeps (bx_chunkv_move), the
 * engine frees the rest after it returns. Empty on an error status. */
typedef void (*bx_engine_take_cb)(void *ud, int status, const char *client_id,
                                  bx_chunkv_t *msgs);

typedef struct {
    const char *name;
    /* Creates a client with a fresh 31-character id and pings it. */
    int (*create_client)(bx_engine_t *e, bx_engine_id_cb cb, void *ud);
    /* Whether `id` names a live client. */
    int (*client_exists)(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud);
    /* Destroys a client: unsubscribes all, drops its queue, emits
     * DISCONNECT, then calls proxy->closed. cb may be NULL. */
    int (*destroy_client)(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud);
    /* Marks `id` alive now (every connect). No callback. */
    void (*ping)(bx_engine_t *e, const char *id);
    /* Adds / removes a subscription; `yes` tells whether anything changed.
     * cb may be NULL. A subscribe that would give the client more than
     * `limit` channels (0: no limit) or the node more than
     * opts.max_channels changes nothing and answers BX_ESUBSLIMIT or
     * BX_ECHANLIMIT (a subscription the client already has is never
     * refused). The limit comes with each call, not with the client: the
     * caller knows who asks (a network session is limited, the server's
     * own in-process client is not), the engine only counts. */
    int (*subscribe)(bx_engine_t *e, const char *id, const char *channel, size_t limit,
                     bx_engine_bool_cb cb, void *ud);
    int (*unsubscribe)(bx_engine_t *e, const char *id, const char *channel,
                       bx_engine_bool_cb cb, void *ud);
    /* Publishes `message` (borrowed; the engine serializes what it keeps)
     * on its "channel", minus "clientId", to every matching client once. */
    int (*publish)(bx_engine_t *e, const json_t *message, bx_engine_done_cb cb, void *ud);
    /* Takes the queue of `id`: cb gets, on a later turn, the messages
     * queued for it (at least those queued when asked; what comes later
     * wakes the proxy again), and they leave the queue. The proxy asks for
     * the clients it holds a connection of (after a wake, or when a
     * connection arrives); BX_EUNKNOWN for an unknown client, or one
     * destroyed before the answer (then with no messages). */
    int (*take)(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud);
    /* Puts back messages that take handed over but no connection
     * sent (a reply's byte bound, a socket that went away): `msgs` (entries
     * stolen, whatever the result; the vector is left empty) go in front of
     * the queue of `id`, in order, ahead of anything queued since. The
     * queue limit holds as for a publish (the oldest are dropped and
     * counted). Like a publish it calls proxy->wake when `id` has a
     * connection here. cb (may be NULL) answers once they are back: 0, or
     * BX_EUNKNOWN for an unknown client (the messages are dropped); a take
     * made after the answer finds them. */
    int (*requeue)(bx_engine_t *e, const char *id, bx_chunkv_t *msgs, bx_engine_done_cb cb,
                   void *ud);
    /* Fills `out` with the engine's counts. No callback. */
    void (*stats)(bx_engine_t *e, bx_engine_stats_t *out);
    /* Frees the engine; pending callbacks are called with status
     * BX_ECANCELED first. `done` is called once everything is closed. */
    void (*close)(bx_engine_t *e, void (*done)(void *ud), void *ud);
    /* Channel history kept in the engine's store, shared by every process
     * (docs/delivery.md); both NULL in an engine that keeps none (with the
     * memory engine the hub keeps it, bayeux/history.c).
     * history: keeps the channels inside `pattern` as bx_history_add
     * says (the first pattern that matches decides); every publish on
     * them gets ext.history from the store. 0, or -1 when this engine
     * cannot (then nothing changed). No callback. */
    int (*history)(bx_engine_t *e, const char *pattern, size_t size, double ttl,
                   double keep);
    /* subscribe_history: subscribe, with recovery: the messages each
     * channel of `want` (borrowed; valid, as bx_history_valid) that
     * `channel` matches missed go in front of the queue of `id`, exactly
     * those published before the subscription took effect, and `answer`
     * (borrowed, an object; filled before cb) gets each channel's position
     * as the reply's ext.history. Otherwise as subscribe (`limit` too). */
    int (*subscribe_history)(bx_engine_t *e, const char *id, const char *channel,
                             size_t limit, const json_t *want, json_t *answer,
                             bx_engine_bool_cb cb, void *ud);
} bx_engine_ops_t;

struct bx_engine_s {
    const bx_engine_ops_t *ops;
    bx_proxy_t proxy;
    uv_loop_t *loop;
    double timeout;             /* seconds: liveness maths (2 x timeout) */
};

/* Status codes shared by the engines. */
#define BX_ECANCELED  (-1)      /* the engine closed before answering */
#define BX_EUNKNOWN   (-2)      /* no such client */
#define BX_EUNAVAILABLE (-3)    /* the engine cannot answer now (its store is
                                   out of reach): retry later */
#define BX_ESUBSLIMIT (-4)      /* subscribe: the client has `limit` channels */
#define BX_ECHANLIMIT (-5)      /* subscribe: the node's index has max_channels
                                   channels and this one is not among them */

/* Options every engine reads (an engine ignores what it does not use). */
typedef struct {
    double timeout;             /* seconds; a client is gone after 2 x timeout
                                   without a connect; default 60 */
    size_t queue_limit;         /* messages kept per client; 0 = default 1000 */
    size_t max_channels;        /* distinct channels and patterns subscribed
                                   to on this node; 0 = no limit; beyond:
                                   BX_ECHANLIMIT */
} bx_engine_opts_t;

/* The factory: makes an engine of `type` ("memory", or a Redis URL
 * "redis://..." / "unix://...": the Redis engine) on `loop`. `proxy` and
 * `opts` are copied. Returns NULL with a message in `err` (`errlen` bytes)
 * for an unknown type or an engine that cannot be made. */
bx_engine_t *bx_engine_new(const char *type, uv_loop_t *loop, const bx_proxy_t *proxy,
                           const bx_engine_opts_t *opts, char *err, size_t errlen);

/* ---- The shared store ----
 * The Redis engines keep clients in Redis; the layers above may keep state
 * of their own beside them there (an identity bound to a client, presence),
 * so that every process sharing the engine sees it. An optional capability
 * of those two engines, not an op every engine has: the memory engine has
 * no shared store (bx_engine_store_ns gives NULL). */

/* The answer of a store command: `reply` (borrowed, NULL unless status is
 * 0) is Redis's reply as JSON: a string, an integer, null, an array of
 * those, or {"error": "<text>"} for an error reply. status: 0,
 * BX_EUNAVAILABLE (Redis out of reach, or lost before the reply) or
 * BX_ECANCELED (the engine closed). */
typedef void (*bx_engine_store_cb)(void *ud, int status, const json_t *reply);

/* Sends one command to the engine's store (the first Redis server):
 * `argv`/`lens` borrowed, `lens` may be NULL for NUL-terminated strings.
 * Returns 0 and calls cb exactly once on a later turn; or BX_EUNAVAILABLE
 * (Redis not up now), BX_ECANCELED (closing) or BX_EUNKNOWN (no store),
 * never calling it. Commands are applied in the order they were sent. */
int bx_engine_store_call(bx_engine_t *e, int argc, const char **argv, const size_t *lens,
                         bx_engine_store_cb cb, void *ud);

/* The key namespace of the engine's store (borrowed, lives with the engine),
 * or NULL for an engine without one. *faye (may be NULL) is set to 1 for
 * faye-redis's layout (NS/clients/<id>/...), 0 for the native one
 * (NS/c/<id>/...). */
const char *bx_engine_store_ns(bx_engine_t *e, int *faye);

/* Fills `out` (32 bytes) with a fresh 31-character [0-9a-z] id from the
 * kernel's CSPRNG, NUL-terminated. */
void bx_engine_random_id(char out[32]);

#endif
