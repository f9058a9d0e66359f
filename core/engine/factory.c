/*
 * factory.c - bx_engine_new(): an engine by the name of its type. The one
 * place that knows every engine; the levels above see engine.h only.
 */
#include <stdio.h>
#include <string.h>
#include "engine/engine.h"
#include "engine/fayeredis.h"
#include "engine/memory.h"
#include "engine/redis.h"

bx_engine_t *bx_engine_new(const char *type, uv_loop_t *loop, const bx_proxy_t *proxy,
                           const bx_engine_opts_t *opts, char *err, size_t errlen)
{
    if (type && strcmp(type, "memory") == 0)
        return bx_engine_memory_new(loop, proxy, opts);
    if (type && (strncmp(type, "redis://", 8) == 0 || strncmp(type, "unix://", 7) == 0)) {
        /* ?mode=faye: faye-redis's layout, on one server */
        bx_redis_addr_t addr;
        if (!strchr(type, ',') && bx_redis_parse_url(type, &addr, err, errlen) == 0
            && addr.faye)
            return bx_engine_fayeredis_new(loop, proxy, opts, &addr);
        if (strchr(type, ',') && strstr(type, "mode=faye")) {
            snprintf(err, errlen, "mode=faye takes one Redis URL (faye-redis has no shards)");
            return NULL;
        }
        return bx_engine_redis_new(loop, proxy, opts, type, err, errlen);
    }
    snprintf(err, errlen, "unknown engine '%s'", type ? type : "(null)");
    return NULL;
}

/* The shared store: an optional capability of the two Redis engines
 * (engine.h), dispatched here where they are known. */
int bx_engine_store_call(bx_engine_t *e, int argc, const char **argv, const size_t *lens,
                         bx_engine_store_cb cb, void *ud)
{
    if (!strcmp(e->ops->name, "redis"))
        return bx_engine_redis_store(e, argc, argv, lens, cb, ud);
    if (!strcmp(e->ops->name, "fayeredis"))
        return bx_engine_fayeredis_store(e, argc, argv, lens, cb, ud);
    return BX_EUNKNOWN;
}

const char *bx_engine_store_ns(bx_engine_t *e, int *faye)
{
    int is_faye = !strcmp(e->ops->name, "fayeredis");
    if (faye)
        *faye = is_faye;
    if (is_faye)
        return bx_engine_fayeredis_ns(e);
    if (!strcmp(e->ops->name, "redis"))
        return bx_engine_redis_ns(e);
    return NULL;
}
