/*
 * engine.c - what every engine shares: client ids, the shared store.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "engine/engine.h"
#include "engine/fayeredis.h"
#include "engine/redis.h"

void bx_engine_random_id(char out[32])
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[64];
    size_t n = 0;

    while (n < 31) {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            abort();            /* the kernel CSPRNG never fails for 64 bytes */
        for (size_t i = 0; i < sizeof(rnd) && n < 31; i++)
            if (rnd[i] < 252)   /* 252 = 7 * 36: keeps the draw uniform */
                out[n++] = alphabet[rnd[i] % 36];
    }
    out[31] = '\0';
}

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
