/*
 * redis.h - a Redis connection on the libuv loop (hiredis 0.14 and its
 * libuv adapter), with what hiredis 0.14 lacks: connect and command
 * timeouts from uv timers, AUTH and SELECT on every (re)connection, and
 * reconnection with a doubling back-off.
 *
 * A connection is either a command connection (replies go to each
 * command's callback, in order; many commands written in one loop turn go
 * out as one write: pipelining comes free) or a subscriber connection
 * (made with a `push` callback: SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE /
 * PUNSUBSCRIBE only, and every message or confirmation goes to `push`).
 *
 * Callback contract: a command's callback is called exactly once, on a
 * later loop turn, never inside the call that sent it; a command that
 * cannot be sent (the connection is not up) returns BX_REDIS_EDOWN and its
 * callback is never called. bx_redis_close answers what is pending with
 * BX_REDIS_ECANCELED from inside the close.
 *
 * A connection's handles are unreferenced: it keeps no loop running by
 * itself (a server has its listeners; a caller waiting for a reply keeps
 * a handle of its own active meanwhile).
 */
#ifndef BX_NET_REDIS_H
#define BX_NET_REDIS_H

#include <stddef.h>
#include <uv.h>
#include <hiredis.h>

/* Status codes of the callbacks and of bx_redis_command. */
#define BX_REDIS_EDOWN     (-10)    /* not connected, or the connection was
                                       lost (or timed out) before the reply */
#define BX_REDIS_ECANCELED (-11)    /* closed before the reply */

/* Where a Redis server is, from a URL (bx_redis_parse_url). */
typedef struct {
    char host[256];             /* TCP host, or "" for a unix socket */
    int port;                   /* default 6379 */
    char path[256];             /* unix socket path, or "" */
    char user[64];              /* ACL user for AUTH, or "" */
    char password[256];         /* "" = no AUTH */
    int db;                     /* SELECT db when not 0 */
    char ns[128];               /* ?namespace=, default "bayeux" ("" in
                                   faye mode, as faye-redis) */
    int faye;                   /* ?mode=faye: faye-redis's layout
                                   (engine/fayeredis.c); ?mode=bayeux: 0 */
} bx_redis_addr_t;

typedef struct bx_redis_s bx_redis_t;

/* The reply of a command: `r` is borrowed for the call (NULL when status
 * is not 0). A Redis error reply comes with status 0 and r->type
 * REDIS_REPLY_ERROR: the caller decides. */
typedef void (*bx_redis_reply_cb)(void *ud, int status, redisReply *r);
/* The connection went up (up = 1) or down (up = 0, `why` says why, e.g.
 * "connection refused"). Called on each change of state only; a first
 * attempt that fails counts as a change (down) too. */
typedef void (*bx_redis_state_cb)(void *ud, int up, const char *why);
/* A subscriber connection's message ("message", "pmessage") or
 * confirmation ("subscribe", ...) array; borrowed. */
typedef void (*bx_redis_push_cb)(void *ud, redisReply *r);

typedef struct {
    double connect_timeout;     /* seconds to connect, AUTH and SELECT;
                                   default 2 */
    double command_timeout;     /* seconds the oldest pending reply may
                                   take before the connection is dropped;
                                   default 5 (0 keeps the default) */
    double backoff_min;         /* first reconnection delay; default 0.05 */
    double backoff_max;         /* the delay doubles up to this; default 1 */
} bx_redis_opts_t;

/* Parses `redis://[[user]:password@]host[:port][/db][?namespace=NS]` or
 * `unix:///path/to.sock[?db=N&password=P&namespace=NS]` into `out`; both
 * also take `&mode=faye` (or `mode=bayeux`, the default).
 * Returns 0, or -1 with a message in `err`. */
int bx_redis_parse_url(const char *url, bx_redis_addr_t *out, char *err, size_t errlen);

/* Makes a connection to `addr` (copied) on `loop` and starts connecting;
 * `opts` may be NULL. `push` non-NULL makes a subscriber connection.
 * `state` may be NULL. Never calls back from inside. */
bx_redis_t *bx_redis_new(uv_loop_t *loop, const bx_redis_addr_t *addr,
                         const bx_redis_opts_t *opts, bx_redis_state_cb state,
                         bx_redis_push_cb push, void *ud);

/* Whether the connection is up (connected, authenticated, selected). */
int bx_redis_up(const bx_redis_t *c);

/* Sends a command of `argc` arguments (`argv`, `lens` borrowed; `lens`
 * may be NULL for NUL-terminated strings). `cb` may be NULL. Returns 0, or
 * BX_REDIS_EDOWN when the connection is not up. */
int bx_redis_command(bx_redis_t *c, bx_redis_reply_cb cb, void *ud, int argc,
                     const char **argv, const size_t *lens);

/* Number of commands sent whose reply has not come yet. */
size_t bx_redis_pending(const bx_redis_t *c);

/* Drops the connection now as if it had been lost (what is pending gets
 * BX_REDIS_EDOWN), then reconnects after the back-off. For tests and for
 * a caller that saw a broken reply. */
void bx_redis_drop(bx_redis_t *c, const char *why);

/* Closes: pending callbacks get BX_REDIS_ECANCELED (from inside this call),
 * no state or push callback follows; `done` (may be NULL) is called on a
 * later turn once the handles are closed, and `c` is freed. */
void bx_redis_close(bx_redis_t *c, void (*done)(void *ud), void *ud);

#endif
