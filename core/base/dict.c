/*
 * dict.c - string-keyed hash table (see dict.h).
 */
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/dict.h"

void bx_dict_hash_start(bx_siphash_t *st)
{
    bx_siphash_init_process(st);
}

uint32_t bx_dict_hash_end(const bx_siphash_t *st)
{
    return (uint32_t)bx_siphash_final(st);
}

/* The last key hashed, and its hash. A delivery looks the same client id
 * up several times in a row (in the engine's clients, in the hub's
 * sessions, in a channel's subscribers): SipHash of a 31-byte id costs
 * ~300 instructions, comparing it with the last one ~20. Per thread, as
 * the hash is a function of the key alone (one key per process). */
#define MEMO_MAX 48
static _Thread_local struct {
    size_t len;                 /* 0: empty (the empty key is not kept) */
    uint32_t hash;
    char key[MEMO_MAX];
} memo;

uint32_t bx_dict_hash(const char *key, size_t len)
{
    bx_siphash_t st;
    uint32_t h;

    if (len && len == memo.len && memcmp(key, memo.key, len) == 0)
        return memo.hash;
    bx_dict_hash_start(&st);
    bx_siphash_update(&st, key, len);
    h = bx_dict_hash_end(&st);
    if (len && len <= MEMO_MAX) {
        memcpy(memo.key, key, len);
        memo.len = len;
        memo.hash = h;
    }
    return h;
}

static bx_dict_entry_t **find(const bx_dict_t *d, const char *key, size_t len, uint32_t h)
{
    bx_dict_entry_t **pp = &d->buckets[h & d->mask];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == len && memcmp((*pp)->key, key, len) == 0)
            return pp;
    return pp;
}

void *bx_dict_get_hashed(const bx_dict_t *d, const char *key, size_t len, uint32_t hash)
{
    if (!d->buckets)
        return NULL;
    bx_dict_entry_t *e = *find(d, key, len, hash);
    return e ? e->value : NULL;
}

void *bx_dict_get(const bx_dict_t *d, const char *key, size_t len)
{
    if (!d->buckets)
        return NULL;
    return bx_dict_get_hashed(d, key, len, bx_dict_hash(key, len));
}

static void grow(bx_dict_t *d)
{
    /* small first: many dicts hold one or two keys (a client's channels) */
    size_t n = d->buckets ? (d->mask + 1) * 2 : 2;
    bx_dict_entry_t **nb = bx_calloc(n, sizeof(*nb));
    if (d->buckets) {
        for (size_t i = 0; i <= d->mask; i++) {
            bx_dict_entry_t *e = d->buckets[i], *next;
            for (; e; e = next) {
                next = e->next;
                e->next = nb[e->hash & (n - 1)];
                nb[e->hash & (n - 1)] = e;
            }
        }
        free(d->buckets);
    }
    d->buckets = nb;
    d->mask = n - 1;
}

void *bx_dict_set(bx_dict_t *d, const char *key, size_t len, void *value)
{
    if (!d->buckets || d->count > d->mask)
        grow(d);
    uint32_t h = bx_dict_hash(key, len);
    bx_dict_entry_t **pp = find(d, key, len, h);
    if (*pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    bx_dict_entry_t *e = bx_malloc(sizeof(*e) + len + 1);
    e->next = NULL;
    e->value = value;
    e->hash = h;
    e->klen = (uint32_t)len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    *pp = e;
    d->count++;
    return NULL;
}

void *bx_dict_del(bx_dict_t *d, const char *key, size_t len)
{
    if (!d->buckets)
        return NULL;
    bx_dict_entry_t **pp = find(d, key, len, bx_dict_hash(key, len));
    bx_dict_entry_t *e = *pp;
    if (!e)
        return NULL;
    void *v = e->value;
    *pp = e->next;
    free(e);
    d->count--;
    return v;
}

bx_dict_entry_t *bx_dict_next(const bx_dict_t *d, bx_dict_iter_t *it)
{
    if (!d->buckets)
        return NULL;
    bx_dict_entry_t *e = it->next;
    while (!e) {
        if (it->bucket > d->mask)
            return NULL;
        e = d->buckets[it->bucket++];
    }
    it->next = e->next;
    return e;
}

void bx_dict_free(bx_dict_t *d)
{
    if (d->buckets) {
        for (size_t i = 0; i <= d->mask; i++) {
            bx_dict_entry_t *e = d->buckets[i], *next;
            for (; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(d->buckets);
    }
    d->buckets = NULL;
    d->mask = 0;
    d->count = 0;
}

/* ---- Intrusive tables ---- */

static bx_idict_link_t **ifind(const bx_idict_t *d, const char *key, size_t len, uint32_t h)
{
    bx_idict_link_t **pp = &d->buckets[h & d->mask];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == len && memcmp((*pp)->key, key, len) == 0)
            return pp;
    return pp;
}

bx_idict_link_t *bx_idict_get(const bx_idict_t *d, const char *key, size_t len)
{
    if (!d->buckets)
        return NULL;
    return *ifind(d, key, len, bx_dict_hash(key, len));
}

static void igrow(bx_idict_t *d)
{
    size_t n = d->buckets ? (d->mask + 1) * 2 : 2;
    bx_idict_link_t **nb = bx_calloc(n, sizeof(*nb));
    if (d->buckets) {
        for (size_t i = 0; i <= d->mask; i++) {
            bx_idict_link_t *e = d->buckets[i], *next;
            for (; e; e = next) {
                next = e->next;
                e->next = nb[e->hash & (n - 1)];
                nb[e->hash & (n - 1)] = e;
            }
        }
        free(d->buckets);
    }
    d->buckets = nb;
    d->mask = n - 1;
}

bx_idict_link_t *bx_idict_add(bx_idict_t *d, bx_idict_link_t *l, const char *key, size_t len)
{
    if (!d->buckets || d->count > d->mask)
        igrow(d);
    uint32_t h = bx_dict_hash(key, len);
    bx_idict_link_t **pp = ifind(d, key, len, h), *old = *pp;
    l->key = key;
    l->hash = h;
    l->klen = (uint32_t)len;
    if (old) {
        l->next = old->next;
        old->next = NULL;
    } else {
        l->next = NULL;
        d->count++;
    }
    *pp = l;
    return old;
}

void bx_idict_del(bx_idict_t *d, bx_idict_link_t *l)
{
    bx_idict_link_t **pp = &d->buckets[l->hash & d->mask];
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    l->next = NULL;
    d->count--;
}

bx_idict_link_t *bx_idict_next(const bx_idict_t *d, bx_idict_iter_t *it)
{
    if (!d->buckets)
        return NULL;
    bx_idict_link_t *e = it->next;
    while (!e) {
        if (it->bucket > d->mask)
            return NULL;
        e = d->buckets[it->bucket++];
    }
    it->next = e->next;
    return e;
}

void bx_idict_free(bx_idict_t *d)
{
    free(d->buckets);
    d->buckets = NULL;
    d->mask = 0;
    d->count = 0;
}
