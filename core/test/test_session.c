/*
 * test_session.c - what the server does with messages it took from a
 * client's queue and could not hand on: the engine's requeue (put back in
 * front, in order; the hub asks for the queue again only once a requeue
 * has answered), and the outgoing-extension passes of a session (their
 * results joining the session's messages, a client destroyed meanwhile).
 *
 * The server runs without a listener; deliveries go to a recording sink and
 * the outgoing extension is a C hook that keeps each `next` for the test to
 * call later. Run under ASan (make check), LeakSanitizer checks that nothing
 * leaks when the passes finish.
 */
#include "bx_test.h"
#include "engine/engine.h"
#include "base/json.h"
#include "server.h"

#include <malloc.h>
#include <stdlib.h>

/* ---- A proxy for the engine alone ---- */

typedef struct {
    int connected;
    int wakes;
    bx_chunkv_t got;
} proxy_rec_t;

static int r_has_connection(void *ud, const char *id)
{
    (void)id;
    return ((proxy_rec_t *)ud)->connected;
}

static void r_wake(void *ud, const char *id)
{
    (void)id;
    ((proxy_rec_t *)ud)->wakes++;
}

static void r_closed(void *ud, const char *id)
{
    (void)ud, (void)id;
}

static void r_took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    (void)status, (void)id;
    bx_chunkv_move(&((proxy_rec_t *)ud)->got, msgs);
}

static void r_trigger(void *ud, bx_event_t ev, const char *id, const char *ch,
                      const json_t *data)
{
    (void)ud, (void)ev, (void)id, (void)ch, (void)data;
}

static void id_cb(void *ud, int status, const char *id)
{
    if (status == 0)
        snprintf(ud, 32, "%s", id);
}

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

static bx_chunk_t *text_chunk(const char *s)
{
    return bx_chunk_new(s, strlen(s));
}

/* The data of chunk i of `v`, as a C string (tests use short ones). */
static const char *nth(const bx_chunkv_t *v, size_t i, char buf[64])
{
    size_t n = i < v->n ? v->v[i]->len : 0;
    if (n > 63)
        n = 63;
    if (n)
        memcpy(buf, v->v[i]->data, n);
    buf[n] = '\0';
    return buf;
}

static void test_requeue_goes_in_front_in_order(void)
{
    uv_loop_t loop;
    proxy_rec_t rec = { 0 };
    bx_proxy_t proxy = { .ud = &rec, .has_connection = r_has_connection, .wake = r_wake,
                         .closed = r_closed, .trigger = r_trigger };
    bx_engine_opts_t eo = { .timeout = 60, .queue_limit = 4 };
    bx_engine_stats_t st;
    char err[128];
    char id[32] = "", buf[64];
    int closed = 0;

    uv_loop_init(&loop);
    bx_engine_t *e = bx_engine_new("memory", &loop, &proxy, &eo, err, sizeof(err));
    BX_CHECK_INT(e->ops->create_client(e, id_cb, id), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(strlen(id), 31);
    BX_CHECK_INT(e->ops->subscribe(e, id, "/q", 0, NULL, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* one newer message queued, then two older ones given back */
    json_t *m = json_pack("{s:s, s:s}", "channel", "/q", "data", "new");
    BX_CHECK_INT(e->ops->publish(e, m, NULL, NULL), 0);
    json_decref(m);
    bx_chunkv_t back = BX_CHUNKV_INIT;
    bx_chunkv_push_new(&back, text_chunk("old1"));
    bx_chunkv_push_new(&back, text_chunk("old2"));
    e->ops->requeue(e, id, &back, NULL, NULL);
    BX_CHECK_INT(back.n, 0);
    BX_CHECK_INT(rec.wakes, 0);             /* no connection: nobody to wake */

    /* over the limit (4), the oldest go first, counted as dropped */
    bx_chunkv_push_new(&back, text_chunk("older1"));
    bx_chunkv_push_new(&back, text_chunk("older2"));
    e->ops->requeue(e, id, &back, NULL, NULL);
    e->ops->stats(e, &st);
    BX_CHECK_INT(st.dropped, 1);

    /* an unknown client: dropped silently */
    bx_chunkv_push_new(&back, text_chunk("x"));
    e->ops->requeue(e, "nosuchclient", &back, NULL, NULL);
    BX_CHECK_INT(back.n, 0);

    rec.connected = 1;
    BX_CHECK_INT(e->ops->take(e, id, r_took, &rec), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(rec.got.n, 4);
    BX_CHECK_STR(nth(&rec.got, 0, buf), "older2");
    BX_CHECK_STR(nth(&rec.got, 1, buf), "old1");
    BX_CHECK_STR(nth(&rec.got, 2, buf), "old2");
    BX_CHECK(strstr(nth(&rec.got, 3, buf), "\"new\"") != NULL);

    /* with a connection, a give-back wakes it, as a publish does */
    bx_chunkv_push_new(&back, text_chunk("again"));
    e->ops->requeue(e, id, &back, NULL, NULL);
    BX_CHECK_INT(rec.wakes, 1);

    bx_chunkv_free(&back);
    bx_chunkv_free(&rec.got);
    e->ops->close(e, closed_cb, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(closed, 1);
    BX_LOOP_CLOSE(&loop);
}

/* ---- The server with a held outgoing extension ---- */

#define MAXNEXT 16

typedef struct {
    bx_ext_next_cb next[MAXNEXT];
    void *next_ud[MAXNEXT];
    json_t *msg[MAXNEXT];
    int n;
} held_t;

static void hold_outgoing(void *ud, json_t *msg, void *request, bx_ext_next_cb next,
                          void *next_ud)
{
    held_t *h = ud;
    (void)request;
    if (h->n == MAXNEXT) {
        json_decref(msg);       /* not reached: the tests publish a few */
        return;
    }
    h->next[h->n] = next;
    h->next_ud[h->n] = next_ud;
    h->msg[h->n++] = msg;
}

/* Lets every held message go on, all in this one turn. */
static void release_all(held_t *h)
{
    for (int i = 0; i < h->n; i++)
        h->next[i](h->next_ud[i], h->msg[i]);
    h->n = 0;
}

typedef struct {
    bx_sink_t base;
    bx_chunkv_t got;
    int closed;
} rec_sink_t;

static void rs_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    bx_chunkv_move(&((rec_sink_t *)sink)->got, msgs);
}

static void rs_close(bx_sink_t *sink)
{
    ((rec_sink_t *)sink)->closed = 1;
}

typedef struct {
    uv_loop_t loop;
    bx_server_t *s;
    bx_engine_t *e;
    held_t held;
    rec_sink_t sink;
    char id[32];
    int closed;
} fixture_t;

static int setup(fixture_t *f)
{
    bx_server_opts_t o;

    memset(f, 0, sizeof(*f));
    uv_loop_init(&f->loop);
    bx_server_opts_default(&o);
    f->s = bx_server_new(&f->loop, &o, NULL, 0);
    f->e = bx_server_engine(f->s);
    bx_hub_set_extensions(bx_server_hub(f->s), NULL, hold_outgoing, NULL, &f->held);
    if (f->e->ops->create_client(f->e, id_cb, f->id) != 0)
        return -1;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (strlen(f->id) != 31 || f->e->ops->subscribe(f->e, f->id, "/q", 0, NULL, NULL) != 0)
        return -1;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->sink.base.push = rs_push;
    f->sink.base.close = rs_close;
    bx_session_bind(bx_server_hub(f->s), f->id, &f->sink.base);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return 0;
}

static void publish(fixture_t *f, const char *data)
{
    json_t *m = json_pack("{s:s, s:s}", "channel", "/q", "data", data);
    f->e->ops->publish(f->e, m, NULL, NULL);
    json_decref(m);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void teardown(fixture_t *f)
{
    bx_chunkv_free(&f->sink.got);
    bx_server_close(f->s, closed_cb, &f->closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* ---- What a session costs ---- */

#define SESSIONS_N 2000
#define SESSION_MAX_BYTES 190   /* glibc: a 160-byte session (152 and the
                                   ack pointer) is a 176-byte block; plus its
                                   share of the buckets (~9) */

/* Heap per hub session bound to a socket: every idle WebSocket client has
 * one, so its size is part of the idle memory target
 * (docs/benchmarks.md). */
static void test_session_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("# skipped: the sanitizer's allocator keeps its own books\n");
#else
    fixture_t f;
    char ids[SESSIONS_N][32];
    rec_sink_t sink = { .base = { .push = rs_push, .close = rs_close } };

    BX_CHECK_INT(setup(&f), 0);
    bx_hub_t *hub = bx_server_hub(f.s);
    for (int i = 0; i < SESSIONS_N; i++)
        snprintf(ids[i], sizeof(ids[i]), "memory%025d", i);
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < SESSIONS_N; i++)
        bx_session_bind(hub, ids[i], &sink.base);
    size_t after = mallinfo2().uordblks;
    size_t per = after > before ? (after - before) / SESSIONS_N : 0;
    printf("# heap per hub session: %zu bytes\n", per);
    BX_CHECK(per > 0);
    BX_CHECK(per <= SESSION_MAX_BYTES);
    for (int i = 0; i < SESSIONS_N; i++)
        bx_session_unbind(hub, ids[i], &sink.base);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    bx_chunkv_free(&sink.got);
    teardown(&f);
#endif
}

/* Two passes of the outgoing extension finish in the same turn: both
 * results reach the sink, in order, and nothing leaks (ASan). */
static void test_two_passes_finish_together(void)
{
    fixture_t f;
    BX_CHECK_INT(setup(&f), 0);

    publish(&f, "one");         /* each delivery pass starts its own pass */
    publish(&f, "two");
    BX_CHECK_INT(f.held.n, 2);
    BX_CHECK_INT(f.sink.got.n, 0);
    release_all(&f.held);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 2);
    BX_CHECK(memmem(f.sink.got.v[0]->data, f.sink.got.v[0]->len, "\"one\"", 5) != NULL);
    BX_CHECK(memmem(f.sink.got.v[1]->data, f.sink.got.v[1]->len, "\"two\"", 5) != NULL);

    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

/* The later pass finishes first: it waits for the earlier one. */
static void test_passes_finishing_out_of_order_keep_order(void)
{
    fixture_t f;
    BX_CHECK_INT(setup(&f), 0);

    publish(&f, "one");
    publish(&f, "two");
    BX_CHECK_INT(f.held.n, 2);
    f.held.next[1](f.held.next_ud[1], f.held.msg[1]);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 0);
    f.held.next[0](f.held.next_ud[0], f.held.msg[0]);
    f.held.n = 0;
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 2);
    BX_CHECK(memmem(f.sink.got.v[0]->data, f.sink.got.v[0]->len, "\"one\"", 5) != NULL);
    BX_CHECK(memmem(f.sink.got.v[1]->data, f.sink.got.v[1]->len, "\"two\"", 5) != NULL);

    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

/* A client destroyed while its outgoing pass is in flight: when the pass
 * ends, its session goes (nothing left to hand anything to). */
static void test_destroyed_during_pass_leaves_no_session(void)
{
    fixture_t f;
    BX_CHECK_INT(setup(&f), 0);
    BX_CHECK_INT(bx_hub_sessions(bx_server_hub(f.s)), 1);

    publish(&f, "one");
    BX_CHECK_INT(f.held.n, 1);
    BX_CHECK_INT(f.e->ops->destroy_client(f.e, f.id, NULL, NULL), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.closed, 1);
    release_all(&f.held);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 0);
    BX_CHECK_INT(bx_hub_sessions(bx_server_hub(f.s)), 0);

    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

/* The sink went away (unbound) while the pass was in flight: the results
 * go back to the client's queue, ahead of what was published since, and
 * the next sink gets them all in order. */
static void test_pass_results_wait_for_the_next_connection(void)
{
    fixture_t f;
    BX_CHECK_INT(setup(&f), 0);

    publish(&f, "one");
    BX_CHECK_INT(f.held.n, 1);
    bx_session_unbind(bx_server_hub(f.s), f.id, &f.sink.base);
    publish(&f, "two");         /* queued: no connection now */
    release_all(&f.held);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(bx_hub_sessions(bx_server_hub(f.s)), 0);

    bx_session_bind(bx_server_hub(f.s), f.id, &f.sink.base);
    uv_run(&f.loop, UV_RUN_DEFAULT);    /* "two" is now in the extension */
    BX_CHECK_INT(f.held.n, 1);
    release_all(&f.held);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 2);
    BX_CHECK(memmem(f.sink.got.v[0]->data, f.sink.got.v[0]->len, "\"one\"", 5) != NULL);
    BX_CHECK(memmem(f.sink.got.v[1]->data, f.sink.got.v[1]->len, "\"two\"", 5) != NULL);

    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

/* An engine whose take answers only when the test says so. */
static const bx_engine_ops_t *g_real_ops;
static bx_engine_ops_t g_slow_ops;
static struct { char id[32]; bx_engine_take_cb cb; void *ud; int n; } g_take;

static int slow_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    snprintf(g_take.id, sizeof(g_take.id), "%s", id);
    g_take.cb = cb;
    g_take.ud = ud;
    g_take.n++;
    return 0;
}

/* The connection went away while the engine was answering its take: the
 * messages go back to the queue, and the next connection gets them. */
static void test_take_answered_after_the_connection_left(void)
{
    fixture_t f;
    bx_hub_t *hub;
    BX_CHECK_INT(setup(&f), 0);
    hub = bx_server_hub(f.s);
    bx_hub_set_extensions(hub, NULL, NULL, NULL, NULL);
    g_real_ops = f.e->ops;
    g_slow_ops = *g_real_ops;
    g_slow_ops.take = slow_take;
    f.e->ops = &g_slow_ops;
    memset(&g_take, 0, sizeof(g_take));

    publish(&f, "one");
    BX_CHECK_INT(g_take.n, 1);              /* asked, not answered */
    BX_CHECK_STR(g_take.id, f.id);
    bx_session_unbind(hub, f.id, &f.sink.base);
    /* the answer comes now, through the real engine */
    BX_CHECK_INT(g_real_ops->take(f.e, g_take.id, g_take.cb, g_take.ud), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 0);
    BX_CHECK_INT(bx_hub_sessions(hub), 0);  /* nothing kept without a connection */

    f.e->ops = g_real_ops;
    bx_session_bind(hub, f.id, &f.sink.base);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 1);
    BX_CHECK(f.sink.got.n == 1 &&
             memmem(f.sink.got.v[0]->data, f.sink.got.v[0]->len, "\"one\"", 5) != NULL);

    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

/* The hub asks for the queue again only once a requeue has answered: an
 * engine whose requeue answers late (as one over a network may) would
 * otherwise be asked before the given-back messages are back, and deliver
 * newer ones ahead of them. */
static struct { char id[32]; bx_chunkv_t msgs; bx_engine_done_cb cb; void *ud; int n; }
    g_requeue;
static int g_takes;

static int held_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs,
                        bx_engine_done_cb cb, void *ud)
{
    (void)e;
    snprintf(g_requeue.id, sizeof(g_requeue.id), "%s", id);
    bx_chunkv_move(&g_requeue.msgs, msgs);
    g_requeue.cb = cb;
    g_requeue.ud = ud;
    g_requeue.n++;
    return 0;
}

static int counted_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    g_takes++;
    return g_real_ops->take(e, id, cb, ud);
}

/* A sink that refuses everything (its socket is going away). */
static void refuse_push(bx_sink_t *sink, bx_chunkv_t *msgs)
{
    (void)sink, (void)msgs;
}

static void test_take_waits_for_requeue(void)
{
    fixture_t f;
    bx_hub_t *hub;
    bx_sink_t refusing = { refuse_push, rs_close, 0, NULL };

    BX_CHECK_INT(setup(&f), 0);
    hub = bx_server_hub(f.s);
    bx_hub_set_extensions(hub, NULL, NULL, NULL, NULL);
    g_real_ops = f.e->ops;
    g_slow_ops = *g_real_ops;
    g_slow_ops.take = counted_take;
    g_slow_ops.requeue = held_requeue;
    f.e->ops = &g_slow_ops;
    memset(&g_requeue, 0, sizeof(g_requeue));
    g_takes = 0;

    /* "one" reaches a socket that refuses it: it goes back, held */
    bx_session_bind(hub, f.id, &refusing);
    publish(&f, "one");
    BX_CHECK_INT(g_requeue.n, 1);
    BX_CHECK_INT(g_requeue.msgs.n, 1);
    int takes = g_takes;

    /* a new socket, and a newer message: no take while the requeue is out */
    bx_session_bind(hub, f.id, &f.sink.base);
    publish(&f, "two");
    BX_CHECK_INT(g_takes, takes);
    BX_CHECK_INT(f.sink.got.n, 0);

    /* answered: a take brings both, the given-back one first */
    BX_CHECK_INT(g_real_ops->requeue(f.e, g_requeue.id, &g_requeue.msgs, g_requeue.cb,
                                     g_requeue.ud), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(f.sink.got.n, 2);
    BX_CHECK(memmem(f.sink.got.v[0]->data, f.sink.got.v[0]->len, "\"one\"", 5) != NULL);
    BX_CHECK(memmem(f.sink.got.v[1]->data, f.sink.got.v[1]->len, "\"two\"", 5) != NULL);

    f.e->ops = g_real_ops;
    bx_chunkv_free(&g_requeue.msgs);
    teardown(&f);
    BX_CHECK_INT(f.closed, 1);
    BX_LOOP_CLOSE(&f.loop);
}

int main(void)
{
    BX_RUN(test_requeue_goes_in_front_in_order);
    BX_RUN(test_two_passes_finish_together);
    BX_RUN(test_passes_finishing_out_of_order_keep_order);
    BX_RUN(test_destroyed_during_pass_leaves_no_session);
    BX_RUN(test_pass_results_wait_for_the_next_connection);
    BX_RUN(test_take_answered_after_the_connection_left);
    BX_RUN(test_take_waits_for_requeue);
    BX_RUN(test_session_memory);
    return BX_REPORT();
}
