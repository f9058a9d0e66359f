/*
 * test_siphash.c - SipHash-2-4 against the published vectors, the
 * streaming form against the one-shot one, and the dict's keyed hash.
 */
#include "bx_test.h"
#include "base/dict.h"
#include "base/siphash.h"

#include <stdint.h>

/* The key of the paper and of the reference vectors: bytes 00..0f. */
#define K0 0x0706050403020100ULL
#define K1 0x0f0e0d0c0b0a0908ULL

static void test_vectors(void)
{
    /* message = bytes 00..(len-1); from the paper's appendix (len 15) and
     * the reference implementation's vectors.h (lengths 0, 1, 2, 63) */
    static const struct { size_t len; uint64_t want; } v[] = {
        { 0, 0x726fdb47dd0e0e31ULL },
        { 1, 0x74f839c593dc67fdULL },
        { 2, 0x0d6c8009d9a94f5aULL },
        { 15, 0xa129ca6149be45e5ULL },
        { 63, 0x958a324ceb064572ULL },
    };
    unsigned char msg[64];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        BX_CHECK(bx_siphash(K0, K1, msg, v[i].len) == v[i].want);
}

static void test_streaming(void)
{
    /* every length up to 64, split at every point, and byte by byte */
    unsigned char msg[64];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= sizeof(msg); len++) {
        uint64_t want = bx_siphash(K0, K1, msg, len);
        for (size_t cut = 0; cut <= len; cut++) {
            bx_siphash_t st;
            bx_siphash_init(&st, K0, K1);
            bx_siphash_update(&st, msg, cut);
            bx_siphash_update(&st, msg + cut, len - cut);
            BX_CHECK(bx_siphash_final(&st) == want);
            BX_CHECK(bx_siphash_final(&st) == want);    /* final leaves the state */
        }
        bx_siphash_t st;
        bx_siphash_init(&st, K0, K1);
        for (size_t i = 0; i < len; i++)
            bx_siphash_update(&st, msg + i, 1);
        BX_CHECK(bx_siphash_final(&st) == want);
    }
}

static void test_keyed(void)
{
    /* the key matters */
    BX_CHECK(bx_siphash(K0, K1, "abc", 3) != bx_siphash(K0 ^ 1, K1, "abc", 3));
    BX_CHECK(bx_siphash(K0, K1, "abc", 3) != bx_siphash(K0, K1 ^ 1, "abc", 3));
}

static void test_dict_hash(void)
{
    /* the dict's hash is the low 32 bits of SipHash under the process
     * key, the same in one go or in steps */
    static const char key[] = "/chat/room/42";
    bx_siphash_t st;
    bx_dict_hash_start(&st);
    bx_siphash_update(&st, "/chat", 5);
    bx_siphash_update(&st, "/room/42", 8);
    BX_CHECK(bx_dict_hash_end(&st) == bx_dict_hash(key, sizeof(key) - 1));
    bx_siphash_init_process(&st);
    bx_siphash_update(&st, key, sizeof(key) - 1);
    BX_CHECK((uint32_t)bx_siphash_final(&st) == bx_dict_hash(key, sizeof(key) - 1));
}

int main(void)
{
    (void)bx_test_close_walk;   /* harness helper for async tests; none here */
    BX_RUN(test_vectors);
    BX_RUN(test_streaming);
    BX_RUN(test_keyed);
    BX_RUN(test_dict_hash);
    return BX_REPORT();
}
