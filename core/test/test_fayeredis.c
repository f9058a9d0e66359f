/*
 * test_fayeredis.c - the Redis engine in faye-redis mode against a private
 * redis-server (bx_redis_server.h), with a synchronous hiredis connection
 * playing the other servers (a Node faye-redis would send the same
 * commands): the keys and values it writes are faye-redis's; a message
 * queued and announced by another server wakes a connected client, whose
 * take drops the publisher's clientId; a destroy elsewhere closes the
 * client here; liveness at 1.6 x timeout; requeue puts messages back in
 * front, in order, and wakes; a subscriber connection lost and back wakes
 * the connections; scripts a Redis lost are sent again; the GC
 * honours another server's lock and takes over an expired one. (The
 * contract suite, test_engine.c, runs against this mode too.)
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "bx_engine_test.h"
#include "engine/engine.h"
#include "base/json.h"

#include <stdlib.h>
#include <sys/time.h>

#define NS "frunit"

typedef struct {
    char connected[4][64];
    int nconnected;
    int wakes;
    char woken[64];
    int closed;
    char closed_id[64];
    int took;                   /* take answers */
    int took_status;
    bx_chunkv_t msgs;           /* what takes brought */
} fake_t;

static int f_has_connection(void *ud, const char *id)
{
    fake_t *f = ud;
    for (int i = 0; i < f->nconnected; i++)
        if (strcmp(f->connected[i], id) == 0)
            return 1;
    return 0;
}

static void f_wake(void *ud, const char *id)
{
    fake_t *f = ud;
    f->wakes++;
    snprintf(f->woken, sizeof(f->woken), "%s", id);
}

static void f_closed(void *ud, const char *id)
{
    fake_t *f = ud;
    f->closed++;
    snprintf(f->closed_id, sizeof(f->closed_id), "%s", id);
}

static void f_trigger(void *ud, bx_event_t ev, const char *id, const char *ch,
                      const json_t *data)
{
    (void)ud; (void)ev; (void)id; (void)ch; (void)data;
}

static void f_took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    fake_t *f = ud;
    (void)id;
    g_reentered |= g_inside;
    f->took++;
    f->took_status = status;
    bx_chunkv_move(&f->msgs, msgs);
}

static bx_rs_t g_rs;
static redisContext *g_rc;      /* "the other servers" */

static long long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A command on the other servers' connection; the reply (freed by the
 * caller with freeReplyObject). */
static redisReply *R(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g_rc, fmt, ap);
    va_end(ap);
    if (!r)
        abort();
    return r;
}

static long long R_int(const char *fmt, const char *a, const char *b)
{
    redisReply *r = R(fmt, a, b);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    freeReplyObject(r);
    return v;
}

static void R_do(const char *fmt, const char *a, const char *b)
{
    freeReplyObject(R(fmt, a, b));
}

static bx_engine_t *engine_ns(uv_loop_t *loop, fake_t *f, double timeout, const char *ns)
{
    bx_proxy_t p = { .ud = f, .has_connection = f_has_connection, .wake = f_wake,
                     .closed = f_closed, .trigger = f_trigger };
    bx_engine_opts_t opts = { .timeout = timeout };
    char url[128], err[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0?namespace=%s&mode=faye", g_rs.port, ns);
    bx_engine_t *e = bx_engine_new(url, loop, &p, &opts, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        abort();
    }
    return e;
}

static bx_engine_t *engine(uv_loop_t *loop, fake_t *f, double timeout)
{
    return engine_ns(loop, f, timeout, NS);
}

static int subscribe(uv_loop_t *loop, bx_engine_t *e, const char *id, const char *ch)
{
    rec_t r;
    if (subscribe_rec(loop, e, id, ch, &r) != 0)
        return -1;
    return r.status == 0 ? r.yes : -1;
}

static int publish(uv_loop_t *loop, bx_engine_t *e, const char *json)
{
    json_t *m = bx_json_parse(json, strlen(json));
    if (!m)
        return -1;
    int rc = publish_msg(loop, e, m);
    json_decref(m);
    return rc == -100 ? -1 : rc;
}

static int take(uv_loop_t *loop, bx_engine_t *e, fake_t *f, const char *id)
{
    int want = f->took + 1;
    g_inside = 1;
    int rc = e->ops->take(e, id, f_took, f);
    g_inside = 0;
    if (rc != 0 || !run_until(loop, &f->took, want, 10))
        return -1;
    return f->took_status;
}

/* Whether chunk `c` is the JSON text `want`. */
static int chunk_is(const bx_chunk_t *c, const char *want)
{
    return c && c->len == strlen(want) && memcmp(c->data, want, c->len) == 0;
}

/* ---- Tests ---- */

static void test_layout(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char id[32], key[128];
    redisReply *r;

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    long long before = now_ms();
    BX_CHECK_INT(client(&loop, e, id), 0);
    /* the clients ZSET, scored in ms since the epoch */
    r = R("ZSCORE " NS "/clients %s", id);
    BX_CHECK(r->type == REDIS_REPLY_STRING);
    long long score = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    BX_CHECK(score >= before - 1 && score <= now_ms() + 1);
    BX_CHECK_INT(subscribe(&loop, e, id, "/a/b"), 1);
    BX_CHECK_INT(subscribe(&loop, e, id, "/a/*"), 1);
    snprintf(key, sizeof(key), NS "/clients/%s/channels", id);
    BX_CHECK_INT(R_int("SCARD %s", key, NULL), 2);
    BX_CHECK_INT(R_int("SISMEMBER %s %s", key, "/a/*"), 1);
    BX_CHECK_INT(R_int("SISMEMBER " NS "/channels/a/b %s", id, NULL), 1);
    BX_CHECK_INT(R_int("SISMEMBER " NS "/channels/a/* %s", id, NULL), 1);
    /* the message as published, clientId too, once (two subscriptions) */
    BX_CHECK_INT(publish(&loop, e, "{\"channel\":\"/a/b\",\"data\":1,\"clientId\":\"pub\"}"), 0);
    snprintf(key, sizeof(key), NS "/clients/%s/messages", id);
    r = R("LRANGE %s 0 -1", key);
    BX_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        BX_CHECK_STR(r->element[0]->str, "{\"channel\":\"/a/b\",\"data\":1,\"clientId\":\"pub\"}");
    freeReplyObject(r);
    /* taken without the clientId; the list is gone */
    f.nconnected = 1;
    snprintf(f.connected[0], 64, "%s", id);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK_INT(f.msgs.n, 1);
    BX_CHECK(f.msgs.n == 1 && chunk_is(f.msgs.v[0], "{\"channel\":\"/a/b\",\"data\":1}"));
    BX_CHECK_INT(R_int("EXISTS %s", key, NULL), 0);
    /* destroyed: every key of it gone, the close announced */
    rec_t d = { 0 };
    BX_CHECK_INT(e->ops->destroy_client(e, id, done_cb, &d), 0);
    run_until(&loop, &d.calls, 1, 10);
    BX_CHECK_INT(d.status, 0);
    r = R("ZSCORE " NS "/clients %s", id);
    BX_CHECK(r->type == REDIS_REPLY_NIL);
    freeReplyObject(r);
    snprintf(key, sizeof(key), NS "/clients/%s/channels", id);
    BX_CHECK_INT(R_int("EXISTS %s", key, NULL), 0);
    BX_CHECK_INT(R_int("SISMEMBER " NS "/channels/a/b %s", id, NULL), 0);
    BX_CHECK_INT(f.closed, 1);
    /* our own close notification does not close it twice */
    int never = 0;
    run_until(&loop, &never, 1, 0.3);
    BX_CHECK_INT(f.closed, 1);
    bx_chunkv_free(&f.msgs);
    close_engine(&loop, e);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* Another server queues a message for our connected client and announces
 * it; then destroys the client. */
static void test_other_server(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char id[32], key[128];

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    BX_CHECK_INT(client(&loop, e, id), 0);
    snprintf(f.connected[f.nconnected++], 64, "%s", id);
    snprintf(key, sizeof(key), NS "/clients/%s/messages", id);
    R_do("RPUSH %s %s", key, "{\"channel\":\"/n\",\"data\":{\"from\":\"node\"},\"clientId\":\"x\",\"id\":\"7\"}");
    BX_CHECK_INT(R_int("PUBLISH " NS "/notifications/messages %s", id, NULL), 1);
    BX_CHECK(run_until(&loop, &f.wakes, 1, 10));
    BX_CHECK_STR(f.woken, id);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK(f.msgs.n == 1
             && chunk_is(f.msgs.v[0], "{\"channel\":\"/n\",\"data\":{\"from\":\"node\"},\"id\":\"7\"}"));
    /* a notification for a client not connected here wakes nothing */
    R_do("PUBLISH " NS "/notifications/messages %s", "someoneelse", NULL);
    /* the other server destroys it (faye-redis 0.2.0's sequence) */
    R_do("ZADD " NS "/clients 0 %s", id, NULL);
    R_do("ZREM " NS "/clients %s", id, NULL);
    R_do("PUBLISH " NS "/notifications/close %s", id, NULL);
    BX_CHECK(run_until(&loop, &f.closed, 1, 10));
    BX_CHECK_STR(f.closed_id, id);
    BX_CHECK_INT(f.wakes, 1);
    BX_CHECK_INT(take(&loop, e, &f, id), BX_EUNKNOWN);
    bx_chunkv_free(&f.msgs);
    close_engine(&loop, e);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* A client made elsewhere exists while its score is above now - 1.6 x
 * timeout. */
static void test_liveness(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char score[32];
    rec_t alive = { 0 }, dead = { 0 };

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    snprintf(score, sizeof(score), "%lld", now_ms() - 90000);      /* 1.5 x */
    R_do("ZADD " NS "/clients %s alivenodeclient", score, NULL);
    snprintf(score, sizeof(score), "%lld", now_ms() - 102000);     /* 1.7 x */
    R_do("ZADD " NS "/clients %s deadnodeclient", score, NULL);
    BX_CHECK_INT(e->ops->client_exists(e, "alivenodeclient", bool_cb, &alive), 0);
    BX_CHECK_INT(e->ops->client_exists(e, "deadnodeclient", bool_cb, &dead), 0);
    run_until(&loop, &dead.calls, 1, 10);
    BX_CHECK_INT(alive.yes, 1);
    BX_CHECK_INT(dead.yes, 0);
    R_do("ZREM " NS "/clients alivenodeclient deadnodeclient", NULL, NULL);
    close_engine(&loop, e);
    BX_LOOP_CLOSE(&loop);
}

/* What a connection did not send goes back in front of the queue, ahead of
 * what came since, and wakes the connection's holder. */
static void test_requeue(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char id[32], key[128], text[64];
    redisReply *r;

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    BX_CHECK_INT(client(&loop, e, id), 0);
    BX_CHECK_INT(subscribe(&loop, e, id, "/q"), 1);
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        BX_CHECK_INT(publish(&loop, e, text), 0);
    }
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK_INT(f.msgs.n, 3);
    BX_CHECK_INT(publish(&loop, e, "{\"channel\":\"/q\",\"data\":3}"), 0);
    snprintf(f.connected[f.nconnected++], 64, "%s", id);
    int wakes = f.wakes;
    rec_t q = { 0 };
    g_inside = 1;
    BX_CHECK_INT(e->ops->requeue(e, id, &f.msgs, done_cb, &q), 0);
    g_inside = 0;
    BX_CHECK_INT(f.msgs.n, 0);
    BX_CHECK_INT(q.calls, 0);               /* answered on a later turn */
    BX_CHECK(run_until(&loop, &q.calls, 1, 10));
    BX_CHECK_INT(q.status, 0);
    BX_CHECK(run_until(&loop, &f.wakes, wakes + 1, 10));
    snprintf(key, sizeof(key), NS "/clients/%s/messages", id);
    r = R("LRANGE %s 0 -1", key);
    BX_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && i < 4; i++) {
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", (int)i);
        BX_CHECK_STR(r->element[i]->str, text);
    }
    freeReplyObject(r);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK_INT(f.msgs.n, 4);
    BX_CHECK(f.msgs.n == 4 && chunk_is(f.msgs.v[0], "{\"channel\":\"/q\",\"data\":0}")
             && chunk_is(f.msgs.v[3], "{\"channel\":\"/q\",\"data\":3}"));
    /* for a client gone meanwhile: nothing is stored */
    rec_t d = { 0 };
    e->ops->destroy_client(e, id, done_cb, &d);
    run_until(&loop, &d.calls, 1, 10);
    rec_t gone = { 0 };
    BX_CHECK_INT(e->ops->requeue(e, id, &f.msgs, done_cb, &gone), 0);
    BX_CHECK(run_until(&loop, &gone.calls, 1, 10));
    BX_CHECK_INT(gone.status, BX_EUNKNOWN);
    BX_CHECK_INT(publish(&loop, e, "{\"channel\":\"/other\",\"data\":0}"), 0);  /* after it */
    BX_CHECK_INT(R_int("EXISTS %s", key, NULL), 0);
    bx_chunkv_free(&f.msgs);
    close_engine(&loop, e);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* The subscriber connection lost: what was announced meanwhile is not
 * heard, so when it is back every connection here is woken to look. */
static void test_subscriber_lost(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char id[32], key[128];

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    BX_CHECK_INT(client(&loop, e, id), 0);
    snprintf(f.connected[f.nconnected++], 64, "%s", id);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);        /* a connection came */
    BX_CHECK_INT(R_int("CLIENT KILL TYPE pubsub", NULL, NULL), 1);
    snprintf(key, sizeof(key), NS "/clients/%s/messages", id);
    R_do("RPUSH %s %s", key, "{\"channel\":\"/lost\",\"data\":1}");
    BX_CHECK_INT(R_int("PUBLISH " NS "/notifications/messages %s", id, NULL), 0);
    BX_CHECK(run_until(&loop, &f.wakes, 1, 10));
    BX_CHECK_STR(f.woken, id);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK(f.msgs.n == 1 && chunk_is(f.msgs.v[0], "{\"channel\":\"/lost\",\"data\":1}"));
    bx_chunkv_free(&f.msgs);
    close_engine(&loop, e);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* Scripts go by their SHA1; a Redis that lost them (SCRIPT FLUSH, a
 * restart) gets their text. */
static void test_scripts_flushed(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char id[32];

    uv_loop_init(&loop);
    bx_engine_t *e = engine(&loop, &f, 60);
    BX_CHECK_INT(client(&loop, e, id), 0);
    BX_CHECK_INT(subscribe(&loop, e, id, "/s"), 1);
    R_do("SCRIPT FLUSH", NULL, NULL);
    BX_CHECK_INT(subscribe(&loop, e, id, "/t"), 1);
    BX_CHECK_INT(publish(&loop, e, "{\"channel\":\"/s\",\"data\":1}"), 0);
    BX_CHECK_INT(take(&loop, e, &f, id), 0);
    BX_CHECK(f.msgs.n == 1 && chunk_is(f.msgs.v[0], "{\"channel\":\"/s\",\"data\":1}"));
    bx_chunkv_free(&f.msgs);
    close_engine(&loop, e);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* The GC sweeps clients expired at 2 x timeout, but not while another
 * server holds the lock; an expired lock is taken over (GETSET), and the
 * sweep releases it. */
static void test_gc_lock(void)
{
    uv_loop_t loop;
    fake_t f = { 0 };
    char v[32];

    uv_loop_init(&loop);
    /* a namespace of its own: the other tests' clients are not expired */
    bx_engine_t *e = engine_ns(&loop, &f, 0.2, "frgc");     /* a sweep every 50 ms */
    snprintf(v, sizeof(v), "%lld", now_ms() + 100000);
    R_do("SET frgc/locks/gc %s", v, NULL);
    snprintf(v, sizeof(v), "%lld", now_ms() - 60000);
    R_do("ZADD frgc/clients %s expiredclient", v, NULL);
    R_do("SADD frgc/clients/expiredclient/channels /g", NULL, NULL);
    R_do("SADD frgc/channels/g expiredclient", NULL, NULL);
    int never = 0;
    run_until(&loop, &never, 1, 0.6);               /* a dozen sweeps' time */
    redisReply *r = R("ZSCORE frgc/clients expiredclient");
    BX_CHECK(r->type == REDIS_REPLY_STRING);        /* the lock was held */
    freeReplyObject(r);
    snprintf(v, sizeof(v), "%lld", now_ms() - 1);
    R_do("SET frgc/locks/gc %s", v, NULL);        /* its holder died */
    BX_CHECK(run_until(&loop, &f.closed, 1, 10));
    BX_CHECK_STR(f.closed_id, "expiredclient");
    BX_CHECK_INT(R_int("EXISTS frgc/clients/expiredclient/channels", NULL, NULL), 0);
    BX_CHECK_INT(R_int("SISMEMBER frgc/channels/g expiredclient", NULL, NULL), 0);
    /* released after the sweep (each sweep holds it a moment) */
    long long left = 1;
    for (int i = 0; i < 200 && left; i++) {
        run_until(&loop, &never, 1, 0.01);
        left = R_int("EXISTS frgc/locks/gc", NULL, NULL);
    }
    BX_CHECK_INT(left, 0);
    close_engine(&loop, e);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    if (bx_rs_start(&g_rs, NULL, NULL) < 0) {
        printf("not ok - redis-server did not start\n");
        bx_test_failed++;
        return BX_REPORT();
    }
    struct timeval tv = { 2, 0 };
    g_rc = redisConnectWithTimeout("127.0.0.1", g_rs.port, tv);
    if (!g_rc || g_rc->err) {
        printf("not ok - no connection to redis-server\n");
        bx_test_failed++;
        return BX_REPORT();
    }
    BX_RUN(test_layout);
    BX_RUN(test_other_server);
    BX_RUN(test_liveness);
    BX_RUN(test_requeue);
    BX_RUN(test_subscriber_lost);
    BX_RUN(test_scripts_flushed);
    BX_RUN(test_gc_lock);
    redisFree(g_rc);
    bx_rs_stop(&g_rs);
    return BX_REPORT();
}
