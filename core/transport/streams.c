/*
 * streams.c - the long-lived sockets of one server (see streams.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include "base/log.h"
#include "base/metrics.h"
#include "transport/endpoint.h"
#include "transport/streams.h"

#define CLOSE_GRACE_MS  2000    /* server closing: sockets that will not drain */

static void on_tick(uv_timer_t *t)
{
    bx_streams_t *set = t->data;

    BX_LIST_FOREACH_SAFE(l, n, &set->streams)  /* tick may close, never free */
        set->tick(BX_CONTAINER(l, bx_stream_t, link));
}

static void on_watch(uv_timer_t *t)
{
    bx_streams_t *set = t->data;
    uint64_t now = uv_now(t->loop);

    BX_LIST_FOREACH_SAFE(l, n, &set->streams) {  /* on_idle may close, never free */
        bx_stream_t *st = BX_CONTAINER(l, bx_stream_t, link);
        if (now - st->last_rx >= set->idle_ms)
            set->on_idle(st);
    }
}

void bx_streams_watch(bx_streams_t *set, double idle, bx_stream_fn on_idle)
{
    uint64_t period;

    if (idle <= 0 || set->on_idle || set->closing)
        return;
    set->on_idle = on_idle;
    set->idle_ms = (uint64_t)(idle * 1000.0 + 0.5);
    if (!set->idle_ms)
        set->idle_ms = 1;
    period = set->idle_ms / 4 ? set->idle_ms / 4 : 1;
    uv_timer_start(&set->watch, on_watch, period, period);
}

bx_streams_t *bx_streams_get(bx_streams_t **list, bx_endpoint_t *s, double period,
                             bx_stream_fn tick)
{
    for (bx_streams_t *set = *list; set; set = set->next)
        if (set->s == s)
            return set;
    const bx_endpoint_opts_t *o = (&s->opts);
    bx_streams_t *set = bx_calloc(1, sizeof(*set));
    set->s = s;
    set->tick = tick;
    bx_list_init(&set->streams);
    set->max_frame = o->max_frame;
    set->max_output = o->max_output;
    uv_timer_init(s->loop, &set->timer);
    set->timer.data = set;
    uv_timer_init(s->loop, &set->watch);
    set->watch.data = set;
    uv_unref((uv_handle_t *)&set->watch);
    if (period > 0 && tick) {
        uint64_t ms = (uint64_t)(period * 1000);
        uv_timer_start(&set->timer, on_tick, ms ? ms : 1, ms ? ms : 1);
    }
    /* the timer alone must not keep the loop alive */
    uv_unref((uv_handle_t *)&set->timer);
    set->next = *list;
    *list = set;
    return set;
}

void bx_streams_add(bx_streams_t *set, bx_stream_t *st)
{
    st->set = set;
    st->last_rx = uv_now(set->timer.loop);
    bx_list_push_head(&set->streams, &st->link);
}

static void timer_closed(uv_handle_t *h)
{
    bx_streams_t *set = h->data;
    void (*done)(void *) = set->done;
    void *ud = set->done_ud;

    if (h == (uv_handle_t *)&set->timer) {
        uv_close((uv_handle_t *)&set->watch, timer_closed);
        return;
    }
    free(set);
    if (done)
        done(ud);
}

void bx_streams_remove(bx_stream_t *st)
{
    bx_streams_t *set = st->set;

    bx_list_remove(&st->link);
    if (set->closing && bx_list_empty(&set->streams))
        uv_close((uv_handle_t *)&set->timer, timer_closed);
}

int bx_stream_too_slow(bx_stream_t *st, const char *kind)
{
    size_t queued = bx_conn_pending_bytes(st->conn);

    if (!st->set->max_output || queued <= st->set->max_output)
        return 0;
    char bytes[32];
    snprintf(bytes, sizeof(bytes), "%zu", queued);
    const char *kv[] = { "peer", bx_conn_peer(st->conn), "unsent", bytes };
    bx_log_kv(BX_LOG_WARN, kind,
              "slow reader closed: bytes not read by the client (max_output)", kv, 2);
    bx_metrics.slow_readers++;
    bx_conn_close(st->conn);
    return 1;
}

static void on_grace(uv_timer_t *t)
{
    bx_streams_t *set = t->data;

    BX_LIST_FOREACH(l, &set->streams)
        bx_conn_close(BX_CONTAINER(l, bx_stream_t, link)->conn);
}

int bx_streams_close(bx_streams_t **list, bx_endpoint_t *s, bx_stream_fn each,
                     void (*done)(void *ud), void *ud)
{
    bx_streams_t **pp, *set = NULL;

    for (pp = list; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            set = *pp;
            *pp = set->next;
            break;
        }
    if (!set)
        return 0;
    BX_LIST_FOREACH(l, &set->streams)
        each(BX_CONTAINER(l, bx_stream_t, link));
    set->s = NULL;
    set->closing = 1;
    uv_timer_stop(&set->timer);
    uv_timer_stop(&set->watch);
    if (bx_list_empty(&set->streams)) {
        uv_close((uv_handle_t *)&set->timer, timer_closed);
        return 0;
    }
    set->done = done;
    set->done_ud = ud;
    uv_timer_start(&set->timer, on_grace, CLOSE_GRACE_MS, 0);
    return 1;
}
