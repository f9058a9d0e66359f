/*
 * timeouts.c - many one-shot deadlines on one libuv timer (see timeouts.h).
 */
#include <stddef.h>
#include <stdlib.h>
#include "base/buf.h"
#include "base/timeouts.h"

static void on_timer(uv_timer_t *timer);

/* Whether a is due before b. */
static int before(const bx_timeout_t *a, const bx_timeout_t *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(bx_timeouts_t *ts, bx_timeout_t *t, size_t i)
{
    ts->heap[i] = t;
    t->slot = i;
}

/* Moves the entry at `i` up or down until the heap order holds again. */
static void fix(bx_timeouts_t *ts, size_t i)
{
    bx_timeout_t *t = ts->heap[i];

    while (i > 0 && before(t, ts->heap[(i - 1) / 2])) {
        place(ts, ts->heap[(i - 1) / 2], i);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= ts->n)
            break;
        if (c + 1 < ts->n && before(ts->heap[c + 1], ts->heap[c]))
            c++;
        if (!before(ts->heap[c], t))
            break;
        place(ts, ts->heap[c], i);
        i = c;
    }
    place(ts, t, i);
}

/* Arms the timer for the earliest deadline, or stops it. */
static void rearm(bx_timeouts_t *ts)
{
    if (ts->n == 0) {
        uv_timer_stop(&ts->timer);
        return;
    }
    uint64_t now = uv_now(ts->timer.loop);
    uint64_t due = ts->heap[0]->due;
    uv_timer_start(&ts->timer, on_timer, due > now ? due - now : 0, 0);
}

static void unlink_(bx_timeout_t *t)
{
    bx_timeouts_t *ts = t->set;
    size_t i = t->slot;

    t->set = NULL;
    if (--ts->n > i) {
        /* the last entry fills the hole, then finds its place */
        place(ts, ts->heap[ts->n], i);
        fix(ts, i);
    }
}

static void on_timer(uv_timer_t *timer)
{
    bx_timeouts_t *ts = timer->data;
    uint64_t now = uv_now(timer->loop);

    /* one at a time from the top: a callback may add or remove others */
    while (ts->n && ts->heap[0]->due <= now) {
        bx_timeout_t *t = ts->heap[0];
        unlink_(t);
        t->cb(t);
    }
    rearm(ts);
}

void bx_timeouts_init(bx_timeouts_t *ts, uv_loop_t *loop)
{
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    ts->seq = 0;
    ts->closed = NULL;
    ts->closed_ud = NULL;
    uv_timer_init(loop, &ts->timer);
    ts->timer.data = ts;
}

void bx_timeouts_add(bx_timeouts_t *ts, bx_timeout_t *t, uint64_t ms, bx_timeout_cb cb)
{
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? 2 * ts->cap : 64;
        ts->heap = bx_realloc(ts->heap, ts->cap * sizeof(*ts->heap));
    }
    t->due = uv_now(ts->timer.loop) + ms;
    t->seq = ts->seq++;
    t->cb = cb;
    t->set = ts;
    place(ts, t, ts->n++);
    fix(ts, t->slot);
    if (ts->heap[0] == t)
        rearm(ts);
}

void bx_timeouts_remove(bx_timeout_t *t)
{
    if (!t->set)
        return;
    bx_timeouts_t *ts = t->set;
    int was_first = t->slot == 0;
    unlink_(t);
    if (was_first)
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
    for (size_t i = 0; i < ts->n; i++)
        ts->heap[i]->set = NULL;
    free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
    ts->closed = closed;
    ts->closed_ud = ud;
    uv_close((uv_handle_t *)&ts->timer, timer_closed);
}
