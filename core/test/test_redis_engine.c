/*
 * test_redis_engine.c - two Redis engines on one loop, as two processes
 * would be, sharing a private redis-server (bx_redis_server.h): a publish
 * on one reaches the other's clients once each (wildcards, several
 * matching subscriptions), the Redis commands a publish costs whatever
 * the number of subscribers (INFO commandstats), and Redis killed and
 * restarted: publishes refused meanwhile, then everything works again by
 * itself (re-subscription). Shards: a channel's shard from the hash ring
 * (adding a shard moves only its share), and two redis-servers sharing
 * the work.
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "bx_engine_test.h"
#include "engine/engine.h"
#include "engine/redis.h"
#include "base/json.h"

#include <stdlib.h>

#define MAXC 256

typedef struct {
    int n;                      /* deliveries through take */
    int wakes;
    int taking;
} node_t;

static int n_has_connection(void *ud, const char *id)
{
    (void)ud;
    (void)id;
    return 1;                   /* every client is "connected": wakes come */
}

static void n_wake(void *ud, const char *id)
{
    (void)id;
    ((node_t *)ud)->wakes++;
}

static void n_trigger(void *ud, bx_event_t ev, const char *id, const char *ch,
                      const json_t *data)
{
    (void)ud; (void)ev; (void)id; (void)ch; (void)data;
}

static void n_closed(void *ud, const char *id)
{
    (void)ud;
    (void)id;
}

static void took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    node_t *n = ud;
    (void)id;
    g_reentered |= g_inside;
    n->taking--;
    if (status == 0)
        n->n += (int)msgs->n;
}

static uv_timer_t g_tick;
static void tick(uv_timer_t *t) { (void)t; }

static bx_rs_t g_rs;

static bx_engine_t *engine(uv_loop_t *loop, node_t *n, bx_proxy_t *p)
{
    char url[96], err[128];
    bx_engine_opts_t o = { .timeout = 60 };
    p->ud = n;
    p->has_connection = n_has_connection;
    p->wake = n_wake;
    p->closed = n_closed;
    p->trigger = n_trigger;
    p->leave = NULL;
    p->arrive = NULL;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d?namespace=two", g_rs.port);
    return bx_engine_new(url, loop, p, &o, err, sizeof(err));
}

static int subscribe(uv_loop_t *loop, bx_engine_t *e, const char *id, const char *ch)
{
    rec_t r;
    int rc = subscribe_rec(loop, e, id, ch, &r);
    return rc ? rc : r.status;
}

static int publish(uv_loop_t *loop, bx_engine_t *e, const char *ch, int data)
{
    json_t *m = json_pack("{s:s,s:i}", "channel", ch, "data", data);
    int rc = publish_msg(loop, e, m);
    json_decref(m);
    return rc;
}

/* Takes the queue of `id` on `e` into n->n. */
static void take(uv_loop_t *loop, bx_engine_t *e, node_t *n, const char *id)
{
    int zero = 0;
    n->taking++;
    if (e->ops->take(e, id, took, n) != 0) {
        n->taking--;
        return;
    }
    /* wait for the answer: taking goes back to 0 */
    while (n->taking > 0) {
        uv_run(loop, UV_RUN_ONCE);
        if (zero++ > 1000)
            break;
    }
}

static long commands_at(int port, int reset, const char *only);

/* Sum of the `calls=` of INFO commandstats but INFO and CONFIG's own. */
static long commands_since_reset(int reset)
{
    return commands_at(g_rs.port, reset, NULL);
}

/* The same for the server on `port`, or the calls of command `only`. */
static long commands_at(int port, int reset, const char *only)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    long total = 0;
    if (!c || c->err)
        return -1;
    redisReply *r = redisCommand(c, reset ? "CONFIG RESETSTAT" : "INFO commandstats");
    if (r && !reset && r->type == REDIS_REPLY_STRING) {
        for (char *p = strstr(r->str, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
            char *calls = strstr(p, "calls=");
            if (only && (strncmp(p + 8, only, strlen(only)) != 0 || p[8 + strlen(only)] != ':'))
                continue;
            if (strncmp(p, "cmdstat_info:", 13) != 0 && strncmp(p, "cmdstat_config", 14) != 0
                && calls)
                total += strtol(calls + 6, NULL, 10);
        }
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return total;
}

/* ---- Tests ---- */

static void test_across_engines(void)
{
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    char a1[32], b1[32], b2[32];

    uv_loop_init(&loop);
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    g_reentered = 0;
    bx_engine_t *a = engine(&loop, &na, &pa), *b = engine(&loop, &nb, &pb);
    BX_CHECK(a && b);
    BX_CHECK_STR(a->ops->name, "redis");
    BX_CHECK_INT(client(&loop, a, a1), 0);
    BX_CHECK_INT(client(&loop, b, b1), 0);
    BX_CHECK_INT(client(&loop, b, b2), 0);
    BX_CHECK_INT(subscribe(&loop, a, a1, "/a/*"), 0);
    BX_CHECK_INT(subscribe(&loop, b, b1, "/a/**"), 0);
    BX_CHECK_INT(subscribe(&loop, b, b1, "/a/b"), 0);     /* two matches: one copy */
    BX_CHECK_INT(subscribe(&loop, b, b2, "/x"), 0);
    /* A publishes /a/b: a1 (local) and b1 (through Redis) get it once */
    BX_CHECK_INT(publish(&loop, a, "/a/b", 1), 0);
    BX_CHECK(run_until(&loop, &nb.wakes, 1, 10));
    run_for(&loop, 0.2);                /* a second copy would be here by now */
    take(&loop, a, &na, a1);
    take(&loop, b, &nb, b1);
    take(&loop, b, &nb, b2);
    BX_CHECK_INT(na.n, 1);
    BX_CHECK_INT(nb.n, 1);
    /* B publishes /a/b/c: b1 (local, /a/**) only; a1's /a/* does not match
     * though A's Redis pattern does */
    BX_CHECK_INT(publish(&loop, b, "/a/b/c", 2), 0);
    run_for(&loop, 0.2);
    take(&loop, a, &na, a1);
    take(&loop, b, &nb, b1);
    BX_CHECK_INT(na.n, 1);
    BX_CHECK_INT(nb.n, 2);
    /* B publishes /x to its own b2 only: delivered once, not twice */
    BX_CHECK_INT(publish(&loop, b, "/x", 3), 0);
    run_for(&loop, 0.2);
    take(&loop, b, &nb, b2);
    BX_CHECK_INT(nb.n, 3);

    close_engine(&loop, a);
    close_engine(&loop, b);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

/* 200 subscribers on B, A publishes 10: Redis works 10 PUBLISHes, however
 * many subscribers there are (the issue's bound is 4 per message). */
static void test_commands_per_publish(void)
{
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    static char ids[200][32];
    char pub[32];

    uv_loop_init(&loop);
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    bx_engine_t *a = engine(&loop, &na, &pa), *b = engine(&loop, &nb, &pb);
    BX_CHECK_INT(client(&loop, a, pub), 0);
    for (int i = 0; i < 200; i++) {
        BX_CHECK_INT(client(&loop, b, ids[i]), 0);
        BX_CHECK_INT(subscribe(&loop, b, ids[i], i % 2 ? "/count/*" : "/count/x"), 0);
    }
    BX_CHECK_INT(commands_since_reset(1), 0);
    for (int i = 0; i < 10; i++)
        BX_CHECK_INT(publish(&loop, a, "/count/x", i), 0);
    BX_CHECK(run_until(&loop, &nb.wakes, 200, 10));
    long n = commands_since_reset(0);
    printf("# Redis commands for 10 publishes to 200 subscribers: %ld\n", n);
    BX_CHECK(n >= 10 && n <= 40);
    for (int i = 0; i < 200; i++)
        take(&loop, b, &nb, ids[i]);
    BX_CHECK_INT(nb.n, 2000);
    close_engine(&loop, a);
    close_engine(&loop, b);
    BX_LOOP_CLOSE(&loop);
}

static void test_outage(void)
{
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    char b1[32];
    int rc = 0;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    bx_engine_t *a = engine(&loop, &na, &pa), *b = engine(&loop, &nb, &pb);
    BX_CHECK_INT(client(&loop, b, b1), 0);
    BX_CHECK_INT(subscribe(&loop, b, b1, "/o"), 0);
    BX_CHECK_INT(publish(&loop, a, "/o", 1), 0);
    BX_CHECK(run_until(&loop, &nb.wakes, 1, 10));

    bx_rs_stop(&g_rs);
    /* refused at once while Redis is away (no callback), never a hang */
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = publish(&loop, a, "/o", 2);
        if (rc == 0)
            run_for(&loop, 0.05);
    }
    BX_CHECK_INT(rc, BX_EUNAVAILABLE);
    /* local state still answers */
    BX_CHECK_INT(subscribe(&loop, b, b1, "/o2"), 0);

    BX_CHECK_INT(bx_rs_start(&g_rs, NULL, NULL), 0);
    /* back by itself: publishes go through again and B, re-subscribed,
     * receives (/o and /o2, the one made during the outage) */
    rc = BX_EUNAVAILABLE;
    for (int i = 0; i < 200 && rc != 0; i++) {
        rc = publish(&loop, a, "/o2", 3);
        if (rc != 0)
            run_for(&loop, 0.05);
    }
    BX_CHECK_INT(rc, 0);
    take(&loop, b, &nb, b1);
    int before = nb.n;
    for (int i = 0; i < 100 && nb.n == before; i++) {
        BX_CHECK_INT(publish(&loop, a, "/o", 4), 0);
        run_for(&loop, 0.05);
        take(&loop, b, &nb, b1);
    }
    BX_CHECK(nb.n > before);
    close_engine(&loop, a);
    close_engine(&loop, b);
    BX_LOOP_CLOSE(&loop);
}

/* Every process computes the same shard; a third shard takes about a
 * third of the channels, all of them from the others, and moves nothing
 * else. */
static void test_ring_share(void)
{
    const char *two[2] = { "127.0.0.1:6379/0", "127.0.0.1:6380/0" };
    const char *three[3] = { "127.0.0.1:6379/0", "127.0.0.1:6380/0", "10.0.0.3:6379/0" };
    int moved = 0, on[2] = { 0, 0 };
    char ch[32];

    BX_CHECK_INT(bx_engine_redis_shard_of(two, 0, "/x"), -1);
    BX_CHECK_INT(bx_engine_redis_shard_of(two, 1, "/x"), 0);
    for (int i = 0; i < 3000; i++) {
        snprintf(ch, sizeof(ch), "/room/%d", i);
        int a = bx_engine_redis_shard_of(two, 2, ch), b = bx_engine_redis_shard_of(three, 3, ch);
        BX_CHECK(a == 0 || a == 1);
        on[a]++;
        if (a != b) {
            BX_CHECK_INT(b, 2);                 /* only to the new shard */
            moved++;
        }
        BX_CHECK_INT(bx_engine_redis_shard_of(two, 2, ch), a);     /* stable */
    }
    printf("# 2 shards: %d / %d; a third one takes %d of 3000\n", on[0], on[1], moved);
    BX_CHECK(on[0] > 600 && on[1] > 600);
    BX_CHECK(moved > 450 && moved < 1650);
}

/* Two redis-servers: publishes spread over both, patterns reach every
 * channel wherever it lives. */
static void test_shards(void)
{
    static bx_rs_t rs2;
    uv_loop_t loop;
    node_t na = { 0 }, nb = { 0 };
    bx_proxy_t pa, pb;
    char url[200], err[128], pub[32], star[32], exact[32];
    bx_engine_opts_t o = { .timeout = 60 };

    BX_CHECK_INT(bx_rs_start(&rs2, NULL, NULL), 0);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d?namespace=sh,redis://127.0.0.1:%d"
             "?namespace=sh", g_rs.port, rs2.port);
    pa.ud = &na;
    pa.has_connection = n_has_connection;
    pa.wake = n_wake;
    pa.closed = n_closed;
    pa.trigger = n_trigger;
    pa.leave = NULL;
    pa.arrive = NULL;
    pb = pa;
    pb.ud = &nb;
    bx_engine_t *a = bx_engine_new(url, &loop, &pa, &o, err, sizeof(err));
    bx_engine_t *b = bx_engine_new(url, &loop, &pb, &o, err, sizeof(err));
    BX_CHECK(a && b);
    BX_CHECK_INT(client(&loop, a, pub), 0);
    BX_CHECK_INT(client(&loop, b, star), 0);
    BX_CHECK_INT(client(&loop, b, exact), 0);
    BX_CHECK_INT(subscribe(&loop, b, star, "/s/*"), 0);
    for (int i = 0; i < 20; i++) {
        char ch[16];
        snprintf(ch, sizeof(ch), "/s/%d", i);
        BX_CHECK_INT(subscribe(&loop, b, exact, ch), 0);
    }
    commands_at(g_rs.port, 1, NULL);
    commands_at(rs2.port, 1, NULL);
    for (int i = 0; i < 20; i++) {
        char ch[16];
        snprintf(ch, sizeof(ch), "/s/%d", i);
        BX_CHECK_INT(publish(&loop, a, ch, i), 0);
    }
    long p1 = commands_at(g_rs.port, 0, "publish"), p2 = commands_at(rs2.port, 0, "publish");
    printf("# 20 publishes: %ld on the first shard, %ld on the second\n", p1, p2);
    BX_CHECK_INT(p1 + p2, 20);
    BX_CHECK(p1 > 0 && p2 > 0);
    for (int i = 0; i < 100 && nb.n < 40; i++) {
        run_for(&loop, 0.05);
        take(&loop, b, &nb, star);
        take(&loop, b, &nb, exact);
    }
    BX_CHECK_INT(nb.n, 40);
    close_engine(&loop, a);
    close_engine(&loop, b);
    bx_rs_stop(&rs2);
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
    BX_RUN(test_across_engines);
    BX_RUN(test_commands_per_publish);
    BX_RUN(test_outage);
    BX_RUN(test_ring_share);
    BX_RUN(test_shards);
    bx_rs_stop(&g_rs);
    return BX_REPORT();
}
