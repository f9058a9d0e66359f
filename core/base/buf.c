/*
 * buf.c - growable byte buffers, refcounted chunks and chunk vectors.
 */
#include "base/buf.h"
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Allocation ---- */

/* Every input is bounded by an option, so running out of memory is a
 * configuration or host problem: die loudly instead of limping on. */
static void oom(size_t n)
{
    bx_logf(BX_LOG_ERROR, "core", "out of memory allocating %zu bytes", n);
    abort();
}

void *bx_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *bx_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *bx_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *bx_strdup(const char *s)
{
    return bx_strndup(s, strlen(s));
}

char *bx_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = bx_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* ---- Growable buffer ---- */

char *bx_buf_reserve(bx_buf_t *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2)
                oom(SIZE_MAX);
            cap *= 2;
        }
        b->data = bx_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void bx_buf_append(bx_buf_t *b, const void *data, size_t n)
{
    if (n == 0)
        return;
    memcpy(bx_buf_reserve(b, n), data, n);
    b->len += n;
}

void bx_buf_puts(bx_buf_t *b, const char *s)
{
    bx_buf_append(b, s, strlen(s));
}

void bx_buf_printf(bx_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    size_t room = b->cap - b->len;
    int n;

    /* First try in the room we have; retry once with the exact size. */
    va_start(ap, fmt);
    n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= room) {
        bx_buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void bx_buf_consume(bx_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void bx_buf_reset(bx_buf_t *b)
{
    b->len = 0;
}

void bx_buf_free(bx_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- Refcounted chunks ---- */

bx_chunk_t *bx_chunk_new(const void *data, size_t len)
{
    bx_chunk_t *c = bx_malloc(sizeof(*c) + len + 1);
    c->refs = 1;
    c->flags = 0;
    c->len = len;
    if (len)
        memcpy(c->data, data, len);
    c->data[len] = '\0';    /* handy for debugging and string APIs */
    return c;
}

bx_chunk_t *bx_chunk_alloc(size_t cap)
{
    bx_chunk_t *c = bx_malloc(sizeof(*c) + cap + 1);
    c->refs = 1;
    c->flags = 0;
    c->len = cap;
    c->data[cap] = '\0';
    return c;
}

bx_chunk_t *bx_chunk_from_buf(bx_buf_t *b)
{
    /* The chunk header must precede the bytes, so a copy is unavoidable;
     * the buffer's memory is released rather than kept, as promised. */
    bx_chunk_t *c = bx_chunk_new(b->data, b->len);
    bx_buf_free(b);
    return c;
}

bx_chunk_t *bx_chunk_ref(bx_chunk_t *c)
{
    if (c && c->refs)
        c->refs++;
    return c;
}

void bx_chunk_unref(bx_chunk_t *c)
{
    if (!c || c->refs == 0)
        return;
    if (--c->refs == 0)
        free(c);
}

/* ---- Chunk vectors ---- */

static void chunkv_grow(bx_chunkv_t *cv, size_t need)
{
    size_t cap;

    if (cv->cap >= need)
        return;
    cap = cv->cap ? cv->cap * 2 : 4;
    while (cap < need)
        cap *= 2;
    cv->v = bx_realloc(cv->v, cap * sizeof(*cv->v));
    cv->cap = cap;
}

void bx_chunkv_push_new(bx_chunkv_t *cv, bx_chunk_t *c)
{
    chunkv_grow(cv, cv->n + 1);
    cv->v[cv->n++] = c;
}

void bx_chunkv_push(bx_chunkv_t *cv, bx_chunk_t *c)
{
    bx_chunkv_push_new(cv, bx_chunk_ref(c));
}

size_t bx_chunkv_bytes(const bx_chunkv_t *cv)
{
    size_t total = 0;
    for (size_t i = 0; i < cv->n; i++)
        total += cv->v[i]->len;
    return total;
}

void bx_chunkv_move(bx_chunkv_t *dst, bx_chunkv_t *src)
{
    if (src->n == 0)
        return;
    if (dst->n == 0 && dst->cap < src->cap) {
        /* Steal the array: the common case of a fresh output queue. src is
         * left as BX_CHUNKV_INIT so nothing of it can leak. */
        free(dst->v);
        *dst = *src;
        src->v = NULL;
        src->n = src->cap = 0;
        return;
    }
    chunkv_grow(dst, dst->n + src->n);
    memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
    dst->n += src->n;
    src->n = 0;
}

/* The most bytes copied into one chunk by bx_chunkv_push_joined. */
#define JOIN_RUN_MAX 65536

/* The last join of several entries: its entries (references held, so no
 * address in it can be reused by another chunk while it is kept), `first`
 * and what it appended. A fan-out joins the same messages for every
 * subscriber of a turn; all but the first take the result by reference
 * instead of copying the messages again. Process-wide: the core runs on one
 * thread. */
static struct {
    bx_chunkv_t items;
    bx_chunkv_t out;
    int first;
} join_memo;

void bx_chunkv_join_forget(void)
{
    bx_chunkv_free(&join_memo.items);
    bx_chunkv_free(&join_memo.out);
}

static void join(bx_chunkv_t *cv, const bx_chunkv_t *items, int first)
{
    BX_CHUNK_STATIC(comma, ",");
    size_t i = 0;

    while (i < items->n) {
        size_t j = i, bytes = 0;
        while (j < items->n && items->v[j]->len <= BX_JOIN_COPY_MAX &&
               bytes + items->v[j]->len + 1 <= JOIN_RUN_MAX)
            bytes += items->v[j++]->len + 1;        /* and its comma */
        if (j - i >= 2) {
            bx_chunk_t *c = bx_chunk_alloc(bytes);
            size_t off = 0;
            for (; i < j; i++) {
                if (i > 0 || !first)
                    c->data[off++] = ',';
                memcpy(c->data + off, items->v[i]->data, items->v[i]->len);
                off += items->v[i]->len;
            }
            c->len = off;
            c->data[off] = '\0';
            bx_chunkv_push_new(cv, c);
            continue;
        }
        if (i > 0 || !first)
            bx_chunkv_push(cv, comma);
        bx_chunkv_push(cv, items->v[i++]);
    }
}

void bx_chunkv_push_joined(bx_chunkv_t *cv, const bx_chunkv_t *items, int first)
{
    size_t i;

    if (items->n < 2) {         /* a lone entry is shared, never copied */
        join(cv, items, first);
        return;
    }
    if (join_memo.items.n != items->n || join_memo.first != first ||
        memcmp(join_memo.items.v, items->v, items->n * sizeof(bx_chunk_t *)) != 0) {
        bx_chunkv_clear(&join_memo.items);
        bx_chunkv_clear(&join_memo.out);
        join(&join_memo.out, items, first);
        for (i = 0; i < items->n; i++)
            bx_chunkv_push(&join_memo.items, items->v[i]);
        join_memo.first = first;
    }
    for (i = 0; i < join_memo.out.n; i++)
        bx_chunkv_push(cv, join_memo.out.v[i]);
}

void bx_chunkv_clear(bx_chunkv_t *cv)
{
    for (size_t i = 0; i < cv->n; i++)
        bx_chunk_unref(cv->v[i]);
    cv->n = 0;
}

void bx_chunkv_free(bx_chunkv_t *cv)
{
    bx_chunkv_clear(cv);
    free(cv->v);
    cv->v = NULL;
    cv->cap = 0;
}
