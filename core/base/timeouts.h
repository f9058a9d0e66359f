/*
 * timeouts.h - many one-shot deadlines on one libuv timer.
 *
 * Each held /meta/connect needs a deadline. A uv_timer_t per hold costs
 * ~170 bytes for every idle client; here a deadline is a small struct
 * embedded in its owner, kept in a binary min-heap by due time (a client
 * chooses its connect's timeout, so deadlines may arrive in any order:
 * adding and removing are O(log n) whatever the order), and one timer per
 * set is armed for the earliest. Equal deadlines fire in the order they
 * were added.
 */
#ifndef BX_TIMEOUTS_H
#define BX_TIMEOUTS_H

#include <stdint.h>
#include <uv.h>

typedef struct bx_timeout_s bx_timeout_t;
typedef struct bx_timeouts_s bx_timeouts_t;

/* Called once when the deadline passes (never inside bx_timeouts_add). */
typedef void (*bx_timeout_cb)(bx_timeout_t *t);

/* Embedded in its owner; zero it before first use. */
struct bx_timeout_s {
    bx_timeouts_t *set;         /* NULL when not pending */
    size_t slot;                /* its index in set->heap while pending */
    uint64_t due;               /* loop time, ms */
    uint64_t seq;               /* order of adding: ties fire first-in first */
    bx_timeout_cb cb;
};

struct bx_timeouts_s {
    uv_timer_t timer;
    bx_timeout_t **heap;        /* heap[0] is the earliest */
    size_t n, cap;
    uint64_t seq;
    void (*closed)(void *ud);
    void *closed_ud;
};

/* Prepares an empty set on `loop`. */
void bx_timeouts_init(bx_timeouts_t *ts, uv_loop_t *loop);

/* Calls cb(t) in `ms` milliseconds unless removed first. `t` must not be
 * pending already. */
void bx_timeouts_add(bx_timeouts_t *ts, bx_timeout_t *t, uint64_t ms, bx_timeout_cb cb);

/* Cancels `t` if pending (safe to call when it is not). */
void bx_timeouts_remove(bx_timeout_t *t);

/* Whether `t` is pending. */
int bx_timeouts_pending(const bx_timeout_t *t);

/* Closes the set's timer; closed(ud) runs from the close callback. Pending
 * deadlines are dropped without being called. */
void bx_timeouts_close(bx_timeouts_t *ts, void (*closed)(void *ud), void *ud);

#endif
