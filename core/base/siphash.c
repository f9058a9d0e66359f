/*
 * siphash.c - SipHash-2-4 (see siphash.h), written from the paper:
 * "SipHash: a fast short-input PRF", Aumasson and Bernstein, 2012.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>
#include "base/siphash.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void round_(bx_siphash_t *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

static inline void absorb(bx_siphash_t *s, uint64_t m)
{
    s->v3 ^= m;
    round_(s);
    round_(s);
    s->v0 ^= m;
}

/* Byte order is fixed by the algorithm, not by the host. */
static inline uint64_t le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
           (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

void bx_siphash_init(bx_siphash_t *st, uint64_t k0, uint64_t k1)
{
    st->v0 = k0 ^ 0x736f6d6570736575ULL;
    st->v1 = k1 ^ 0x646f72616e646f6dULL;
    st->v2 = k0 ^ 0x6c7967656e657261ULL;
    st->v3 = k1 ^ 0x7465646279746573ULL;
    st->tail = 0;
    st->len = 0;
}

void bx_siphash_update(bx_siphash_t *st, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t fill = st->len & 7;

    st->len += len;
    if (fill) {
        /* complete the pending block first */
        while (len && fill < 8) {
            st->tail |= (uint64_t)*p++ << (8 * fill++);
            len--;
        }
        if (fill < 8)
            return;
        absorb(st, st->tail);
        st->tail = 0;
    }
    for (; len >= 8; p += 8, len -= 8)
        absorb(st, le64(p));
    for (size_t i = 0; i < len; i++)
        st->tail |= (uint64_t)p[i] << (8 * i);
}

uint64_t bx_siphash_final(const bx_siphash_t *st)
{
    bx_siphash_t s = *st;
    uint64_t b = (uint64_t)(s.len & 0xff) << 56 | s.tail;

    absorb(&s, b);
    s.v2 ^= 0xff;
    round_(&s);
    round_(&s);
    round_(&s);
    round_(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t bx_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    bx_siphash_t st;
    bx_siphash_init(&st, k0, k1);
    bx_siphash_update(&st, data, len);
    return bx_siphash_final(&st);
}

static uv_once_t key_once = UV_ONCE_INIT;
static uint64_t key0, key1;

static void draw_key(void)
{
    unsigned char k[16];
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
        abort();                /* the kernel CSPRNG never fails for 16 bytes */
    key0 = le64(k);
    key1 = le64(k + 8);
}

void bx_siphash_init_process(bx_siphash_t *st)
{
    uv_once(&key_once, draw_key);
    bx_siphash_init(st, key0, key1);
}
