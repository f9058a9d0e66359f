/*
 * fayeredis.h - the Redis engine in faye-redis mode (fayeredis.c): bayeux
 * and Node Faye + faye-redis 0.2.0 servers sharing one Redis, every client
 * served by any of them. Made through the factory,
 * bx_engine_new("redis://...?mode=faye", ...): nothing above engine/
 * includes this header.
 */
#ifndef BX_ENGINE_FAYEREDIS_H
#define BX_ENGINE_FAYEREDIS_H

#include "engine/engine.h"
#include "net/redis.h"

/* Creates the engine on the server `addr` (copied; addr->ns is the key
 * prefix, "" as faye-redis's default). `proxy` and `opts` are copied;
 * opts->timeout must be the one every server sharing the data uses (the
 * liveness maths: 1.6 x and 2 x timeout). An unreachable server is not an
 * error: the engine keeps trying, and says so on stderr. */
bx_engine_t *bx_engine_fayeredis_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                     const bx_engine_opts_t *opts,
                                     const bx_redis_addr_t *addr);

/* engine.h's bx_engine_store_call / bx_engine_store_ns for this engine
 * (`e` must be one): the commands go to its command connection. */
int bx_engine_fayeredis_store(bx_engine_t *e, int argc, const char **argv,
                              const size_t *lens, bx_engine_store_cb cb, void *ud);
const char *bx_engine_fayeredis_ns(bx_engine_t *e);

#endif
