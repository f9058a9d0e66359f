/*
 * history.h - channel history with recovery (history.c): the messages of
 * the channels inside a configured pattern are kept (a number of them, for
 * a time), each stamped with an increasing offset within its channel and
 * the epoch of the store that holds it; a client that subscribes again
 * with the last position it saw gets what it missed, in order, before
 * anything newer, or a clear reason why it cannot (docs/delivery.md).
 *
 * Wire (all in `ext.history`):
 *   delivery   {"offset": 7, "epoch": "k3x9a0qe"}   (the same bytes for
 *              every recipient: set before the engine serializes)
 *   subscribe  {"/chat/a": {"offset": 7, "epoch": "k3x9a0qe"}, ...}
 *   its reply  {"/chat/a": {"offset": 9, "epoch": "k3x9a0qe",
 *                           "recovered": true}, ...}
 *              or "recovered": false with "reason": "too old",
 *              "epoch changed", "unknown offset" or "no history".
 *
 * The store is this process's, in memory, with the memory engine; an
 * engine with ops->history (the Redis engine) keeps it instead, shared by
 * every process, and this file only configures it. With no pattern
 * configured the hub has no store, and the protocol looks at nothing else.
 */
#ifndef BX_HISTORY_H
#define BX_HISTORY_H

#include <jansson.h>
#include "bayeux/hub.h"

typedef struct bx_history_s bx_history_t;

/* Positions one subscribe may name (more is a bad request). */
#define BX_HISTORY_MAX_POSITIONS 1000

/* The hub's store, made on first use (freed with the hub). */
bx_history_t *bx_history_of(bx_hub_t *h);

/* The hub's store, or NULL when no history is configured. */
bx_history_t *bx_history_get(bx_hub_t *h);

/* Keeps history for the channels inside `pattern` (a channel name or
 * pattern, as a subscription): the last `size` messages (> 0), each for
 * `ttl` seconds (> 0); a channel's position (its last offset) is kept
 * `keep` seconds (>= 0) after its last message expired, then forgotten.
 * The first pattern that matches a channel decides. Returns 0, -1 for
 * a bad pattern, size, ttl or keep, or -2 when the hub's engine can keep
 * no history (neither the memory engine nor one with ops->history). With
 * an engine that keeps it (the Redis engine), the engine numbers, keeps
 * and replays, shared by every process (bx_history_shared). */
int bx_history_add(bx_history_t *h, const char *pattern, size_t size, double ttl,
                   double keep);

/* A publish is about to reach the engine: if its channel has history,
 * `msg` (borrowed, changed in place) gets ext.history = {offset, epoch}
 * and is kept; otherwise an ext.history the publisher set is removed (only
 * the server speaks for history). */
void bx_history_publish(bx_history_t *h, json_t *msg);

/* Whether `want` (a subscribe's ext.history, borrowed) is well formed: an
 * object of at most BX_HISTORY_MAX_POSITIONS members, each an object with
 * an integer "offset" >= 0 and a string "epoch". */
int bx_history_valid(const json_t *want);

/* `client_id` was just subscribed to `sub` (the engine has applied it):
 * for each channel of `want` (valid) that `sub` matches, the messages it
 * missed go to the front of the client's queue now (engine requeue), and
 * `answer` (an object, borrowed) gets the channel's position and whether
 * it was recovered; the history channels `sub` matches that `want` does
 * not name get their position, as a starting point. */
void bx_history_subscribed(bx_history_t *h, const char *client_id, const char *sub,
                           const json_t *want, json_t *answer);

/* Whether the engine keeps the history (engine.h: ops->history): then a
 * subscribe naming positions goes to ops->subscribe_history, and
 * bx_history_publish only removes a publisher's ext.history. */
int bx_history_shared(const bx_history_t *h);

/* The store's epoch (a NUL-terminated string, borrowed). */
const char *bx_history_epoch(const bx_history_t *h);

#endif
