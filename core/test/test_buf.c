/*
 * test_buf.c - byte buffers, refcounted chunks and chunk vectors.
 */
#include "bx_test.h"
#include "base/buf.h"

#include <stdlib.h>

static void test_alloc(void)
{
    char *s = bx_strdup("hello");
    char *t = bx_strndup("hello", 3);
    char *u = bx_strndup("hi", 10);

    BX_CHECK_STR(s, "hello");
    BX_CHECK_STR(t, "hel");
    BX_CHECK_STR(u, "hi");
    free(s);
    free(t);
    free(u);
    s = bx_calloc(4, 4);
    for (int i = 0; i < 16; i++)
        BX_CHECK(s[i] == 0);
    s = bx_realloc(s, 1000);
    free(s);
}

static void test_buf_append(void)
{
    bx_buf_t b = BX_BUF_INIT;

    bx_buf_append(&b, "ab", 2);
    bx_buf_puts(&b, "cd");
    bx_buf_printf(&b, "%d-%s", 42, "x");
    BX_CHECK_INT(b.len, 8);
    BX_CHECK(memcmp(b.data, "abcd42-x", 8) == 0);
    /* A long printf goes through the retry path. */
    bx_buf_reset(&b);
    BX_CHECK_INT(b.len, 0);
    bx_buf_printf(&b, "%0500d", 7);
    BX_CHECK_INT(b.len, 500);
    BX_CHECK(b.data[499] == '7' && b.data[0] == '0');
    bx_buf_consume(&b, 499);
    BX_CHECK_INT(b.len, 1);
    BX_CHECK(b.data[0] == '7');
    bx_buf_consume(&b, 10);
    BX_CHECK_INT(b.len, 0);
    char *end = bx_buf_reserve(&b, 10000);
    BX_CHECK(end == b.data && b.cap >= 10000);
    bx_buf_free(&b);
    BX_CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    bx_buf_puts(&b, "again");
    BX_CHECK_INT(b.len, 5);
    bx_buf_free(&b);
}

static void test_chunks(void)
{
    bx_chunk_t *c = bx_chunk_new("abc", 3);
    bx_buf_t b = BX_BUF_INIT;

    BX_CHECK_INT(c->refs, 1);
    BX_CHECK_INT(c->len, 3);
    BX_CHECK(bx_chunk_ref(c) == c);
    BX_CHECK_INT(c->refs, 2);
    bx_chunk_unref(c);
    BX_CHECK_INT(c->refs, 1);
    bx_chunk_unref(c);
    bx_chunk_unref(NULL);

    bx_buf_puts(&b, "from buf");
    c = bx_chunk_from_buf(&b);
    BX_CHECK(b.len == 0 && b.data == NULL);
    BX_CHECK_INT(c->len, 8);
    BX_CHECK(memcmp(c->data, "from buf", 8) == 0);
    bx_chunk_unref(c);

    c = bx_chunk_new(NULL, 0);
    BX_CHECK_INT(c->len, 0);
    bx_chunk_unref(c);
}

static void test_static_chunk(void)
{
    BX_CHUNK_STATIC(comma, ",");

    BX_CHECK_INT(comma->len, 1);
    BX_CHECK(comma->data[0] == ',');
    BX_CHECK(bx_chunk_ref(comma) == comma);
    BX_CHECK_INT(comma->refs, 0);
    bx_chunk_unref(comma);
    bx_chunk_unref(comma);
    BX_CHECK_INT(comma->refs, 0);
}

static void test_chunkv(void)
{
    BX_CHUNK_STATIC(open, "[");
    bx_chunkv_t a = BX_CHUNKV_INIT, b = BX_CHUNKV_INIT;
    bx_chunk_t *shared = bx_chunk_new("{}", 2);

    bx_chunkv_push(&a, open);
    for (int i = 0; i < 10; i++)
        bx_chunkv_push(&a, shared);
    BX_CHECK_INT(shared->refs, 11);
    bx_chunkv_push_new(&a, bx_chunk_new("]", 1));
    BX_CHECK_INT(a.n, 12);
    BX_CHECK_INT(bx_chunkv_bytes(&a), 22);

    /* Moving into an empty vector, then appending to a non-empty one. */
    bx_chunkv_move(&b, &a);
    BX_CHECK_INT(a.n, 0);
    BX_CHECK_INT(b.n, 12);
    bx_chunkv_push(&a, shared);
    bx_chunkv_move(&b, &a);
    BX_CHECK_INT(a.n, 0);
    BX_CHECK_INT(b.n, 13);
    BX_CHECK_INT(shared->refs, 12);
    BX_CHECK(b.v[0] == open && b.v[12] == shared);

    bx_chunkv_clear(&b);
    BX_CHECK_INT(b.n, 0);
    BX_CHECK_INT(shared->refs, 1);
    bx_chunkv_push(&b, shared);
    bx_chunkv_free(&b);
    bx_chunkv_free(&a);
    BX_CHECK(b.v == NULL && b.n == 0);
    BX_CHECK_INT(shared->refs, 1);
    bx_chunk_unref(shared);
}

/* The bytes of `cv`, joined, into `out` (freed by the caller). */
static void flatten(const bx_chunkv_t *cv, bx_buf_t *out)
{
    for (size_t i = 0; i < cv->n; i++)
        bx_buf_append(out, cv->v[i]->data, cv->v[i]->len);
}

/* A delivery batch of small messages becomes one piece of output (not one
 * per message and one per comma); a large message is shared, not copied;
 * the bytes are the same either way. */
static void test_joined_coalesces(void)
{
    bx_chunkv_t items = BX_CHUNKV_INIT, out = BX_CHUNKV_INIT;
    bx_buf_t got = BX_BUF_INIT, want = BX_BUF_INIT;
    char msg[32];

    for (int i = 0; i < 50; i++) {
        int n = snprintf(msg, sizeof(msg), "{\"n\":%d}", i);
        bx_chunkv_push_new(&items, bx_chunk_new(msg, (size_t)n));
        bx_buf_printf(&want, "%s%s", i ? "," : "", msg);
    }
    bx_chunkv_push_joined(&out, &items, 1);
    BX_CHECK_INT(out.n, 1);
    flatten(&out, &got);
    BX_CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
    BX_CHECK_INT(out.v[0]->data[out.v[0]->len], '\0');
    bx_chunkv_free(&out);

    /* not first: a comma before the first one too */
    bx_buf_reset(&got);
    bx_chunkv_push_joined(&out, &items, 0);
    BX_CHECK_INT(out.n, 1);
    flatten(&out, &got);
    BX_CHECK(got.len == want.len + 1 && got.data[0] == ',' &&
             memcmp(got.data + 1, want.data, want.len) == 0);
    bx_chunkv_free(&out);

    /* a large one in the middle is shared; the runs around it are copied */
    bx_chunk_t *big = bx_chunk_alloc(BX_JOIN_COPY_MAX + 1);
    memset(big->data, 'x', big->len);
    bx_chunkv_t mixed = BX_CHUNKV_INIT;
    for (int i = 0; i < 3; i++)
        bx_chunkv_push(&mixed, items.v[i]);
    bx_chunkv_push(&mixed, big);
    for (int i = 3; i < 6; i++)
        bx_chunkv_push(&mixed, items.v[i]);
    bx_chunkv_push_joined(&out, &mixed, 1);
    BX_CHECK_INT(out.n, 4);         /* run, comma, big, run */
    BX_CHECK(out.v[2] == big);
    BX_CHECK_INT(big->refs, 5);     /* ours, mixed's, out's, the memo's two */
    bx_chunkv_join_forget();
    BX_CHECK_INT(big->refs, 3);
    bx_buf_reset(&got);
    flatten(&out, &got);
    BX_CHECK_INT(got.len, 6 * 7 + 6 + big->len);   /* 7 members, 6 commas */
    bx_chunkv_free(&out);

    /* a lone small one is shared too */
    bx_chunkv_t one = BX_CHUNKV_INIT;
    bx_chunkv_push(&one, items.v[7]);
    bx_chunkv_push_joined(&out, &one, 1);
    BX_CHECK_INT(out.n, 1);
    BX_CHECK(out.v[0] == items.v[7]);
    bx_chunkv_free(&out);

    bx_chunkv_free(&one);
    bx_chunkv_free(&mixed);
    bx_chunk_unref(big);
    bx_chunkv_join_forget();
    bx_chunkv_free(&items);
    bx_buf_free(&got);
    bx_buf_free(&want);
}

/* The same entries joined again (the next subscriber of a fan-out) give the
 * same chunk by reference; other entries, or the same with `first`
 * changed, are joined afresh; forgetting drops the memo's references. */
static void test_joined_memo(void)
{
    bx_chunkv_t items = BX_CHUNKV_INIT, a = BX_CHUNKV_INIT, b = BX_CHUNKV_INIT;
    bx_chunkv_t c = BX_CHUNKV_INIT, other = BX_CHUNKV_INIT;
    bx_buf_t got = BX_BUF_INIT;

    for (int i = 0; i < 3; i++) {
        char msg[8];
        int n = snprintf(msg, sizeof(msg), "[%d]", i);
        bx_chunkv_push_new(&items, bx_chunk_new(msg, (size_t)n));
    }
    bx_chunkv_push_joined(&a, &items, 1);
    bx_chunkv_push_joined(&b, &items, 1);
    BX_CHECK_INT(a.n, 1);
    BX_CHECK_INT(b.n, 1);
    BX_CHECK(a.v[0] == b.v[0]);
    BX_CHECK_INT(a.v[0]->refs, 3);  /* a's, b's, the memo's */

    bx_chunkv_push_joined(&c, &items, 0);
    BX_CHECK(c.v[0] != a.v[0]);
    flatten(&c, &got);
    BX_CHECK(got.len == 12 && memcmp(got.data, ",[0],[1],[2]", 12) == 0);
    BX_CHECK_INT(a.v[0]->refs, 2);  /* the memo moved on */

    /* the same entries but one: joined afresh, with its own bytes */
    for (int i = 0; i < 2; i++)
        bx_chunkv_push(&other, items.v[i]);
    bx_chunkv_push_new(&other, bx_chunk_new("[9]", 3));
    bx_chunkv_clear(&c);
    bx_chunkv_push_joined(&c, &other, 1);
    bx_buf_reset(&got);
    flatten(&c, &got);
    BX_CHECK(got.len == 11 && memcmp(got.data, "[0],[1],[9]", 11) == 0);

    BX_CHECK_INT(items.v[0]->refs, 3);  /* items', other's, the memo's */
    bx_chunkv_join_forget();
    BX_CHECK_INT(items.v[0]->refs, 2);
    BX_CHECK_INT(c.v[0]->refs, 1);

    bx_chunkv_free(&a);
    bx_chunkv_free(&b);
    bx_chunkv_free(&c);
    bx_chunkv_free(&other);
    bx_chunkv_free(&items);
    bx_buf_free(&got);
}

int main(void)
{
    (void)bx_test_close_walk;   /* harness helper for async tests; none here */
    BX_RUN(test_alloc);
    BX_RUN(test_buf_append);
    BX_RUN(test_chunks);
    BX_RUN(test_static_chunk);
    BX_RUN(test_chunkv);
    BX_RUN(test_joined_coalesces);
    BX_RUN(test_joined_memo);
    return BX_REPORT();
}
