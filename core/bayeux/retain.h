/*
 * retain.h - channels that keep their last message (retain.c), so that a
 * client subscribing after a job started gets its current progress at once.
 *
 * The server names patterns (server:retain("/jobs/**")); the last message
 * published on a channel inside one is kept for the pattern's ttl, and
 * sent to each client whose subscription matches the channel, on the turn
 * after its subscribe succeeded (after its answer). A message whose data
 * has "final": true is delivered as usual and ends the retention of its
 * channel. The store is this process's: with the Redis engine, a publish
 * made through another process is not retained here.
 */
#ifndef BX_RETAIN_H
#define BX_RETAIN_H

#include <jansson.h>
#include "bayeux/hub.h"

typedef struct bx_retain_s bx_retain_t;

/* The hub's store (made on first use, freed with the hub). */
bx_retain_t *bx_retain_of(bx_hub_t *h);

/* Retains the channels inside `pattern` (a channel name or pattern, as a
 * subscription) for `ttl` seconds after each publish (> 0). Returns 0, or
 * -1 for a pattern that is not a channel name or pattern. */
int bx_retain_add(bx_retain_t *r, const char *pattern, double ttl);

/* A publish was accepted: `msg` (borrowed) is kept if its channel is
 * retained, or ends its retention if its data is final. */
void bx_retain_publish(bx_retain_t *r, const json_t *msg);

/* The subscription `sub` of `client_id` succeeded: the kept messages of
 * the channels it matches go to the client's queue on a later turn. */
void bx_retain_subscribed(bx_retain_t *r, const char *client_id, const char *sub);

/* How many channels have a message kept (expired ones included until the
 * next sweep). */
size_t bx_retain_count(bx_retain_t *r);

#endif
