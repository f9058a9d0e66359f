/*
 * buf.h - growable byte buffers and refcounted immutable chunks.
 *
 * A bx_buf_t is a private, growable byte array used while building output.
 * A bx_chunk_t is an immutable, refcounted byte string: a published message
 * is serialized once into a chunk and every recipient's output holds a
 * reference to the same bytes (DESIGN.md "Data flow of one publish").
 *
 * Allocation never fails: bx_malloc() and friends abort with a message on
 * OOM, as Redis' zmalloc does; a client can never make us run out of memory
 * because every input is bounded by an option.
 */
#ifndef BX_BUF_H
#define BX_BUF_H

#include <stddef.h>
#include <stdint.h>

/* ---- Allocation ---- */

/* malloc/calloc/realloc/strdup that abort on out-of-memory. */
void *bx_malloc(size_t n);
void *bx_calloc(size_t n, size_t size);
void *bx_realloc(void *p, size_t n);
char *bx_strdup(const char *s);
char *bx_strndup(const char *s, size_t n);

/* ---- String slice ---- */

typedef struct {
    const char *base;
    size_t len;
} bx_str_t;

#define BX_STRLIT(s) ((bx_str_t){ (s), sizeof(s) - 1 })

/* ---- Growable buffer ---- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} bx_buf_t;

#define BX_BUF_INIT { NULL, 0, 0 }

/* Makes room for at least `n` more bytes; returns a pointer to the end. */
char *bx_buf_reserve(bx_buf_t *b, size_t n);

/* Appends bytes / a NUL-terminated string / a formatted string. */
void bx_buf_append(bx_buf_t *b, const void *data, size_t n);
void bx_buf_puts(bx_buf_t *b, const char *s);
void bx_buf_printf(bx_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Drops the first `n` bytes (used by parsers that consume from the front). */
void bx_buf_consume(bx_buf_t *b, size_t n);

/* Empties the buffer but keeps its memory. */
void bx_buf_reset(bx_buf_t *b);

/* Frees the memory; the buffer is left empty and reusable. */
void bx_buf_free(bx_buf_t *b);

/* ---- Refcounted chunks ---- */

typedef struct bx_chunk_s {
    uint32_t refs;      /* 0 means static: never freed, ref/unref are no-ops */
    uint32_t flags;     /* free for the owner's use (e.g. "is a delivery") */
    size_t len;
    char data[];
} bx_chunk_t;

/* Returns a new chunk (one reference) holding a copy of `data`. */
bx_chunk_t *bx_chunk_new(const void *data, size_t len);

/* Returns a new chunk (one reference) with room for `cap` bytes, len = cap
 * and the bytes undefined: the owner fills them (and may lower len) before
 * anyone else sees the chunk. */
bx_chunk_t *bx_chunk_alloc(size_t cap);

/* Returns a new chunk (one reference) that takes over the bytes of `b`,
 * leaving `b` empty. */
bx_chunk_t *bx_chunk_from_buf(bx_buf_t *b);

/* Adds a reference; returns `c` for chaining. */
bx_chunk_t *bx_chunk_ref(bx_chunk_t *c);

/* Drops a reference; frees the chunk when it was the last one. NULL is ok. */
void bx_chunk_unref(bx_chunk_t *c);

/* Declares a static chunk, for literal pieces such as "[" or ",". */
#define BX_CHUNK_STATIC(name, lit)                                        \
    static struct { uint32_t refs, flags; size_t len; char data[sizeof(lit)]; } \
        name##_storage = { 0, 0, sizeof(lit) - 1, lit };                  \
    static bx_chunk_t *const name = (bx_chunk_t *)&name##_storage

/* ---- Chunk vectors ---- */

/* An ordered list of chunk references; the vector owns one reference to
 * each entry. */
typedef struct {
    bx_chunk_t **v;
    size_t n;
    size_t cap;
} bx_chunkv_t;

#define BX_CHUNKV_INIT { NULL, 0, 0 }

/* Appends `c`, stealing the caller's reference. */
void bx_chunkv_push_new(bx_chunkv_t *cv, bx_chunk_t *c);

/* Appends `c`, taking a new reference (the caller keeps its own). */
void bx_chunkv_push(bx_chunkv_t *cv, bx_chunk_t *c);

/* Appends the entries of `items` to `cv`, separated by commas, with a comma
 * before the first too unless `first`: the members of a JSON array whose
 * brackets the caller adds. Consecutive small entries (up to
 * BX_JOIN_COPY_MAX bytes each) are copied, commas included, into one new
 * chunk: one piece of a writev per message costs the kernel and the
 * bookkeeping more than the copy. Larger entries, and a lone small one,
 * are shared (new references), never copied. */
#define BX_JOIN_COPY_MAX 4096
void bx_chunkv_push_joined(bx_chunkv_t *cv, const bx_chunkv_t *items, int first);

/* bx_chunkv_push_joined keeps its last result, and references to the
 * entries it came from, to hand it again to the next join of the same
 * entries (a fan-out's subscribers); this drops them. The hub calls it at
 * each tick, so nothing is held past the turn after its deliveries. */
void bx_chunkv_join_forget(void);

/* Total byte length of all entries. */
size_t bx_chunkv_bytes(const bx_chunkv_t *cv);

/* Moves every entry of `src` to the end of `dst`; `src` is left empty. */
void bx_chunkv_move(bx_chunkv_t *dst, bx_chunkv_t *src);

/* Drops every reference and empties the vector (memory kept). */
void bx_chunkv_clear(bx_chunkv_t *cv);

/* Drops every reference and frees the vector's memory. */
void bx_chunkv_free(bx_chunkv_t *cv);

#endif
