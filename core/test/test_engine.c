/*
 * test_engine.c - the engine contract (engine.h), driven through a fake
 * proxy that records every wake, delivery and event. Written against
 * engine.h alone: the engine comes from the factory, of the type named by
 * BX_ENGINE (default "memory"), so any engine can be run through it.
 * Without BX_ENGINE the suite runs three times: against the memory engine,
 * then against the Redis engine on a private redis-server
 * (bx_redis_server.h), in its own mode and in faye-redis mode. On Redis,
 * each engine gets a namespace of its own: no test sees another's state.
 *
 * Every test runs on its own loop, closes the engine and ends with
 * BX_LOOP_CLOSE. Callbacks assert they never run inside the call that
 * started them (g_inside) and count how often they run.
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "bx_engine_test.h"
#include "engine/engine.h"
#include "base/json.h"

#include <malloc.h>
#include <stdlib.h>

/* ---- The fake proxy ---- */

#define MAXREC 256

typedef struct {
    bx_event_t ev;
    char id[32];
    char channel[64];
    json_t *data;
    uint64_t at;                /* uv_now when it happened */
} ev_rec_t;

typedef struct {
    char id[32];
    bx_chunk_t *chunk;          /* one reference */
} dl_rec_t;

typedef struct {
    uv_loop_t *loop;
    char connected[8][32];      /* ids with a "connection" here */
    int nconnected;
    char wakes[MAXREC][32];
    int nwakes;
    dl_rec_t dl[MAXREC];
    int ndl;
    int ndeliver_calls;         /* takes that brought messages */
    int ntakes;
    int take_status;            /* of the last take */
    ev_rec_t ev[MAXREC];
    int nev;
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
    if (f->nwakes < MAXREC)
        snprintf(f->wakes[f->nwakes++], 32, "%s", id);
}

/* Fake events: what the proxy hears besides bx_event_t. */
#define EV_CLOSED ((bx_event_t)100)

static void f_closed(void *ud, const char *id);

/* The answer of take(): recorded like a delivery when it holds messages. */
static void f_took(void *ud, int status, const char *id, bx_chunkv_t *msgs)
{
    fake_t *f = ud;
    if (g_inside)
        g_reentered = 1;
    f->ntakes++;
    f->take_status = status;
    if (msgs->n == 0)
        return;
    f->ndeliver_calls++;
    for (size_t i = 0; i < msgs->n; i++) {
        if (f->ndl < MAXREC) {
            snprintf(f->dl[f->ndl].id, 32, "%s", id);
            f->dl[f->ndl++].chunk = msgs->v[i];     /* stolen */
        } else {
            bx_chunk_unref(msgs->v[i]);
        }
    }
    msgs->n = 0;
}

static void f_trigger(void *ud, bx_event_t ev, const char *id, const char *channel,
                      const json_t *data)
{
    fake_t *f = ud;
    if (f->nev >= MAXREC)
        return;
    ev_rec_t *r = &f->ev[f->nev++];
    r->ev = ev;
    snprintf(r->id, sizeof(r->id), "%s", id ? id : "");
    snprintf(r->channel, sizeof(r->channel), "%s", channel ? channel : "");
    r->data = data ? json_deep_copy(data) : NULL;
    r->at = uv_now(f->loop);
}

static void fake_init(fake_t *f, uv_loop_t *loop, bx_proxy_t *p)
{
    memset(f, 0, sizeof(*f));
    f->loop = loop;
    p->ud = f;
    p->has_connection = f_has_connection;
    p->wake = f_wake;
    p->closed = f_closed;
    p->trigger = f_trigger;
    p->leave = NULL;
    p->arrive = NULL;
}

static void f_closed(void *ud, const char *id)
{
    f_trigger(ud, EV_CLOSED, id, NULL, NULL);
}

static void fake_connect(fake_t *f, const char *id)
{
    snprintf(f->connected[f->nconnected++], 32, "%s", id);
}

static void fake_free(fake_t *f)
{
    for (int i = 0; i < f->ndl; i++)
        bx_chunk_unref(f->dl[i].chunk);
    for (int i = 0; i < f->nev; i++)
        if (f->ev[i].data)
            json_decref(f->ev[i].data);
    f->ndl = f->nev = 0;
}

/* Deliveries to `id`: count, and the i-th chunk. */
static int dl_count(const fake_t *f, const char *id)
{
    int n = 0;
    for (int i = 0; i < f->ndl; i++)
        n += strcmp(f->dl[i].id, id) == 0;
    return n;
}

static bx_chunk_t *dl_nth(const fake_t *f, const char *id, int nth)
{
    for (int i = 0; i < f->ndl; i++)
        if (strcmp(f->dl[i].id, id) == 0 && nth-- == 0)
            return f->dl[i].chunk;
    return NULL;
}

static int ev_count(const fake_t *f, bx_event_t ev, const char *id)
{
    int n = 0;
    for (int i = 0; i < f->nev; i++)
        n += f->ev[i].ev == ev && (!id || strcmp(f->ev[i].id, id) == 0);
    return n;
}

/* Engine calls wrapped so that callbacks can detect re-entry. */
#define CALL(expr) (g_inside = 1, bx_engine_call_rc_ = (expr), g_inside = 0, bx_engine_call_rc_)
static int bx_engine_call_rc_;

static void drain(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);   /* the idle handle runs until nothing is pending */
}

/* Takes the queue of `id` into the fake's deliveries; returns the status
 * (the callback must come on a later turn, exactly once). */
static int take_queue(fake_t *f, bx_engine_t *e, const char *id)
{
    int before = f->ntakes;
    int rc = CALL(e->ops->take(e, id, f_took, f));
    if (rc != 0)
        return rc;
    if (f->ntakes != before)
        return -100;            /* called back inside the call */
    drain(e->loop);
    return f->ntakes == before + 1 ? f->take_status : -101;
}

/* Creates a client and waits for its id. */
static int make_client(bx_engine_t *e, char out[32])
{
    rec_t r = { 0 };
    if (CALL(e->ops->create_client(e, id_cb, &r)) != 0 || r.calls != 0)
        return -1;
    drain(e->loop);
    if (r.calls != 1 || r.status != 0)
        return -1;
    memcpy(out, r.id, 32);
    return 0;
}

static int sub(bx_engine_t *e, const char *id, const char *ch)
{
    rec_t r = { 0 };
    if (CALL(e->ops->subscribe(e, id, ch, 0, bool_cb, &r)) != 0 || r.calls != 0)
        return -1;
    drain(e->loop);
    return r.calls == 1 && r.status == 0 ? r.yes : -1;
}

static int publish_text(bx_engine_t *e, const char *json)
{
    rec_t r = { 0 };
    json_t *m = bx_json_parse(json, strlen(json));
    if (!m)
        return -1;
    int rc = CALL(e->ops->publish(e, m, done_cb, &r));
    json_decref(m);                 /* borrowed: the engine kept its own bytes */
    if (rc != 0 || r.calls != 0)
        return -1;
    drain(e->loop);
    return r.calls == 1 ? r.status : -1;
}

static void engine_close(bx_engine_t *e)
{
    int done = 0;
    uv_loop_t *loop = e->loop;
    e->ops->close(e, closed, &done);
    uv_run(loop, UV_RUN_DEFAULT);
    if (done != 1)
        fprintf(stderr, "  engine close: done called %d times\n", done);
}

/* The engine under test, from the factory. */
static bx_engine_t *engine_new(uv_loop_t *loop, const bx_proxy_t *proxy, double timeout,
                               size_t limit)
{
    const char *type = getenv("BX_ENGINE");
    bx_engine_opts_t opts = { .timeout = timeout, .queue_limit = limit };
    char err[256], url[512];
    static int n;
    if (type && strncmp(type, "redis://", 8) == 0 && strchr(type, '?') && !strchr(type, ',')) {
        snprintf(url, sizeof(url), "%s&namespace=t%d-%d", type, (int)getpid(), ++n);
        type = url;
    }
    bx_engine_t *e = bx_engine_new(type && *type ? type : "memory", loop, proxy, &opts, err,
                                   sizeof(err));
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        exit(1);
    }
    return e;
}

/* The name the engine under test gives itself. */
static const char *engine_name(void)
{
    const char *type = getenv("BX_ENGINE");
    if (type && (strncmp(type, "redis://", 8) == 0 || strncmp(type, "unix://", 7) == 0))
        return strstr(type, "mode=faye") ? "fayeredis" : "redis";
    return type && *type ? type : "memory";
}

static unsigned long dropped(bx_engine_t *e)
{
    bx_engine_stats_t st;
    e->ops->stats(e, &st);
    return st.dropped;
}

static size_t clients(bx_engine_t *e)
{
    bx_engine_stats_t st;
    e->ops->stats(e, &st);
    return st.clients;
}

#define SETUP(timeout, limit)                                                 \
    uv_loop_t loop;                                                           \
    fake_t f;                                                                 \
    bx_proxy_t proxy;                                                         \
    uv_loop_init(&loop);                                                      \
    fake_init(&f, &loop, &proxy);                                             \
    g_reentered = 0;                                                          \
    bx_engine_t *e = engine_new(&loop, &proxy, (timeout), (limit))

#define TEARDOWN()                                                            \
    do {                                                                      \
        engine_close(e);                                                      \
        fake_free(&f);                                                        \
        BX_CHECK(!g_reentered);                                               \
        BX_LOOP_CLOSE(&loop);                                                 \
    } while (0)

static int valid_id(const char *id)
{
    if (strlen(id) != 31)
        return 0;
    for (int i = 0; i < 31; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z')))
            return 0;
    return 1;
}

/* ---- Tests ---- */

static void test_random_id(void)
{
    char a[32], b[32];
    int seen[36] = { 0 }, kinds = 0;

    for (int i = 0; i < 200; i++) {
        bx_engine_random_id(a);
        BX_CHECK(valid_id(a));
        for (int j = 0; j < 31; j++)
            seen[a[j] <= '9' ? a[j] - '0' : a[j] - 'a' + 10]++;
    }
    for (int i = 0; i < 36; i++)
        kinds += seen[i] > 0;
    BX_CHECK_INT(kinds, 36);            /* 6200 draws reach every character */
    bx_engine_random_id(b);
    BX_CHECK(strcmp(a, b) != 0);
    (void)bx_test_close_walk;
}

static void test_factory_unknown_type(void)
{
    uv_loop_t loop;
    fake_t f;
    bx_proxy_t proxy;
    bx_engine_opts_t opts = { .timeout = 60 };
    char err[128] = "";

    uv_loop_init(&loop);
    fake_init(&f, &loop, &proxy);
    BX_CHECK(bx_engine_new("nosuch", &loop, &proxy, &opts, err, sizeof(err)) == NULL);
    BX_CHECK_STR(err, "unknown engine 'nosuch'");
    fake_free(&f);
    BX_LOOP_CLOSE(&loop);
}

static void test_create_client(void)
{
    SETUP(60, 0);
    rec_t r1 = { 0 }, r2 = { 0 };

    BX_CHECK_STR(e->ops->name, engine_name());
    BX_CHECK_INT(CALL(e->ops->create_client(e, id_cb, &r1)), 0);
    BX_CHECK_INT(CALL(e->ops->create_client(e, id_cb, &r2)), 0);
    BX_CHECK_INT(r1.calls, 0);          /* never inside the call */
    BX_CHECK_INT(r2.calls, 0);
    drain(&loop);
    BX_CHECK_INT(r1.calls, 1);
    BX_CHECK_INT(r2.calls, 1);
    BX_CHECK_INT(r1.status, 0);
    BX_CHECK(valid_id(r1.id));
    BX_CHECK(valid_id(r2.id));
    BX_CHECK(strcmp(r1.id, r2.id) != 0);
    /* HANDSHAKE events, one per client */
    BX_CHECK_INT(ev_count(&f, BX_EV_HANDSHAKE, r1.id), 1);
    BX_CHECK_INT(ev_count(&f, BX_EV_HANDSHAKE, r2.id), 1);
    BX_CHECK_INT(f.nev, 2);
    /* more turns: still exactly once */
    uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(r1.calls, 1);
    TEARDOWN();
}

/* The memory engine's clients are keyed by their own ids: a client costs
 * its struct (and a share of the buckets), not also a dict entry holding
 * a copy of its id (64 bytes with the allocator's header). The figure
 * includes this test's record of each HANDSHAKE event: 267 B with the
 * entry, 219 B without. */
#define CLIENTS_N 2000
#define CLIENT_MAX_BYTES 240

static void test_client_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
    printf("# skipped: the sanitizer's allocator keeps its own books\n");
#else
    if (strcmp(engine_name(), "memory") != 0) {
        printf("# skipped: the memory engine's own figure\n");
        return;
    }
    SETUP(60, 0);
    static rec_t r[CLIENTS_N];
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < CLIENTS_N; i++)
        BX_CHECK_INT(e->ops->create_client(e, id_cb, &r[i]), 0);
    drain(&loop);
    size_t after = mallinfo2().uordblks;
    for (int i = 0; i < CLIENTS_N; i++)
        BX_CHECK_INT(r[i].calls, 1);
    size_t per = after > before ? (after - before) / CLIENTS_N : 0;
    printf("# heap per memory-engine client: %zu bytes\n", per);
    BX_CHECK(per > 0);
    BX_CHECK(per <= CLIENT_MAX_BYTES);
    TEARDOWN();
#endif
}

static void test_client_exists(void)
{
    SETUP(60, 0);
    char id[32];
    rec_t yes = { 0 }, no = { 0 }, none = { 0 };

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, id, bool_cb, &yes)), 0);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, "0000000000000000000000000000000", bool_cb,
                                            &no)), 0);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, "", bool_cb, &none)), 0);
    BX_CHECK_INT(yes.calls + no.calls + none.calls, 0);
    drain(&loop);
    BX_CHECK_INT(yes.calls, 1);
    BX_CHECK_INT(yes.status, 0);
    BX_CHECK_INT(yes.yes, 1);
    BX_CHECK_INT(no.calls, 1);
    BX_CHECK_INT(no.yes, 0);
    BX_CHECK_INT(none.calls, 1);
    BX_CHECK_INT(none.yes, 0);
    TEARDOWN();
}

static void test_subscribe(void)
{
    SETUP(60, 0);
    char id[32];
    rec_t r = { 0 };

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/a/b"), 1);          /* changed */
    BX_CHECK_INT(sub(e, id, "/a/b"), 0);          /* unchanged */
    BX_CHECK_INT(sub(e, id, "/a/*"), 1);
    BX_CHECK_INT(ev_count(&f, BX_EV_SUBSCRIBE, id), 2);
    BX_CHECK_STR(f.ev[1].channel, "/a/b");
    BX_CHECK_STR(f.ev[2].channel, "/a/*");

    /* unknown client */
    BX_CHECK_INT(CALL(e->ops->subscribe(e, "nope", "/x", 0, bool_cb, &r)), 0);
    BX_CHECK_INT(r.calls, 0);
    drain(&loop);
    BX_CHECK_INT(r.calls, 1);
    BX_CHECK_INT(r.status, BX_EUNKNOWN);
    BX_CHECK_INT(r.yes, 0);

    /* unsubscribe: changed, then unchanged; a channel never had: unchanged */
    memset(&r, 0, sizeof(r));
    BX_CHECK_INT(CALL(e->ops->unsubscribe(e, id, "/a/b", bool_cb, &r)), 0);
    BX_CHECK_INT(r.calls, 0);
    drain(&loop);
    BX_CHECK_INT(r.calls, 1);
    BX_CHECK_INT(r.yes, 1);
    BX_CHECK_INT(ev_count(&f, BX_EV_UNSUBSCRIBE, id), 1);
    memset(&r, 0, sizeof(r));
    BX_CHECK_INT(CALL(e->ops->unsubscribe(e, id, "/a/b", bool_cb, &r)), 0);
    BX_CHECK_INT(CALL(e->ops->unsubscribe(e, id, "/never", NULL, NULL)), 0);  /* cb NULL */
    drain(&loop);
    BX_CHECK_INT(r.calls, 1);
    BX_CHECK_INT(r.status, 0);
    BX_CHECK_INT(r.yes, 0);
    BX_CHECK_INT(ev_count(&f, BX_EV_UNSUBSCRIBE, id), 1);
    /* subscribe with NULL cb is allowed */
    BX_CHECK_INT(CALL(e->ops->subscribe(e, id, "/c", 0, NULL, NULL)), 0);
    drain(&loop);
    BX_CHECK_INT(ev_count(&f, BX_EV_SUBSCRIBE, id), 3);
    /* after unsubscribing, a publish does not reach it */
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/a/b/c\",\"data\":1}"), 0);
    fake_connect(&f, id);
    take_queue(&f, e, id);
    BX_CHECK_INT(f.ndl, 0);
    TEARDOWN();
}

/* Subscribes with a limit; the status (yes in *yes). */
static int sub_limited(bx_engine_t *e, const char *id, const char *ch, size_t limit, int *yes)
{
    rec_t r = { 0 };
    if (CALL(e->ops->subscribe(e, id, ch, limit, bool_cb, &r)) != 0 || r.calls != 0)
        return -100;
    drain(e->loop);
    *yes = r.yes;
    return r.calls == 1 ? r.status : -101;
}

/* The limit comes with each call: past it nothing changes (no event, no
 * delivery), a channel the client has is never refused, and another call
 * with no limit (the server's in-process client's) is not held to it. */
static void test_subscribe_limit(void)
{
    SETUP(60, 0);
    char id[32];
    int yes = -1;

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub_limited(e, id, "/l/a", 2, &yes), 0);
    BX_CHECK_INT(yes, 1);
    BX_CHECK_INT(sub_limited(e, id, "/l/*", 2, &yes), 0);
    BX_CHECK_INT(sub_limited(e, id, "/l/c", 2, &yes), BX_ESUBSLIMIT);
    BX_CHECK_INT(yes, 0);
    BX_CHECK_INT(ev_count(&f, BX_EV_SUBSCRIBE, id), 2);
    BX_CHECK_INT(sub_limited(e, id, "/l/a", 2, &yes), 0);   /* has it */
    BX_CHECK_INT(yes, 0);
    /* nothing of the refused one stayed: freed one place, /l/c fits */
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/l/c\",\"data\":1}"), 0);
    fake_connect(&f, id);
    take_queue(&f, e, id);
    BX_CHECK_INT(f.ndl, 1);     /* through /l/* only: once */
    rec_t r = { 0 };
    BX_CHECK_INT(CALL(e->ops->unsubscribe(e, id, "/l/*", bool_cb, &r)), 0);
    drain(&loop);
    BX_CHECK_INT(sub_limited(e, id, "/l/c", 2, &yes), 0);
    BX_CHECK_INT(yes, 1);
    BX_CHECK_INT(sub_limited(e, id, "/l/d", 2, &yes), BX_ESUBSLIMIT);
    /* no limit: as many as asked */
    for (int i = 0; i < 5; i++) {
        char ch[16];
        snprintf(ch, sizeof(ch), "/u/%d", i);
        BX_CHECK_INT(sub_limited(e, id, ch, 0, &yes), 0);
        BX_CHECK_INT(yes, 1);
    }
    TEARDOWN();
}

static void test_publish_fanout(void)
{
    SETUP(60, 0);
    char a[32], star[32], dstar[32], root[32], all[32], deep[32], other[32], pub[32];
    int i;

    BX_CHECK_INT(make_client(e, a), 0);
    BX_CHECK_INT(make_client(e, star), 0);
    BX_CHECK_INT(make_client(e, dstar), 0);
    BX_CHECK_INT(make_client(e, root), 0);
    BX_CHECK_INT(make_client(e, all), 0);
    BX_CHECK_INT(make_client(e, deep), 0);
    BX_CHECK_INT(make_client(e, other), 0);
    BX_CHECK_INT(make_client(e, pub), 0);
    BX_CHECK_INT(sub(e, a, "/a/b"), 1);
    BX_CHECK_INT(sub(e, star, "/a/*"), 1);
    BX_CHECK_INT(sub(e, dstar, "/a/**"), 1);
    BX_CHECK_INT(sub(e, root, "/**"), 1);
    static const char *const every[] = { "/a/b", "/a/*", "/a/**", "/**", "/*", NULL };
    for (i = 0; every[i]; i++)
        BX_CHECK_INT(sub(e, all, every[i]), 1);
    BX_CHECK_INT(sub(e, deep, "/a/b/c"), 1);
    BX_CHECK_INT(sub(e, deep, "/a/b/*"), 1);
    BX_CHECK_INT(sub(e, other, "/*"), 1);
    BX_CHECK_INT(sub(e, other, "/a/c"), 1);
    BX_CHECK_INT(sub(e, other, "/b/**"), 1);

    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/a/b\",\"data\":{\"n\":1},\"clientId\":\"xyz\","
                                 "\"id\":\"pub1\",\"ext\":{\"auth\":\"x\"},\"custom\":\"field\"}"),
                 0);
    /* nobody is connected: nothing woken or delivered yet */
    BX_CHECK_INT(f.nwakes, 0);
    BX_CHECK_INT(f.ndl, 0);
    const char *ids[] = { a, star, dstar, root, all, deep, other, pub };
    for (i = 0; i < 8; i++) {
        fake_connect(&f, ids[i]);
        take_queue(&f, e, ids[i]);
    }
    BX_CHECK_INT(dl_count(&f, a), 1);
    BX_CHECK_INT(dl_count(&f, star), 1);
    BX_CHECK_INT(dl_count(&f, dstar), 1);
    BX_CHECK_INT(dl_count(&f, root), 1);
    BX_CHECK_INT(dl_count(&f, all), 1);         /* once, though 4 patterns match */
    BX_CHECK_INT(dl_count(&f, deep), 0);
    BX_CHECK_INT(dl_count(&f, other), 0);
    BX_CHECK_INT(dl_count(&f, pub), 0);
    BX_CHECK_INT(f.ndl, 5);

    /* one serialization shared by every recipient (faye-redis's layout
     * keeps a copy in each recipient's list: each take reads its own) */
    bx_chunk_t *c = dl_nth(&f, a, 0);
    int shared = strcmp(engine_name(), "fayeredis") != 0;
    for (i = 0; shared && i < f.ndl; i++)
        BX_CHECK(f.dl[i].chunk == c);
    BX_CHECK(!shared || c->refs == 5);
    json_t *m = bx_json_parse(c->data, c->len);
    BX_CHECK(m != NULL);
    int ok = json_object_get(m, "clientId") == NULL &&
             strcmp(bx_json_str(m, "channel"), "/a/b") == 0 &&
             strcmp(bx_json_str(m, "id"), "pub1") == 0 &&
             strcmp(bx_json_str(m, "custom"), "field") == 0 &&
             strcmp(bx_json_str(json_object_get(m, "ext"), "auth"), "x") == 0 &&
             json_integer_value(json_object_get(json_object_get(m, "data"), "n")) == 1 &&
             json_object_size(m) == 5;
    json_decref(m);
    BX_CHECK(ok);

    /* /a/b/c: /a/** and /** and deep, not /a/* nor /a/b */
    fake_free(&f);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/a/b/c\",\"data\":2}"), 0);
    /* everyone is connected now: each recipient was woken once */
    BX_CHECK_INT(f.nwakes, 4);
    for (i = 0; i < 8; i++)
        take_queue(&f, e, ids[i]);
    BX_CHECK_INT(dl_count(&f, a), 0);
    BX_CHECK_INT(dl_count(&f, star), 0);
    BX_CHECK_INT(dl_count(&f, dstar), 1);
    BX_CHECK_INT(dl_count(&f, root), 1);
    BX_CHECK_INT(dl_count(&f, all), 1);
    BX_CHECK_INT(dl_count(&f, deep), 1);        /* /a/b/c and /a/b/* both match: once */
    BX_CHECK_INT(dl_count(&f, other), 0);

    /* /x: only /** and /* subscribers */
    fake_free(&f);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/x\",\"data\":null}"), 0);
    for (i = 0; i < 8; i++)
        take_queue(&f, e, ids[i]);
    BX_CHECK_INT(dl_count(&f, root), 1);
    BX_CHECK_INT(dl_count(&f, all), 1);
    BX_CHECK_INT(dl_count(&f, other), 1);
    BX_CHECK_INT(f.ndl, 3);
    c = dl_nth(&f, other, 0);
    BX_CHECK(c->len == strlen("{\"channel\":\"/x\",\"data\":null}") &&
             memcmp(c->data, "{\"channel\":\"/x\",\"data\":null}", c->len) == 0);

    /* a publish nobody hears */
    fake_free(&f);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/nobody/here/x\",\"data\":1}"), 0);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/b/c\",\"data\":1}"), 0);
    for (i = 0; i < 8; i++)
        take_queue(&f, e, ids[i]);
    BX_CHECK_INT(dl_count(&f, other), 1);       /* /b/** */
    BX_CHECK_INT(dl_count(&f, root), 2);
    TEARDOWN();
}

static void test_queue_and_order(void)
{
    SETUP(60, 0);
    char id[32];
    char text[64];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        BX_CHECK_INT(publish_text(e, text), 0);
    }
    /* no connection: queued, nobody woken */
    BX_CHECK_INT(f.nwakes, 0);
    BX_CHECK_INT(f.ndeliver_calls, 0);
    /* taken: everything in one answer, oldest first */
    fake_connect(&f, id);
    BX_CHECK_INT(take_queue(&f, e, id), 0);
    BX_CHECK_INT(f.ndeliver_calls, 1);
    BX_CHECK_INT(dl_count(&f, id), 5);
    for (int i = 0; i < 5; i++) {
        bx_chunk_t *c = dl_nth(&f, id, i);
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        BX_CHECK(c->len == strlen(text) && memcmp(c->data, text, c->len) == 0);
    }
    /* the queue is now empty: nothing more */
    take_queue(&f, e, id);
    BX_CHECK_INT(f.ndeliver_calls, 1);
    /* connected: the first message wakes, the next ones ride along */
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/q\",\"data\":5}"), 0);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/q\",\"data\":6}"), 0);
    BX_CHECK_INT(f.nwakes, 1);
    BX_CHECK_STR(f.wakes[0], id);
    BX_CHECK_INT(f.ndeliver_calls, 1);          /* wake only; delivery on demand */
    take_queue(&f, e, id);
    BX_CHECK_INT(f.ndeliver_calls, 2);
    BX_CHECK_INT(dl_count(&f, id), 7);
    BX_CHECK(memcmp(dl_nth(&f, id, 6)->data, "{\"channel\":\"/q\",\"data\":6}", 25) == 0);
    BX_CHECK_INT(dropped(e), 0);
    /* the take of an unknown client answers so, with nothing */
    BX_CHECK_INT(take_queue(&f, e, "unknown"), BX_EUNKNOWN);
    BX_CHECK_INT(f.ndeliver_calls, 2);
    TEARDOWN();
}

/* requeue: in front, in order, answered once on a later turn; a take made
 * after the answer finds what went back. */
static void test_requeue(void)
{
    SETUP(60, 0);
    char id[32];
    rec_t r = { 0 }, u = { 0 };
    bx_chunkv_t back = BX_CHUNKV_INIT;

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/q\",\"data\":\"new\"}"), 0);
    fake_connect(&f, id);
    /* messages as the hub gives them back: JSON (an engine may parse them) */
    const char *old1 = "{\"channel\":\"/q\",\"data\":\"old1\"}";
    const char *old2 = "{\"channel\":\"/q\",\"data\":\"old2\"}";
    bx_chunkv_push_new(&back, bx_chunk_new(old1, strlen(old1)));
    bx_chunkv_push_new(&back, bx_chunk_new(old2, strlen(old2)));
    BX_CHECK_INT(CALL(e->ops->requeue(e, id, &back, done_cb, &r)), 0);
    BX_CHECK_INT(back.n, 0);                    /* stolen */
    BX_CHECK_INT(r.calls, 0);                   /* never inside the call */
    drain(&loop);
    BX_CHECK_INT(r.calls, 1);
    BX_CHECK_INT(r.status, 0);
    BX_CHECK_INT(f.nwakes, 1);                  /* connected: woken, as by a publish */
    BX_CHECK_STR(f.wakes[0], id);
    BX_CHECK_INT(take_queue(&f, e, id), 0);
    BX_CHECK_INT(dl_count(&f, id), 3);
    BX_CHECK(strstr(dl_nth(&f, id, 0)->data, "\"old1\"") != NULL);
    BX_CHECK(strstr(dl_nth(&f, id, 1)->data, "\"old2\"") != NULL);
    BX_CHECK(strstr(dl_nth(&f, id, 2)->data, "\"new\"") != NULL);

    /* an unknown client: answered so, the messages dropped */
    bx_chunkv_push_new(&back, bx_chunk_new("x", 1));
    BX_CHECK_INT(CALL(e->ops->requeue(e, "unknown", &back, done_cb, &u)), 0);
    BX_CHECK_INT(back.n, 0);
    BX_CHECK_INT(u.calls, 0);
    drain(&loop);
    BX_CHECK_INT(u.calls, 1);
    BX_CHECK_INT(u.status, BX_EUNKNOWN);

    /* without a callback, and nothing to put back: still fine */
    const char *y = "{\"channel\":\"/q\",\"data\":\"y\"}";
    bx_chunkv_push_new(&back, bx_chunk_new(y, strlen(y)));
    BX_CHECK_INT(CALL(e->ops->requeue(e, id, &back, NULL, NULL)), 0);
    BX_CHECK_INT(CALL(e->ops->requeue(e, id, &back, done_cb, &r)), 0);
    drain(&loop);
    BX_CHECK_INT(r.calls, 2);
    BX_CHECK_INT(r.status, 0);
    BX_CHECK_INT(take_queue(&f, e, id), 0);
    BX_CHECK_INT(dl_count(&f, id), 4);
    BX_CHECK(strstr(dl_nth(&f, id, 3)->data, "\"y\"") != NULL);
    bx_chunkv_free(&back);
    TEARDOWN();
}

static void test_queue_limit(void)
{
    SETUP(60, 3);
    char id[32], other[32];
    char text[64];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(make_client(e, other), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    BX_CHECK_INT(sub(e, other, "/q"), 1);
    fake_connect(&f, other);
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        BX_CHECK_INT(publish_text(e, text), 0);
        take_queue(&f, e, other);          /* `other` keeps up */
    }
    BX_CHECK_INT(dropped(e), 2);
    BX_CHECK_INT(dl_count(&f, other), 5);
    fake_connect(&f, id);
    take_queue(&f, e, id);
    BX_CHECK_INT(dl_count(&f, id), 3);          /* the newest three: 2, 3, 4 */
    for (int i = 0; i < 3; i++) {
        bx_chunk_t *c = dl_nth(&f, id, i);
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i + 2);
        BX_CHECK(c->len == strlen(text) && memcmp(c->data, text, c->len) == 0);
    }
    TEARDOWN();
}

/* Publishes data from..to-1 on /q. */
static int publish_range(bx_engine_t *e, int from, int to)
{
    char text[64];
    for (int i = from; i < to; i++) {
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        if (publish_text(e, text) != 0)
            return -1;
    }
    return 0;
}

/* Whether the deliveries to `id` from the `skip`-th on carry data from,
 * from+1, ... to-1, and nothing more. */
static int delivered_range(const fake_t *f, const char *id, int skip, int from, int to)
{
    char text[64];
    if (dl_count(f, id) != skip + (to - from))
        return 0;
    for (int i = from; i < to; i++) {
        bx_chunk_t *c = dl_nth(f, id, skip + i - from);
        snprintf(text, sizeof(text), "{\"channel\":\"/q\",\"data\":%d}", i);
        if (c->len != strlen(text) || memcmp(c->data, text, c->len) != 0)
            return 0;
    }
    return 1;
}

/* The queue is a ring: dropping the oldest moves its start, growing
 * straightens it, handing it over keeps the order; the drop policy is the
 * same as ever (the oldest goes, and is counted). */
static void test_queue_ring(void)
{
    SETUP(60, 5);
    char id[32];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    /* 4 fill the first array, the 5th grows it to the limit, 5 and 6
     * wrap around over 0 and 1 */
    BX_CHECK_INT(publish_range(e, 0, 7), 0);
    BX_CHECK_INT(dropped(e), 2);
    fake_connect(&f, id);
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 0, 2, 7));
    /* a fresh ring after the hand-over: exactly full, no drop, in order */
    BX_CHECK_INT(publish_range(e, 7, 12), 0);
    BX_CHECK_INT(dropped(e), 2);
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 5, 7, 12));
    /* wrapping around several times over */
    BX_CHECK_INT(publish_range(e, 12, 35), 0);
    BX_CHECK_INT(dropped(e), 2 + 18);
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 10, 30, 35));
    TEARDOWN();
}

/* After a take, the next burst starts at the size the last one needed
 * (no regrowing from 4 at every take): it must still be whole and in
 * order, then shrink back when a take needs less. */
static void test_queue_burst(void)
{
    SETUP(60, 0);
    char id[32];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    fake_connect(&f, id);
    BX_CHECK_INT(publish_range(e, 0, 50), 0);
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 0, 0, 50));
    BX_CHECK_INT(publish_range(e, 50, 120), 0);     /* over the 64 it kept */
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 50, 50, 120));
    BX_CHECK_INT(publish_range(e, 120, 121), 0);
    take_queue(&f, e, id);
    BX_CHECK_INT(publish_range(e, 121, 130), 0);    /* grows again from 4 */
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 120, 120, 130));
    BX_CHECK_INT(dropped(e), 0);
    TEARDOWN();
}

static void test_queue_of_one(void)
{
    SETUP(60, 1);
    char id[32];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/q"), 1);
    BX_CHECK_INT(publish_range(e, 0, 3), 0);
    BX_CHECK_INT(dropped(e), 2);
    fake_connect(&f, id);
    take_queue(&f, e, id);
    BX_CHECK(delivered_range(&f, id, 0, 2, 3));
    TEARDOWN();
}

static void test_destroy_client(void)
{
    SETUP(60, 0);
    char id[32], keep[32];
    rec_t r = { 0 }, x = { 0 }, u = { 0 };

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(make_client(e, keep), 0);
    BX_CHECK_INT(sub(e, id, "/x"), 1);
    BX_CHECK_INT(sub(e, id, "/y/**"), 1);
    BX_CHECK_INT(sub(e, keep, "/x"), 1);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/x\",\"data\":1}"), 0);   /* queued */
    int base = f.nev;

    BX_CHECK_INT(CALL(e->ops->destroy_client(e, id, done_cb, &r)), 0);
    BX_CHECK_INT(r.calls, 0);
    drain(&loop);
    /* events: UNSUBSCRIBE for each channel, then DISCONNECT, then CLOSE
     * (inside the call or later: a networked engine hears its store) */
    BX_CHECK_INT(f.nev - base, 4);
    BX_CHECK_INT(f.ev[base].ev, BX_EV_UNSUBSCRIBE);
    BX_CHECK_INT(f.ev[base + 1].ev, BX_EV_UNSUBSCRIBE);
    BX_CHECK(strcmp(f.ev[base].channel, f.ev[base + 1].channel) != 0);
    for (int i = 0; i < 2; i++) {
        const char *ch = f.ev[base + i].channel;
        BX_CHECK(strcmp(ch, "/x") == 0 || strcmp(ch, "/y/**") == 0);
        BX_CHECK_STR(f.ev[base + i].id, id);
    }
    BX_CHECK_INT(f.ev[base + 2].ev, BX_EV_DISCONNECT);
    BX_CHECK_STR(f.ev[base + 2].id, id);
    BX_CHECK_INT(f.ev[base + 3].ev, EV_CLOSED);
    BX_CHECK_STR(f.ev[base + 3].id, id);
    BX_CHECK_INT(r.calls, 1);
    BX_CHECK_INT(r.status, 0);

    BX_CHECK_INT(CALL(e->ops->client_exists(e, id, bool_cb, &x)), 0);
    BX_CHECK_INT(CALL(e->ops->destroy_client(e, id, done_cb, &u)), 0);    /* again */
    BX_CHECK_INT(CALL(e->ops->destroy_client(e, "whoever", NULL, NULL)), 0);
    drain(&loop);
    BX_CHECK_INT(x.calls, 1);
    BX_CHECK_INT(x.yes, 0);
    BX_CHECK_INT(u.calls, 1);
    BX_CHECK_INT(u.status, BX_EUNKNOWN);
    BX_CHECK_INT(f.nev - base, 4);              /* no second set of events */

    /* its queue is gone; the subscription index no longer routes to it */
    fake_connect(&f, id);
    fake_connect(&f, keep);
    take_queue(&f, e, id);
    BX_CHECK_INT(dl_count(&f, id), 0);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/x\",\"data\":2}"), 0);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/y/z\",\"data\":3}"), 0);
    take_queue(&f, e, id);
    take_queue(&f, e, keep);
    BX_CHECK_INT(dl_count(&f, id), 0);
    BX_CHECK_INT(dl_count(&f, keep), 2);
    TEARDOWN();
}

/* ---- Expiry ---- */

typedef struct {
    bx_engine_t *e;
    const char *id, *id2;       /* pinged (id2 may be NULL) */
    uv_timer_t pinger, stop;
    uint64_t start;
} expiry_t;

static void on_ping_timer(uv_timer_t *t)
{
    expiry_t *x = t->data;
    x->e->ops->ping(x->e, x->id);
    if (x->id2)
        x->e->ops->ping(x->e, x->id2);
}

static void on_stop_timer(uv_timer_t *t)
{
    expiry_t *x = t->data;
    uv_close((uv_handle_t *)&x->pinger, NULL);
    uv_close((uv_handle_t *)&x->stop, NULL);
}

static void test_expiry(void)
{
    SETUP(0.5, 0);   /* 1 s to expiry: a loaded machine still pings in time */
    char gone[32], alive[32];
    expiry_t x;
    rec_t g = { 0 }, a = { 0 };

    /* the clock starts before `gone` is made: it cannot go sooner than
     * 1 s after this (a networked engine stamps it when it asks) */
    uv_update_time(&loop);
    x.start = uv_now(&loop);
    BX_CHECK_INT(make_client(e, gone), 0);
    BX_CHECK_INT(make_client(e, alive), 0);
    BX_CHECK_INT(sub(e, gone, "/e"), 1);
    x.e = e;
    x.id = alive;
    x.id2 = NULL;
    uv_timer_init(&loop, &x.pinger);
    uv_timer_init(&loop, &x.stop);
    x.pinger.data = x.stop.data = &x;
    uv_timer_start(&x.pinger, on_ping_timer, 40, 40);
    uv_timer_start(&x.stop, on_stop_timer, 2500, 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* `gone` was destroyed (unsubscribe, disconnect, close) ~1 s after
     * its creation (not before; no tighter upper bound than the stop timer:
     * a loaded machine is slow); `alive`, pinged every 40 ms, lives */
    BX_CHECK_INT(ev_count(&f, BX_EV_DISCONNECT, gone), 1);
    BX_CHECK_INT(ev_count(&f, EV_CLOSED, gone), 1);
    BX_CHECK_INT(ev_count(&f, BX_EV_UNSUBSCRIBE, gone), 1);
    BX_CHECK_INT(ev_count(&f, BX_EV_DISCONNECT, alive), 0);
    uint64_t at = 0;
    for (int i = 0; i < f.nev; i++)
        if (f.ev[i].ev == BX_EV_DISCONNECT)
            at = f.ev[i].at - x.start;
    BX_CHECK(at >= 990);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, gone, bool_cb, &g)), 0);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, alive, bool_cb, &a)), 0);
    drain(&loop);
    BX_CHECK_INT(g.yes, 0);
    BX_CHECK_INT(a.yes, 1);
    TEARDOWN();
}

/* Clients expire by their last ping, not by when they were made: the
 * oldest client, pinged, outlives younger ones that were not. */
static void test_expiry_order(void)
{
    SETUP(0.1, 0);
    char first[32], gone1[32], gone2[32], last[32];
    expiry_t x;

    BX_CHECK_INT(make_client(e, first), 0);
    BX_CHECK_INT(make_client(e, gone1), 0);
    BX_CHECK_INT(make_client(e, gone2), 0);
    BX_CHECK_INT(make_client(e, last), 0);
    x.e = e;
    x.id = first;
    x.id2 = last;
    uv_update_time(&loop);
    x.start = uv_now(&loop);
    uv_timer_init(&loop, &x.pinger);
    uv_timer_init(&loop, &x.stop);
    x.pinger.data = x.stop.data = &x;
    uv_timer_start(&x.pinger, on_ping_timer, 40, 40);
    uv_timer_start(&x.stop, on_stop_timer, 400, 0);
    uv_run(&loop, UV_RUN_DEFAULT);

    BX_CHECK_INT(ev_count(&f, EV_CLOSED, gone1), 1);
    BX_CHECK_INT(ev_count(&f, EV_CLOSED, gone2), 1);
    BX_CHECK_INT(ev_count(&f, EV_CLOSED, first), 0);
    BX_CHECK_INT(ev_count(&f, EV_CLOSED, last), 0);
    BX_CHECK_INT(clients(e), 2);
    TEARDOWN();
}

static void test_events(void)
{
    SETUP(60, 0);
    char id[32];

    BX_CHECK_INT(make_client(e, id), 0);
    BX_CHECK_INT(sub(e, id, "/ev"), 1);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/ev\",\"data\":{\"k\":[1,2]},\"clientId\":\"pubber\"}"), 0);
    BX_CHECK_INT(publish_text(e, "{\"channel\":\"/ev2\",\"data\":\"s\"}"), 0);
    BX_CHECK_INT(f.nev, 4);
    BX_CHECK_INT(f.ev[0].ev, BX_EV_HANDSHAKE);
    BX_CHECK_STR(f.ev[0].id, id);
    BX_CHECK(f.ev[0].data == NULL);
    BX_CHECK_INT(f.ev[1].ev, BX_EV_SUBSCRIBE);
    BX_CHECK_STR(f.ev[1].id, id);
    BX_CHECK_STR(f.ev[1].channel, "/ev");
    BX_CHECK_INT(f.ev[2].ev, BX_EV_PUBLISH);
    BX_CHECK_STR(f.ev[2].id, "pubber");
    BX_CHECK_STR(f.ev[2].channel, "/ev");
    json_t *want = json_pack("{s:[i,i]}", "k", 1, 2);
    int same = json_equal(f.ev[2].data, want);
    json_decref(want);
    BX_CHECK(same);
    BX_CHECK_INT(f.ev[3].ev, BX_EV_PUBLISH);
    BX_CHECK_STR(f.ev[3].id, "");               /* no publisher: NULL id */
    BX_CHECK_STR(f.ev[3].channel, "/ev2");
    BX_CHECK(json_is_string(f.ev[3].data));
    TEARDOWN();
}

static void test_close_cancels(void)
{
    uv_loop_t loop;
    fake_t f;
    bx_proxy_t proxy;
    int done = 0;
    rec_t c = { 0 }, x = { 0 }, s = { 0 }, p = { 0 }, d = { 0 }, q = { 0 }, late = { 0 };
    char id[32];
    bx_chunkv_t back = BX_CHUNKV_INIT;

    uv_loop_init(&loop);
    fake_init(&f, &loop, &proxy);
    g_reentered = 0;
    bx_engine_t *e = engine_new(&loop, &proxy, 60, 0);
    BX_CHECK_INT(make_client(e, id), 0);
    json_t *m = json_pack("{s:s,s:i}", "channel", "/c", "data", 1);

    /* pending operations of every callback kind */
    BX_CHECK_INT(CALL(e->ops->create_client(e, id_cb, &c)), 0);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, id, bool_cb, &x)), 0);
    BX_CHECK_INT(CALL(e->ops->subscribe(e, id, "/c", 0, bool_cb, &s)), 0);
    BX_CHECK_INT(CALL(e->ops->publish(e, m, done_cb, &p)), 0);
    bx_chunkv_push_new(&back, bx_chunk_new("b", 1));
    BX_CHECK_INT(CALL(e->ops->requeue(e, id, &back, done_cb, &q)), 0);
    BX_CHECK_INT(CALL(e->ops->destroy_client(e, id, done_cb, &d)), 0);
    BX_CHECK_INT(CALL(e->ops->take(e, id, f_took, &f)), 0);
    BX_CHECK_INT(c.calls + x.calls + s.calls + p.calls + d.calls + q.calls + f.ntakes, 0);

    e->ops->close(e, closed, &done);
    /* close answers them, each once, canceled */
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(c.status, BX_ECANCELED);
    BX_CHECK_STR(c.id, "");                     /* no id with an error */
    BX_CHECK_INT(x.calls, 1);
    BX_CHECK_INT(x.status, BX_ECANCELED);
    BX_CHECK_INT(s.calls, 1);
    BX_CHECK_INT(s.status, BX_ECANCELED);
    BX_CHECK_INT(p.calls, 1);
    BX_CHECK_INT(p.status, BX_ECANCELED);
    BX_CHECK_INT(d.calls, 1);
    BX_CHECK_INT(d.status, BX_ECANCELED);
    BX_CHECK_INT(q.calls, 1);
    BX_CHECK_INT(q.status, BX_ECANCELED);
    BX_CHECK_INT(f.ntakes, 1);
    BX_CHECK_INT(f.take_status, BX_ECANCELED);
    BX_CHECK_INT(done, 0);                      /* done comes on a later turn */
    /* calls while closing fail at once and never call back */
    BX_CHECK_INT(CALL(e->ops->create_client(e, id_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->client_exists(e, id, bool_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->subscribe(e, id, "/c", 0, bool_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->unsubscribe(e, id, "/c", bool_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->publish(e, m, done_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->destroy_client(e, id, done_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(CALL(e->ops->take(e, id, f_took, &f)), BX_ECANCELED);
    bx_chunkv_push_new(&back, bx_chunk_new("c", 1));
    BX_CHECK_INT(CALL(e->ops->requeue(e, id, &back, done_cb, &late)), BX_ECANCELED);
    BX_CHECK_INT(back.n, 0);                    /* stolen all the same */
    bx_chunkv_free(&back);
    json_decref(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_CHECK_INT(late.calls, 0);
    BX_CHECK_INT(c.calls + x.calls + s.calls + p.calls + d.calls + q.calls, 6);
    fake_free(&f);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

static void test_close_with_state(void)
{
    /* clients, subscriptions and queued messages are all freed (ASan) */
    SETUP(60, 2);
    char a[32], b[32];
    BX_CHECK_INT(make_client(e, a), 0);
    BX_CHECK_INT(make_client(e, b), 0);
    BX_CHECK_INT(sub(e, a, "/s/**"), 1);
    BX_CHECK_INT(sub(e, b, "/s/t"), 1);
    BX_CHECK_INT(sub(e, b, "/**"), 1);
    for (int i = 0; i < 4; i++)
        BX_CHECK_INT(publish_text(e, "{\"channel\":\"/s/t\",\"data\":[1,2,3]}"), 0);
    BX_CHECK_INT(dropped(e), 4);
    TEARDOWN();
}

static void run_all(void)
{
    printf("# engine: %s\n", getenv("BX_ENGINE") ? getenv("BX_ENGINE") : "memory");
    BX_RUN(test_random_id);
    BX_RUN(test_factory_unknown_type);
    BX_RUN(test_create_client);
    BX_RUN(test_client_memory);
    BX_RUN(test_client_exists);
    BX_RUN(test_subscribe);
    BX_RUN(test_subscribe_limit);
    BX_RUN(test_publish_fanout);
    BX_RUN(test_queue_and_order);
    BX_RUN(test_requeue);
    BX_RUN(test_queue_limit);
    BX_RUN(test_queue_ring);
    BX_RUN(test_queue_burst);
    BX_RUN(test_queue_of_one);
    BX_RUN(test_destroy_client);
    BX_RUN(test_expiry);
    BX_RUN(test_expiry_order);
    BX_RUN(test_events);
    BX_RUN(test_close_cancels);
    BX_RUN(test_close_with_state);
}

int main(void)
{
    const char *type = getenv("BX_ENGINE");
    static bx_rs_t rs;
    char url[128];

    run_all();
    if (!type || !*type) {
        if (bx_rs_start(&rs, NULL, NULL) < 0) {
            printf("not ok - redis-server did not start\n");
            bx_test_failed++;
            return BX_REPORT();
        }
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0?namespace=contract", rs.port);
        setenv("BX_ENGINE", url, 1);
        run_all();
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0?namespace=contract&mode=faye",
                 rs.port);
        setenv("BX_ENGINE", url, 1);
        run_all();
        bx_rs_stop(&rs);
    }
    return BX_REPORT();
}
