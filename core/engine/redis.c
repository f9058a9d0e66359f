/*
 * redis.c - the Redis engine, first step: publishes cross processes.
 *
 * Each process keeps its own clients, subscriptions and queues in an inner
 * memory engine (memory.c), and shares publishes through Redis pub/sub:
 *
 *   - a publish is delivered to this process's clients at once (through
 *     the inner engine) and sent with ONE `PUBLISH NS/m<channel> <payload>`,
 *     whatever the number of subscribers anywhere;
 *   - each process subscribes, on its subscriber connection, to what its
 *     own clients need: `SUBSCRIBE NS/m/a/b` for /a/b, `PSUBSCRIBE
 *     NS/m/a/*` for both /a/* and /a/** (Redis's `*` also crosses '/', so
 *     the inner engine's exact matching decides), refcounted, so a
 *     channel costs one Redis subscription per process, not per client;
 *   - a message from another process is published into the inner engine
 *     (the same serialize-once fan-out as the memory engine), without a
 *     second PUBLISH event. The payload is "<node id><seq> <json>": a
 *     process skips its own messages, and the copies Redis sends when
 *     several of its subscriptions match one publish (they arrive one
 *     after another).
 *
 * Redis down: a publish answers BX_EUNAVAILABLE (nothing delivered); the
 * engine logs each change of state once; when Redis is back, the
 * subscriber connection subscribes again to everything that is needed.
 *
 * Shards: with several URLs, each channel's publishes go to the server a
 * consistent-hash ring gives it; an exact subscription is made on that
 * server, a pattern on every server (its channels are anywhere).
 *
 * Not here yet (see the issue): clients, subscriptions and queues in Redis
 * so that any process can serve any client (today a client's requests must
 * reach the process that made it).
 *
 * The connections' handles keep no loop alive (net/redis.h); a prepare
 * handle does, while a PUBLISH waits for its reply or the first connection
 * is being made, so that a caller running the loop until its callbacks
 * came (the contract test's drain) sees them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/dict.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "engine/memory.h"
#include "engine/redis.h"
#include "net/redis.h"

struct redis_s;

/* One Redis server: its two connections. */
typedef struct {
    struct redis_s *r;
    int idx;
    bx_redis_addr_t addr;
    char name[300];             /* host:port/db or the socket path: logs,
                                   and the key of its points on the ring */
    bx_redis_t *cmd;            /* PUBLISH */
    bx_redis_t *sub;            /* SUBSCRIBE / PSUBSCRIBE */
    int first, sub_first;       /* the first attempts are not over */
    int was_down;               /* the last state told was "down" */
    char last[48];              /* id of the last message applied from it */
} shard_t;

#define MAX_SHARDS 16
#define RING_POINTS 64          /* points per shard on the hash ring */

typedef struct {
    uint32_t hash;
    int shard;
} point_t;

typedef struct redis_s {
    bx_engine_t base;
    bx_engine_t *inner;         /* the memory engine: this process's state */
    shard_t shards[MAX_SHARDS];
    int nshards;
    point_t ring[MAX_SHARDS * RING_POINTS];     /* sorted by hash */
    int npoints;
    char ns[128];               /* the key namespace (the first URL's) */
    char node[32];              /* this process's id in payloads */
    uint64_t seq;
    bx_dict_t targets;          /* "S<chan>" / "P<pattern>" -> target_t */
    int remote;                 /* applying another process's publish */
    size_t busy;                /* replies waited for */
    int first_connect;          /* shards whose first attempt is not over */
    int sub_first;              /* the same, of the subscriber connections */
    struct early *early, **early_tail;  /* publishes waiting for it */
    uv_prepare_t keep;
    int closing, open;
    void (*close_done)(void *ud);
    void *close_ud;
} redis_t;

/* A subscribe answered once Redis confirmed the subscription it needed:
 * from then on, a publish on any process reaches the client. */
typedef struct waiter {
    struct waiter *next;
    bx_engine_bool_cb cb;
    void *ud;
    int yes;
} waiter_t;

/* One Redis subscription of this process. */
typedef struct {
    size_t refs;                /* Bayeux subscriptions that need it */
    int shard;                  /* the shard it lives on; -1: every shard
                                   (a pattern: its channels are anywhere) */
    int pending;                /* confirmations Redis still owes */
    waiter_t *waiters;
} target_t;


typedef struct {
    redis_t *r;
    bx_engine_bool_cb cb;
    void *ud;
    char channel[];
} sub_t;

/* A publish made before the first connection's outcome. */
typedef struct early {
    struct early *next;
    json_t *msg;
    bx_engine_done_cb cb;
    void *ud;
} early_t;

typedef struct {
    redis_t *r;
    bx_engine_done_cb cb;
    void *ud;
    int waiting;                /* the inner publish and the PUBLISH reply */
    int status;
} pub_t;

static void on_keep(uv_prepare_t *h) { (void)h; }
static void flush_early(redis_t *r, int status);

static void busy_update(redis_t *r)
{
    if (r->closing)
        return;
    if (r->busy || r->first_connect || r->sub_first)
        uv_prepare_start(&r->keep, on_keep);
    else
        uv_prepare_stop(&r->keep);
}

/* ---- Shards: a consistent-hash ring ---- */

/* FNV-1a, then a murmur3 finalizer: the same in every process (the
 * dict's hash is keyed per process). */
static uint32_t stable_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

static int point_cmp(const void *a, const void *b)
{
    const point_t *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : x->shard - y->shard;
}

/* Fills `ring` (RING_POINTS per name) and sorts it; returns its size. */
static int ring_build(point_t *ring, const char *const *names, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < RING_POINTS; j++) {
            char key[340];
            int len = snprintf(key, sizeof(key), "%s#%d", names[i], j);
            ring[k].hash = stable_hash(key, (size_t)len);
            ring[k++].shard = i;
        }
    qsort(ring, (size_t)k, sizeof(*ring), point_cmp);
    return k;
}

/* The shard of `channel`: the first point at or after its hash. */
static int ring_owner(const point_t *ring, int n, const char *channel, size_t len)
{
    uint32_t h = stable_hash(channel, len);
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return ring[lo == n ? 0 : lo].shard;
}

int bx_engine_redis_shard_of(const char *const *names, int n, const char *channel)
{
    point_t ring[MAX_SHARDS * RING_POINTS];
    if (n < 1 || n > MAX_SHARDS)
        return -1;
    int np = ring_build(ring, names, n);
    return ring_owner(ring, np, channel, strlen(channel));
}

/* ---- Subscriptions on Redis ---- */

/* The Redis subscription a Bayeux channel needs, into `b`: "S" + channel
 * or "P" + glob pattern (the namespace and prefix escaped). */
static void target_of(redis_t *r, const char *ch, bx_buf_t *b)
{
    size_t len = strlen(ch);
    int wild = len >= 2 && ch[len - 1] == '*' && ch[len - 2] == '/';

    if (len >= 3 && ch[len - 1] == '*' && ch[len - 2] == '*' && ch[len - 3] == '/') {
        wild = 1;
        len -= 1;               /* "/a/**" -> "/a/*" */
    }
    bx_buf_puts(b, wild ? "P" : "S");
    if (!wild) {
        bx_buf_puts(b, r->ns);
        bx_buf_puts(b, "/m");
        bx_buf_append(b, ch, len);
        return;
    }
    /* escape glob characters in what must match literally */
    const char *parts[2] = { r->ns, "/m" };
    for (int i = 0; i < 2; i++)
        for (const char *p = parts[i]; *p; p++) {
            if (strchr("*?[]\\", *p))
                bx_buf_append(b, "\\", 1);
            bx_buf_append(b, p, 1);
        }
    for (size_t i = 0; i + 1 < len; i++) {
        if (strchr("*?[]\\", ch[i]))
            bx_buf_append(b, "\\", 1);
        bx_buf_append(b, ch + i, 1);
    }
    bx_buf_append(b, "*", 1);
}

/* (Un)subscribes `key` (a target's) on shard `only`, or on every shard
 * the target lives on when `only` is -1; counts the confirmations owed. */
static void send_target(redis_t *r, target_t *t, const char *key, size_t len, int on,
                        int only)
{
    const char *argv[2] = { key[0] == 'P' ? (on ? "PSUBSCRIBE" : "PUNSUBSCRIBE")
                                          : (on ? "SUBSCRIBE" : "UNSUBSCRIBE"), key + 1 };
    size_t lens[2] = { strlen(argv[0]), len - 1 };
    for (int i = 0; i < r->nshards; i++) {
        if ((only >= 0 && i != only) || (t->shard >= 0 && i != t->shard))
            continue;
        /* down: the whole set is sent again when the connection is back */
        if (bx_redis_command(r->shards[i].sub, NULL, NULL, 2, argv, lens) == 0 && on)
            t->pending++;
    }
}

/* The shard a channel's messages are published on. */
static int owner_of(redis_t *r, const char *ch, size_t len)
{
    return r->nshards == 1 ? 0 : ring_owner(r->ring, r->npoints, ch, len);
}

/* Answers the subscribes waiting on `t` with `status`. */
static void release_waiters(redis_t *r, target_t *t, int status)
{
    waiter_t *w = t->waiters;
    t->waiters = NULL;
    while (w) {
        waiter_t *next = w->next;
        r->busy--;
        if (w->cb)
            w->cb(w->ud, status, status ? 0 : w->yes);
        free(w);
        w = next;
    }
}

static void target_ref(redis_t *r, const char *ch, int delta)
{
    bx_buf_t b = BX_BUF_INIT;
    target_of(r, ch, &b);
    target_t *t = bx_dict_get(&r->targets, b.data, b.len);
    if (delta > 0) {
        if (!t) {
            t = bx_calloc(1, sizeof(*t));
            t->shard = b.data[0] == 'P' ? -1 : owner_of(r, ch, strlen(ch));
            bx_dict_set(&r->targets, b.data, b.len, t);
            send_target(r, t, b.data, b.len, 1, -1);
        }
        t->refs++;
    } else if (t && --t->refs == 0) {
        release_waiters(r, t, 0);
        send_target(r, t, b.data, b.len, 0, -1);
        bx_dict_del(&r->targets, b.data, b.len);
        free(t);
        busy_update(r);
    }
    bx_buf_free(&b);
}

/* ---- The inner engine's proxy: ours, passing through ---- */

static int p_has_connection(void *ud, const char *id)
{
    redis_t *r = ud;
    return r->base.proxy.has_connection(r->base.proxy.ud, id);
}

static void p_wake(void *ud, const char *id)
{
    redis_t *r = ud;
    r->base.proxy.wake(r->base.proxy.ud, id);
}

static void p_closed(void *ud, const char *id)
{
    redis_t *r = ud;
    if (r->base.proxy.closed)
        r->base.proxy.closed(r->base.proxy.ud, id);
}

static void p_trigger(void *ud, bx_event_t ev, const char *id, const char *ch,
                      const json_t *data)
{
    redis_t *r = ud;
    if (ev == BX_EV_SUBSCRIBE && ch)
        target_ref(r, ch, 1);
    else if (ev == BX_EV_UNSUBSCRIBE && ch && !r->closing)
        target_ref(r, ch, -1);
    if (ev == BX_EV_PUBLISH && r->remote)
        return;                 /* the publishing process told already */
    if (r->base.proxy.trigger)
        r->base.proxy.trigger(r->base.proxy.ud, ev, id, ch, data);
}

/* ---- Connections ---- */

static void on_cmd_state(void *ud, int up, const char *why)
{
    shard_t *sh = ud;
    redis_t *r = sh->r;
    if (up && sh->was_down) {
        const char *kv[] = { "shard", sh->name };
        bx_log_kv(BX_LOG_INFO, "redis", "back", kv, 1);
    } else if (!up) {
        const char *kv[] = { "shard", sh->name, "error", why ? why : "?" };
        bx_log_kv(BX_LOG_WARN, "redis",
                  "unreachable; publishing answers 'unavailable' until it is back", kv, 2);
    }
    if (sh->was_down != !up)
        bx_metrics.redis_down += up ? (uint64_t)-1 : 1;
    sh->was_down = !up;
    if (sh->first) {
        sh->first = 0;
        /* the early publishes go when every shard's first attempt is over:
         * those on a shard that is down then are refused */
        if (--r->first_connect == 0)
            flush_early(r, 0);
    }
    busy_update(r);
}

static void on_sub_state(void *ud, int up, const char *why)
{
    shard_t *sh = ud;
    redis_t *r = sh->r;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    (void)why;
    if (sh->sub_first) {
        sh->sub_first = 0;
        r->sub_first--;
    }
    while ((e = bx_dict_next(&r->targets, &it)) != NULL) {
        target_t *t = e->value;
        if (t->shard >= 0 && t->shard != sh->idx)
            continue;
        if (up) {
            send_target(r, t, e->key, e->klen, 1, sh->idx);
        } else {
            t->pending = 0;
            release_waiters(r, t, 0);   /* subscribed here; Redis follows
                                           when it is back */
        }
    }
    sh->last[0] = '\0';
    busy_update(r);
}

/* A message from Redis: ["message", chan, payload] or ["pmessage", pat,
 * chan, payload]. */
static void on_push(void *ud, redisReply *rep)
{
    shard_t *sh = ud;
    redis_t *r = sh->r;
    redisReply *payload;
    json_t *msg;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3
        || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "message") == 0 && rep->elements == 3) {
        payload = rep->element[2];
    } else if (strcmp(rep->element[0]->str, "pmessage") == 0 && rep->elements == 4) {
        payload = rep->element[3];
    } else {
        int pat = strcmp(rep->element[0]->str, "psubscribe") == 0;
        if ((pat || strcmp(rep->element[0]->str, "subscribe") == 0)
            && rep->element[1]->type == REDIS_REPLY_STRING) {
            bx_buf_t b = BX_BUF_INIT;
            bx_buf_puts(&b, pat ? "P" : "S");
            bx_buf_append(&b, rep->element[1]->str, rep->element[1]->len);
            target_t *t = bx_dict_get(&r->targets, b.data, b.len);
            bx_buf_free(&b);
            if (t && t->pending > 0 && --t->pending == 0) {
                release_waiters(r, t, 0);
                busy_update(r);
            }
        }
        return;
    }
    if (payload->type != REDIS_REPLY_STRING || payload->len < 48 || payload->str[47] != ' ')
        return;
    if (memcmp(payload->str, r->node, 31) == 0)
        return;                 /* ours: delivered here at publish time */
    if (memcmp(payload->str, sh->last, 47) == 0)
        return;                 /* the same publish through another subscription */
    memcpy(sh->last, payload->str, 47);
    sh->last[47] = '\0';
    msg = bx_json_parse(payload->str + 48, payload->len - 48);
    if (!msg)
        return;
    r->remote = 1;
    r->inner->ops->publish(r->inner, msg, NULL, NULL);
    r->remote = 0;
    json_decref(msg);
}

/* ---- Operations ---- */

static int r_create_client(bx_engine_t *e, bx_engine_id_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    return r->closing ? BX_ECANCELED : r->inner->ops->create_client(r->inner, cb, ud);
}

static int r_client_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    return r->closing ? BX_ECANCELED : r->inner->ops->client_exists(r->inner, id, cb, ud);
}

static int r_destroy_client(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    return r->closing ? BX_ECANCELED : r->inner->ops->destroy_client(r->inner, id, cb, ud);
}

static void r_ping(bx_engine_t *e, const char *id)
{
    redis_t *r = (redis_t *)e;
    if (!r->closing)
        r->inner->ops->ping(r->inner, id);
}

static void on_inner_subscribed(void *ud, int status, int yes)
{
    sub_t *s = ud;
    redis_t *r = s->r;
    target_t *t = NULL;

    if (status == 0 && !r->closing) {
        bx_buf_t b = BX_BUF_INIT;
        target_of(r, s->channel, &b);
        t = bx_dict_get(&r->targets, b.data, b.len);
        bx_buf_free(&b);
    }
    /* wait for Redis's confirmations, or for the first attempt of a
     * subscriber connection the target needs, which will send it */
    int wait = t && t->pending > 0;
    for (int i = 0; t && !wait && i < r->nshards; i++)
        wait = r->shards[i].sub_first && (t->shard < 0 || t->shard == i);
    if (wait) {
        waiter_t *w = bx_calloc(1, sizeof(*w));
        w->cb = s->cb;
        w->ud = s->ud;
        w->yes = yes;
        w->next = t->waiters;
        t->waiters = w;
        r->busy++;
        busy_update(r);
    } else if (s->cb) {
        s->cb(s->ud, status, yes);
    }
    free(s);
}

static int r_subscribe(bx_engine_t *e, const char *id, const char *ch, bx_engine_bool_cb cb,
                       void *ud)
{
    redis_t *r = (redis_t *)e;
    size_t len = strlen(ch);
    sub_t *s;
    int rc;

    if (r->closing)
        return BX_ECANCELED;
    s = bx_malloc(sizeof(*s) + len + 1);
    s->r = r;
    s->cb = cb;
    s->ud = ud;
    memcpy(s->channel, ch, len + 1);
    rc = r->inner->ops->subscribe(r->inner, id, ch, on_inner_subscribed, s);
    if (rc != 0)
        free(s);
    return rc;
}

static int r_unsubscribe(bx_engine_t *e, const char *id, const char *ch, bx_engine_bool_cb cb,
                         void *ud)
{
    redis_t *r = (redis_t *)e;
    return r->closing ? BX_ECANCELED : r->inner->ops->unsubscribe(r->inner, id, ch, cb, ud);
}

static void pub_step(pub_t *p, int status)
{
    if (status && !p->status)
        p->status = status;
    if (--p->waiting > 0)
        return;
    if (p->cb)
        p->cb(p->ud, p->status);
    free(p);
}

static void on_inner_published(void *ud, int status)
{
    pub_step(ud, status);
}

static void on_published(void *ud, int status, redisReply *rep)
{
    pub_t *p = ud;
    redis_t *r = p->r;
    (void)rep;
    r->busy--;
    busy_update(r);
    /* the message is delivered here; only a close changes the answer */
    pub_step(p, status == BX_REDIS_ECANCELED ? BX_ECANCELED : 0);
}

/* Delivers here and sends the PUBLISH; BX_EUNAVAILABLE when Redis is
 * down (nothing done, no callback). */
static int do_publish(redis_t *r, const json_t *message, bx_engine_done_cb cb, void *ud)
{
    json_t *jch = json_object_get(message, "channel");
    bx_buf_t key = BX_BUF_INIT, payload = BX_BUF_INIT;
    const char *argv[3];
    size_t lens[3];
    pub_t *p;
    int rc;

    if (!json_is_string(jch))
        return r->inner->ops->publish(r->inner, message, cb, ud);
    shard_t *sh = &r->shards[owner_of(r, json_string_value(jch), json_string_length(jch))];
    if (!bx_redis_up(sh->cmd))
        return BX_EUNAVAILABLE;
    bx_buf_puts(&key, r->ns);
    bx_buf_puts(&key, "/m");
    bx_buf_append(&key, json_string_value(jch), json_string_length(jch));
    bx_buf_printf(&payload, "%s%016llx ", r->node, (unsigned long long)++r->seq);
    {
        json_t *copy = json_copy((json_t *)message);
        json_object_del(copy, "clientId");
        bx_json_dump(copy, &payload);
        json_decref(copy);
    }
    p = bx_calloc(1, sizeof(*p));
    p->r = r;
    p->cb = cb;
    p->ud = ud;
    p->waiting = 2;
    argv[0] = "PUBLISH";
    lens[0] = 7;
    argv[1] = key.data;
    lens[1] = key.len;
    argv[2] = payload.data;
    lens[2] = payload.len;
    rc = bx_redis_command(sh->cmd, on_published, p, 3, argv, lens);
    bx_buf_free(&key);
    bx_buf_free(&payload);
    if (rc != 0) {
        free(p);
        return BX_EUNAVAILABLE;
    }
    r->busy++;
    busy_update(r);
    rc = r->inner->ops->publish(r->inner, message, on_inner_published, p);
    if (rc != 0)
        pub_step(p, rc);        /* the PUBLISH reply answers, later */
    return 0;
}

static int r_publish(bx_engine_t *e, const json_t *message, bx_engine_done_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;

    if (r->closing)
        return BX_ECANCELED;
    if (r->first_connect) {
        /* a server's first requests may come before Redis answered:
         * they wait for the first connection's outcome */
        early_t *x = bx_calloc(1, sizeof(*x));
        x->msg = json_deep_copy(message);
        x->cb = cb;
        x->ud = ud;
        *r->early_tail = x;
        r->early_tail = &x->next;
        return 0;
    }
    return do_publish(r, message, cb, ud);
}

/* The publishes made before the first connection's outcome: sent now, or
 * answered with `status` (canceled, or unavailable when it failed). */
static void flush_early(redis_t *r, int status)
{
    early_t *x = r->early;
    r->early = NULL;
    r->early_tail = &r->early;
    while (x) {
        early_t *next = x->next;
        int rc = status ? status : do_publish(r, x->msg, x->cb, x->ud);
        if (rc != 0 && x->cb)
            x->cb(x->ud, rc);
        json_decref(x->msg);
        free(x);
        x = next;
    }
}

static int r_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    return r->closing ? BX_ECANCELED : r->inner->ops->take(r->inner, id, cb, ud);
}

static int r_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs, bx_engine_done_cb cb,
                     void *ud)
{
    redis_t *r = (redis_t *)e;
    if (r->closing) {
        bx_chunkv_clear(msgs);
        return BX_ECANCELED;
    }
    return r->inner->ops->requeue(r->inner, id, msgs, cb, ud);
}

static void r_stats(bx_engine_t *e, bx_engine_stats_t *out)
{
    redis_t *r = (redis_t *)e;
    r->inner->ops->stats(r->inner, out);
}

/* ---- Life cycle ---- */

static void part_closed(void *ud)
{
    redis_t *r = ud;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    if (--r->open > 0)
        return;
    void (*done)(void *) = r->close_done;
    void *dud = r->close_ud;
    while ((e = bx_dict_next(&r->targets, &it)) != NULL)
        free(e->value);
    bx_dict_free(&r->targets);
    free(r);
    if (done)
        done(dud);
}

static void keep_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void r_close(bx_engine_t *e, void (*done)(void *ud), void *ud)
{
    redis_t *r = (redis_t *)e;

    r->closing = 1;
    r->close_done = done;
    r->close_ud = ud;
    r->open = 2 * r->nshards + 2;
    flush_early(r, BX_ECANCELED);
    {
        bx_dict_iter_t it = BX_DICT_ITER_INIT;
        bx_dict_entry_t *en;
        while ((en = bx_dict_next(&r->targets, &it)) != NULL)
            release_waiters(r, en->value, BX_ECANCELED);
    }
    /* pending PUBLISH replies first (canceled), then the inner engine's
     * callbacks; a publish answers once both are in */
    for (int i = 0; i < r->nshards; i++) {
        bx_redis_close(r->shards[i].cmd, part_closed, r);
        bx_redis_close(r->shards[i].sub, part_closed, r);
    }
    r->inner->ops->close(r->inner, part_closed, r);
    uv_close((uv_handle_t *)&r->keep, keep_closed);
}

static const bx_engine_ops_t redis_ops = {
    "redis",
    r_create_client,
    r_client_exists,
    r_destroy_client,
    r_ping,
    r_subscribe,
    r_unsubscribe,
    r_publish,
    r_take,
    r_requeue,
    r_stats,
    r_close,
};

bx_engine_t *bx_engine_redis_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                 const bx_engine_opts_t *opts, const char *url, char *err,
                                 size_t errlen)
{
    redis_t *r;
    bx_redis_addr_t addrs[MAX_SHARDS];
    const char *names[MAX_SHARDS];
    bx_proxy_t inner_proxy;
    int n = 0;

    /* "redis://a,redis://b": one shard per URL */
    for (const char *p = url; p && *p; n++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[1024];
        if (n == MAX_SHARDS || len >= sizeof(one)) {
            snprintf(err, errlen, "at most %d Redis URLs, each under %zu bytes", MAX_SHARDS,
                     sizeof(one));
            return NULL;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (bx_redis_parse_url(one, &addrs[n], err, errlen) < 0)
            return NULL;
        p = comma ? comma + 1 : NULL;
    }
    if (n == 0) {
        snprintf(err, errlen, "no Redis URL");
        return NULL;
    }
    r = bx_calloc(1, sizeof(*r));
    snprintf(r->ns, sizeof(r->ns), "%s", addrs[0].ns);
    r->base.ops = &redis_ops;
    r->base.proxy = *proxy;
    r->base.loop = loop;
    inner_proxy.ud = r;
    inner_proxy.has_connection = p_has_connection;
    inner_proxy.wake = p_wake;
    inner_proxy.closed = p_closed;
    inner_proxy.trigger = p_trigger;
    r->inner = bx_engine_memory_new(loop, &inner_proxy, opts);
    r->base.timeout = r->inner->timeout;
    bx_engine_random_id(r->node);
    uv_prepare_init(loop, &r->keep);
    r->keep.data = r;
    r->nshards = n;
    r->first_connect = r->sub_first = n;
    r->early_tail = &r->early;
    for (int i = 0; i < n; i++) {
        shard_t *sh = &r->shards[i];
        sh->r = r;
        sh->idx = i;
        sh->addr = addrs[i];
        if (sh->addr.path[0])
            snprintf(sh->name, sizeof(sh->name), "%s/%d", sh->addr.path, sh->addr.db);
        else
            snprintf(sh->name, sizeof(sh->name), "%s:%d/%d", sh->addr.host, sh->addr.port,
                     sh->addr.db);
        names[i] = sh->name;
        sh->first = sh->sub_first = 1;
    }
    r->npoints = ring_build(r->ring, names, n);
    busy_update(r);
    for (int i = 0; i < n; i++) {
        shard_t *sh = &r->shards[i];
        sh->cmd = bx_redis_new(loop, &sh->addr, NULL, on_cmd_state, NULL, sh);
        sh->sub = bx_redis_new(loop, &sh->addr, NULL, on_sub_state, on_push, sh);
    }
    return &r->base;
}
