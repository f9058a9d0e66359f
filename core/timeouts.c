/*
 * timeouts.c - many one-shot deadlines on one libuv timer (see timeouts.h).
 */
#include <stddef.h>
#include "timeouts.h"

static void on_timer(uv_timer_t *timer);

/* Arms the timer for the earliest deadline, or stops it. */
static void rearm(bx_timeouts_t *ts)
{
    if (!ts->head) {
        uv_timer_stop(&ts->timer);
        return;
    }
    uint64_t now = uv_now(ts->timer.loop);
    uint64_t due = ts->head->due;
    uv_timer_start(&ts->timer, on_timer, due > now ? due - now : 0, 0);
}

static void unlink_(bx_timeout_t *t)
{
    bx_timeouts_t *ts = t->set;

    if (t->prev)
        t->prev->next = t->next;
    else
        ts->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        ts->tail = t->prev;
    t->prev = t->next = NULL;
    t->set = NULL;
}

static void on_timer(uv_timer_t *timer)
{
    bx_timeouts_t *ts = timer->data;
    uint64_t now = uv_now(timer->loop);

    /* one at a time from the head: a callback may add or remove others */
    while (ts->head && ts->head->due <= now) {
        bx_timeout_t *t = ts->head;
        unlink_(t);
        t->cb(t);
    }
    rearm(ts);
}

void bx_timeouts_init(bx_timeouts_t *ts, uv_loop_t *loop)
{
    ts->head = ts->tail = NULL;
    ts->closed = NULL;
    ts->closed_ud = NULL;
    uv_timer_init(loop, &ts->timer);
    ts->timer.data = ts;
}

void bx_timeouts_add(bx_timeouts_t *ts, bx_timeout_t *t, uint64_t ms, bx_timeout_cb cb)
{
    bx_timeout_t *after = ts->tail;

    t->due = uv_now(ts->timer.loop) + ms;
    t->cb = cb;
    t->set = ts;
    while (after && after->due > t->due)
        after = after->prev;
    t->prev = after;
    t->next = after ? after->next : ts->head;
    if (t->next)
        t->next->prev = t;
    else
        ts->tail = t;
    if (after)
        after->next = t;
    else
        ts->head = t;
    if (ts->head == t)
        rearm(ts);
}

void bx_timeouts_remove(bx_timeout_t *t)
{
    if (!t->set)
        return;
    bx_timeouts_t *ts = t->set;
    int was_head = ts->head == t;
    unlink_(t);
    if (was_head)
        rearm(ts);
}

int bx_timeouts_pending(const bx_timeout_t *t)
{
    return t->set != NULL;
}

static void timer_closed(uv_handle_t *h)
{
    bx_timeouts_t *ts = h->data;
    if (ts->closed)
        ts->closed(ts->closed_ud);
}

void bx_timeouts_close(bx_timeouts_t *ts, void (*closed)(void *ud), void *ud)
{
    while (ts->head)
        unlink_(ts->head);
    ts->closed = closed;
    ts->closed_ud = ud;
    uv_close((uv_handle_t *)&ts->timer, timer_closed);
}
