/*
 * memory.h - the embedded engine: all state in this process (memory.c).
 * Made through the factory, bx_engine_new("memory", ...): nothing above
 * engine/ includes this header.
 */
#ifndef BX_ENGINE_MEMORY_H
#define BX_ENGINE_MEMORY_H

#include "engine/engine.h"

/* Creates the memory engine. `proxy` and `opts` are copied. */
bx_engine_t *bx_engine_memory_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                  const bx_engine_opts_t *opts);

/* What an engine built on this one (the Redis engine keeps the clients
 * held by its process in one) needs beyond the ops. None of these emits
 * an event or calls proxy->closed. */

/* Whether `id` is a client of this engine now. */
int bx_engine_memory_has(bx_engine_t *e, const char *id);

/* Whether a subscribe of client `id` to `ch` with `limit` (0: none) would
 * be refused BX_ESUBSLIMIT: the client has `limit` channels and not `ch`.
 * 0 for an unknown client. */
int bx_engine_memory_over(bx_engine_t *e, const char *id, const char *ch, size_t limit);

/* Makes a client of the given 31-character `id` (made by another
 * process), pinged now, with no subscription. -1 if it exists already. */
int bx_engine_memory_adopt(bx_engine_t *e, const char *id);

/* Removes client `id` without a trace: its subscriptions go (each
 * UNSUBSCRIBE is triggered, so the caller can follow its own refcounts),
 * its queue moves into the empty `out` (new references, oldest first).
 * 0, or BX_EUNKNOWN. */
int bx_engine_memory_release(bx_engine_t *e, const char *id, bx_chunkv_t *out);

/* Calls fn(ud, id, NULL, 0) for each client, then fn(ud, id, channel,
 * len) for each of its subscriptions (all borrowed for the call). fn must
 * not change the engine. */
typedef void (*bx_engine_memory_each_cb)(void *ud, const char *id, const char *channel,
                                         size_t len);
void bx_engine_memory_each(bx_engine_t *e, bx_engine_memory_each_cb fn, void *ud);

#endif
