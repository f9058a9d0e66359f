/*
 * redis.h - the Redis engine (redis.c): several bayeux processes that see
 * each other's publishes through one Redis server. Made through the
 * factory, bx_engine_new("redis://...", ...): nothing above engine/
 * includes this header.
 */
#ifndef BX_ENGINE_REDIS_H
#define BX_ENGINE_REDIS_H

#include "engine/engine.h"

/* Creates the Redis engine for `url` (net/redis.h's URL forms), or for
 * several, comma-separated: shards, each channel published on the one a
 * consistent-hash ring gives it (adding a shard moves only its share). `proxy`
 * and `opts` are copied. Returns NULL with a message in `err` for a bad
 * URL. An unreachable server is not an error here: the engine keeps
 * trying, and says so on stderr. */
bx_engine_t *bx_engine_redis_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                 const bx_engine_opts_t *opts, const char *url, char *err,
                                 size_t errlen);

/* The shard (0..n-1) of `channel` among the servers `names` ("host:port/db"
 * or "path/db", as the engine names them), or -1 for n out of 1..16: what
 * every process computes alike. */
int bx_engine_redis_shard_of(const char *const *names, int n, const char *channel);

/* engine.h's bx_engine_store_call / bx_engine_store_ns for this engine
 * (`e` must be one): the commands go to the first server's command
 * connection. */
int bx_engine_redis_store(bx_engine_t *e, int argc, const char **argv, const size_t *lens,
                          bx_engine_store_cb cb, void *ud);
const char *bx_engine_redis_ns(bx_engine_t *e);

/* A Redis reply as JSON (new reference; engine.h's bx_engine_store_cb says
 * how); shared with fayeredis.c. */
struct redisReply;
json_t *bx_engine_redis_reply_json(const struct redisReply *rep);

#endif
