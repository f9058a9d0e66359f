/*
 * bx_engine_test.h - what the engine tests share: recorders for the
 * engine's callbacks, which note a callback run inside the call that
 * started it (g_inside set around the call, g_reentered noted), and
 * loop drivers bounded in time (only a broken test waits the bound).
 *
 * Header-only, for core/test/test_*.c that drive an engine through
 * engine.h; include after bx_test.h.
 */
#ifndef BX_ENGINE_TEST_H
#define BX_ENGINE_TEST_H

#include <stdio.h>
#include <string.h>
#include <uv.h>
#include "engine/engine.h"

static int g_inside;            /* set while an engine call is on the stack */
static int g_reentered;         /* a callback ran while g_inside was set */

/* What one callback brought. */
typedef struct {
    int calls;
    int status;
    int yes;
    char id[32];
} rec_t;

__attribute__((unused)) static void id_cb(void *ud, int status, const char *id)
{
    rec_t *r = ud;
    g_reentered |= g_inside;
    r->calls++;
    r->status = status;
    snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
}

__attribute__((unused)) static void bool_cb(void *ud, int status, int yes)
{
    rec_t *r = ud;
    g_reentered |= g_inside;
    r->calls++;
    r->status = status;
    r->yes = yes;
}

__attribute__((unused)) static void done_cb(void *ud, int status)
{
    rec_t *r = ud;
    g_reentered |= g_inside;
    r->calls++;
    r->status = status;
}

/* A counter for close callbacks. */
__attribute__((unused)) static void closed(void *ud) { (*(int *)ud)++; }

static void bx_et_tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until *flag >= want, or `secs`. A timer of its own keeps
 * the loop alive meanwhile: an engine's handles do not (a server's
 * listeners do). Returns whether *flag reached `want`. */
__attribute__((unused)) static int run_until(uv_loop_t *loop, const int *flag, int want,
                                             double secs)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, bx_et_tick, 5, 5);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)(secs * 1000);
    while (*flag < want && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag >= want;
}

/* Runs the loop for `secs`. */
__attribute__((unused)) static void run_for(uv_loop_t *loop, double secs)
{
    int never = 0;
    run_until(loop, &never, 1, secs);
}

/* Closes `e` and waits (bounded) for its callback. */
__attribute__((unused)) static void close_engine(uv_loop_t *loop, bx_engine_t *e)
{
    int done = 0;
    e->ops->close(e, closed, &done);
    run_until(loop, &done, 1, 10);
}

/* Creates a client on `e` and copies its id; 0 or -1. */
__attribute__((unused)) static int client(uv_loop_t *loop, bx_engine_t *e, char id[32])
{
    rec_t r = { 0 };
    g_inside = 1;
    int rc = e->ops->create_client(e, id_cb, &r);
    g_inside = 0;
    if (rc != 0 || !run_until(loop, &r.calls, 1, 10) || r.status != 0)
        return -1;
    memcpy(id, r.id, 32);
    return 0;
}

/* Subscribes and waits for the answer into *r; the call's own error, or
 * -100 when no answer came. */
__attribute__((unused)) static int subscribe_rec(uv_loop_t *loop, bx_engine_t *e,
                                                 const char *id, const char *ch, rec_t *r)
{
    memset(r, 0, sizeof(*r));
    g_inside = 1;
    int rc = e->ops->subscribe(e, id, ch, 0, bool_cb, r);
    g_inside = 0;
    if (rc != 0)
        return rc;
    return run_until(loop, &r->calls, 1, 10) ? 0 : -100;
}

/* Publishes `m` (borrowed) and waits for the answer: its status, the
 * call's own error, or -100 when no answer came. */
__attribute__((unused)) static int publish_msg(uv_loop_t *loop, bx_engine_t *e, json_t *m)
{
    rec_t r = { 0 };
    g_inside = 1;
    int rc = e->ops->publish(e, m, done_cb, &r);
    g_inside = 0;
    if (rc != 0)
        return rc;
    if (!run_until(loop, &r.calls, 1, 10))
        return -100;
    return r.status;
}

#endif
