/*
 * test_timeouts.c - many deadlines on one timer (core/base/timeouts.c): order,
 * removal, a callback adding another, closing with deadlines pending.
 * Each test ends with a loop that closes clean.
 */
#include "bx_test.h"
#include "base/timeouts.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    bx_timeout_t t;
    int id;
} item_t;

static int fired[16];
static int nfired;
static bx_timeouts_t *g_ts;
static item_t *g_extra;

static void record(bx_timeout_t *t)
{
    item_t *it = (item_t *)t;       /* t is the first member */
    if (nfired < 16)
        fired[nfired++] = it->id;
}

/* Adds g_extra (id 9) for 1 ms from now when it fires. */
static void record_and_add(bx_timeout_t *t)
{
    record(t);
    bx_timeouts_add(g_ts, &g_extra->t, 1, record);
}

static int closed_calls;
static void on_closed(void *ud)
{
    (void)ud;
    closed_calls++;
}

static void reset(void)
{
    nfired = 0;
    closed_calls = 0;
    memset(fired, 0, sizeof(fired));
}

/* Deadlines added out of order fire in due order; a removed one never
 * fires; nothing fires inside bx_timeouts_add. */
static void test_order_and_remove(void)
{
    uv_loop_t loop;
    bx_timeouts_t ts;
    item_t a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 }, d = { .id = 4 };

    reset();
    uv_loop_init(&loop);
    bx_timeouts_init(&ts, &loop);
    bx_timeouts_add(&ts, &a.t, 30, record);
    bx_timeouts_add(&ts, &b.t, 10, record);
    bx_timeouts_add(&ts, &c.t, 20, record);
    bx_timeouts_add(&ts, &d.t, 0, record);
    BX_CHECK_INT(nfired, 0);
    BX_CHECK(bx_timeouts_pending(&c.t));
    bx_timeouts_remove(&c.t);
    BX_CHECK(!bx_timeouts_pending(&c.t));
    bx_timeouts_remove(&c.t);                   /* twice is harmless */
    uv_run(&loop, UV_RUN_DEFAULT);              /* returns once none is pending */
    BX_CHECK_INT(nfired, 3);
    BX_CHECK_INT(fired[0], 4);
    BX_CHECK_INT(fired[1], 2);
    BX_CHECK_INT(fired[2], 1);
    BX_CHECK(!bx_timeouts_pending(&a.t));
    bx_timeouts_close(&ts, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(closed_calls, 1);
    BX_LOOP_CLOSE(&loop);
}

/* A callback may add a deadline; removing the head re-arms for the next. */
static void test_add_from_callback(void)
{
    uv_loop_t loop;
    bx_timeouts_t ts;
    item_t a = { .id = 1 }, b = { .id = 2 }, extra = { .id = 9 };

    reset();
    uv_loop_init(&loop);
    bx_timeouts_init(&ts, &loop);
    g_ts = &ts;
    g_extra = &extra;
    bx_timeouts_add(&ts, &a.t, 5, record_and_add);
    bx_timeouts_add(&ts, &b.t, 40, record);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(nfired, 3);
    BX_CHECK_INT(fired[0], 1);
    BX_CHECK_INT(fired[1], 9);
    BX_CHECK_INT(fired[2], 2);
    bx_timeouts_close(&ts, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_LOOP_CLOSE(&loop);
}

/* Closing with deadlines pending drops them: no callback, loop closes. */
static void test_close_pending(void)
{
    uv_loop_t loop;
    bx_timeouts_t ts;
    item_t a = { .id = 1 };

    reset();
    uv_loop_init(&loop);
    bx_timeouts_init(&ts, &loop);
    bx_timeouts_add(&ts, &a.t, 10000, record);
    bx_timeouts_close(&ts, on_closed, NULL);
    BX_CHECK(!bx_timeouts_pending(&a.t));
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(nfired, 0);
    BX_CHECK_INT(closed_calls, 1);
    BX_LOOP_CLOSE(&loop);
}

/* ---- Many deadlines, in any order ---- */

typedef struct {
    bx_timeout_t t;
    size_t index;               /* order of adding */
    int removed;
} many_t;

static many_t **order;          /* in firing order */
static size_t norder;
static many_t *victim;          /* removed by the first callback, if set */

static void record_many(bx_timeout_t *t)
{
    order[norder++] = (many_t *)t;
    if (victim) {
        bx_timeouts_remove(&victim->t);
        victim->removed = 1;
        victim = NULL;
    }
}

/* Random durations and random removals: what fires is exactly what was
 * not removed, by due time, ties in the order they were added; and a
 * callback can remove another deadline due at the same moment. */
static void test_random_order(void)
{
    enum { N = 3000 };
    uv_loop_t loop;
    bx_timeouts_t ts;
    many_t *items = calloc(N, sizeof(*items));
    size_t kept = 0;

    order = calloc(N, sizeof(*order));
    norder = 0;
    srand(7);
    uv_loop_init(&loop);
    bx_timeouts_init(&ts, &loop);
    for (size_t i = 0; i < N; i++) {
        items[i].index = i;
        bx_timeouts_add(&ts, &items[i].t, (uint64_t)(rand() % 40), record_many);
    }
    for (size_t i = 0; i < N; i++) {
        if (rand() % 3 == 0) {
            bx_timeouts_remove(&items[i].t);
            items[i].removed = 1;
        }
    }
    /* the first to fire removes the next one due at the same time */
    many_t *first = NULL, *second = NULL;
    for (size_t i = 0; i < N; i++) {
        many_t *m = &items[i];
        if (m->removed)
            continue;
        if (!first || m->t.due < first->t.due) {
            first = m;
            second = NULL;
        } else if (m->t.due == first->t.due && !second) {
            second = m;
        }
    }
    victim = second;
    for (size_t i = 0; i < N; i++)
        kept += !items[i].removed;
    uv_run(&loop, UV_RUN_DEFAULT);
    kept -= second != NULL;
    BX_CHECK_INT(norder, kept);
    BX_CHECK(order[0] == first);
    for (size_t i = 0; i < norder; i++) {
        BX_CHECK(!order[i]->removed);
        BX_CHECK(!bx_timeouts_pending(&order[i]->t));
        if (i > 0) {
            uint64_t a = order[i - 1]->t.due, b = order[i]->t.due;
            BX_CHECK(a <= b);
            if (a == b)
                BX_CHECK(order[i - 1]->index < order[i]->index);
        }
    }
    bx_timeouts_close(&ts, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(items);
    free(order);
    BX_LOOP_CLOSE(&loop);
}

/* Each deadline earlier than all before it (a client picks its connect's
 * timeout): the worst order for a sorted list, 100000 of them. Nearly all
 * are removed again, the rest fire earliest first. */
static void test_descending_many(void)
{
    enum { N = 100000, KEEP = 20 };
    uv_loop_t loop;
    bx_timeouts_t ts;
    many_t *items = calloc(N, sizeof(*items));

    order = calloc(N, sizeof(*order));
    norder = 0;
    victim = NULL;
    uv_loop_init(&loop);
    bx_timeouts_init(&ts, &loop);
    for (size_t i = 0; i < N; i++) {
        items[i].index = i;
        bx_timeouts_add(&ts, &items[i].t, (uint64_t)(N - i), record_many);
    }
    for (size_t i = 0; i < N - KEEP; i++)
        bx_timeouts_remove(&items[i].t);
    for (size_t i = N - KEEP; i < N; i++)
        BX_CHECK(bx_timeouts_pending(&items[i].t));
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, KEEP);
    for (size_t i = 0; i < KEEP; i++)
        BX_CHECK(order[i] == &items[N - 1 - i]);        /* 1 ms, 2 ms, ... */
    bx_timeouts_close(&ts, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(items);
    free(order);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    (void)bx_test_close_walk;
    BX_RUN(test_order_and_remove);
    BX_RUN(test_add_from_callback);
    BX_RUN(test_close_pending);
    BX_RUN(test_random_order);
    BX_RUN(test_descending_many);
    return BX_REPORT();
}
