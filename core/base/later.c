/*
 * later.c - the later-turn queue (see later.h).
 */
#include <stdlib.h>
#include "base/buf.h"
#include "base/later.h"

/* The queue of one loop: exists only while something is queued (or its
 * last pass is running). */
typedef struct lqueue {
    uv_loop_t *loop;
    uv_idle_t idle;
    bx_list_t queue;            /* of bx_later_t, oldest first */
    struct lqueue *next;        /* the queues of all loops */
} lqueue_t;

/* The allocated entries of bx_later(). */
typedef struct {
    bx_later_t l;
    bx_later_fn fn;
    void *ud;
} once_t;

static lqueue_t *queues;        /* the core is single-threaded: one list */

static void on_idle(uv_idle_t *h);

static void unlink_queue(lqueue_t *q)
{
    for (lqueue_t **pp = &queues; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            return;
        }
}

static lqueue_t *get(uv_loop_t *loop)
{
    lqueue_t *q;

    for (q = queues; q; q = q->next) {
        if (q->loop != loop)
            continue;
        if (!uv_is_closing((uv_handle_t *)&q->idle))
            return q;
        /* closed by someone else's uv_walk at a loop's teardown while
         * entries were queued (a loop at the same address now): forget it;
         * its memory may still be in the old loop's close list */
        unlink_queue(q);
        break;
    }
    q = bx_calloc(1, sizeof(*q));
    q->loop = loop;
    bx_list_init(&q->queue);
    uv_idle_init(loop, &q->idle);
    q->idle.data = q;
    q->next = queues;
    queues = q;
    return q;
}

static void free_queue(uv_handle_t *h)
{
    free(h->data);
}

/* Runs the entries queued before this pass; frees the queue if nothing
 * new was queued meanwhile. */
static void run(lqueue_t *q)
{
    bx_list_t now;

    if (bx_list_empty(&q->queue))
        return;
    /* move the queue into `now`: entries queued by these calls go to
     * q->queue, for the next pass */
    now.next = q->queue.next;
    now.prev = q->queue.prev;
    now.next->prev = &now;
    now.prev->next = &now;
    bx_list_init(&q->queue);
    while (!bx_list_empty(&now)) {
        bx_later_t *l = BX_CONTAINER(now.next, bx_later_t, link);
        bx_list_remove(&l->link);
        l->fn(l->ud);
    }
}

static void on_idle(uv_idle_t *h)
{
    lqueue_t *q = h->data;

    run(q);
    /* closing already: an entry drained the loop (bx_later_drain) */
    if (bx_list_empty(&q->queue) && !uv_is_closing((uv_handle_t *)h)) {
        unlink_queue(q);
        uv_close((uv_handle_t *)&q->idle, free_queue);
    }
}

void bx_later_init(bx_later_t *l, bx_later_fn fn, void *ud)
{
    bx_list_init(&l->link);
    l->fn = fn;
    l->ud = ud;
}

void bx_later_queue(uv_loop_t *loop, bx_later_t *l)
{
    lqueue_t *q;

    if (!bx_list_empty(&l->link))
        return;
    q = get(loop);
    bx_list_push_tail(&q->queue, &l->link);
    if (!uv_is_active((uv_handle_t *)&q->idle))
        uv_idle_start(&q->idle, on_idle);
}

void bx_later_cancel(bx_later_t *l)
{
    bx_list_remove(&l->link);
}

int bx_later_queued(const bx_later_t *l)
{
    return !bx_list_empty(&l->link);
}

static void run_once(void *ud)
{
    once_t *o = ud;
    bx_later_fn fn = o->fn;
    void *fud = o->ud;

    free(o);
    fn(fud);
}

void bx_later(uv_loop_t *loop, bx_later_fn fn, void *ud)
{
    once_t *o = bx_malloc(sizeof(*o));

    o->fn = fn;
    o->ud = ud;
    bx_later_init(&o->l, run_once, o);
    bx_later_queue(loop, &o->l);
}

void bx_later_drain(uv_loop_t *loop)
{
    for (lqueue_t *q = queues; q; q = q->next) {
        if (q->loop != loop || uv_is_closing((uv_handle_t *)&q->idle))
            continue;
        while (!bx_list_empty(&q->queue))
            run(q);
        unlink_queue(q);
        uv_close((uv_handle_t *)&q->idle, free_queue);
        return;
    }
}
