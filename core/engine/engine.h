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
 * proxy with proxy->wake(); the proxy later calls empty_queue(), and the
 * engine hands the queued chunks over with proxy->deliver(). What the
 * server took but no connection carried comes back with requeue(), in
 * front of the queue, so the client's next connection gets it in order.
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
    BX_EV_DISCONNECT,   /* client_id */
    BX_EV_CLOSE         /* client_id: destroyed; drop its connection (internal) */
} bx_event_t;

/* What the engine needs from the server above it. All borrowed. */
typedef struct {
    void *ud;
    /* Whether `id` has a connection (held connect or socket) on this node. */
    int (*has_connection)(void *ud, const char *id);
    /* Messages are waiting for `id`: call empty_queue soon. */
    void (*wake)(void *ud, const char *id);
    /* Hands queued messages to the connection of `id`. Steals the entries
     * of `msgs`. */
    void (*deliver)(void *ud, const char *id, bx_chunkv_t *msgs);
    /* An event happened. `channel` and `data` may be NULL. */
    void (*trigger)(void *ud, bx_event_t ev, const char *id, const char *channel,
                    const json_t *data);
} bx_proxy_t;

/* What an engine counts, as this node knows it now. */
typedef struct {
    size_t clients;             /* live clients */
    unsigned long dropped;      /* messages dropped because a queue was full */
} bx_engine_stats_t;

typedef void (*bx_engine_id_cb)(void *ud, int status, const char *client_id);
typedef void (*bx_engine_bool_cb)(void *ud, int status, int yes);
typedef void (*bx_engine_done_cb)(void *ud, int status);

typedef struct {
    const char *name;
    /* Creates a client with a fresh 31-character id and pings it. */
    int (*create_client)(bx_engine_t *e, bx_engine_id_cb cb, void *ud);
    /* Whether `id` names a live client. */
    int (*client_exists)(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud);
    /* Destroys a client: unsubscribes all, drops its queue, emits
     * DISCONNECT then CLOSE. cb may be NULL. */
    int (*destroy_client)(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud);
    /* Marks `id` alive now (every connect). No callback. */
    void (*ping)(bx_engine_t *e, const char *id);
    /* Adds / removes a subscription; `yes` tells whether anything changed.
     * cb may be NULL. */
    int (*subscribe)(bx_engine_t *e, const char *id, const char *channel,
                     bx_engine_bool_cb cb, void *ud);
    int (*unsubscribe)(bx_engine_t *e, const char *id, const char *channel,
                       bx_engine_bool_cb cb, void *ud);
    /* Publishes `message` (borrowed; the engine serializes what it keeps)
     * on its "channel", minus "clientId", to every matching client once. */
    int (*publish)(bx_engine_t *e, const json_t *message, bx_engine_done_cb cb, void *ud);
    /* Hands the queue of `id` to proxy->deliver, if it has a connection. */
    void (*empty_queue)(bx_engine_t *e, const char *id);
    /* Puts back messages that empty_queue handed over but no connection
     * sent (a reply's byte bound, a socket that went away): `msgs` (entries
     * stolen; the vector is left empty) go in front of the queue of `id`, in
     * order, ahead of anything queued since. The queue limit holds as for a
     * publish (the oldest are dropped and counted). Nothing happens for an
     * unknown client. Like a publish it calls proxy->wake when `id` has a
     * connection here. No callback. */
    void (*requeue)(bx_engine_t *e, const char *id, bx_chunkv_t *msgs);
    /* Fills `out` with the engine's counts. No callback. */
    void (*stats)(bx_engine_t *e, bx_engine_stats_t *out);
    /* Frees the engine; pending callbacks are called with status
     * BX_ECANCELED first. `done` is called once everything is closed. */
    void (*close)(bx_engine_t *e, void (*done)(void *ud), void *ud);
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

/* Options every engine reads (an engine ignores what it does not use). */
typedef struct {
    double timeout;             /* seconds; a client is gone after 2 x timeout
                                   without a connect; default 60 */
    size_t queue_limit;         /* messages kept per client; 0 = default 1000 */
} bx_engine_opts_t;

/* The factory: makes an engine of `type` ("memory") on `loop`. `proxy` and
 * `opts` are copied. Returns NULL with a message in `err` (`errlen` bytes)
 * for an unknown type or an engine that cannot be made. */
bx_engine_t *bx_engine_new(const char *type, uv_loop_t *loop, const bx_proxy_t *proxy,
                           const bx_engine_opts_t *opts, char *err, size_t errlen);

/* Fills `out` (32 bytes) with a fresh 31-character [0-9a-z] id from the
 * kernel's CSPRNG, NUL-terminated. */
void bx_engine_random_id(char out[32]);

#endif
