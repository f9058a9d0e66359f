/*
 * hub.c - the session hub between transports, protocol and engine (see
 * hub.h).
 *
 * One "tick" entry of the loop's later-turn queue (base/later.h) runs,
 * before the next poll, what was made pending since: the delivery pass over
 * dirty sessions; the events queued by then fire on the turn after (see
 * on_fire). Deferred calls (bx_hub_defer) are
 * entries of that same queue, run in the order queued. The connections'
 * prepare pass then writes everything in one writev each.
 */
#include <stdlib.h>
#include <string.h>
#include "base/dict.h"
#include "base/json.h"
#include "base/later.h"
#include "base/list.h"
#include "base/metrics.h"
#include "bayeux/hub.h"
#include "net/conn.h"

typedef struct session {
    bx_idict_link_t slot;       /* in the hub's sessions, keyed by id */
    char id[32];
    bx_waiter_t *hold;
    bx_sink_t *sink;
    bx_chunkv_t pending;        /* delivered by the engine, not yet handed on */
    /* flags of one byte and the counters side by side: every idle
     * WebSocket session has one of these (160 bytes with `ack`: glibc's
     * 176-byte class; 168 took 192) */
    uint8_t dirty;
    uint8_t want_queue;         /* ask the engine for its queue on the pass */
    uint8_t release_empty;      /* release the hold even with nothing */
    uint8_t taking;             /* a take() is in flight (one at a time) */
    int outpasses;              /* deliveries inside outgoing extensions */
    struct outpass *out_first;  /* those passes, oldest first: their results */
    struct outpass *out_last;   /* are handed on in this order */
    int pinned;                 /* inside a push or a release: a sink or a
                                   waiter may unbind (even rebind) meanwhile,
                                   the pass still uses the session after */
    int requeuing;              /* requeue() calls in flight: no take until
                                   they answer, so it finds what went back */
    struct session *next_dirty;
    bx_list_t ka;               /* on keepalives while its sink wants it */
    struct ack *ack;            /* acknowledged delivery negotiated (ext.ack
                                   at handshake); NULL for the others */
} session_t;

/* The acknowledgement state of a client that negotiated it (CometD's ack
 * extension, docs/delivery.md): the last batch answered, and its messages
 * until a connect acknowledges it. It lives as long as the client. */
typedef struct ack {
    int64_t batch;              /* id of the last batch answered (0: none) */
    bx_chunkv_t unacked;        /* its messages (own references) */
} ack_t;

typedef struct deferred {
    bx_later_t later;
    bx_list_t link;             /* on the hub's defers until it runs */
    void (*fn)(void *ud);
    void *ud;
} deferred_t;

typedef struct event {
    struct event *next;
    bx_event_t ev;
    char id[32];
    char *channel;
    json_t *data;
} event_t;

struct bx_hub_s {
    uv_loop_t *loop;
    bx_hub_opts_t opts;
    bx_engine_t *engine;        /* borrowed (bx_hub_attach) */
    bx_idict_t sessions;        /* of session_t, keyed by their own id */
    bx_dict_t buckets;          /* publish rate: key -> bucket_t */
    size_t buckets_sweep;       /* sweep the refilled ones past this count */
    bx_dict_t browsers;         /* client id -> browser id (strdup) */
    size_t connected;           /* sessions with a hold or a sink */
    size_t acks;                /* sessions with ack_t (bx_hub_acks) */
    bx_list_t keepalives;       /* sessions whose sink wants keep-alive */
    session_t *dirty;
    bx_list_t defers;           /* of deferred_t, queued and not yet run */
    event_t *ev_head, *ev_tail;
    event_t *fire_head, *fire_tail;  /* taken by a tick, fired on the next turn */
    bx_later_t tick;
    bx_later_t fire;
    uv_timer_t keepalive;
    bx_timeouts_t holds;        /* deadlines of held connects (protocol.c) */
    bx_hub_event_cb event_cb;
    unsigned event_mask;        /* 1 << bx_event_t for each event wanted */
    void *event_ud;
    bx_hub_handshake_cb handshake_cb;
    void *handshake_ud;
    bx_hub_hold_cb hold_cb;     /* may keep a handshake's reply back */
    void *hold_ud;
    bx_ext_hook incoming, outgoing;
    bx_list_t outpasses;        /* deliveries inside outgoing extensions */
    void (*ext_abandon)(void *ud);
    void *ext_ud;
    int closing;
    int pending_closes;         /* of the hub's own handles */
    void (*close_done)(void *ud);
    void *close_ud;
    void *store;                /* bx_hub_set_store */
    void (*store_free)(void *p);
    void *history;              /* bx_hub_set_history */
    void (*history_free)(void *p);
};

static void on_tick(void *ud);

typedef struct {
    double tokens;
    uint64_t at;                /* loop time (ms) of the last refill */
} bucket_t;

/* ---- Sessions ---- */

static session_t *session_get(bx_hub_t *s, const char *id)
{
    bx_idict_link_t *l = bx_idict_get(&s->sessions, id, strlen(id));
    return l ? BX_CONTAINER(l, session_t, slot) : NULL;
}

static session_t *session_make(bx_hub_t *s, const char *id)
{
    session_t *ss = session_get(s, id);
    if (!ss) {
        ss = bx_calloc(1, sizeof(*ss));
        bx_list_init(&ss->ka);
        snprintf(ss->id, sizeof(ss->id), "%s", id);
        bx_idict_add(&s->sessions, &ss->slot, ss->id, strlen(ss->id));
    }
    return ss;
}

/* Every change of a session's hold or sink goes through set_hold or
 * set_sink, so the count of connected sessions and the list of keep-alive
 * sinks stay exact without walking every session. */
static void count_connected(bx_hub_t *s, session_t *ss, int was)
{
    int now = ss->hold || ss->sink;
    if (now && !was)
        s->connected++;
    else if (!now && was)
        s->connected--;
}

static void set_hold(bx_hub_t *s, session_t *ss, bx_waiter_t *w)
{
    int was = ss->hold || ss->sink;
    ss->hold = w;
    count_connected(s, ss, was);
}

static void set_sink(bx_hub_t *s, session_t *ss, bx_sink_t *sink)
{
    int was = ss->hold || ss->sink;
    if (ss->sink && ss->sink->keepalive)
        bx_list_remove(&ss->ka);
    ss->sink = sink;
    if (sink && sink->keepalive)
        bx_list_push_head(&s->keepalives, &ss->ka);
    count_connected(s, ss, was);
}

static void mark_dirty(bx_hub_t *s, session_t *ss)
{
    if (ss->dirty)
        return;
    ss->dirty = 1;
    ss->next_dirty = s->dirty;
    s->dirty = ss;
    bx_later_queue(s->loop, &s->tick);
}

/* Whether the session has a connection deliveries may go to now: a held
 * connect, or a bound sink unless the client acknowledges batches (its
 * messages then ride /meta/connect answers only, whose ext.ack carries
 * the batch id, as CometD's server does). */
static int can_deliver(const session_t *ss)
{
    return ss->hold || (ss->sink && !ss->ack);
}

/* Frees a session that has nothing left to do (and is not on the dirty
 * list, whose pass frees it instead). */
static void session_gc(bx_hub_t *s, session_t *ss)
{
    if (ss->hold || ss->sink || ss->pending.n || ss->dirty || ss->outpasses || ss->pinned ||
        ss->taking || ss->requeuing || ss->ack)
        return;
    bx_idict_del(&s->sessions, &ss->slot);
    bx_chunkv_free(&ss->pending);
    free(ss);
}

static void ack_connect(bx_hub_t *s, session_t *ss, bx_waiter_t *w);

void bx_session_hold(bx_hub_t *s, const char *id, bx_waiter_t *w)
{
    session_t *ss = session_make(s, id);
    if (ss->hold && ss->hold != w) {
        /* a second connect answers the first at once (Faye would leave it
         * hanging forever, reference §6.3) */
        bx_waiter_t *old = ss->hold;
        bx_chunkv_t none = BX_CHUNKV_INIT;
        set_hold(s, ss, NULL);
        old->ops->release(old, &none);
    }
    if (ss->ack)
        ack_connect(s, ss, w);
    else
        w->batch = -1;
    set_hold(s, ss, w);
    ss->want_queue = 1;
    mark_dirty(s, ss);
}

void bx_session_release_soon(bx_hub_t *s, const char *id)
{
    session_t *ss = session_get(s, id);
    if (ss && ss->hold) {
        ss->release_empty = 1;
        mark_dirty(s, ss);
    }
}

void bx_session_unhold(bx_hub_t *s, const char *id, bx_waiter_t *w)
{
    session_t *ss = session_get(s, id);
    if (ss && ss->hold == w) {
        set_hold(s, ss, NULL);
        session_gc(s, ss);
    }
}

void bx_session_bind(bx_hub_t *s, const char *id, bx_sink_t *sink)
{
    session_t *ss = session_make(s, id);
    if (ss->sink && ss->sink != sink) {
        bx_sink_t *old = ss->sink;
        set_sink(s, ss, NULL);
        old->close(old);
    }
    set_sink(s, ss, sink);
    ss->want_queue = 1;
    mark_dirty(s, ss);
}

void bx_session_unbind(bx_hub_t *s, const char *id, bx_sink_t *sink)
{
    session_t *ss = session_get(s, id);
    if (ss && ss->sink == sink) {
        set_sink(s, ss, NULL);
        session_gc(s, ss);
    }
}

int bx_session_has_sink(bx_hub_t *s, const char *id)
{
    session_t *ss = session_get(s, id);
    return ss && ss->sink;
}

/* A requeue in flight: the session it was counted on, if any. */
typedef struct {
    bx_hub_t *s;
    char id[32];
    int counted;
} requeue_t;

/* The engine has the messages back: a take may go now. */
static void p_requeued(void *ud, int status)
{
    requeue_t *r = ud;
    bx_hub_t *s = r->s;
    session_t *ss = r->counted && !s->closing ? session_get(s, r->id) : NULL;

    (void)status;               /* an unknown client: nothing to take anyway */
    free(r);
    if (!ss)
        return;
    ss->requeuing--;
    if (ss->want_queue && can_deliver(ss))
        mark_dirty(s, ss);
    else
        session_gc(s, ss);
}

static void ack_given_back(ack_t *a, const bx_chunkv_t *msgs);

void bx_session_give_back(bx_hub_t *s, const char *id, bx_chunkv_t *msgs)
{
    /* a closing engine keeps nothing: what it holds is dropped too */
    if (msgs->n && !s->closing) {
        session_t *ss = session_get(s, id);
        if (ss && ss->ack)
            ack_given_back(ss->ack, msgs);
        requeue_t *r = bx_malloc(sizeof(*r));
        r->s = s;
        snprintf(r->id, sizeof(r->id), "%s", id);
        r->counted = ss != NULL;
        if (s->engine->ops->requeue(s->engine, id, msgs, p_requeued, r) != 0)
            free(r);
        else if (ss)
            ss->requeuing++;
    }
    bx_chunkv_clear(msgs);
}

/* ---- Acknowledged delivery (CometD's ack extension) ----
 *
 * A client that negotiated it gets its messages only in answers to its
 * /meta/connect (never through a bound socket on its own), each answer
 * with messages a new batch id in ext.ack. The hub keeps the batch's
 * messages (references) until the next connect: carrying that id, it
 * acknowledges them and they are dropped; carrying anything else (an
 * older id: the answer was lost on the way), they go back in front of the
 * engine's queue (requeue) and that connect's take finds them ahead of
 * newer ones. So the hub holds at most one answer's worth per client, and
 * once back in the queue they count toward its limit like any message. */

void bx_session_ack_enable(bx_hub_t *s, const char *id)
{
    session_t *ss = session_make(s, id);
    if (!ss->ack) {
        ss->ack = bx_calloc(1, sizeof(*ss->ack));
        s->acks++;
    }
}

size_t bx_hub_acks(const bx_hub_t *s)
{
    return s->acks;
}

static void ack_free(bx_hub_t *s, session_t *ss)
{
    if (ss->ack) {
        bx_chunkv_free(&ss->ack->unacked);
        free(ss->ack);
        ss->ack = NULL;
        s->acks--;
    }
}

/* A connect of an acknowledging client: `w->ack` is the id it carried
 * (-1 for none). Its answer repeats the last id until it carries a new
 * batch (ack_sent). Run again when the client's state arrives from
 * another node while the connect is held (p_arrive). */
static void ack_connect(bx_hub_t *s, session_t *ss, bx_waiter_t *w)
{
    ack_t *a = ss->ack;

    if (a->unacked.n) {
        if (w->ack == a->batch)
            bx_chunkv_clear(&a->unacked);
        else
            bx_session_give_back(s, ss->id, &a->unacked);   /* before the take */
    }
    w->batch = a->batch;
}

/* The messages `msgs` go out in the answer of `w`: a new batch, kept
 * until acknowledged. */
static void ack_sent(ack_t *a, bx_waiter_t *w, const bx_chunkv_t *msgs)
{
    if (!msgs->n)
        return;
    bx_chunkv_clear(&a->unacked);   /* not reached: a connect resolved it */
    for (size_t i = 0; i < msgs->n; i++)
        bx_chunkv_push(&a->unacked, msgs->v[i]);
    w->batch = ++a->batch;
}

/* The client moves to another node (engine handoff): its batch id and
 * unacknowledged messages, one per line (compact JSON has no raw
 * newline), for that node's p_arrive; the state is forgotten here. */
static char *p_leave(void *ud, const char *id, size_t *len)
{
    bx_hub_t *s = ud;
    session_t *ss = session_get(s, id);
    bx_buf_t b = BX_BUF_INIT;

    if (!ss || !ss->ack || s->closing)
        return NULL;
    bx_buf_printf(&b, "%lld", (long long)ss->ack->batch);
    for (size_t i = 0; i < ss->ack->unacked.n; i++) {
        bx_buf_append(&b, "\n", 1);
        bx_buf_append(&b, ss->ack->unacked.v[i]->data, ss->ack->unacked.v[i]->len);
    }
    ack_free(s, ss);
    session_gc(s, ss);
    char *out = bx_malloc(b.len + 1);
    memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    *len = b.len;
    bx_buf_free(&b);
    return out;
}

/* The state p_leave handed over on the node the client left: it
 * negotiated acknowledgements, and its last batch may be unacknowledged. A
 * connect held meanwhile is checked against it now, before the takes
 * that waited for the handoff are answered. */
static void p_arrive(void *ud, const char *id, const char *state, size_t len)
{
    bx_hub_t *s = ud;
    const char *p = state, *end = state + len;

    if (s->closing)
        return;
    bx_session_ack_enable(s, id);
    session_t *ss = session_get(s, id);
    ack_t *a = ss->ack;
    a->batch = strtoll(p, NULL, 10);
    bx_chunkv_clear(&a->unacked);
    p = memchr(p, '\n', len);
    while (p && p < end) {
        const char *line = p + 1, *nl = memchr(line, '\n', (size_t)(end - line));
        const char *stop = nl ? nl : end;
        if (stop > line)
            bx_chunkv_push_new(&a->unacked, bx_chunk_new(line, (size_t)(stop - line)));
        p = nl;
    }
    if (ss->hold)
        ack_connect(s, ss, ss->hold);
}

/* What a released connect took goes back because its connection never
 * sent it: the engine has the batch again, so the hub forgets it (a
 * stale ack must not bring it back twice). */
static void ack_given_back(ack_t *a, const bx_chunkv_t *msgs)
{
    if (msgs != &a->unacked && a->unacked.n && msgs->n == a->unacked.n &&
        msgs->v[0] == a->unacked.v[0])
        bx_chunkv_clear(&a->unacked);
}

/* ---- Outgoing extensions on deliveries ----
 *
 * With an outgoing extension installed, every delivered message is handed
 * to it per recipient (as in Faye) before it reaches the connection; the
 * result is serialized again into a private chunk flagged PROCESSED so it
 * is not run twice. Without one, the shared chunk goes out untouched. */

#define PROCESSED 1

typedef struct outpass {
    bx_list_t link;             /* on the hub's outpasses */
    struct outpass *later;      /* the session's next pass */
    bx_hub_t *s;
    char id[32];
    int finished;
    size_t left;
    size_t n;
    json_t **msgs;              /* results, NULL when dropped */
    struct outslot { struct outpass *p; size_t i; } *slots;
} outpass_t;

static void outpass_free(outpass_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->msgs[i])
            json_decref(p->msgs[i]);
    free(p->msgs);
    free(p->slots);
    free(p);
}

/* Puts processed messages (`v`, entries stolen) into the session's pending
 * ones: after those of earlier passes, before anything that arrived since. */
static void pending_insert(session_t *ss, bx_chunkv_t *v)
{
    bx_chunkv_t out = BX_CHUNKV_INIT;
    size_t k = 0;

    while (k < ss->pending.n && (ss->pending.v[k]->flags & PROCESSED))
        k++;
    for (size_t i = 0; i < ss->pending.n; i++) {
        if (i == k)
            bx_chunkv_move(&out, v);
        bx_chunkv_push_new(&out, ss->pending.v[i]);
    }
    bx_chunkv_move(&out, v);
    free(ss->pending.v);
    ss->pending = out;
}

static void outpass_done(void *ud, json_t *msg)
{
    struct outslot *slot = ud;
    outpass_t *p = slot->p;
    bx_hub_t *s = p->s;

    p->msgs[slot->i] = msg;
    if (--p->left > 0)
        return;
    p->finished = 1;
    /* a session is kept while its passes are in flight (session_gc) */
    session_t *ss = s->closing ? NULL : session_get(s, p->id);
    if (!ss) {
        bx_list_remove(&p->link);
        outpass_free(p);
        return;
    }
    /* passes may finish in any order; their results go on in the order the
     * passes started, so a later one waits for those before it */
    bx_chunkv_t v = BX_CHUNKV_INIT;
    while (ss->out_first && ss->out_first->finished) {
        outpass_t *q = ss->out_first;
        ss->out_first = q->later;
        if (!ss->out_first)
            ss->out_last = NULL;
        ss->outpasses--;
        for (size_t i = 0; i < q->n; i++) {
            if (!q->msgs[i] || json_object_get(q->msgs[i], "successful"))
                continue;       /* dropped (Faye would send [null]: we send nothing) */
            bx_chunk_t *c = bx_json_chunk(q->msgs[i]);
            c->flags |= PROCESSED;
            bx_chunkv_push_new(&v, c);
        }
        bx_list_remove(&q->link);
        outpass_free(q);
    }
    pending_insert(ss, &v);
    bx_chunkv_free(&v);
    if (can_deliver(ss)) {
        mark_dirty(s, ss);
    } else {
        /* the connection ended meanwhile (or the client was destroyed):
         * the queue keeps them for the next one (or drops them) */
        bx_session_give_back(s, ss->id, &ss->pending);
        session_gc(s, ss);
    }
}

/* Runs the unprocessed chunks of `msgs` through the outgoing extensions;
 * keeps the processed ones in `msgs`. */
static void outgoing_pass(bx_hub_t *s, session_t *ss, bx_chunkv_t *msgs)
{
    bx_chunkv_t keep = BX_CHUNKV_INIT;
    outpass_t *p = NULL;
    /* as in Faye, a delivery shows the request of the connection carrying
     * it (the held connect, or the socket's upgrade request) */
    void *request = ss->sink ? ss->sink->request
                  : ss->hold && ss->hold->ops->request ? ss->hold->ops->request(ss->hold) : NULL;

    for (size_t i = 0; i < msgs->n; i++) {
        bx_chunk_t *c = msgs->v[i];
        if (c->flags & PROCESSED) {
            bx_chunkv_push(&keep, c);
            continue;
        }
        if (!p) {
            p = bx_calloc(1, sizeof(*p));
            p->s = s;
            memcpy(p->id, ss->id, sizeof(p->id));
            p->msgs = bx_calloc(msgs->n, sizeof(*p->msgs));
            p->slots = bx_calloc(msgs->n, sizeof(*p->slots));
        }
        p->msgs[p->n] = NULL;
        p->slots[p->n].p = p;
        p->slots[p->n].i = p->n;
        p->n++;
    }
    if (p) {
        ss->outpasses++;
        if (ss->out_last)
            ss->out_last->later = p;
        else
            ss->out_first = p;
        ss->out_last = p;
        /* count first: a hook may answer on this very turn's deferral */
        p->left = p->n + 1;
        bx_list_push_head(&s->outpasses, &p->link);
        size_t k = 0;
        for (size_t i = 0; i < msgs->n; i++) {
            bx_chunk_t *c = msgs->v[i];
            if (c->flags & PROCESSED)
                continue;
            json_t *m = bx_json_parse(c->data, c->len);
            s->outgoing(s->ext_ud, m ? m : json_object(), request, outpass_done,
                        &p->slots[k++]);
        }
        outpass_done(&p->slots[0], p->msgs[0]);     /* releases the extra count */
    }
    bx_chunkv_free(msgs);
    *msgs = keep;
}

/* Moves the entries of `msgs` past the first max_reply bytes (but never
 * the first entry) to the end of `rest`: an answer to a held connect stays
 * bounded whatever the queue holds. */
static void bound_reply(bx_hub_t *s, bx_chunkv_t *msgs, bx_chunkv_t *rest)
{
    size_t bytes = 0, i;

    for (i = 0; i < msgs->n; i++) {
        bytes += msgs->v[i]->len + 1;       /* and its comma */
        if (i > 0 && bytes > s->opts.max_reply)
            break;
    }
    for (size_t j = i; j < msgs->n; j++)
        bx_chunkv_push_new(rest, msgs->v[j]);
    msgs->n = i;
}

static void p_took(void *ud, int status, const char *id, bx_chunkv_t *msgs);

/* Asks the engine for the queue of `ss` when told to and it has a
 * connection here; one take at a time. */
static void maybe_take(bx_hub_t *s, session_t *ss)
{
    if (ss->want_queue && !ss->taking && !ss->requeuing && !s->closing && can_deliver(ss)) {
        ss->want_queue = 0;
        if (s->engine->ops->take(s->engine, ss->id, p_took, s) == 0)
            ss->taking = 1;
    }
}

/* Hands what session `ss` (not on the dirty list) has to its sink or its
 * held connect, in one piece; then asks the engine for more when told to.
 * What no connection takes goes back to the engine's queue, so a session
 * without a connection holds no messages; while a take is in flight (its
 * messages newer than these) it waits for the answer instead, in front of
 * it, so the queue keeps its order. */
static void deliver_session(bx_hub_t *s, session_t *ss)
{
    bx_chunkv_t back = BX_CHUNKV_INIT;  /* for the engine's queue, in order */

    if (!ss->pending.n)
        maybe_take(s, ss);      /* with messages in hand, after them */
    if (ss->taking && !ss->pending.n)
        return;                 /* p_took answers (an empty release waits) */
    if (s->outgoing && ss->pending.n && can_deliver(ss))
        outgoing_pass(s, ss, &ss->pending);
    if (ss->pending.n && ss->sink && !ss->ack) {
        bx_chunkv_t msgs = ss->pending;
        ss->pending = (bx_chunkv_t)BX_CHUNKV_INIT;
        /* an in-process client's push runs Lua, which may unbind or
         * disconnect this very client */
        bx_sink_t *sink = ss->sink;
        size_t n = msgs.n;
        ss->pinned++;
        sink->push(sink, &msgs);
        ss->pinned--;
        bx_metrics.messages_out += n - msgs.n;
        if (msgs.n) {
            /* refused: its socket is going away. Unbound first, so the
             * given-back messages wake no one; a held connect rides the
             * same connection and is answered empty */
            if (ss->sink == sink)
                set_sink(s, ss, NULL);
            ss->release_empty = 1;
            bx_chunkv_move(&back, &msgs);
        }
        bx_chunkv_free(&msgs);
    } else if (ss->outpasses && !ss->pending.n) {
        maybe_take(s, ss);
        return;                 /* a release waits for the outgoing extensions */
    }
    /* with a sink the messages went there: a connect with timeout 0
     * (eventsource) is still answered on this pass */
    if ((ss->pending.n || ss->release_empty) && ss->hold) {
        bx_waiter_t *w = ss->hold;
        bx_chunkv_t msgs = ss->pending;
        ss->pending = (bx_chunkv_t)BX_CHUNKV_INIT;
        bound_reply(s, &msgs, &back);
        bx_metrics.messages_out += msgs.n;
        if (ss->ack)
            ack_sent(ss->ack, w, &msgs);
        set_hold(s, ss, NULL);
        ss->pinned++;
        w->ops->release(w, &msgs);
        ss->pinned--;
        bx_chunkv_free(&msgs);
    }
    ss->release_empty = 0;
    if (!can_deliver(ss))
        bx_chunkv_move(&back, &ss->pending);
    if (ss->taking) {
        /* older than what the take brings: they go first, with it */
        bx_chunkv_move(&back, &ss->pending);
        ss->pending = back;
    } else {
        bx_session_give_back(s, ss->id, &back);
        bx_chunkv_free(&back);
    }
    maybe_take(s, ss);
    session_gc(s, ss);
}

/* The delivery pass, once per loop iteration: every dirty session. */
static void deliver_pass(bx_hub_t *s)
{
    session_t *list = s->dirty;
    s->dirty = NULL;
    while (list) {
        session_t *ss = list;
        list = ss->next_dirty;
        ss->dirty = 0;
        deliver_session(s, ss);
    }
}

/* ---- Engine proxy ---- */

static int p_has_connection(void *ud, const char *id)
{
    session_t *ss = session_get(ud, id);
    return ss && (ss->hold || ss->sink);
}

static void p_wake(void *ud, const char *id)
{
    bx_hub_t *s = ud;
    session_t *ss = session_get(s, id);
    if (ss) {
        ss->want_queue = 1;
        mark_dirty(s, ss);
    }
}

/* The engine's answer to a take: the messages join what the session has
 * for its connection and go on now (this is a later turn than the take),
 * or back to the queue if the connection went away meanwhile. A session
 * already on the dirty list waits for its pass, which comes before the
 * next poll. */
static void p_took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    bx_hub_t *s = ud;
    session_t *ss = s->closing ? NULL : session_get(s, id);

    if (!ss)
        return;                 /* closing: the engine frees what is left */
    ss->taking = 0;
    if (status == 0)
        bx_chunkv_move(&ss->pending, msgs);
    if (ss->dirty)
        return;
    ss->pinned++;               /* kept across the delivery's callbacks */
    deliver_session(s, ss);
    ss->pinned--;
    session_gc(s, ss);
}

/* The client is gone: a held connect is answered (successfully, as Faye
 * does after a disconnect) and a bound socket closed. */
static void p_closed(void *ud, const char *id)
{
    bx_hub_t *s = ud;
    session_t *ss = session_get(s, id);

    free(bx_dict_del(&s->browsers, id, strlen(id)));
    if (!ss)
        return;
    bx_chunkv_clear(&ss->pending);
    ack_free(s, ss);
    if (ss->hold) {
        ss->release_empty = 1;
        mark_dirty(s, ss);
    }
    if (ss->sink) {
        bx_sink_t *sink = ss->sink;
        set_sink(s, ss, NULL);
        sink->close(sink);
    }
    session_gc(s, ss);
}

static void queue_event(bx_hub_t *s, bx_event_t ev, const char *id, const char *channel,
                        const json_t *data)
{
    if (!s->event_cb || !(s->event_mask & (1u << ev)))
        return;
    event_t *e = bx_calloc(1, sizeof(*e));
    e->ev = ev;
    snprintf(e->id, sizeof(e->id), "%s", id ? id : "");
    e->channel = channel ? bx_strdup(channel) : NULL;
    e->data = data ? json_deep_copy(data) : NULL;
    if (s->ev_tail)
        s->ev_tail->next = e;
    else
        s->ev_head = e;
    s->ev_tail = e;
    bx_later_queue(s->loop, &s->tick);
}

static void p_trigger(void *ud, bx_event_t ev, const char *id, const char *channel,
                      const json_t *data)
{
    queue_event(ud, ev, id, channel, data);
}

/* ---- Tick ---- */

static void free_event(event_t *e)
{
    free(e->channel);
    if (e->data)
        json_decref(e->data);
    free(e);
}

static void free_events(event_t *e)
{
    while (e) {
        event_t *next = e->next;
        free_event(e);
        e = next;
    }
}

/* Events fire one turn after the tick that took them: an engine reports
 * what it did (a client created) before the completion of the operation
 * that asked runs, and listeners expect what that completion sets up (the
 * identity bound to a new client) to be there. */
static void on_fire(void *ud)
{
    bx_hub_t *s = ud;
    event_t *e = s->fire_head;

    s->fire_head = s->fire_tail = NULL;
    while (e) {
        event_t *next = e->next;
        if (s->event_cb && !s->closing)
            s->event_cb(s->event_ud, e->ev, e->id, e->channel, e->data);
        free_event(e);
        e = next;
    }
}

static void on_tick(void *ud)
{
    bx_hub_t *s = ud;

    if (s->ev_head) {
        if (s->fire_tail)
            s->fire_tail->next = s->ev_head;
        else
            s->fire_head = s->ev_head;
        s->fire_tail = s->ev_tail;
        s->ev_head = s->ev_tail = NULL;
        bx_later_queue(s->loop, &s->fire);
    }
    bx_chunkv_join_forget();    /* the last pass's frames are written */
    deliver_pass(s);
}

static void run_deferred(void *ud)
{
    deferred_t *d = ud;
    void (*fn)(void *) = d->fn;
    void *fn_ud = d->ud;

    bx_list_remove(&d->link);
    free(d);
    fn(fn_ud);
}

void bx_hub_defer(bx_hub_t *s, void (*fn)(void *ud), void *ud)
{
    deferred_t *d = bx_malloc(sizeof(*d));
    d->fn = fn;
    d->ud = ud;
    bx_list_push_tail(&s->defers, &d->link);
    bx_later_init(&d->later, run_deferred, d);
    bx_later_queue(s->loop, &d->later);
}

/* Drops the deferred calls not run yet: the hub is being freed, and what
 * they would finish is gone with it. */
static void drop_deferred(bx_hub_t *s)
{
    while (!bx_list_empty(&s->defers)) {
        deferred_t *d = BX_CONTAINER(s->defers.next, deferred_t, link);
        bx_list_remove(&d->link);
        bx_later_cancel(&d->later);
        free(d);
    }
}

/* In-process clients never poll: keep them alive while their sink is bound. */
static void on_keepalive(uv_timer_t *t)
{
    bx_hub_t *s = t->data;
    BX_LIST_FOREACH(l, &s->keepalives)
        s->engine->ops->ping(s->engine, BX_CONTAINER(l, session_t, ka)->id);
}

/* ---- Life cycle ---- */

/* ---- Publish rate and browser binding ---- */

static double bucket_size(const bx_hub_t *s)
{
    double b = s->opts.publish_burst > 0 ? s->opts.publish_burst : s->opts.publish_rate;
    return b < 1 ? 1 : b;
}

static void bucket_refill(const bx_hub_t *s, bucket_t *b, uint64_t now)
{
    b->tokens += (double)(now - b->at) / 1000.0 * s->opts.publish_rate;
    if (b->tokens > bucket_size(s))
        b->tokens = bucket_size(s);
    b->at = now;
}

/* Forgets the buckets that are full again: they are as a new one would be. */
static void buckets_sweep(bx_hub_t *s, uint64_t now)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *en;

    while ((en = bx_dict_next(&s->buckets, &it)) != NULL) {
        bucket_t *b = en->value;
        bucket_refill(s, b, now);
        if (b->tokens >= bucket_size(s)) {
            bx_dict_del(&s->buckets, en->key, en->klen);
            free(b);
        }
    }
    /* the next sweep when the table has doubled: O(1) per publish */
    s->buckets_sweep = 2 * s->buckets.count > 1024 ? 2 * s->buckets.count : 1024;
}

int bx_hub_publish_allowed(bx_hub_t *s, const char *key, size_t len)
{
    if (s->opts.publish_rate <= 0)
        return 1;
    uint64_t now = uv_now(s->loop);
    bucket_t *b = bx_dict_get(&s->buckets, key, len);

    if (!b) {
        if (s->buckets.count >= s->buckets_sweep)
            buckets_sweep(s, now);
        b = bx_malloc(sizeof(*b));
        b->tokens = bucket_size(s);
        b->at = now;
        bx_dict_set(&s->buckets, key, len, b);
    }
    bucket_refill(s, b, now);
    if (b->tokens < 1)
        return 0;
    b->tokens -= 1;
    return 1;
}

void bx_session_set_browser(bx_hub_t *s, const char *id, const char *browser)
{
    free(bx_dict_set(&s->browsers, id, strlen(id), bx_strdup(browser)));
}

const char *bx_session_browser(bx_hub_t *s, const char *id)
{
    return bx_dict_get(&s->browsers, id, strlen(id));
}

/* Frees the values of a dict of malloc'd values, and the dict. */
static void dict_free_all(bx_dict_t *d)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *en;

    while ((en = bx_dict_next(d, &it)) != NULL)
        free(en->value);
    bx_dict_free(d);
}

bx_hub_t *bx_hub_new(uv_loop_t *loop, const bx_hub_opts_t *opts)
{
    bx_hub_t *s = bx_calloc(1, sizeof(*s));

    s->loop = loop;
    s->opts = *opts;
    bx_list_init(&s->keepalives);
    bx_list_init(&s->outpasses);
    if (s->opts.timeout <= 0)
        s->opts.timeout = 60;
    bx_list_init(&s->defers);
    bx_later_init(&s->tick, on_tick, s);
    bx_later_init(&s->fire, on_fire, s);
    uv_timer_init(loop, &s->keepalive);
    s->keepalive.data = s;
    bx_timeouts_init(&s->holds, loop);
    uint64_t ka = (uint64_t)(s->opts.timeout * 500);
    uv_timer_start(&s->keepalive, on_keepalive, ka ? ka : 1, ka ? ka : 1);
    uv_unref((uv_handle_t *)&s->keepalive);
    return s;
}

bx_proxy_t bx_hub_proxy(bx_hub_t *s)
{
    bx_proxy_t proxy = { .ud = s, .has_connection = p_has_connection, .wake = p_wake,
                         .closed = p_closed, .trigger = p_trigger, .leave = p_leave,
                         .arrive = p_arrive };
    return proxy;
}

void bx_hub_attach(bx_hub_t *s, bx_engine_t *engine)
{
    s->engine = engine;
}

bx_timeouts_t *bx_hub_timeouts(bx_hub_t *s)
{
    return &s->holds;
}

const bx_hub_opts_t *bx_hub_opts(const bx_hub_t *s)
{
    return &s->opts;
}

bx_engine_t *bx_hub_engine(bx_hub_t *s)
{
    return s->engine;
}

uv_loop_t *bx_hub_loop(bx_hub_t *s)
{
    return s->loop;
}

void bx_hub_on_event(bx_hub_t *s, bx_hub_event_cb cb, void *ud, unsigned mask)
{
    s->event_cb = cb;
    s->event_ud = ud;
    s->event_mask = cb ? mask : 0;
}

void bx_hub_on_handshake(bx_hub_t *s, bx_hub_handshake_cb cb, void *ud)
{
    s->handshake_cb = cb;
    s->handshake_ud = ud;
}

void bx_hub_on_handshake_hold(bx_hub_t *s, bx_hub_hold_cb cb, void *ud)
{
    s->hold_cb = cb;
    s->hold_ud = ud;
}

int bx_hub_handshaken(bx_hub_t *s, const char *id, const json_t *msg,
                      void (*resume)(void *resume_ud), void *resume_ud)
{
    if (s->closing)
        return 0;
    if (s->handshake_cb)
        s->handshake_cb(s->handshake_ud, id, msg);
    return s->hold_cb && s->hold_cb(s->hold_ud, id, msg, resume, resume_ud);
}

void bx_hub_set_extensions(bx_hub_t *s, bx_ext_hook incoming, bx_ext_hook outgoing,
                           void (*abandon)(void *ud), void *ud)
{
    s->incoming = incoming;
    s->outgoing = outgoing;
    s->ext_abandon = abandon;
    s->ext_ud = ud;
}

bx_ext_hook bx_hub_incoming(const bx_hub_t *s, void **ud)
{
    *ud = s->ext_ud;
    return s->incoming;
}

bx_ext_hook bx_hub_outgoing(const bx_hub_t *s, void **ud)
{
    *ud = s->ext_ud;
    return s->outgoing;
}

size_t bx_hub_connected(const bx_hub_t *s)
{
    return s->connected;
}

size_t bx_hub_sessions(const bx_hub_t *s)
{
    return s->sessions.count;
}

int bx_hub_closing(const bx_hub_t *s)
{
    return s->closing;
}

void bx_hub_close_begin(bx_hub_t *s)
{
    bx_idict_iter_t it = BX_IDICT_ITER_INIT;
    bx_idict_link_t *en;

    if (s->closing)
        return;
    s->closing = 1;
    if (s->ext_abandon)
        s->ext_abandon(s->ext_ud);
    s->incoming = s->outgoing = NULL;
    /* answer every held connect now, so that the answers reach the sockets
     * before the listener closes them */
    while ((en = bx_idict_next(&s->sessions, &it)) != NULL) {
        session_t *ss = BX_CONTAINER(en, session_t, slot);
        if (ss->hold) {
            bx_waiter_t *w = ss->hold;
            bx_chunkv_t msgs = ss->pending;
            ss->pending = (bx_chunkv_t)BX_CHUNKV_INIT;
            set_hold(s, ss, NULL);
            w->ops->release(w, &msgs);
            bx_chunkv_free(&msgs);
        }
    }
}

/* One of the hub's handles is closed; the last reports. */
static void handle_closed(uv_handle_t *h)
{
    bx_hub_t *s = h->data;
    if (--s->pending_closes == 0 && s->close_done)
        s->close_done(s->close_ud);
}

static void holds_closed(void *ud)
{
    bx_hub_t *s = ud;
    if (--s->pending_closes == 0 && s->close_done)
        s->close_done(s->close_ud);
}

int bx_hub_close(bx_hub_t *s, void (*done)(void *ud), void *ud)
{
    bx_idict_iter_t it = BX_IDICT_ITER_INIT;
    bx_idict_link_t *en;

    bx_hub_close_begin(s);
    while ((en = bx_idict_next(&s->sessions, &it)) != NULL) {
        session_t *ss = BX_CONTAINER(en, session_t, slot);
        if (ss->hold) {
            /* held after close began (a lookup was already in flight) */
            bx_waiter_t *w = ss->hold;
            bx_chunkv_t none = BX_CHUNKV_INIT;
            set_hold(s, ss, NULL);
            w->ops->release(w, &none);
        }
        if (ss->sink) {
            bx_sink_t *sink = ss->sink;
            set_sink(s, ss, NULL);
            sink->close(sink);
        }
        bx_chunkv_free(&ss->pending);
        ack_free(s, ss);
        free(ss);
    }
    bx_idict_free(&s->sessions);
    s->dirty = NULL;
    free_events(s->ev_head);
    free_events(s->fire_head);
    s->ev_head = s->ev_tail = NULL;
    s->fire_head = s->fire_tail = NULL;
    while (!bx_list_empty(&s->outpasses)) {
        outpass_t *p = BX_CONTAINER(s->outpasses.next, outpass_t, link);
        bx_list_remove(&p->link);
        outpass_free(p);
    }
    s->close_done = done;
    s->close_ud = ud;
    s->pending_closes = 2;
    bx_conn_flush_all(s->loop);
    bx_later_cancel(&s->tick);
    bx_later_cancel(&s->fire);
    uv_close((uv_handle_t *)&s->keepalive, handle_closed);
    bx_timeouts_close(&s->holds, holds_closed, s);
    return 1;
}

void bx_hub_free(bx_hub_t *s)
{
    if (!s)
        return;
    bx_later_cancel(&s->tick);
    bx_later_cancel(&s->fire);
    bx_chunkv_join_forget();
    free_events(s->ev_head);
    free_events(s->fire_head);
    drop_deferred(s);
    if (s->store)
        s->store_free(s->store);
    if (s->history)
        s->history_free(s->history);
    bx_idict_free(&s->sessions);
    dict_free_all(&s->buckets);
    dict_free_all(&s->browsers);
    free(s);
}

void bx_hub_set_store(bx_hub_t *s, void *p, void (*free_fn)(void *p))
{
    s->store = p;
    s->store_free = free_fn;
}

void *bx_hub_store(bx_hub_t *s)
{
    return s->store;
}

void bx_hub_set_history(bx_hub_t *s, void *p, void (*free_fn)(void *p))
{
    s->history = p;
    s->history_free = free_fn;
}

void *bx_hub_history(const bx_hub_t *s)
{
    return s->history;
}
