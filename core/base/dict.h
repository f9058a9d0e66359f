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

/* ---- Intrusive tables ----
 *
 * The same table for values that carry their own key: each value embeds a
 * bx_idict_link_t and is linked under bytes it owns (borrowed, unchanged
 * while linked), so the table allocates only its buckets. A value keyed by
 * a 31-byte id saves the 64-byte entry block a bx_dict_t would copy the id
 * into. Same hashing, growth and iteration rules as bx_dict_t. */
typedef struct bx_idict_link_s {
    struct bx_idict_link_s *next;
    const char *key;            /* borrowed from the value */
    uint32_t hash;
    uint32_t klen;
} bx_idict_link_t;

typedef struct {
    bx_idict_link_t **buckets;
    size_t mask;            /* bucket count - 1, or 0 when unallocated */
    size_t count;
} bx_idict_t;

typedef struct {
    size_t bucket;
    bx_idict_link_t *next;
} bx_idict_iter_t;

#define BX_IDICT_INIT { NULL, 0, 0 }
#define BX_IDICT_ITER_INIT { 0, NULL }

/* The link under `key`, or NULL. */
bx_idict_link_t *bx_idict_get(const bx_idict_t *d, const char *key, size_t len);

/* Links `l` (not linked anywhere) under `key` (borrowed: it must stay as
 * it is while linked). Returns the link it replaced, now unlinked, or
 * NULL. */
bx_idict_link_t *bx_idict_add(bx_idict_t *d, bx_idict_link_t *l, const char *key, size_t len);

/* Unlinks `l`, which must be linked in `d`. */
void bx_idict_del(bx_idict_t *d, bx_idict_link_t *l);

/* Steps an iterator; returns the next link or NULL at the end. Unlinking
 * (or freeing) the value the iterator stands on is allowed. */
bx_idict_link_t *bx_idict_next(const bx_idict_t *d, bx_idict_iter_t *it);

/* Frees the buckets (not the values). The table is left empty. */
void bx_idict_free(bx_idict_t *d);

#endif
