/*
 * test_dict.c - the string-keyed hash table.
 */
#include "bx_test.h"
#include "base/dict.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define V(n) ((void *)(uintptr_t)(n))
#define BX_IDICT_ITEM(l) ((item_t *)(void *)((char *)(l) - offsetof(item_t, slot)))

static void *get(bx_dict_t *d, const char *k)
{
    return bx_dict_get(d, k, strlen(k));
}

static void *set(bx_dict_t *d, const char *k, void *v)
{
    return bx_dict_set(d, k, strlen(k), v);
}

static void *del(bx_dict_t *d, const char *k)
{
    return bx_dict_del(d, k, strlen(k));
}

static void test_empty(void)
{
    bx_dict_t d = BX_DICT_INIT;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;

    BX_CHECK(get(&d, "x") == NULL);
    BX_CHECK(del(&d, "x") == NULL);
    BX_CHECK(bx_dict_next(&d, &it) == NULL);
    BX_CHECK_INT(d.count, 0);
    bx_dict_free(&d);
    bx_dict_free(&d);                   /* idempotent */
    BX_CHECK(d.buckets == NULL && d.count == 0);
}

static void test_set_get_del(void)
{
    bx_dict_t d = BX_DICT_INIT;

    BX_CHECK(set(&d, "a", V(1)) == NULL);
    BX_CHECK(set(&d, "b", V(2)) == NULL);
    BX_CHECK(set(&d, "", V(3)) == NULL);           /* the empty key is a key */
    BX_CHECK_INT(d.count, 3);
    BX_CHECK(get(&d, "a") == V(1));
    BX_CHECK(get(&d, "b") == V(2));
    BX_CHECK(get(&d, "") == V(3));
    BX_CHECK(get(&d, "c") == NULL);
    BX_CHECK(get(&d, "A") == NULL);                /* case-sensitive */

    /* overwrite returns the previous value and keeps the count */
    BX_CHECK(set(&d, "a", V(10)) == V(1));
    BX_CHECK(get(&d, "a") == V(10));
    BX_CHECK_INT(d.count, 3);

    BX_CHECK(del(&d, "a") == V(10));
    BX_CHECK(get(&d, "a") == NULL);
    BX_CHECK(del(&d, "a") == NULL);
    BX_CHECK_INT(d.count, 2);
    BX_CHECK(set(&d, "a", V(11)) == NULL);         /* re-add after delete */
    BX_CHECK(get(&d, "a") == V(11));
    BX_CHECK_INT(d.count, 3);

    /* keys are copied: the caller's buffer may change */
    char key[8] = "temp";
    BX_CHECK(set(&d, key, V(5)) == NULL);
    strcpy(key, "zzzz");
    BX_CHECK(get(&d, "temp") == V(5));
    BX_CHECK(get(&d, "zzzz") == NULL);

    /* binary keys: length, not NUL, ends a key */
    BX_CHECK(bx_dict_set(&d, "x\0y", 3, V(6)) == NULL);
    BX_CHECK(bx_dict_set(&d, "x\0z", 3, V(7)) == NULL);
    BX_CHECK(bx_dict_get(&d, "x\0y", 3) == V(6));
    BX_CHECK(bx_dict_get(&d, "x\0z", 3) == V(7));
    BX_CHECK(get(&d, "x") == NULL);
    bx_dict_free(&d);
}

static void test_prefix_keys(void)
{
    bx_dict_t d = BX_DICT_INIT;
    static const char *const keys[] = {
        "/a", "/a/", "/a/b", "/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/a/*", "/**", "/*",
        "/ab", "/a/bc", "/", "a", NULL
    };
    int n = 0;

    for (int i = 0; keys[i]; i++, n++)
        BX_CHECK(set(&d, keys[i], V(i + 1)) == NULL);
    BX_CHECK_INT(d.count, n);
    for (int i = 0; keys[i]; i++)
        BX_CHECK(get(&d, keys[i]) == V(i + 1));
    /* prefixes of stored keys and keys with a stored key as prefix */
    BX_CHECK(get(&d, "/a/b/c/d") == NULL);
    BX_CHECK(get(&d, "/a/b/**/") == NULL);
    BX_CHECK(bx_dict_get(&d, "/a/b/c", 5) == NULL);    /* "/a/b/" is absent */
    BX_CHECK(bx_dict_get(&d, "/a/b", 3) == V(2));      /* "/a/" */
    /* deleting one leaves the ones sharing its prefix */
    BX_CHECK(del(&d, "/a/b") == V(3));
    BX_CHECK(get(&d, "/a") == V(1));
    BX_CHECK(get(&d, "/a/b/c") == V(4));
    BX_CHECK(get(&d, "/a/bc") == V(12));
    BX_CHECK_INT(d.count, n - 1);
    bx_dict_free(&d);
}

static void test_growth(void)
{
    enum { N = 5000 };
    bx_dict_t d = BX_DICT_INIT;
    char k[32];

    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        BX_CHECK(set(&d, k, V(i + 1)) == NULL);
        BX_CHECK_INT(d.count, i + 1);
        /* load at most 1 after each insert (power-of-two buckets) */
        BX_CHECK(d.count <= d.mask + 1);
        BX_CHECK(((d.mask + 1) & d.mask) == 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        BX_CHECK(get(&d, k) == V(i + 1));
    }
    snprintf(k, sizeof(k), "key-%d", N);
    BX_CHECK(get(&d, k) == NULL);

    /* iteration visits each entry once */
    unsigned char *seen = calloc(N, 1);
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    size_t visits = 0;
    while ((e = bx_dict_next(&d, &it)) != NULL) {
        uintptr_t v = (uintptr_t)e->value;
        if (v < 1 || v > N || seen[v - 1]++) {
            free(seen);
            BX_CHECK(!"bad or repeated entry");
        }
        if (e->klen != strlen(e->key) || e->hash != bx_dict_hash(e->key, e->klen)) {
            free(seen);
            BX_CHECK(!"bad entry key");
        }
        visits++;
    }
    free(seen);
    BX_CHECK_INT(visits, N);
    BX_CHECK(bx_dict_next(&d, &it) == NULL);        /* stays at the end */

    /* delete the odd ones, check, then everything */
    for (int i = 1; i < N; i += 2) {
        snprintf(k, sizeof(k), "key-%d", i);
        BX_CHECK(del(&d, k) == V(i + 1));
    }
    BX_CHECK_INT(d.count, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        BX_CHECK(get(&d, k) == (i % 2 ? NULL : V(i + 1)));
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof(k), "key-%d", i);
        BX_CHECK(del(&d, k) == V(i + 1));
    }
    BX_CHECK_INT(d.count, 0);
    it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
    BX_CHECK(bx_dict_next(&d, &it) == NULL);
    bx_dict_free(&d);
}

static void test_delete_while_iterating(void)
{
    enum { N = 2000 };
    bx_dict_t d = BX_DICT_INIT;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    char k[32];
    size_t visits = 0, kept = 0;

    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "/chan/%d", i);
        set(&d, k, V(i + 1));
    }
    /* remove every other current entry: iteration must still see all */
    while ((e = bx_dict_next(&d, &it)) != NULL) {
        uintptr_t v = (uintptr_t)e->value;
        visits++;
        if (v % 2) {
            BX_CHECK(bx_dict_del(&d, e->key, e->klen) == (void *)v);
        } else {
            kept++;
        }
    }
    BX_CHECK_INT(visits, N);
    BX_CHECK_INT(kept, N / 2);
    BX_CHECK_INT(d.count, N / 2);

    /* remove every current entry: the dict ends empty, each seen once */
    it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
    visits = 0;
    while ((e = bx_dict_next(&d, &it)) != NULL) {
        BX_CHECK((uintptr_t)e->value % 2 == 0);
        BX_CHECK(bx_dict_del(&d, e->key, e->klen) != NULL);
        visits++;
    }
    BX_CHECK_INT(visits, N / 2);
    BX_CHECK_INT(d.count, 0);
    bx_dict_free(&d);
}

static void test_collisions_in_bucket(void)
{
    /* many keys in few buckets: chain deletion at head, middle and tail */
    bx_dict_t d = BX_DICT_INIT;
    char k[16];
    int i;

    for (i = 0; i < 8; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        set(&d, k, V(i + 1));
    }
    /* 8 keys in 8 (or 16) buckets: delete in several orders */
    BX_CHECK(del(&d, "k3") == V(4));
    BX_CHECK(del(&d, "k0") == V(1));
    BX_CHECK(del(&d, "k7") == V(8));
    for (i = 0; i < 8; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        void *want = (i == 3 || i == 0 || i == 7) ? NULL : V(i + 1);
        BX_CHECK(get(&d, k) == want);
    }
    bx_dict_free(&d);
    /* keyed per process, but stable within it */
    BX_CHECK(bx_dict_hash("a", 1) == bx_dict_hash("a", 1));
}

/* Keys a client can choose must not collide by construction: these pairs
 * all collide under the unkeyed 32-bit FNV-1a the dict used to use. Under
 * a keyed hash the chance that any of them does is about 4 in 2^32. */
static void test_known_collisions_differ(void)
{
    static const char *const pairs[][2] = {
        { "costarring", "liquid" }, { "declinate", "macallums" },
        { "altarage", "zinke" }, { "altarages", "zinkes" },
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const char *a = pairs[i][0], *b = pairs[i][1];
        BX_CHECK(bx_dict_hash(a, strlen(a)) != bx_dict_hash(b, strlen(b)));
    }
}

/* The hash of a key, however often and in whatever order keys are hashed
 * (the last one is remembered), is the keyed SipHash of its bytes: the
 * same key in another buffer, a buffer changed in place, keys longer than
 * what is remembered. */
static uint32_t fresh_hash(const char *key, size_t len)
{
    bx_siphash_t st;
    bx_dict_hash_start(&st);
    bx_siphash_update(&st, key, len);
    return bx_dict_hash_end(&st);
}

static void test_hash_repeated(void)
{
    char buf[80], copy[80];
    static const char *const keys[] = { "0123456789abcdefghijklmnopqrstu", "/chat/room",
                                        "0123456789abcdefghijklmnopqrstv", "a", "" };

    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            size_t n = strlen(keys[i]);
            BX_CHECK(bx_dict_hash(keys[i], n) == fresh_hash(keys[i], n));
            BX_CHECK(bx_dict_hash(keys[i], n) == fresh_hash(keys[i], n));
        }
    memset(buf, 'x', sizeof(buf));
    uint32_t h = bx_dict_hash(buf, 31);
    buf[30] = 'y';              /* the same buffer, other bytes */
    BX_CHECK(bx_dict_hash(buf, 31) == fresh_hash(buf, 31));
    BX_CHECK(bx_dict_hash(buf, 31) != h);
    memcpy(copy, buf, sizeof(buf));
    BX_CHECK(bx_dict_hash(copy, 31) == bx_dict_hash(buf, 31));
    BX_CHECK(bx_dict_hash(buf, 30) == fresh_hash(buf, 30));
    BX_CHECK(bx_dict_hash(buf, sizeof(buf)) == fresh_hash(buf, sizeof(buf)));
    buf[79] = 'z';
    BX_CHECK(bx_dict_hash(buf, sizeof(buf)) == fresh_hash(buf, sizeof(buf)));
}

/* The intrusive table: values carry their link and key; it allocates only
 * its buckets, finds by key, replaces, unlinks, and iterates while the
 * values it stands on are unlinked and freed. */
typedef struct item {
    bx_idict_link_t slot;
    char id[32];
    int n;
} item_t;

static item_t *iget(bx_idict_t *d, const char *k)
{
    bx_idict_link_t *l = bx_idict_get(d, k, strlen(k));
    return l ? BX_IDICT_ITEM(l) : NULL;
}

static void test_intrusive(void)
{
    enum { N = 3000 };
    bx_idict_t d = BX_IDICT_INIT;
    item_t *items = calloc(N, sizeof(*items));
    char k[32];

    BX_CHECK(iget(&d, "none") == NULL);
    for (int i = 0; i < N; i++) {
        snprintf(items[i].id, sizeof(items[i].id), "client-%d", i);
        items[i].n = i;
        BX_CHECK(bx_idict_add(&d, &items[i].slot, items[i].id, strlen(items[i].id)) == NULL);
    }
    BX_CHECK_INT(d.count, N);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "client-%d", i);
        item_t *it = iget(&d, k);
        BX_CHECK(it == &items[i]);
    }
    BX_CHECK(iget(&d, "client-") == NULL);
    BX_CHECK(iget(&d, "client-30000") == NULL);

    /* a second value under a key takes its place; the first is unlinked */
    item_t twin = { .n = -1 };
    snprintf(twin.id, sizeof(twin.id), "client-7");
    BX_CHECK(bx_idict_add(&d, &twin.slot, twin.id, strlen(twin.id)) == &items[7].slot);
    BX_CHECK(iget(&d, "client-7") == &twin);
    BX_CHECK_INT(d.count, N);
    bx_idict_del(&d, &twin.slot);
    BX_CHECK(iget(&d, "client-7") == NULL);
    BX_CHECK(bx_idict_add(&d, &items[7].slot, items[7].id, strlen(items[7].id)) == NULL);

    /* unlink every other value the iterator stands on: all are seen once */
    bx_idict_iter_t it = BX_IDICT_ITER_INIT;
    bx_idict_link_t *l;
    int visits = 0, kept = 0;
    while ((l = bx_idict_next(&d, &it)) != NULL) {
        item_t *x = BX_IDICT_ITEM(l);
        visits++;
        if (x->n % 2)
            bx_idict_del(&d, l);
        else
            kept++;
    }
    BX_CHECK_INT(visits, N);
    BX_CHECK_INT(kept, N / 2);
    BX_CHECK_INT(d.count, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "client-%d", i);
        BX_CHECK((iget(&d, k) != NULL) == (i % 2 == 0));
    }
    bx_idict_free(&d);
    BX_CHECK_INT(d.count, 0);
    BX_CHECK(iget(&d, "client-0") == NULL);
    free(items);
}

int main(void)
{
    (void)bx_test_close_walk;   /* harness helper for async tests; none here */
    BX_RUN(test_empty);
    BX_RUN(test_set_get_del);
    BX_RUN(test_prefix_keys);
    BX_RUN(test_growth);
    BX_RUN(test_delete_while_iterating);
    BX_RUN(test_collisions_in_bucket);
    BX_RUN(test_known_collisions_differ);
    BX_RUN(test_hash_repeated);
    BX_RUN(test_intrusive);
    return BX_REPORT();
}
