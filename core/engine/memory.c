/*
 * memory.c - the embedded engine: all state in this process (memory.h).
 *
 * Clients live in a dict by id; subscriptions in two indexes, client ->
 * channels and channel -> clients, so a publish looks up only the few
 * patterns its channel expands to (O(depth), never O(subscriptions)). An
 * index entry is deleted when its last subscriber leaves, so clients cannot
 * grow the index by subscribing and leaving.
 *
 * Callbacks are deferred: each call puts a completion on the engine's
 * list, which one entry of the loop's later-turn queue (base/later.h) runs
 * in order on the next turn (one entry per turn, not one per completion:
 * a publish to many connected clients makes as many takes); close answers
 * what is left.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "base/channel.h"
#include "base/dict.h"
#include "base/later.h"
#include "base/list.h"
#include "engine/memory.h"
#include "base/json.h"

#define DEFAULT_QUEUE_LIMIT 1000

/* A client's queue: a ring, so that a full queue drops its oldest
 * message in O(1) (not a memmove of queue_limit pointers per message).
 * It grows by doubling up to queue_limit. A take hands its array over,
 * so an idle client holds none; `want` remembers the size the last take
 * needed, so that the next burst allocates it at once instead of growing
 * 4 -> 8 -> ... again (a malloc and a copy each) at every take. */
typedef struct {
    bx_chunk_t **v;
    uint32_t head, n, cap;      /* oldest at v[head]; 32 bits keep it as
                                   small as the vector it replaced */
    uint32_t want;              /* first capacity after a take (0: 4) */
} ring_t;

typedef struct client {
    bx_idict_link_t slot;       /* in m->clients, keyed by id */
    char id[32];
    bx_dict_t channels;         /* channel -> (void *)1 */
    ring_t queue;
    uint64_t last_ping;         /* uv_now() ms */
    uint64_t mark;              /* last publish that reached this client */
    bx_list_t live;             /* on m->live, by last_ping */
} client_t;

typedef enum { OP_ID, OP_BOOL, OP_DONE, OP_TAKE } op_kind_t;

typedef struct op {
    struct op *next;            /* on the spare list */
    bx_list_t link;             /* on m->ops while pending */
    op_kind_t kind;
    void (*cb)(void);
    void *ud;
    int status;
    int yes;
    char id[32];
    bx_chunkv_t msgs;           /* a take: the queue as it was when asked */
} op_t;

typedef struct {
    bx_engine_t base;
    size_t queue_limit;
    size_t max_channels;        /* 0: no limit */
    unsigned long dropped;
    size_t nsubs;               /* subscriptions, for stats */
    bx_idict_t clients;         /* of client_t, keyed by their own id */
    bx_dict_t index;            /* channel -> bx_dict_t of id -> client_t */
    bx_list_t live;             /* every client_t, least recently pinged
                                   first: expiry looks only at those due */
    uint64_t generation;
    bx_list_t ops;              /* pending completions, oldest first */
    bx_later_t later;           /* runs them (on_later) */
    op_t *spare;                /* freed ops kept for reuse: a take per
                                   delivery costs no malloc */
    int nspare;
    uv_timer_t gc;
    int closing;
    int handles_open;
    void (*close_done)(void *ud);
    void *close_ud;
} memory_t;

/* ---- Deferred completions ---- */

static void on_later(void *ud);

/* Enough for a publish's takes to a thousand connected clients to cost no
 * malloc (~100 KB at most, kept only after such a burst). */
#define MAX_SPARE 1024

static op_t *defer(memory_t *m, op_kind_t kind, void (*cb)(void), void *ud)
{
    op_t *op = m->spare;
    if (op) {
        m->spare = op->next;
        m->nspare--;
        memset(op, 0, sizeof(*op));
    } else {
        op = bx_calloc(1, sizeof(*op));
    }
    op->kind = kind;
    op->cb = cb;
    op->ud = ud;
    bx_list_push_tail(&m->ops, &op->link);
    bx_later_queue(m->base.loop, &m->later);
    return op;
}

static void op_free(memory_t *m, op_t *op)
{
    bx_chunkv_free(&op->msgs);  /* what a take's callback left */
    if (m->nspare < MAX_SPARE && !m->closing) {
        op->next = m->spare;
        m->spare = op;
        m->nspare++;
    } else {
        free(op);
    }
}

static client_t *find(memory_t *m, const char *id);

static void run_op(memory_t *m, op_t *op)
{
    switch (op->kind) {
    case OP_TAKE: {
        /* what was queued when asked (later messages wake the proxy again
         * and go with its next take); nothing for a client destroyed since */
        int status = op->status ? op->status : find(m, op->id) ? 0 : BX_EUNKNOWN;
        if (status)
            bx_chunkv_clear(&op->msgs);
        ((bx_engine_take_cb)(void (*)(void))op->cb)(op->ud, status, op->id, &op->msgs);
        break;
    }
    case OP_ID:
        ((bx_engine_id_cb)(void (*)(void))op->cb)(op->ud, op->status,
                                                  op->status ? NULL : op->id);
        break;
    case OP_BOOL:
        ((bx_engine_bool_cb)(void (*)(void))op->cb)(op->ud, op->status, op->yes);
        break;
    case OP_DONE:
        ((bx_engine_done_cb)(void (*)(void))op->cb)(op->ud, op->status);
        break;
    }
}

static void on_later(void *ud)
{
    memory_t *m = ud;
    /* only what is queued now: completions queued by these callbacks wait
     * for the next turn (the entry was unqueued before this call, so the
     * first of them queues it again), so a chain of operations cannot
     * starve the loop */
    bx_list_t *last = m->ops.prev;

    while (!bx_list_empty(&m->ops)) {
        bx_list_t *l = m->ops.next;
        op_t *op = BX_CONTAINER(l, op_t, link);
        bx_list_remove(l);
        if (op->cb)
            run_op(m, op);
        op_free(m, op);
        if (l == last)
            break;
    }
}

/* ---- Queues ---- */

static void ring_free(ring_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        bx_chunk_unref(r->v[(r->head + i) % r->cap]);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* The smallest power of two >= n, at least 4: the capacity a take of n
 * messages asks the next burst to start with. */
static uint32_t ring_want(uint32_t n)
{
    uint32_t cap = 4;

    while (cap < n && cap < UINT32_MAX / 4)
        cap *= 2;
    return cap;
}

/* Appends `chunk` (a new reference is taken). A full ring of `limit`
 * drops its oldest entry and returns 1. */
static int ring_push(ring_t *r, bx_chunk_t *chunk, uint32_t limit)
{
    int dropped = 0;

    if (r->n >= limit) {
        bx_chunk_unref(r->v[r->head]);
        r->head = (r->head + 1) % r->cap;
        r->n--;
        dropped = 1;
    }
    if (r->n == r->cap) {
        /* grow, straightening the ring into the new array */
        uint32_t cap = r->cap ? (r->cap > limit / 2 ? limit : 2 * r->cap)
                              : (r->want ? r->want : 4);
        if (cap > limit)
            cap = limit;
        bx_chunk_t **v = bx_malloc(cap * sizeof(*v));
        for (uint32_t i = 0; i < r->n; i++)
            v[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
        r->v = v;
        r->head = 0;
        r->cap = cap;
    }
    r->v[(r->head + r->n) % r->cap] = bx_chunk_ref(chunk);
    r->n++;
    return dropped;
}

/* Moves the ring's entries, oldest first, into an empty `out`. */
static void ring_take(ring_t *r, bx_chunkv_t *out)
{
    uint32_t want = ring_want(r->n);

    if (r->head == 0) {
        /* already in order: hand the array over as it is */
        out->v = r->v;
        out->n = r->n;
        out->cap = r->cap;
    } else {
        out->v = bx_malloc(r->n * sizeof(*out->v));
        out->n = out->cap = r->n;
        for (uint32_t i = 0; i < r->n; i++)
            out->v[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
    }
    memset(r, 0, sizeof(*r));
    r->want = want;
}

/* ---- Liveness order ---- */

/* Stamps `c` as pinged now; it becomes the newest (uv_now never goes
 * back, so the list stays ordered by last_ping). */
static void touch(memory_t *m, client_t *c)
{
    c->last_ping = uv_now(m->base.loop);
    if (m->live.prev == &c->live)
        return;
    bx_list_remove(&c->live);
    bx_list_push_tail(&m->live, &c->live);
}

/* ---- Clients ---- */

static client_t *find(memory_t *m, const char *id)
{
    bx_idict_link_t *l = id ? bx_idict_get(&m->clients, id, strlen(id)) : NULL;
    return l ? BX_CONTAINER(l, client_t, slot) : NULL;
}

static void trigger(memory_t *m, bx_event_t ev, const char *id, const char *ch,
                    const json_t *data)
{
    if (m->base.proxy.trigger)
        m->base.proxy.trigger(m->base.proxy.ud, ev, id, ch, data);
}

static int unsubscribe_one(memory_t *m, client_t *c, const char *ch)
{
    size_t len = strlen(ch);
    if (!bx_dict_get(&c->channels, ch, len))
        return 0;
    m->nsubs--;
    bx_dict_t *subs = bx_dict_get(&m->index, ch, len);
    if (subs) {
        bx_dict_del(subs, c->id, 31);
        if (subs->count == 0) {
            bx_dict_del(&m->index, ch, len);
            bx_dict_free(subs);
            free(subs);
        }
    }
    trigger(m, BX_EV_UNSUBSCRIBE, c->id, ch, NULL);
    /* last: `ch` may be the key stored in this very entry */
    bx_dict_del(&c->channels, ch, len);
    return 1;
}

static void destroy(memory_t *m, client_t *c)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    bx_idict_del(&m->clients, &c->slot);
    bx_list_remove(&c->live);
    while ((e = bx_dict_next(&c->channels, &it)) != NULL)
        unsubscribe_one(m, c, e->key);
    bx_dict_free(&c->channels);
    ring_free(&c->queue);
    trigger(m, BX_EV_DISCONNECT, c->id, NULL, NULL);
    if (m->base.proxy.closed)
        m->base.proxy.closed(m->base.proxy.ud, c->id);
    free(c);
}

static int m_create_client(bx_engine_t *e, bx_engine_id_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = bx_calloc(1, sizeof(*c));

    bx_list_init(&c->live);
    if (m->closing) {
        free(c);
        return BX_ECANCELED;
    }
    do
        bx_engine_random_id(c->id);
    while (find(m, c->id));
    touch(m, c);
    bx_idict_add(&m->clients, &c->slot, c->id, 31);
    trigger(m, BX_EV_HANDSHAKE, c->id, NULL, NULL);
    op_t *op = defer(m, OP_ID, (void (*)(void))cb, ud);
    memcpy(op->id, c->id, 32);
    return 0;
}

static int m_client_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    if (m->closing)
        return BX_ECANCELED;
    defer(m, OP_BOOL, (void (*)(void))cb, ud)->yes = find(m, id) != NULL;
    return 0;
}

static int m_destroy_client(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = find(m, id);
    if (m->closing)
        return BX_ECANCELED;
    if (c)
        destroy(m, c);
    defer(m, OP_DONE, (void (*)(void))cb, ud)->status = c ? 0 : BX_EUNKNOWN;
    return 0;
}

static void m_ping(bx_engine_t *e, const char *id)
{
    client_t *c = find((memory_t *)e, id);
    if (c)
        touch((memory_t *)e, c);
}

static int m_subscribe(bx_engine_t *e, const char *id, const char *ch, size_t limit,
                       bx_engine_bool_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = find(m, id);
    size_t len = strlen(ch);
    int changed = 0, status = c ? 0 : BX_EUNKNOWN;

    if (m->closing)
        return BX_ECANCELED;
    if (c && !bx_dict_get(&c->channels, ch, len)) {
        bx_dict_t *subs = bx_dict_get(&m->index, ch, len);
        /* the caps bound what one client, and all of them, make the node
         * keep: a subscription costs an entry in the client and the index */
        if (limit && c->channels.count >= limit)
            status = BX_ESUBSLIMIT;
        else if (!subs && m->max_channels && m->index.count >= m->max_channels)
            status = BX_ECHANLIMIT;
        if (status == 0) {
            bx_dict_set(&c->channels, ch, len, (void *)1);
            if (!subs) {
                subs = bx_calloc(1, sizeof(*subs));
                bx_dict_set(&m->index, ch, len, subs);
            }
            bx_dict_set(subs, c->id, 31, c);
            m->nsubs++;
            trigger(m, BX_EV_SUBSCRIBE, c->id, ch, NULL);
            changed = 1;
        }
    }
    op_t *op = defer(m, OP_BOOL, (void (*)(void))cb, ud);
    op->status = status;
    op->yes = changed;
    return 0;
}

static int m_unsubscribe(bx_engine_t *e, const char *id, const char *ch,
                         bx_engine_bool_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = find(m, id);
    if (m->closing)
        return BX_ECANCELED;
    int changed = c ? unsubscribe_one(m, c, ch) : 0;
    op_t *op = defer(m, OP_BOOL, (void (*)(void))cb, ud);
    op->status = c ? 0 : BX_EUNKNOWN;
    op->yes = changed;
    return 0;
}

/* ---- Publish ---- */

typedef struct {
    memory_t *m;
    const json_t *message;
    bx_chunk_t *chunk;          /* serialized lazily, once */
} publish_ctx_t;

static void enqueue(memory_t *m, client_t *c, bx_chunk_t *chunk)
{
    /* a full queue drops the oldest: a client that stopped reading must not
     * hold unbounded memory; the count is reported by ops->stats */
    m->dropped += ring_push(&c->queue, chunk, (uint32_t)m->queue_limit);
    if (c->queue.n == 1 && m->base.proxy.has_connection(m->base.proxy.ud, c->id))
        m->base.proxy.wake(m->base.proxy.ud, c->id);
}

static void publish_to(void *ud, const char *pattern, size_t len, uint32_t hash)
{
    publish_ctx_t *p = ud;
    bx_dict_t *subs = bx_dict_get_hashed(&p->m->index, pattern, len, hash);
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    if (!subs)
        return;
    while ((e = bx_dict_next(subs, &it)) != NULL) {
        client_t *c = e->value;
        if (c->mark == p->m->generation)
            continue;           /* matched through another pattern already */
        c->mark = p->m->generation;
        if (!p->chunk) {
            json_t *copy = json_copy((json_t *)p->message);
            json_object_del(copy, "clientId");
            p->chunk = bx_json_chunk(copy);
            json_decref(copy);
        }
        enqueue(p->m, c, p->chunk);
    }
}

static int m_publish(bx_engine_t *e, const json_t *message, bx_engine_done_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    json_t *jch = json_object_get(message, "channel");
    publish_ctx_t p = { m, message, NULL };

    if (m->closing)
        return BX_ECANCELED;
    if (json_is_string(jch)) {
        /* with no subscription at all there is nobody to find */
        if (m->index.count) {
            m->generation++;
            bx_channel_expand(json_string_value(jch), json_string_length(jch), publish_to, &p);
            bx_chunk_unref(p.chunk);
        }
        trigger(m, BX_EV_PUBLISH, bx_json_str(message, "clientId"), json_string_value(jch),
                json_object_get(message, "data"));
    }
    defer(m, OP_DONE, (void (*)(void))cb, ud);
    return 0;
}

static int m_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = find(m, id);
    if (m->closing)
        return BX_ECANCELED;
    op_t *op = defer(m, OP_TAKE, (void (*)(void))cb, ud);
    /* not snprintf: one take per connected recipient of every publish */
    size_t n = strnlen(id, sizeof(op->id) - 1);
    memcpy(op->id, id, n);
    op->id[n] = '\0';
    if (c && c->queue.n)
        ring_take(&c->queue, &op->msgs);
    return 0;
}

/* ---- Put-back ---- */

static int m_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs,
                     bx_engine_done_cb cb, void *ud)
{
    memory_t *m = (memory_t *)e;
    client_t *c = m->closing ? NULL : find(m, id);
    bx_chunkv_t newer = BX_CHUNKV_INIT;
    uint32_t limit = (uint32_t)m->queue_limit;

    if (m->closing) {
        bx_chunkv_clear(msgs);
        return BX_ECANCELED;
    }
    defer(m, OP_DONE, (void (*)(void))cb, ud)->status = c ? 0 : BX_EUNKNOWN;
    if (!c || msgs->n == 0) {
        bx_chunkv_clear(msgs);
        return 0;
    }
    /* the given-back messages are the oldest: refill the ring with them
     * first, so that over the limit they are the ones dropped */
    ring_take(&c->queue, &newer);
    for (size_t i = 0; i < msgs->n; i++) {
        m->dropped += ring_push(&c->queue, msgs->v[i], limit);
        bx_chunk_unref(msgs->v[i]);
    }
    for (size_t i = 0; i < newer.n; i++) {
        m->dropped += ring_push(&c->queue, newer.v[i], limit);
        bx_chunk_unref(newer.v[i]);
    }
    msgs->n = 0;
    newer.n = 0;
    bx_chunkv_free(&newer);
    if (c->queue.n && m->base.proxy.has_connection(m->base.proxy.ud, c->id))
        m->base.proxy.wake(m->base.proxy.ud, c->id);
    return 0;
}

/* ---- For an engine built on this one (redis.c) ---- */

int bx_engine_memory_has(bx_engine_t *e, const char *id)
{
    return find((memory_t *)e, id) != NULL;
}

int bx_engine_memory_over(bx_engine_t *e, const char *id, const char *ch, size_t limit)
{
    client_t *c = find((memory_t *)e, id);
    return c && limit && c->channels.count >= limit && !bx_dict_get(&c->channels, ch, strlen(ch));
}

int bx_engine_memory_adopt(bx_engine_t *e, const char *id)
{
    memory_t *m = (memory_t *)e;
    client_t *c;

    if (m->closing || strlen(id) != 31 || find(m, id))
        return -1;
    c = bx_calloc(1, sizeof(*c));
    memcpy(c->id, id, 32);
    bx_list_init(&c->live);
    touch(m, c);
    bx_idict_add(&m->clients, &c->slot, c->id, 31);
    return 0;
}

int bx_engine_memory_release(bx_engine_t *e, const char *id, bx_chunkv_t *out)
{
    memory_t *m = (memory_t *)e;
    client_t *c = find(m, id);
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *en;

    if (!c)
        return BX_EUNKNOWN;
    bx_idict_del(&m->clients, &c->slot);
    bx_list_remove(&c->live);
    while ((en = bx_dict_next(&c->channels, &it)) != NULL)
        unsubscribe_one(m, c, en->key);
    bx_dict_free(&c->channels);
    if (c->queue.n)
        ring_take(&c->queue, out);
    ring_free(&c->queue);
    free(c);
    return 0;
}

void bx_engine_memory_each(bx_engine_t *e, bx_engine_memory_each_cb fn, void *ud)
{
    memory_t *m = (memory_t *)e;
    bx_idict_iter_t it = BX_IDICT_ITER_INIT;
    bx_idict_link_t *en;

    while ((en = bx_idict_next(&m->clients, &it)) != NULL) {
        client_t *c = BX_CONTAINER(en, client_t, slot);
        bx_dict_iter_t ci = BX_DICT_ITER_INIT;
        bx_dict_entry_t *ce;
        fn(ud, c->id, NULL, 0);
        while ((ce = bx_dict_next(&c->channels, &ci)) != NULL)
            fn(ud, c->id, ce->key, ce->klen);
    }
}

/* ---- Liveness ---- */

static void on_gc(uv_timer_t *t)
{
    memory_t *m = t->data;
    uint64_t now = uv_now(m->base.loop);
    uint64_t ttl = (uint64_t)(2 * m->base.timeout * 1000);

    /* only the clients that are due, the least recently pinged first */
    while (!bx_list_empty(&m->live)) {
        client_t *c = BX_CONTAINER(m->live.next, client_t, live);
        if (now - c->last_ping < ttl)
            break;
        destroy(m, c);
    }
}

/* ---- Life cycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
    memory_t *m = h->data;
    if (--m->handles_open > 0)
        return;
    void (*done)(void *) = m->close_done;
    void *ud = m->close_ud;
    free(m);
    if (done)
        done(ud);
}

static void m_close(bx_engine_t *e, void (*done)(void *ud), void *ud)
{
    memory_t *m = (memory_t *)e;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *en;

    m->closing = 1;
    bx_later_cancel(&m->later);
    m->close_done = done;
    m->close_ud = ud;
    /* pending completions are answered "canceled" now: close is the one
     * call allowed to finish them, and their owners are shutting down too */
    while (!bx_list_empty(&m->ops)) {
        op_t *op = BX_CONTAINER(m->ops.next, op_t, link);
        bx_list_remove(&op->link);
        op->status = BX_ECANCELED;
        if (op->cb)
            run_op(m, op);
        bx_chunkv_free(&op->msgs);
        free(op);
    }
    while (m->spare) {
        op_t *op = m->spare;
        m->spare = op->next;
        free(op);
    }
    m->nspare = 0;
    bx_idict_iter_t ci = BX_IDICT_ITER_INIT;
    bx_idict_link_t *cl;
    while ((cl = bx_idict_next(&m->clients, &ci)) != NULL) {
        client_t *c = BX_CONTAINER(cl, client_t, slot);
        bx_dict_free(&c->channels);
        ring_free(&c->queue);
        free(c);
    }
    bx_idict_free(&m->clients);
    while ((en = bx_dict_next(&m->index, &it)) != NULL) {
        bx_dict_free(en->value);
        free(en->value);
    }
    bx_dict_free(&m->index);
    m->handles_open = 1;
    uv_close((uv_handle_t *)&m->gc, on_handle_closed);
}

static void m_stats(bx_engine_t *e, bx_engine_stats_t *out)
{
    memory_t *m = (memory_t *)e;
    out->clients = m->clients.count;
    out->dropped = m->dropped;
    out->subscriptions = m->nsubs;
    out->channels = m->index.count;
}

static const bx_engine_ops_t memory_ops = {
    "memory",
    m_create_client,
    m_client_exists,
    m_destroy_client,
    m_ping,
    m_subscribe,
    m_unsubscribe,
    m_publish,
    m_take,
    m_requeue,
    m_stats,
    m_close,
    NULL,               /* history: the hub keeps it */
    NULL,
};

bx_engine_t *bx_engine_memory_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                  const bx_engine_opts_t *opts)
{
    memory_t *m = bx_calloc(1, sizeof(*m));
    double timeout = opts && opts->timeout > 0 ? opts->timeout : 60;
    double sweep;

    m->base.ops = &memory_ops;
    m->base.proxy = *proxy;
    m->base.loop = loop;
    m->base.timeout = timeout;
    bx_list_init(&m->live);
    m->queue_limit = opts && opts->queue_limit ? opts->queue_limit : DEFAULT_QUEUE_LIMIT;
    if (m->queue_limit > UINT32_MAX / 2)
        m->queue_limit = UINT32_MAX / 2;    /* the ring counts in 32 bits */
    m->max_channels = opts ? opts->max_channels : 0;
    bx_list_init(&m->ops);
    bx_later_init(&m->later, on_later, m);
    uv_timer_init(loop, &m->gc);
    m->gc.data = m;
    /* sweep often enough that expiry is within a quarter timeout of 2 x
     * timeout, at most once a second */
    sweep = timeout / 4;
    if (sweep > 1)
        sweep = 1;
    if (sweep < 0.05)
        sweep = 0.05;
    uv_timer_start(&m->gc, on_gc, (uint64_t)(sweep * 1000), (uint64_t)(sweep * 1000));
    uv_unref((uv_handle_t *)&m->gc);    /* liveness alone keeps no loop running */
    return &m->base;
}
