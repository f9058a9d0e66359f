/*
 * siphash.h - SipHash-2-4 (Aumasson and Bernstein, 2012), one-shot and
 * streaming, and the per-process random key the hash tables use.
 *
 * Hash tables index client-chosen strings (channel names, client ids from
 * socket binds); an unkeyed hash lets a client pick keys that all collide.
 * With a secret random key per process, as Redis does, it cannot.
 */
#ifndef BX_SIPHASH_H
#define BX_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* A streaming state: plain data, so a copy is a snapshot that can be
 * finished independently (channel.c hashes every prefix of a name that
 * way, in one pass). */
typedef struct {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;              /* the bytes of an unfinished block, LE */
    size_t len;                 /* bytes absorbed so far */
} bx_siphash_t;

/* Starts a hash with the key (k0, k1): the 16 key bytes read as two
 * little-endian 64-bit words. */
void bx_siphash_init(bx_siphash_t *st, uint64_t k0, uint64_t k1);

/* Absorbs `len` bytes of `data` (borrowed). */
void bx_siphash_update(bx_siphash_t *st, const void *data, size_t len);

/* The hash of everything absorbed; `st` is left unchanged. */
uint64_t bx_siphash_final(const bx_siphash_t *st);

/* One-shot SipHash-2-4 of `data` under (k0, k1). */
uint64_t bx_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len);

/* Starts a hash under this process's key: 16 bytes from the kernel's
 * CSPRNG, drawn once (thread-safe) on first use. */
void bx_siphash_init_process(bx_siphash_t *st);

#endif
