/*
 * test_timeouts.c - many deadlines on one timer (core/timeouts.c): order,
 * removal, a callback adding another, closing with deadlines pending.
 * Each test ends with a loop that closes clean.
 */
#include "bx_test.h"
#include "timeouts.h"

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

int main(void)
{
    (void)bx_test_close_walk;
    BX_RUN(test_order_and_remove);
    BX_RUN(test_add_from_callback);
    BX_RUN(test_close_pending);
    return BX_REPORT();
}
