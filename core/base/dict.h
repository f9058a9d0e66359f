/*
 * dict.h - a string-keyed hash table of pointers.
 *
 * Keys are copied into the table (new memory owned by the table); values are
 * borrowed pointers the table never frees. Chained buckets, power-of-two
 * size, grows at load 1. Iteration order is unspecified; removing the entry
 * an iterator stands on is allowed (bx_dict_next has already moved past it).
 */
#ifndef BX_DICT_H
#define BX_DICT_H

#include <stddef.h>
#include <stdint.h>
#include "base/siphash.h"

typedef struct bx_dict_entry_s {
    struct bx_dict_entry_s *next;
    void *value;
    uint32_t hash;
    uint32_t klen;
    char key[];
} bx_dict_entry_t;

typedef struct {
    bx_dict_entry_t **buckets;
    size_t mask;            /* bucket count - 1, or 0 when unallocated */
    size_t count;
} bx_dict_t;

typedef struct {
    size_t bucket;
    bx_dict_entry_t *next;
} bx_dict_iter_t;

#define BX_DICT_INIT { NULL, 0, 0 }
#define BX_DICT_ITER_INIT { 0, NULL }

/* Hash of a byte string: SipHash-2-4 under the per-process random key
 * (keys are client-chosen: channel names, ids sent by socket binds; a
 * keyed hash keeps a client from choosing keys that share a bucket). */
uint32_t bx_dict_hash(const char *key, size_t len);

/* The same hash in steps: bx_dict_hash_start, bx_siphash_update with the
 * key's bytes (in any pieces), bx_dict_hash_end (which leaves `st` as it
 * is, so prefixes of a key can be finished from snapshots). */
void bx_dict_hash_start(bx_siphash_t *st);
uint32_t bx_dict_hash_end(const bx_siphash_t *st);

/* Returns the value for `key`, or NULL. */
void *bx_dict_get(const bx_dict_t *d, const char *key, size_t len);

/* bx_dict_get with the key's hash already known (`hash` must be
 * bx_dict_hash(key, len)). */
void *bx_dict_get_hashed(const bx_dict_t *d, const char *key, size_t len, uint32_t hash);

/* Sets `key` to `value` (non-NULL). Returns the previous value or NULL. */
void *bx_dict_set(bx_dict_t *d, const char *key, size_t len, void *value);

/* Removes `key`; returns its value or NULL if absent. */
void *bx_dict_del(bx_dict_t *d, const char *key, size_t len);

/* Steps an iterator; returns the next entry (borrowed) or NULL at the end. */
bx_dict_entry_t *bx_dict_next(const bx_dict_t *d, bx_dict_iter_t *it);

/* Frees the table's memory (not the values). The dict is left empty. */
void bx_dict_free(bx_dict_t *d);

#endif
