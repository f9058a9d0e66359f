/*
 * test_later.c - the later-turn queue of base/later.h: nothing runs inside
 * the call that queues it, entries run in the order queued, what a pass
 * queues runs on the next turn, an entry may free or re-queue itself,
 * cancel works (also from inside a pass), and the queue leaves no handle
 * behind.
 */
#include "bx_test.h"
#include "base/later.h"

#include <stdlib.h>

static int order[32];
static int norder;

static void record(void *ud)
{
    if (norder < 32)
        order[norder++] = (int)(intptr_t)ud;
}

static void reset(void)
{
    norder = 0;
    memset(order, 0, sizeof(order));
}

static void test_order_and_never_inside(void)
{
    uv_loop_t loop;
    bx_later_t e;

    reset();
    uv_loop_init(&loop);
    for (intptr_t i = 1; i <= 5; i++)
        bx_later(&loop, record, (void *)i);
    bx_later_init(&e, record, (void *)6);
    BX_CHECK(!bx_later_queued(&e));
    bx_later_queue(&loop, &e);
    bx_later_queue(&loop, &e);                  /* already queued: once */
    BX_CHECK(bx_later_queued(&e));
    BX_CHECK_INT(norder, 0);                    /* nothing ran inside */
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, 6);
    for (int i = 0; i < 6; i++)
        BX_CHECK_INT(order[i], i + 1);
    BX_CHECK(!bx_later_queued(&e));
    BX_LOOP_CLOSE(&loop);                       /* no handle left over */
}

/* ---- Queued while running: the next turn ---- */

static uv_loop_t *chain_loop;
static int chain_left;

static void chain(void *ud)
{
    record(ud);
    if (--chain_left > 0)
        bx_later(chain_loop, chain, (void *)((intptr_t)ud + 1));
}

static void test_queued_while_running_waits(void)
{
    uv_loop_t loop;

    reset();
    uv_loop_init(&loop);
    chain_loop = &loop;
    chain_left = 3;
    bx_later(&loop, chain, (void *)1);
    bx_later(&loop, record, (void *)100);
    /* one turn runs what was queued before it: the chain's first link and
     * the entry after it, not the link the first one queued */
    uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(norder, 2);
    BX_CHECK_INT(order[0], 1);
    BX_CHECK_INT(order[1], 100);
    uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(norder, 3);
    BX_CHECK_INT(order[2], 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, 4);
    BX_CHECK_INT(order[3], 3);
    BX_LOOP_CLOSE(&loop);
}

/* ---- Freeing, re-queueing, canceling from inside a pass ---- */

typedef struct obj {
    bx_later_t later;
    uv_loop_t *loop;
    int id;
    int again;                  /* re-queue itself this many times */
    struct obj *victim;         /* cancel (and free) this one when run */
} obj_t;

static void obj_run(void *ud)
{
    obj_t *o = ud;

    record((void *)(intptr_t)o->id);
    if (o->victim) {
        bx_later_cancel(&o->victim->later);
        free(o->victim);
    }
    if (o->again-- > 0) {
        bx_later_queue(o->loop, &o->later);     /* it was unqueued: next turn */
        return;
    }
    free(o);                    /* the entry is inside: freeing must be safe */
}

static obj_t *obj_new(uv_loop_t *loop, int id)
{
    obj_t *o = calloc(1, sizeof(*o));
    o->loop = loop;
    o->id = id;
    bx_later_init(&o->later, obj_run, o);
    return o;
}

static void test_free_requeue_cancel(void)
{
    uv_loop_t loop;
    obj_t *a, *b, *c, *d;

    reset();
    uv_loop_init(&loop);
    a = obj_new(&loop, 1);
    b = obj_new(&loop, 2);
    c = obj_new(&loop, 3);
    d = obj_new(&loop, 4);
    a->again = 2;
    b->victim = c;              /* queued after b, in the same pass */
    bx_later_queue(&loop, &a->later);
    bx_later_queue(&loop, &b->later);
    bx_later_queue(&loop, &c->later);
    bx_later_queue(&loop, &d->later);
    bx_later_cancel(&d->later);                 /* canceled before its turn */
    bx_later_cancel(&d->later);                 /* harmless twice */
    free(d);
    uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(norder, 2);                    /* a, b; c canceled by b */
    BX_CHECK_INT(order[0], 1);
    BX_CHECK_INT(order[1], 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, 4);                    /* a twice more, a turn each */
    BX_CHECK_INT(order[2], 1);
    BX_CHECK_INT(order[3], 1);
    BX_LOOP_CLOSE(&loop);
}

/* ---- Drain, and a queue per loop ---- */

static void test_drain_and_loops(void)
{
    uv_loop_t one, two;

    reset();
    uv_loop_init(&one);
    uv_loop_init(&two);
    chain_loop = &one;
    chain_left = 3;
    bx_later(&one, chain, (void *)1);
    bx_later(&two, record, (void *)50);
    bx_later_drain(&one);                       /* the chain to its end */
    BX_CHECK_INT(norder, 3);
    BX_CHECK_INT(order[2], 3);
    uv_run(&one, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, 3);                    /* `two` did not run */
    uv_run(&two, UV_RUN_DEFAULT);
    BX_CHECK_INT(norder, 4);
    BX_CHECK_INT(order[3], 50);
    BX_LOOP_CLOSE(&one);
    BX_LOOP_CLOSE(&two);
}

int main(void)
{
    BX_RUN(test_order_and_never_inside);
    BX_RUN(test_queued_while_running_waits);
    BX_RUN(test_free_requeue_cancel);
    BX_RUN(test_drain_and_loops);
    return BX_REPORT();
}
