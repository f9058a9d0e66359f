/*
 * later.h - the one "later turn" queue of the core.
 *
 * Every callback contract of the core says "never inside the call that
 * started it": whatever must run after the current call returns is queued
 * here and run, in the order queued, by a uv_idle pass of the loop (idle,
 * so that the loop does not block in poll while something is queued; it
 * runs before the connections' prepare pass, which writes what it made).
 *
 * One queue per loop, made on first use and freed as soon as it is empty,
 * so it holds no handle while there is nothing to do and a loop that is
 * torn down leaves nothing behind.
 *
 * A pass runs only the entries queued before it began: what they queue
 * waits for the next turn, so a chain of deferrals cannot starve I/O.
 *
 * Two forms: bx_later() for fire-and-forget calls (the entry is allocated
 * and freed here), and an embedded bx_later_t for owners that must cancel
 * (at close) or that schedule one pass many times (queueing an entry that
 * is already queued changes nothing).
 */
#ifndef BX_LATER_H
#define BX_LATER_H

#include <uv.h>
#include "base/list.h"

typedef void (*bx_later_fn)(void *ud);

/* An entry, embedded by its owner; initialise with bx_later_init. */
typedef struct {
    bx_list_t link;             /* on a loop's queue while queued */
    bx_later_fn fn;
    void *ud;
} bx_later_t;

/* Prepares `l` to call fn(ud); it is not queued. */
void bx_later_init(bx_later_t *l, bx_later_fn fn, void *ud);

/* Queues `l` (borrowed: it must stay valid until it runs or is canceled)
 * to run once on a later turn of `loop`. Already queued: nothing changes
 * (it keeps its place). It is unqueued before fn runs, so fn may queue it
 * again (for the next turn) or free it. */
void bx_later_queue(uv_loop_t *loop, bx_later_t *l);

/* Takes `l` off its queue; harmless when it is not queued. */
void bx_later_cancel(bx_later_t *l);

/* Whether `l` is queued. */
int bx_later_queued(const bx_later_t *l);

/* Calls fn(ud) once on a later turn of `loop`, never inside this call. */
void bx_later(uv_loop_t *loop, bx_later_fn fn, void *ud);

/* Runs what is queued on `loop`, and what that queues, until nothing is
 * left: for the teardown of a loop, before its handles are closed. */
void bx_later_drain(uv_loop_t *loop);

#endif
