/*
 * test_redis_sessions.c - no sticky sessions on the Redis engine: three
 * engines on one loop, as three processes would be, sharing a private
 * redis-server. A client's connection hops between two of them while the
 * third publishes: every message comes once, in order (the handoff's cut);
 * a subscribe made on a process that does not hold the client is in force
 * once answered; a disconnect on one process closes the client on the
 * other; a client expires on every process after 2 x timeout.
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "bx_engine_test.h"
#include "engine/engine.h"
#include "base/json.h"

#include <stdlib.h>

typedef struct {
    int wakes, closed, taking;
    int got[1024];              /* the data of the messages taken, in order */
    int n;
} node_t;

static int *g_seq, g_nseq;      /* every message taken anywhere, in order */

static int n_has_connection(void *ud, const char *id)
{
    (void)ud;
    (void)id;
    return 1;
}

static void n_wake(void *ud, const char *id)
{
    (void)id;
    ((node_t *)ud)->wakes++;
}

static void n_closed(void *ud, const char *id)
{
    (void)id;
    ((node_t *)ud)->closed++;
}

static void n_trigger(void *ud, bx_event_t ev, const char *id, const char *ch,
                      const json_t *data)
{
    (void)ud; (void)ev; (void)id; (void)ch; (void)data;
}

static void took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    node_t *n = ud;
    (void)id;
    n->taking--;
    if (status != 0)
        return;
    for (size_t i = 0; i < msgs->n; i++) {
        json_t *m = bx_json_parse(msgs->v[i]->data, msgs->v[i]->len);
        int d = m ? (int)json_integer_value(json_object_get(m, "data")) : -1;
        if (n->n < 1024)
            n->got[n->n++] = d;
        g_seq = realloc(g_seq, (size_t)(g_nseq + 1) * sizeof(*g_seq));
        g_seq[g_nseq++] = d;
        if (m)
            json_decref(m);
    }
}

static uv_timer_t g_tick;
static void tick(uv_timer_t *t) { (void)t; }

static bx_rs_t g_rs;

static bx_engine_t *engine_max(uv_loop_t *loop, node_t *n, bx_proxy_t *p, double timeout,
                              size_t max_channels)
{
    char url[96], err[128];
    bx_engine_opts_t o = { .timeout = timeout, .max_channels = max_channels };
    p->ud = n;
    p->has_connection = n_has_connection;
    p->wake = n_wake;
    p->closed = n_closed;
    p->trigger = n_trigger;
    p->leave = NULL;
    p->arrive = NULL;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d?namespace=sessions", g_rs.port);
    return bx_engine_new(url, loop, p, &o, err, sizeof(err));
}

static bx_engine_t *engine(uv_loop_t *loop, node_t *n, bx_proxy_t *p, double timeout)
{
    return engine_max(loop, n, p, timeout, 0);
}

static int subscribe(uv_loop_t *loop, bx_engine_t *e, const char *id, const char *ch)
{
    rec_t r;
    int rc = subscribe_rec(loop, e, id, ch, &r);
    return rc ? rc : r.status;
}

static int exists(uv_loop_t *loop, bx_engine_t *e, const char *id)
{
    rec_t r = { 0 };
    if (e->ops->client_exists(e, id, bool_cb, &r) != 0 || !run_until(loop, &r.calls, 1, 10))
        return -100;
    return r.status ? r.status : r.yes;
}

static int publish(uv_loop_t *loop, bx_engine_t *e, const char *ch, int data)
{
    json_t *m = json_pack("{s:s,s:i}", "channel", ch, "data", data);
    int rc = publish_msg(loop, e, m);
    json_decref(m);
    return rc;
}

/* Starts a take of `id` on `e`; the answer lands in n and g_seq. */
static int take_start(bx_engine_t *e, node_t *n, const char *id)
{
    n->taking++;
    if (e->ops->take(e, id, took, n) != 0) {
        n->taking--;
        return -1;
    }
    return 0;
}

static int take_wait(uv_loop_t *loop, node_t *n)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + 10000;
    while (n->taking > 0 && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    return n->taking == 0;
}

static void loop_open(uv_loop_t *loop)
{
    uv_loop_init(loop);
    uv_timer_init(loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
}

/* Three engines on one loop, as three processes: A and B take turns
 * holding clients, P publishes. A's max_channels is `a_max` (0: none). */
typedef struct {
    uv_loop_t loop;
    node_t na, nb, np;
    bx_proxy_t pa, pb, pp;
    bx_engine_t *a, *b, *p;
} trio_t;

static int trio_open(trio_t *t, size_t a_max)
{
    memset(t, 0, sizeof(*t));
    loop_open(&t->loop);
    free(g_seq);
    g_seq = NULL;
    g_nseq = 0;
    t->a = engine_max(&t->loop, &t->na, &t->pa, 60, a_max);
    t->b = engine(&t->loop, &t->nb, &t->pb, 60);
    t->p = engine(&t->loop, &t->np, &t->pp, 60);
    return t->a && t->b && t->p ? 0 : -1;
}

static void trio_close(trio_t *t)
{
    close_engine(&t->loop, t->a);
    close_engine(&t->loop, t->b);
    close_engine(&t->loop, t->p);
    BX_LOOP_CLOSE(&t->loop);
}

/* ---- Tests ---- */

#define ROUNDS 20
#define PER 10

static void test_connection_hops(void)
{
    trio_t t;
    char id[32];
    int ok = 1;

    BX_CHECK_INT(trio_open(&t, 0), 0);
    bx_engine_t *a = t.a, *b = t.b, *p = t.p;
    BX_CHECK_INT(client(&t.loop, a, id), 0);
    BX_CHECK_INT(subscribe(&t.loop, a, id, "/h/*"), 0);
    /* the connection moves at every round, while the publisher goes on:
     * each take on the other engine takes the client over */
    for (int r = 0; r < ROUNDS && ok; r++) {
        bx_engine_t *e = r % 2 ? b : a;
        node_t *n = r % 2 ? &t.nb : &t.na;
        ok = take_start(e, n, id) == 0;
        /* from the third engine and from both that take turns holding
         * the client: each applies its own publishes in Redis's order */
        for (int i = 0; i < PER && ok; i++) {
            bx_engine_t *from = i % 3 == 0 ? p : i % 3 == 1 ? a : b;
            ok = publish(&t.loop, from, "/h/x", r * PER + i) == 0;
        }
        ok = ok && take_wait(&t.loop, n);
    }
    BX_CHECK(ok);
    /* what is still queued, wherever it is */
    run_for(&t.loop, 0.3);
    for (int r = 0; r < 3; r++) {
        node_t *n = r % 2 ? &t.nb : &t.na;
        BX_CHECK_INT(take_start(r % 2 ? b : a, n, id), 0);
        BX_CHECK(take_wait(&t.loop, n));
    }
    BX_CHECK_INT(g_nseq, ROUNDS * PER);
    int in_order = 1;
    for (int i = 0; i < g_nseq && in_order; i++)
        in_order = g_seq[i] == i;
    BX_CHECK(in_order);
    BX_CHECK(t.na.n > 0 && t.nb.n > 0);     /* both served the client */
    /* and the subscription followed the client: both hold /h/x's Redis
     * subscription only while they hold the client */
    trio_close(&t);
}

static void test_subscribe_elsewhere(void)
{
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    char id[32];

    loop_open(&loop);
    free(g_seq);
    g_seq = NULL;
    g_nseq = 0;
    bx_engine_t *a = engine(&loop, &na, &pa, 60), *b = engine(&loop, &nb, &pb, 60);
    BX_CHECK(a && b);
    BX_CHECK_INT(client(&loop, a, id), 0);
    BX_CHECK_INT(exists(&loop, b, id), 1);              /* B knows A's client */
    /* subscribed through B; answered once A (the holder) is subscribed */
    BX_CHECK_INT(subscribe(&loop, b, id, "/s"), 0);
    BX_CHECK_INT(publish(&loop, b, "/s", 7), 0);
    BX_CHECK(run_until(&loop, &na.wakes, 1, 10));
    BX_CHECK_INT(take_start(a, &na, id), 0);
    BX_CHECK(take_wait(&loop, &na));
    BX_CHECK_INT(na.n, 1);
    BX_CHECK_INT(na.got[0], 7);
    /* an unknown client, on a process that never saw it */
    BX_CHECK_INT(subscribe(&loop, b, "0123456789abcdefghijklmnopqrstu", "/s"), BX_EUNKNOWN);
    /* a disconnect on B closes the client A holds */
    rec_t r = { 0 };
    BX_CHECK_INT(b->ops->destroy_client(b, id, done_cb, &r), 0);
    BX_CHECK(run_until(&loop, &r.calls, 1, 10));
    BX_CHECK_INT(r.status, 0);
    BX_CHECK(run_until(&loop, &na.closed, 1, 10));
    BX_CHECK_INT(exists(&loop, a, id), 0);
    BX_CHECK_INT(exists(&loop, b, id), 0);
    close_engine(&loop, a);
    close_engine(&loop, b);
    BX_LOOP_CLOSE(&loop);
}

/* A subscribe (or unsubscribe) made on the process holding a client while
 * another process takes it over: whichever reaches Redis first, the
 * subscription is in force where the client goes (the claimer reads the
 * channels at its claim; a later change must follow it there). Both
 * orders of the two calls, several times, since which connection Redis
 * hears first is the kernel's choice. */
#define RACES 12

/* One race: `holder` (un)subscribes client `id` to `ch` as `claimer`
 * takes it over (`take_first`: the take is asked first); then P publishes
 * `data` there, and the claimer takes what the client got: the data
 * (subscribe) or nothing (unsubscribe). -1 when a step failed. */
static int race(trio_t *t, bx_engine_t *holder, bx_engine_t *claimer, node_t *n,
                const char *id, const char *ch, int unsub, int take_first, int data)
{
    rec_t r = { 0 };
    int rc = 0;

    n->n = 0;
    if (take_first)
        rc = take_start(claimer, n, id);
    rc |= unsub ? holder->ops->unsubscribe(holder, id, ch, bool_cb, &r)
                : holder->ops->subscribe(holder, id, ch, 0, bool_cb, &r);
    if (!take_first)
        rc |= take_start(claimer, n, id);
    if (rc || !run_until(&t->loop, &r.calls, 1, 10) || r.status || !take_wait(&t->loop, n)
        || publish(&t->loop, t->p, ch, data) != 0)
        return -1;
    run_for(&t->loop, 0.05);
    if (take_start(claimer, n, id) != 0 || !take_wait(&t->loop, n))
        return -1;
    return unsub ? n->n == 0 : n->n == 1 && n->got[0] == data;
}

static void test_subscribe_during_handoff(void)
{
    trio_t t;
    int sub_ok = 0, unsub_ok = 0;

    BX_CHECK_INT(trio_open(&t, 0), 0);
    for (int k = 0; k < RACES; k++) {
        char id[32], ch[32];
        snprintf(ch, sizeof(ch), "/race/%d", k);
        BX_CHECK_INT(client(&t.loop, t.a, id), 0);
        /* held by A; B takes it over as A subscribes it */
        sub_ok += race(&t, t.a, t.b, &t.nb, id, ch, 0, k % 2, 100 + k) == 1;
        /* the other way: held by B, subscribed; A takes it over as B
         * unsubscribes it: nothing more comes */
        unsub_ok += race(&t, t.b, t.a, &t.na, id, ch, 1, k % 2, 200 + k) == 1;
    }
    BX_CHECK_INT(sub_ok, RACES);
    BX_CHECK_INT(unsub_ok, RACES);
    trio_close(&t);
}

/* A subscribe the holder refuses for its max_channels, asked there or on
 * another process, leaves no trace in Redis: the process the client moves
 * to next (with room) does not subscribe it either. */
static void test_channel_limit_not_kept(void)
{
    trio_t t;
    char id[32];

    BX_CHECK_INT(trio_open(&t, 1), 0);
    bx_engine_t *a = t.a, *b = t.b, *p = t.p;
    BX_CHECK_INT(client(&t.loop, a, id), 0);
    BX_CHECK_INT(subscribe(&t.loop, a, id, "/lim/1"), 0);
    BX_CHECK_INT(subscribe(&t.loop, a, id, "/lim/2"), BX_ECHANLIMIT);    /* asked on A */
    BX_CHECK_INT(subscribe(&t.loop, b, id, "/lim/3"), BX_ECHANLIMIT);    /* on B, held by A */
    BX_CHECK_INT(take_start(b, &t.nb, id), 0);
    BX_CHECK(take_wait(&t.loop, &t.nb));
    t.nb.n = 0;
    for (int i = 1; i <= 3; i++) {
        char ch[16];
        snprintf(ch, sizeof(ch), "/lim/%d", i);
        BX_CHECK_INT(publish(&t.loop, p, ch, i), 0);
    }
    run_for(&t.loop, 0.1);
    BX_CHECK_INT(take_start(b, &t.nb, id), 0);
    BX_CHECK(take_wait(&t.loop, &t.nb));
    BX_CHECK_INT(t.nb.n, 1);
    BX_CHECK_INT(t.nb.got[0], 1);
    trio_close(&t);
}

static void test_expiry_everywhere(void)
{
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    char id[32], kept[32];

    loop_open(&loop);
    /* a timeout of 0.5 s: a client lives 1 s after its last connect */
    bx_engine_t *a = engine(&loop, &na, &pa, 0.5), *b = engine(&loop, &nb, &pb, 0.5);
    BX_CHECK(a && b);
    BX_CHECK_INT(client(&loop, a, id), 0);
    BX_CHECK_INT(client(&loop, a, kept), 0);
    BX_CHECK_INT(take_start(b, &nb, id), 0);            /* B takes `id` over */
    BX_CHECK(take_wait(&loop, &nb));
    int gone = 0;
    for (int i = 0; i < 100 && !gone; i++) {
        /* `kept` connects now and then, on either process */
        a->ops->ping(i % 2 ? a : b, kept);
        (i % 2 ? b : a)->ops->ping(i % 2 ? b : a, kept);
        run_for(&loop, 0.1);
        gone = exists(&loop, a, id) == 0 && exists(&loop, b, id) == 0;
    }
    BX_CHECK(gone);
    BX_CHECK_INT(exists(&loop, a, kept), 1);
    BX_CHECK_INT(exists(&loop, b, kept), 1);
    close_engine(&loop, a);
    close_engine(&loop, b);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (bx_rs_start(&g_rs, NULL, NULL) < 0) {
        printf("not ok - redis-server did not start\n");
        bx_test_failed++;
        return BX_REPORT();
    }
    BX_RUN(test_connection_hops);
    BX_RUN(test_subscribe_elsewhere);
    BX_RUN(test_subscribe_during_handoff);
    BX_RUN(test_channel_limit_not_kept);
    BX_RUN(test_expiry_everywhere);
    bx_rs_stop(&g_rs);
    free(g_seq);
    return BX_REPORT();
}
