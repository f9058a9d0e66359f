/*
 * redis.c - the Redis engine, first step: publishes cross processes.
 *
 * Each process keeps its own clients, subscriptions and queues in an inner
 * memory engine (memory.c), and shares publishes through Redis pub/sub:
 *
 *   - a publish is sent with ONE `PUBLISH NS/m<channel> <payload>`,
 *     whatever the number of subscribers anywhere, and delivered to this
 *     process's clients too when Redis sends it back, so that every process
 *     applies the publishes in the one order of Redis's stream;
 *   - each process subscribes, on its subscriber connection, to what its
 *     own clients need: `SUBSCRIBE NS/m/a/b` for /a/b, `PSUBSCRIBE
 *     NS/m/a/*` for both /a/* and /a/** (Redis's `*` also crosses '/', so
 *     the inner engine's exact matching decides), refcounted, so a
 *     channel costs one Redis subscription per process, not per client;
 *   - a message from Redis (another process's or its own) is published
 *     into the inner engine (the same serialize-once fan-out as the memory
 *     engine), without a second PUBLISH event. The payload is "<node
 *     id><seq> <json>": a process skips the copies Redis sends when several
 *     of its subscriptions match one publish (they arrive one after
 *     another).
 *
 * Redis down: a publish answers BX_EUNAVAILABLE (nothing delivered); the
 * engine logs each change of state once; when Redis is back, the
 * subscriber connection subscribes again to everything that is needed.
 *
 * Shards: with several URLs, each channel's publishes go to the server a
 * consistent-hash ring gives it; an exact subscription is made on that
 * server, a pattern on every server (its channels are anywhere).
 *
 * Clients live in Redis too, so that any process serves any request of
 * any client: see "Sessions" below. So does channel history, when
 * configured: see "Channel history" below.
 *
 * The connections' handles keep no loop alive (net/redis.h); a prepare
 * handle does, while a PUBLISH waits for its reply or the first connection
 * is being made, so that a caller running the loop until its callbacks
 * came (the contract test's drain) sees them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/channel.h"
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
    /* sessions shared through Redis (see "Sessions" below) */
    char ctlkey[160];           /* "S" + the control channel NS/ctl: its
                                   target's key */
    const char *ctl;            /* the channel: ctlkey + 1 */
    bx_dict_t adopts;           /* id -> adopt_t: clients being taken over */
    bx_dict_t rops;             /* token -> rop_t: (un)subscribes the holder
                                   elsewhere has to acknowledge */
    bx_dict_t pinged;           /* ids pinged since the last ZADD */
    bx_dict_t echoes;           /* seq -> pub_t: own publishes whose answer
                                   waits for their delivery here */
    int quiet;                  /* the inner engine's events are bookkeeping */
    uv_timer_t tick;
    uint64_t last_flush;
    /* channel history shared in Redis (see "Channel history" below) */
    struct rhist *hist;         /* the configured patterns */
    size_t nhist;
    bx_dict_t hsubs;            /* seq -> hsub_t: replays waiting for their
                                   marker on the stream */
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

/* A call made before the first connection's outcome that needs Redis: a
 * publish, or one about a client this process does not hold. */
enum { E_PUBLISH, E_CREATE, E_EXISTS, E_DESTROY, E_SUBSCRIBE, E_UNSUBSCRIBE, E_TAKE };

typedef struct early {
    struct early *next;
    int op;
    json_t *msg;
    bx_engine_done_cb cb;
    void (*fn)(void);           /* the callback of the other calls */
    void *ud;
    char id[32];
    char *ch;
    size_t limit;               /* a subscribe's */
} early_t;

typedef struct {
    redis_t *r;
    bx_engine_done_cb cb;
    void *ud;
    int waiting;                /* the PUBLISH reply, and the message back
                                   from Redis when clients here need it */
    int status;
    int echo;                   /* in r->echoes */
    uint64_t deadline;
    char key[17];               /* its sequence number, in hex */
} pub_t;

static void on_keep(uv_prepare_t *h) { (void)h; }
static const struct rhist *hist_pattern(redis_t *r, const char *ch, size_t len);
static int hist_publish(redis_t *r, shard_t *sh, const struct rhist *hp,
                        const json_t *message, const bx_buf_t *stream,
                        const bx_buf_t *prefix, pub_t *p);
static void hist_marker(redis_t *r, const char *text, size_t len);
static void hist_release(redis_t *r, int status);
static void hist_close(redis_t *r);
static int forget(redis_t *r, const char *id, int event, bx_engine_done_cb cb, void *ud);
static void on_ctl(redis_t *r, const char *text, size_t len);
static void reregister_one(void *ud, const char *id, const char *ch, size_t len);
static void flush_early(redis_t *r, int status);
static int defer_early(redis_t *r, int op, const char *id, const char *ch, size_t limit,
                       void (*fn)(void), void *ud);

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
    if (ev == BX_EV_DISCONNECT && !r->quiet && !r->closing && id)
        forget(r, id, 0, NULL, NULL);   /* destroyed or expired here */
    if ((ev == BX_EV_PUBLISH && r->remote) || r->quiet)
        return;                 /* told by another process, or bookkeeping */
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
    if (up && sh->idx == 0 && !r->closing)
        bx_engine_memory_each(r->inner, reregister_one, r);    /* made while away */
    if (sh->first) {
        sh->first = 0;
        /* the early publishes go when every shard's first attempt is over:
         * those on a shard that is down then are refused */
        if (--r->first_connect == 0)
            flush_early(r, 0);
    }
    busy_update(r);
}

static void pub_step(pub_t *p, int status);

/* The publish waiting for its echo under `key`, answered with `status`. */
static void echo_done(redis_t *r, const char *key, size_t len, int status)
{
    pub_t *p = bx_dict_del(&r->echoes, key, len);
    if (!p)
        return;
    p->echo = 0;
    r->busy--;
    busy_update(r);
    pub_step(p, status);
}

/* Every publish waiting for its echo (a subscriber connection went down,
 * or the engine closes). */
static void echo_release(redis_t *r, int status)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    pub_t *due[64];
    int n;
    do {
        n = 0;
        it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
        while (n < 64 && (e = bx_dict_next(&r->echoes, &it)) != NULL)
            due[n++] = e->value;
        for (int i = 0; i < n; i++)
            echo_done(r, due[i]->key, 16, status);
    } while (n == 64);
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
    if (!up)
        echo_release(r, 0);     /* published; what Redis drops is lost */
    if (!up)
        hist_release(r, 0);     /* the markers owed will not come */
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
        if (sh->idx == 0 && rep->element[1]->type == REDIS_REPLY_STRING
            && strcmp(rep->element[1]->str, r->ctl) == 0) {
            if (payload->type == REDIS_REPLY_STRING)
                on_ctl(r, payload->str, payload->len);
            return;
        }
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
    if (memcmp(payload->str, sh->last, 47) == 0)
        return;                 /* the same publish through another subscription */
    memcpy(sh->last, payload->str, 47);
    sh->last[47] = '\0';
    if (payload->len > 48 && payload->str[48] == 'R') {
        hist_marker(r, payload->str, payload->len);     /* a replay */
        return;
    }
    msg = bx_json_parse(payload->str + 48, payload->len - 48);
    if (msg) {
        r->remote = 1;
        r->inner->ops->publish(r->inner, msg, NULL, NULL);
        r->remote = 0;
        json_decref(msg);
    }
    if (memcmp(payload->str, r->node, 31) == 0)
        echo_done(r, payload->str + 31, 16, 0);    /* ours: delivered here now */
}

/* ---- Sessions: any process serves any client ----
 *
 * A client is held by one process at a time: the one whose inner engine
 * has it, subscribed on Redis for its channels and queueing its messages
 * in memory. Redis (the first shard) knows every client:
 *
 *   NS/clients      ZSET id -> last connect (wall clock, ms): liveness
 *   NS/c/<id>/s     SET of its channels
 *   NS/c/<id>/h     the id of the process holding it
 *   NS/c/<id>/q     LIST: its queue while it moves between processes
 *   NS/c/<id>/x     what the old holder's proxy keeps for it beside the
 *                   queue (proxy.leave: an unacknowledged batch), while
 *                   it moves; the claimer's proxy gets it (proxy.arrive)
 *
 * so any process answers "does it exist" and takes a subscribe. A
 * connection (a connect held, a socket bound) for a client held elsewhere
 * takes it over with a handoff on the control channel NS/ctl, which every
 * process subscribes to on the first shard:
 *
 *   1. the claimer reads the channels and sets itself as the holder (one
 *      MULTI), subscribes on Redis to those channels and waits for the
 *      confirmations, then PUBLISHes "H <claimer> <id> <old holder>";
 *   2. the pub/sub stream of the first shard is one order for everyone:
 *      the old holder keeps every message before H (it has them or gets
 *      them before H), releases the client at H, RPUSHes its queue to
 *      NS/c/<id>/q (and SETs NS/c/<id>/x to what its proxy hands over)
 *      and PUBLISHes "R <holder> <id>"; the claimer makes the
 *      client in its inner engine at H (its own H in its own stream), so
 *      it gets every message after H;
 *   3. at R the claimer takes the list and the proxy's text (LRANGE, GET,
 *      DEL in MULTI), puts the list in front of its queue, gives the text
 *      to its proxy, then answers the takes that waited.
 *
 * Each message is so queued by exactly one process, in the order of the
 * stream. A holder that does not answer within HANDOFF_MS (it died) is
 * given up on. With several shards the cut is exact for the channels on
 * the first one; a message on another shard published during the
 * handoff's few milliseconds may come twice or not at all.
 *
 * An (un)subscribe updates the SET and GETs the holder in one MULTI, even
 * on the process holding the client: a claim's read of the SET is either
 * before it (the holder is then the claimer) or after (the claimer has
 * it). A holder elsewhere is asked ("S"/"U <from> <id> <token>
 * <channel>") and acknowledges ("K <holder> <token> <status>") once its
 * Redis subscription is confirmed, with the refusal of its max_channels,
 * which takes the channel back out of the SET. A disconnect anywhere removes the
 * keys and PUBLISHes "D <from> <id>": the holder drops the client and
 * answers its held connect. Pings are batched into one ZADD per sweep
 * period (timeout / 2, from 0.25 to 1 s); every process removes clients
 * whose last connect is older than 2 x timeout (ZRANGEBYSCORE), so expiry
 * is the same everywhere.
 *
 * A process applies its own publishes when Redis sends them back, like
 * everybody else's, so that the handoff's cut holds for them too (a
 * publish delivered here at once could be queued both here and by the
 * claimer, or by neither).
 */

#define HANDOFF_MS 2000

enum { A_FETCH, A_SUBS, A_CUT, A_WAIT_R, A_LIST };

typedef struct take_w {
    struct take_w *next;
    bx_engine_take_cb cb;
    void *ud;
} take_w_t;

/* An (un)subscribe that waits for an adoption to finish. */
typedef struct pop {
    struct pop *next;
    int unsub;
    int remote;                 /* asked by another process: acknowledge */
    int in_set;                 /* the SET has it already */
    size_t limit;               /* a subscribe's */
    char token[96];
    bx_engine_bool_cb cb;
    void *ud;
    char ch[];
} pop_t;

typedef struct {
    redis_t *r;
    char id[32];
    char prev[32];              /* the old holder, "" for none */
    int state;
    int subs_waiting;
    int gone;                   /* destroyed meanwhile */
    uint64_t deadline;
    char **chans;
    size_t nchans;
    take_w_t *takes, **takes_tail;
    pop_t *pops, **pops_tail;
} adopt_t;

typedef struct {
    redis_t *r;
    int unsub;
    size_t limit;               /* a subscribe's */
    int yes;
    int waiting;                /* for the holder's acknowledgement */
    uint64_t deadline;
    char id[32];
    char token[80];
    bx_engine_bool_cb cb;
    void *ud;
    char ch[];
} rop_t;

static int local_subscribe(redis_t *r, const char *id, const char *ch, int unsub,
                           size_t limit, bx_engine_bool_cb cb, void *ud);
static void set_undo(redis_t *r, const char *id, const char *ch);

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static double ttl_ms(redis_t *r)
{
    return 2 * r->base.timeout * 1000;
}

/* "NS/c/<id>/<what>" into `b`. */
static void ckey(redis_t *r, bx_buf_t *b, const char *id, const char *what)
{
    bx_buf_printf(b, "%s/c/%s/%s", r->ns, id, what);
}

static void clients_key(redis_t *r, bx_buf_t *b)
{
    bx_buf_printf(b, "%s/clients", r->ns);
}

/* A command on the first shard's command connection; with a callback, the
 * engine keeps the loop running until the reply. */
static int cmd0(redis_t *r, bx_redis_reply_cb cb, void *ud, int argc, const char **argv,
                const size_t *lens)
{
    int rc = bx_redis_command(r->shards[0].cmd, cb, ud, argc, argv, lens);
    if (rc == 0 && cb) {
        r->busy++;
        busy_update(r);
    }
    return rc;
}

static void unbusy(redis_t *r)
{
    r->busy--;
    busy_update(r);
}

static int up0(redis_t *r)
{
    return bx_redis_up(r->shards[0].cmd);
}

/* Sends a 2- or 3-argument command of NUL-terminated strings. */
static int cmd0s(redis_t *r, bx_redis_reply_cb cb, void *ud, const char *a, const char *b,
                 const char *c)
{
    const char *argv[3] = { a, b, c };
    return cmd0(r, cb, ud, c ? 3 : 2, argv, NULL);
}

static void ctl_send(redis_t *r, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cmd0s(r, NULL, NULL, "PUBLISH", r->ctl, text);
}

/* Whether a reply is EXEC's array of `n` results. */
static int exec_ok(int status, redisReply *rep, size_t n)
{
    return status == 0 && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == n;
}

/* Registers client `id` as held here (a new client, or one made while
 * Redis was away). */
static int register_client(redis_t *r, const char *id, bx_redis_reply_cb cb, void *ud)
{
    bx_buf_t k = BX_BUF_INIT, h = BX_BUF_INIT;
    char score[32];
    snprintf(score, sizeof(score), "%.0f", wall_ms());
    clients_key(r, &k);
    ckey(r, &h, id, "h");
    const char *z[4] = { "ZADD", k.data, score, id };
    int rc = cmd0(r, NULL, NULL, 4, z, NULL);
    if (rc == 0)
        rc = cmd0s(r, cb, ud, "SET", h.data, r->node);
    bx_buf_free(&k);
    bx_buf_free(&h);
    return rc;
}

static void reregister_one(void *ud, const char *id, const char *ch, size_t len)
{
    redis_t *r = ud;
    if (!ch) {
        register_client(r, id, NULL, NULL);
        return;
    }
    bx_buf_t s = BX_BUF_INIT;
    ckey(r, &s, id, "s");
    const char *argv[3] = { "SADD", s.data, ch };
    size_t lens[3] = { 4, s.len, len };
    cmd0(r, NULL, NULL, 3, argv, lens);
    bx_buf_free(&s);
}

/* ---- Forgetting a client everywhere ---- */

typedef struct {
    redis_t *r;
    char id[32];
    int event;                  /* emit DISCONNECT if this call removed it */
    bx_engine_done_cb cb;
    void *ud;
} forget_t;

static void on_forgot(void *ud, int status, redisReply *rep)
{
    forget_t *f = ud;
    redis_t *r = f->r;
    int removed = status == 0 && rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0;

    unbusy(r);
    if (removed && f->event && !r->closing) {
        if (r->base.proxy.trigger)
            r->base.proxy.trigger(r->base.proxy.ud, BX_EV_DISCONNECT, f->id, NULL, NULL);
        if (r->base.proxy.closed)
            r->base.proxy.closed(r->base.proxy.ud, f->id);
    }
    if (f->cb)
        f->cb(f->ud, status == BX_REDIS_ECANCELED || r->closing ? BX_ECANCELED
                     : status ? BX_EUNAVAILABLE : removed ? 0 : BX_EUNKNOWN);
    free(f);
}

/* Removes `id`'s keys and tells every process. BX_EUNAVAILABLE when
 * Redis is down (no callback then). */
static int forget(redis_t *r, const char *id, int event, bx_engine_done_cb cb, void *ud)
{
    bx_buf_t k = BX_BUF_INIT, s = BX_BUF_INIT, h = BX_BUF_INIT, q = BX_BUF_INIT;
    bx_buf_t x = BX_BUF_INIT;
    forget_t *f = NULL;
    int rc;

    clients_key(r, &k);
    ckey(r, &s, id, "s");
    ckey(r, &h, id, "h");
    ckey(r, &q, id, "q");
    ckey(r, &x, id, "x");
    if (event || cb) {
        f = bx_calloc(1, sizeof(*f));
        f->r = r;
        snprintf(f->id, sizeof(f->id), "%s", id);
        f->event = event;
        f->cb = cb;
        f->ud = ud;
    }
    rc = cmd0s(r, f ? on_forgot : NULL, f, "ZREM", k.data, id);
    if (rc == 0) {
        const char *argv[5] = { "DEL", s.data, h.data, q.data, x.data };
        cmd0(r, NULL, NULL, 5, argv, NULL);
        ctl_send(r, "D %s %s", r->node, id);
    } else {
        free(f);
    }
    bx_buf_free(&k);
    bx_buf_free(&s);
    bx_buf_free(&h);
    bx_buf_free(&q);
    bx_buf_free(&x);
    return rc ? BX_EUNAVAILABLE : 0;
}

/* ---- Taking a client over ---- */

static void adopt_free(adopt_t *a)
{
    for (size_t i = 0; i < a->nchans; i++)
        free(a->chans[i]);
    free(a->chans);
    free(a);
}

/* A remote (un)subscribe's acknowledgement: what the asker needs, and
 * the SET entry to take back when this process refused it (a limit). */
typedef struct {
    redis_t *r;
    char id[32];
    char *ch;
    char token[];
} ack_t;

/* Sends the acknowledgement of a remote (un)subscribe, with the refusal
 * of a limit, which the SET must not keep either: the next holder would
 * apply it. */
static void on_acked(void *ud, int status, int yes)
{
    ack_t *k = ud;
    redis_t *r = k->r;
    int refused = status == BX_ESUBSLIMIT || status == BX_ECHANLIMIT;
    (void)yes;
    if (status != BX_ECANCELED && !r->closing) {
        if (refused && k->ch)
            set_undo(r, k->id, k->ch);
        ctl_send(r, "K %s %s %d", r->node, k->token, refused ? status : 0);
    }
    free(k->ch);
    free(k);
}

static ack_t *ack_new(redis_t *r, const char *id, const char *ch, int unsub, const char *token)
{
    size_t len = strlen(token);
    ack_t *k = bx_calloc(1, sizeof(*k) + len + 1);
    k->r = r;
    snprintf(k->id, sizeof(k->id), "%s", id);
    k->ch = unsub ? NULL : bx_strdup(ch);
    memcpy(k->token, token, len + 1);
    return k;
}

/* Takes a refused subscribe's channel back out of client `id`'s SET. */
static void set_undo(redis_t *r, const char *id, const char *ch)
{
    bx_buf_t s = BX_BUF_INIT;
    ckey(r, &s, id, "s");
    cmd0s(r, NULL, NULL, "SREM", s.data, ch);
    bx_buf_free(&s);
}

/* A change made to the SET first, then to the inner engine: a refusal
 * there (a limit) is taken back out of the SET. */
typedef struct {
    redis_t *r;
    bx_engine_bool_cb cb;
    void *ud;
    char id[32];
    char ch[];
} here_t;

static void on_here_done(void *ud, int status, int yes)
{
    here_t *h = ud;
    if (status == BX_ESUBSLIMIT || status == BX_ECHANLIMIT)
        if (!h->r->closing)
            set_undo(h->r, h->id, h->ch);
    if (h->cb)
        h->cb(h->ud, status, yes);
    free(h);
}

/* local_subscribe, for a change the SET has: a subscribe refused by the
 * inner engine leaves the SET too. */
static int here_subscribe(redis_t *r, const char *id, const char *ch, int unsub, size_t limit,
                          bx_engine_bool_cb cb, void *ud)
{
    if (unsub)
        return local_subscribe(r, id, ch, 1, 0, cb, ud);
    size_t len = strlen(ch);
    here_t *h = bx_calloc(1, sizeof(*h) + len + 1);
    h->r = r;
    h->cb = cb;
    h->ud = ud;
    snprintf(h->id, sizeof(h->id), "%s", id);
    memcpy(h->ch, ch, len + 1);
    int rc = local_subscribe(r, id, ch, 0, limit, on_here_done, h);
    if (rc != 0)
        free(h);
    return rc;
}

/* Applies an (un)subscribe to a client held here: its own (which also
 * updates the SET) or one another process asked for (already in the SET;
 * acknowledged once done). */
static void apply_pop(redis_t *r, const char *id, pop_t *p, int gone)
{
    if (p->remote) {
        ack_t *k = ack_new(r, id, p->ch, p->unsub, p->token);
        if (gone || here_subscribe(r, id, p->ch, p->unsub, 0, on_acked, k) != 0)
            on_acked(k, 0, 0);
        return;
    }
    if (gone) {
        if (p->cb)
            p->cb(p->ud, BX_EUNKNOWN, 0);
        return;
    }
    /* the SET follows the inner engine, which is this process's alone
     * until the client moves again */
    int over = !p->unsub && bx_engine_memory_over(r->inner, id, p->ch, p->limit);
    if (!p->in_set && !over) {
        bx_buf_t s = BX_BUF_INIT;
        ckey(r, &s, id, "s");
        cmd0s(r, NULL, NULL, p->unsub ? "SREM" : "SADD", s.data, p->ch);
        bx_buf_free(&s);
    }
    if (here_subscribe(r, id, p->ch, p->unsub, p->in_set ? 0 : p->limit, p->cb, p->ud) != 0
        && p->cb)
        p->cb(p->ud, BX_ECANCELED, 0);
}

/* The end of a handoff: `msgs` (the list, may be NULL) goes in front of
 * the queue, the old holder's proxy text (`state`, `len` bytes; may be
 * NULL) to ours, then the waiting takes and (un)subscribes are served. */
static void adopt_finish(adopt_t *a, bx_chunkv_t *msgs, const char *state, size_t len)
{
    redis_t *r = a->r;
    int gone = a->gone || !bx_engine_memory_has(r->inner, a->id);

    bx_dict_del(&r->adopts, a->id, 31);
    if (!gone && msgs && msgs->n)
        r->inner->ops->requeue(r->inner, a->id, msgs, NULL, NULL);  /* applied in order before the takes below */
    if (!gone && state && r->base.proxy.arrive)
        r->base.proxy.arrive(r->base.proxy.ud, a->id, state, len);
    if (a->gone && bx_engine_memory_has(r->inner, a->id)) {
        r->quiet++;
        r->inner->ops->destroy_client(r->inner, a->id, NULL, NULL);
        r->quiet--;
    }
    for (pop_t *p = a->pops, *next; p; p = next) {
        next = p->next;
        apply_pop(r, a->id, p, gone);
        free(p);
    }
    for (take_w_t *t = a->takes, *next; t; t = next) {
        next = t->next;
        if (r->inner->ops->take(r->inner, a->id, t->cb, t->ud) != 0) {
            bx_chunkv_t none = BX_CHUNKV_INIT;
            t->cb(t->ud, BX_ECANCELED, a->id, &none);
        }
        free(t);
    }
    unbusy(r);
    adopt_free(a);
}

static void on_adopt_list(void *ud, int status, redisReply *rep)
{
    adopt_t *a = ud;
    redis_t *r = a->r;
    bx_chunkv_t msgs = BX_CHUNKV_INIT;

    unbusy(r);
    if (r->closing)
        return;                 /* r_close frees the adoption */
    const char *state = NULL;
    size_t len = 0;
    if (exec_ok(status, rep, 4) && rep->element[0]->type == REDIS_REPLY_ARRAY) {
        redisReply *l = rep->element[0];
        for (size_t i = 0; i < l->elements; i++)
            if (l->element[i]->type == REDIS_REPLY_STRING)
                bx_chunkv_push_new(&msgs, bx_chunk_new(l->element[i]->str, l->element[i]->len));
        if (rep->element[2]->type == REDIS_REPLY_STRING) {
            state = rep->element[2]->str;
            len = rep->element[2]->len;
        }
    }
    adopt_finish(a, &msgs, state, len);
    bx_chunkv_free(&msgs);
}

/* Takes the queue the old holder left in Redis. */
static void adopt_fetch(adopt_t *a)
{
    redis_t *r = a->r;
    bx_buf_t q = BX_BUF_INIT, x = BX_BUF_INIT;

    a->state = A_LIST;
    ckey(r, &q, a->id, "q");
    ckey(r, &x, a->id, "x");
    const char *multi[1] = { "MULTI" }, *exec[1] = { "EXEC" };
    const char *lr[4] = { "LRANGE", q.data, "0", "-1" };
    int rc = cmd0(r, NULL, NULL, 1, multi, NULL);
    if (rc == 0)
        rc = cmd0(r, NULL, NULL, 4, lr, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "DEL", q.data, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "GET", x.data, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "DEL", x.data, NULL);
    if (rc == 0)
        rc = cmd0(r, on_adopt_list, a, 1, exec, NULL);
    bx_buf_free(&q);
    bx_buf_free(&x);
    if (rc != 0)
        adopt_finish(a, NULL, NULL, 0);
}

/* The cut: from here on this process queues the client's messages. */
static void adopt_cut(adopt_t *a)
{
    redis_t *r = a->r;

    if (!a->gone && bx_engine_memory_adopt(r->inner, a->id) == 0) {
        r->quiet++;
        for (size_t i = 0; i < a->nchans; i++)
            r->inner->ops->subscribe(r->inner, a->id, a->chans[i], 0, NULL, NULL);
        r->quiet--;
    }
    for (size_t i = 0; i < a->nchans; i++)
        target_ref(r, a->chans[i], -1);     /* the inner client's refs hold them */
    if (a->prev[0] && strcmp(a->prev, r->node) != 0) {
        a->state = A_WAIT_R;
        a->deadline = uv_now(r->base.loop) + HANDOFF_MS;
    } else {
        adopt_fetch(a);
    }
}

static void adopt_subscribed(void *ud, int status, int yes)
{
    adopt_t *a = ud;
    redis_t *r = a->r;
    (void)status;
    (void)yes;
    if (r->closing || --a->subs_waiting > 0)
        return;
    a->state = A_CUT;
    a->deadline = uv_now(r->base.loop) + HANDOFF_MS;
    char text[160];
    snprintf(text, sizeof(text), "H %s %s %s", r->node, a->id, a->prev[0] ? a->prev : "-");
    if (cmd0s(r, NULL, NULL, "PUBLISH", r->ctl, text) != 0)
        adopt_cut(a);
}

/* Waits on target `t` (if Redis still owes its confirmation) for `a`. */
static void adopt_wait_target(redis_t *r, adopt_t *a, target_t *t)
{
    int wait = t && t->pending > 0;
    for (int i = 0; t && !wait && i < r->nshards; i++)
        wait = r->shards[i].sub_first && (t->shard < 0 || t->shard == i);
    if (!wait)
        return;
    waiter_t *w = bx_calloc(1, sizeof(*w));
    w->cb = adopt_subscribed;
    w->ud = a;
    w->next = t->waiters;
    t->waiters = w;
    r->busy++;
    a->subs_waiting++;
}

static target_t *target_get(redis_t *r, const char *ch)
{
    bx_buf_t b = BX_BUF_INIT;
    target_of(r, ch, &b);
    target_t *t = bx_dict_get(&r->targets, b.data, b.len);
    bx_buf_free(&b);
    return t;
}

static void on_adopt_exec(void *ud, int status, redisReply *rep)
{
    adopt_t *a = ud;
    redis_t *r = a->r;

    unbusy(r);
    if (r->closing)
        return;
    if (!exec_ok(status, rep, 3) || rep->element[2]->type != REDIS_REPLY_STRING
        || rep->element[0]->type != REDIS_REPLY_ARRAY) {
        a->gone = 1;            /* unknown (or Redis went away): no client */
        adopt_finish(a, NULL, NULL, 0);
        return;
    }
    if (rep->element[1]->type == REDIS_REPLY_STRING)
        snprintf(a->prev, sizeof(a->prev), "%s", rep->element[1]->str);
    redisReply *l = rep->element[0];
    a->chans = bx_calloc(l->elements + 1, sizeof(*a->chans));
    for (size_t i = 0; i < l->elements; i++)
        if (l->element[i]->type == REDIS_REPLY_STRING)
            a->chans[a->nchans++] = bx_strdup(l->element[i]->str);
    a->state = A_SUBS;
    a->subs_waiting = 1;
    for (size_t i = 0; i < a->nchans; i++) {
        target_ref(r, a->chans[i], 1);
        adopt_wait_target(r, a, target_get(r, a->chans[i]));
    }
    adopt_wait_target(r, a, bx_dict_get(&r->targets, r->ctlkey, strlen(r->ctlkey)));
    busy_update(r);
    adopt_subscribed(a, 0, 0);
}

/* Starts taking client `id` over; `cb` gets its messages at the end. */
static int adopt_start(redis_t *r, const char *id, bx_engine_take_cb cb, void *ud)
{
    bx_buf_t s = BX_BUF_INIT, h = BX_BUF_INIT, k = BX_BUF_INIT;
    adopt_t *a;
    int rc;

    if (strlen(id) != 31)
        return BX_EUNKNOWN;
    a = bx_calloc(1, sizeof(*a));
    a->r = r;
    memcpy(a->id, id, 32);
    a->takes_tail = &a->takes;
    a->pops_tail = &a->pops;
    ckey(r, &s, id, "s");
    ckey(r, &h, id, "h");
    clients_key(r, &k);
    const char *multi[1] = { "MULTI" }, *exec[1] = { "EXEC" };
    const char *gs[3] = { "GETSET", h.data, r->node };
    const char *zs[3] = { "ZSCORE", k.data, id };
    rc = cmd0(r, NULL, NULL, 1, multi, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "SMEMBERS", s.data, NULL);
    if (rc == 0)
        rc = cmd0(r, NULL, NULL, 3, gs, NULL);
    if (rc == 0)
        rc = cmd0(r, NULL, NULL, 3, zs, NULL);
    if (rc == 0)
        rc = cmd0(r, on_adopt_exec, a, 1, exec, NULL);
    bx_buf_free(&s);
    bx_buf_free(&h);
    bx_buf_free(&k);
    if (rc != 0) {
        free(a);
        return BX_EUNAVAILABLE;
    }
    take_w_t *t = bx_calloc(1, sizeof(*t));
    t->cb = cb;
    t->ud = ud;
    *a->takes_tail = t;
    a->takes_tail = &t->next;
    bx_dict_set(&r->adopts, a->id, 31, a);
    r->busy++;                  /* the adoption itself, until adopt_finish */
    busy_update(r);
    return 0;
}

/* ---- (Un)subscribing a client held elsewhere ---- */

static pop_t *pop_new(int unsub, const char *ch, size_t limit, bx_engine_bool_cb cb, void *ud)
{
    size_t len = strlen(ch);
    pop_t *p = bx_calloc(1, sizeof(*p) + len + 1);
    p->unsub = unsub;
    p->limit = limit;
    p->cb = cb;
    p->ud = ud;
    memcpy(p->ch, ch, len + 1);
    return p;
}

static void rop_answer(rop_t *o, int status)
{
    redis_t *r = o->r;
    if (o->waiting) {
        bx_dict_del(&r->rops, o->token, strlen(o->token));
        unbusy(r);
    }
    if (o->cb)
        o->cb(o->ud, status, status ? 0 : o->yes);
    free(o);
}

/* The SET has the change and no other process held the client when it
 * did: any claim since read it there. Applied here if the client is here
 * (or being taken over here: after the cut, as the claim's read came
 * before); done if it has left meanwhile. */
static void rop_here(rop_t *o)
{
    redis_t *r = o->r;
    adopt_t *a = bx_dict_get(&r->adopts, o->id, 31);

    if (a) {
        pop_t *p = pop_new(o->unsub, o->ch, 0, o->cb, o->ud);
        p->in_set = 1;
        *a->pops_tail = p;
        a->pops_tail = &p->next;
        free(o);
        return;
    }
    if (bx_engine_memory_has(r->inner, o->id)) {
        if (here_subscribe(r, o->id, o->ch, o->unsub, 0, o->cb, o->ud) != 0 && o->cb)
            o->cb(o->ud, BX_ECANCELED, 0);
        free(o);
        return;
    }
    rop_answer(o, 0);
}

static int here_or_adopting(redis_t *r, const char *id)
{
    return bx_engine_memory_has(r->inner, id) || bx_dict_get(&r->adopts, id, 31);
}

static void on_rop_exec(void *ud, int status, redisReply *rep)
{
    rop_t *o = ud;
    redis_t *r = o->r;

    unbusy(r);
    if (r->closing || status == BX_REDIS_ECANCELED) {
        rop_answer(o, BX_ECANCELED);
        return;
    }
    if (!exec_ok(status, rep, 4)) {
        /* Redis went away: a client here goes on here, and is
         * registered again, channels and all, when it is back */
        if (here_or_adopting(r, o->id))
            rop_here(o);
        else
            rop_answer(o, BX_EUNAVAILABLE);
        return;
    }
    if (rep->element[3]->type != REDIS_REPLY_STRING && !here_or_adopting(r, o->id)) {
        rop_answer(o, BX_EUNKNOWN);
        return;
    }
    o->yes = rep->element[1]->type == REDIS_REPLY_INTEGER && rep->element[1]->integer > 0;
    if (!o->unsub && o->yes && o->limit && rep->element[0]->type == REDIS_REPLY_INTEGER &&
        (size_t)rep->element[0]->integer >= o->limit) {
        /* one past the limit: taken back before anybody acts on it (the
         * holder is told only of what stays) */
        bx_buf_t k = BX_BUF_INIT;
        ckey(r, &k, o->id, "s");
        cmd0s(r, NULL, NULL, "SREM", k.data, o->ch);
        bx_buf_free(&k);
        rop_answer(o, BX_ESUBSLIMIT);
        return;
    }
    redisReply *h = rep->element[2];
    if (h->type != REDIS_REPLY_STRING || strcmp(h->str, r->node) == 0) {
        rop_here(o);            /* or nobody holds it: the next holder reads the SET */
        return;
    }
    snprintf(o->token, sizeof(o->token), "%s:%llu", r->node, (unsigned long long)++r->seq);
    char text[512];
    snprintf(text, sizeof(text), "%s %s %s %s %s", o->unsub ? "U" : "S", r->node, o->id,
             o->token, o->ch);
    if (cmd0s(r, NULL, NULL, "PUBLISH", r->ctl, text) != 0) {
        rop_answer(o, 0);
        return;
    }
    o->waiting = 1;
    o->deadline = uv_now(r->base.loop) + HANDOFF_MS;
    bx_dict_set(&r->rops, o->token, strlen(o->token), o);
    r->busy++;
    busy_update(r);
}

static int remote_subscribe(redis_t *r, const char *id, const char *ch, int unsub,
                            size_t limit, bx_engine_bool_cb cb, void *ud)
{
    bx_buf_t s = BX_BUF_INIT, h = BX_BUF_INIT, k = BX_BUF_INIT;
    size_t len = strlen(ch);
    int rc;

    if (strlen(id) != 31 || len > 300)
        return BX_EUNKNOWN;
    rop_t *o = bx_calloc(1, sizeof(*o) + len + 1);
    o->r = r;
    o->unsub = unsub;
    o->limit = limit;
    o->cb = cb;
    o->ud = ud;
    memcpy(o->id, id, 32);
    memcpy(o->ch, ch, len + 1);
    ckey(r, &s, id, "s");
    ckey(r, &h, id, "h");
    clients_key(r, &k);
    const char *multi[1] = { "MULTI" }, *exec[1] = { "EXEC" };
    const char *zs[3] = { "ZSCORE", k.data, id };
    const char *sa[3] = { unsub ? "SREM" : "SADD", s.data, ch };
    rc = cmd0(r, NULL, NULL, 1, multi, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "SCARD", s.data, NULL);   /* the count before: the limit */
    if (rc == 0)
        rc = cmd0(r, NULL, NULL, 3, sa, NULL);
    if (rc == 0)
        rc = cmd0s(r, NULL, NULL, "GET", h.data, NULL);
    if (rc == 0)
        rc = cmd0(r, NULL, NULL, 3, zs, NULL);
    if (rc == 0)
        rc = cmd0(r, on_rop_exec, o, 1, exec, NULL);
    bx_buf_free(&s);
    bx_buf_free(&h);
    bx_buf_free(&k);
    if (rc != 0) {
        free(o);
        return BX_EUNAVAILABLE;
    }
    return 0;
}

/* ---- The control channel ---- */

static void on_ctl(redis_t *r, const char *text, size_t len)
{
    char kind[2], from[40], id[40], arg[96], ch[320];
    char buf[512];
    int n;

    if (len >= sizeof(buf))
        return;
    memcpy(buf, text, len);
    buf[len] = '\0';
    n = sscanf(buf, "%1s %39s %39s %95s %319s", kind, from, id, arg, ch);
    if (n < 3)
        return;
    int mine = strcmp(from, r->node) == 0;
    switch (kind[0]) {
    case 'H': {
        adopt_t *a = bx_dict_get(&r->adopts, id, strlen(id));
        if (mine) {
            if (a && a->state == A_CUT)
                adopt_cut(a);
        } else if (bx_engine_memory_has(r->inner, id)) {
            /* claimed away: what came before H is ours to hand over */
            bx_chunkv_t msgs = BX_CHUNKV_INIT;
            size_t slen = 0;
            r->quiet++;
            bx_engine_memory_release(r->inner, id, &msgs);
            r->quiet--;
            char *state = r->base.proxy.leave ? r->base.proxy.leave(r->base.proxy.ud, id, &slen)
                                              : NULL;
            if (state) {
                bx_buf_t x = BX_BUF_INIT;
                ckey(r, &x, id, "x");
                const char *argv[3] = { "SET", x.data, state };
                size_t lens[3] = { 3, x.len, slen };
                cmd0(r, NULL, NULL, 3, argv, lens);
                bx_buf_free(&x);
                free(state);
            }
            if (msgs.n) {
                bx_buf_t q = BX_BUF_INIT;
                ckey(r, &q, id, "q");
                const char **argv = bx_malloc((msgs.n + 2) * sizeof(*argv));
                size_t *lens = bx_malloc((msgs.n + 2) * sizeof(*lens));
                argv[0] = "RPUSH";
                lens[0] = 5;
                argv[1] = q.data;
                lens[1] = q.len;
                for (size_t i = 0; i < msgs.n; i++) {
                    argv[i + 2] = msgs.v[i]->data;
                    lens[i + 2] = msgs.v[i]->len;
                }
                cmd0(r, NULL, NULL, (int)msgs.n + 2, argv, lens);
                free(argv);
                free(lens);
                bx_buf_free(&q);
            }
            bx_chunkv_free(&msgs);
            ctl_send(r, "R %s %s", r->node, id);
        } else if (n >= 4 && strcmp(arg, r->node) == 0) {
            ctl_send(r, "R %s %s", r->node, id);    /* named, but not holding */
        }
        break;
    }
    case 'R': {
        adopt_t *a = bx_dict_get(&r->adopts, id, strlen(id));
        if (a && a->state == A_WAIT_R && strcmp(a->prev, from) == 0)
            adopt_fetch(a);
        break;
    }
    case 'S':
    case 'U': {
        if (mine || n < 5)
            break;
        adopt_t *a = bx_dict_get(&r->adopts, id, strlen(id));
        if (a) {
            pop_t *p = pop_new(kind[0] == 'U', ch, 0, NULL, NULL);
            p->remote = 1;
            snprintf(p->token, sizeof(p->token), "%s", arg);
            *a->pops_tail = p;
            a->pops_tail = &p->next;
        } else if (bx_engine_memory_has(r->inner, id)) {
            ack_t *k = ack_new(r, id, ch, kind[0] == 'U', arg);
            /* in the SET already: the asker checked the client's limit
             * there; the node's is this process's */
            if (here_subscribe(r, id, ch, kind[0] == 'U', 0, on_acked, k) != 0) {
                free(k->ch);
                free(k);
            }
        }
        break;
    }
    case 'K': {
        rop_t *o = bx_dict_get(&r->rops, id, strlen(id));
        int st = n >= 4 ? atoi(arg) : 0;
        if (o)
            rop_answer(o, st == BX_ESUBSLIMIT || st == BX_ECHANLIMIT ? st : 0);
        break;
    }
    case 'D': {
        if (mine)
            break;
        adopt_t *a = bx_dict_get(&r->adopts, id, strlen(id));
        if (a)
            a->gone = 1;
        if (bx_engine_memory_has(r->inner, id)) {
            r->quiet++;         /* the disconnecting process told the events */
            r->inner->ops->destroy_client(r->inner, id, NULL, NULL);
            r->quiet--;
        } else if (r->base.proxy.closed) {
            r->base.proxy.closed(r->base.proxy.ud, id);
        }
        break;
    }
    }
}

/* ---- The tick: handoff deadlines, batched pings, the expiry sweep ---- */

static void on_swept(void *ud, int status, redisReply *rep)
{
    redis_t *r = ud;
    unbusy(r);
    if (status || r->closing || !rep || rep->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        if (rep->element[i]->type != REDIS_REPLY_STRING || rep->element[i]->len != 31)
            continue;
        if (bx_engine_memory_has(r->inner, id) || bx_dict_get(&r->adopts, id, 31))
            continue;           /* held here: the inner engine expires it */
        forget(r, id, 1, NULL, NULL);
    }
}

static void flush_pings(redis_t *r)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    bx_buf_t k = BX_BUF_INIT;
    char score[32], cutoff[40];
    size_t n = r->pinged.count, i = 3;

    clients_key(r, &k);
    if (n && up0(r)) {
        const char **argv = bx_malloc((3 + 2 * n) * sizeof(*argv));
        snprintf(score, sizeof(score), "%.0f", wall_ms());
        argv[0] = "ZADD";
        argv[1] = k.data;
        argv[2] = "XX";
        while ((e = bx_dict_next(&r->pinged, &it)) != NULL) {
            argv[i++] = score;
            argv[i++] = e->key;
        }
        cmd0(r, NULL, NULL, (int)i, argv, NULL);
        free(argv);
    }
    bx_dict_free(&r->pinged);
    snprintf(cutoff, sizeof(cutoff), "(%.0f", wall_ms() - ttl_ms(r));
    const char *sw[7] = { "ZRANGEBYSCORE", k.data, "-inf", cutoff, "LIMIT", "0", "100" };
    if (up0(r))
        cmd0(r, on_swept, r, 7, sw, NULL);
    bx_buf_free(&k);
}

static void on_tick(uv_timer_t *h)
{
    redis_t *r = h->data;
    uint64_t now = uv_now(r->base.loop);
    /* pings and the sweep: 2 commands a period whatever the load; expiry
     * is within a period of 2 x timeout */
    uint64_t period = (uint64_t)(r->base.timeout * 500);
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    void *due[64];
    int ndue = 0;

    if (r->closing)
        return;
    while ((e = bx_dict_next(&r->adopts, &it)) != NULL && ndue < 64) {
        adopt_t *a = e->value;
        if ((a->state == A_CUT || a->state == A_WAIT_R) && now >= a->deadline)
            due[ndue++] = a;
    }
    for (int i = 0; i < ndue; i++) {
        adopt_t *a = due[i];
        if (a->state == A_CUT)
            adopt_cut(a);       /* our H was lost (the subscriber dropped) */
        else
            adopt_fetch(a);     /* the old holder is gone: what Redis has */
    }
    ndue = 0;
    it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
    while ((e = bx_dict_next(&r->rops, &it)) != NULL && ndue < 64)
        if (now >= ((rop_t *)e->value)->deadline)
            due[ndue++] = e->value;
    for (int i = 0; i < ndue; i++)
        rop_answer(due[i], 0);
    ndue = 0;
    it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
    while ((e = bx_dict_next(&r->echoes, &it)) != NULL && ndue < 64)
        if (now >= ((pub_t *)e->value)->deadline)
            due[ndue++] = e->value;
    for (int i = 0; i < ndue; i++)
        echo_done(r, ((pub_t *)due[i])->key, 16, 0);    /* published; not back (yet) */
    if (period > 1000)
        period = 1000;
    if (period < 250)
        period = 250;
    if (now - r->last_flush >= period) {
        r->last_flush = now;
        flush_pings(r);
    }
}

/* ---- Operations ---- */

typedef struct {
    redis_t *r;
    bx_engine_id_cb cb;
    void *ud;
    char id[32];
} made_t;

static void on_registered(void *ud, int status, redisReply *rep)
{
    made_t *m = ud;
    (void)rep;
    unbusy(m->r);
    /* Redis gone meanwhile: the client lives here and is registered again
     * when it is back */
    m->cb(m->ud, status == BX_REDIS_ECANCELED || m->r->closing ? BX_ECANCELED : 0, m->id);
    free(m);
}

static void on_inner_created(void *ud, int status, const char *id)
{
    made_t *m = ud;
    redis_t *r = m->r;

    if (status == 0 && !r->closing) {
        memcpy(m->id, id, 32);
        if (register_client(r, id, on_registered, m) == 0)
            return;
    }
    m->cb(m->ud, status, id);
    free(m);
}

/* A client is made here (held here) and registered in Redis before the
 * handshake is answered, so that its next request may go anywhere. With
 * Redis down it lives here only until Redis is back. */
static int r_create_client(bx_engine_t *e, bx_engine_id_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    if (r->closing)
        return BX_ECANCELED;
    if (r->first_connect)
        return defer_early(r, E_CREATE, NULL, NULL, 0, (void (*)(void))cb, ud);
    made_t *m = bx_calloc(1, sizeof(*m));
    m->r = r;
    m->cb = cb;
    m->ud = ud;
    int rc = r->inner->ops->create_client(r->inner, on_inner_created, m);
    if (rc != 0)
        free(m);
    return rc;
}

typedef struct {
    redis_t *r;
    bx_engine_bool_cb cb;
    void *ud;
} ask_t;

static void on_score(void *ud, int status, redisReply *rep)
{
    ask_t *q = ud;
    redis_t *r = q->r;
    int yes = 0;

    unbusy(r);
    if (status == 0 && rep && rep->type == REDIS_REPLY_STRING)
        yes = atof(rep->str) > wall_ms() - ttl_ms(r);
    q->cb(q->ud, status == BX_REDIS_ECANCELED || r->closing ? BX_ECANCELED
                 : status ? BX_EUNAVAILABLE : 0, yes);
    free(q);
}

static int r_client_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    bx_buf_t k = BX_BUF_INIT;

    if (r->closing)
        return BX_ECANCELED;
    if (!id || strlen(id) != 31 || bx_engine_memory_has(r->inner, id))
        return r->inner->ops->client_exists(r->inner, id, cb, ud);
    if (r->first_connect)
        return defer_early(r, E_EXISTS, id, NULL, 0, (void (*)(void))cb, ud);
    ask_t *q = bx_calloc(1, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->ud = ud;
    clients_key(r, &k);
    int rc = cmd0s(r, on_score, q, "ZSCORE", k.data, id);
    bx_buf_free(&k);
    if (rc != 0) {
        free(q);
        return BX_EUNAVAILABLE;
    }
    return 0;
}

static int r_destroy_client(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    if (r->closing)
        return BX_ECANCELED;
    adopt_t *a = id ? bx_dict_get(&r->adopts, id, strlen(id)) : NULL;
    if (a)
        a->gone = 1;
    /* held here: the inner DISCONNECT forgets it in Redis (p_trigger) */
    if (!id || strlen(id) != 31 || bx_engine_memory_has(r->inner, id))
        return r->inner->ops->destroy_client(r->inner, id, cb, ud);
    if (r->first_connect)
        return defer_early(r, E_DESTROY, id, NULL, 0, (void (*)(void))cb, ud);
    return forget(r, id, 1, cb, ud);
}

static void r_ping(bx_engine_t *e, const char *id)
{
    redis_t *r = (redis_t *)e;
    if (r->closing || !id || strlen(id) != 31)
        return;
    r->inner->ops->ping(r->inner, id);
    bx_dict_set(&r->pinged, id, 31, (void *)1);     /* the next tick's ZADD */
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

/* (Un)subscribes a client held here in the inner engine; a subscribe
 * answers once Redis confirmed the subscription it needs. */
static int local_subscribe(redis_t *r, const char *id, const char *ch, int unsub,
                           size_t limit, bx_engine_bool_cb cb, void *ud)
{
    size_t len = strlen(ch);
    sub_t *s;
    int rc;

    if (unsub)
        return r->inner->ops->unsubscribe(r->inner, id, ch, cb, ud);
    s = bx_malloc(sizeof(*s) + len + 1);
    s->r = r;
    s->cb = cb;
    s->ud = ud;
    memcpy(s->channel, ch, len + 1);
    rc = r->inner->ops->subscribe(r->inner, id, ch, limit, on_inner_subscribed, s);
    if (rc != 0)
        free(s);
    return rc;
}

/* Held here: the inner engine and the SET; being taken over: after the
 * handoff; held elsewhere (or nowhere): the SET, and the holder is told. */
static int any_subscribe(redis_t *r, const char *id, const char *ch, int unsub, size_t limit,
                         bx_engine_bool_cb cb, void *ud)
{
    adopt_t *a;

    if (r->closing)
        return BX_ECANCELED;
    if (!id || strlen(id) != 31)
        return local_subscribe(r, id, ch, unsub, limit, cb, ud);
    if ((a = bx_dict_get(&r->adopts, id, 31)) != NULL) {
        pop_t *p = pop_new(unsub, ch, limit, cb, ud);
        *a->pops_tail = p;
        a->pops_tail = &p->next;
        return 0;
    }
    if (bx_engine_memory_has(r->inner, id)) {
        /* held here, maybe not for long: another process may be reading
         * the SET to take the client over. The SET is changed first, with
         * a look at the holder in the same MULTI: still this process, the
         * claim (if any) comes after and reads the change; another one,
         * it has the client and is asked, like any holder. A subscribe
         * past the client's limit is refused here without a word to
         * Redis; with Redis away, the client is registered again, with
         * its channels, when it is back */
        if ((!unsub && bx_engine_memory_over(r->inner, id, ch, limit)) || !up0(r))
            return local_subscribe(r, id, ch, unsub, limit, cb, ud);
        int rc = remote_subscribe(r, id, ch, unsub, limit, cb, ud);
        return rc == BX_EUNAVAILABLE ? local_subscribe(r, id, ch, unsub, limit, cb, ud) : rc;
    }
    if (r->first_connect)
        return defer_early(r, unsub ? E_UNSUBSCRIBE : E_SUBSCRIBE, id, ch, limit,
                           (void (*)(void))cb, ud);
    return remote_subscribe(r, id, ch, unsub, limit, cb, ud);
}

/* After a held subscribe made in the inner engine at once: the SET's
 * check. A claim that read the SET before the SADD has the client now:
 * it is told, like a holder elsewhere (its acknowledgement is not waited
 * for: the subscribe was answered here). */
static void on_now_checked(void *ud, int status, redisReply *rep)
{
    rop_t *o = ud;
    redis_t *r = o->r;

    unbusy(r);
    if (!r->closing && exec_ok(status, rep, 2) && rep->element[1]->type == REDIS_REPLY_STRING
        && strcmp(rep->element[1]->str, r->node) != 0) {
        snprintf(o->token, sizeof(o->token), "%s:%llu", r->node, (unsigned long long)++r->seq);
        ctl_send(r, "S %s %s %s %s", r->node, o->id, o->token, o->ch);
    }
    free(o);
}

/* A subscribe of a client held here, made in the inner engine in this
 * very turn (a history replay's cut relies on it), the SET checked after
 * (on_now_checked). */
static int now_subscribe(redis_t *r, const char *id, const char *ch, size_t limit,
                         bx_engine_bool_cb cb, void *ud)
{
    size_t len = strlen(ch);
    int rc = here_subscribe(r, id, ch, 0, limit, cb, ud);
    if (rc != 0 || len > 300 || !up0(r) || bx_engine_memory_over(r->inner, id, ch, limit))
        return rc;
    rop_t *o = bx_calloc(1, sizeof(*o) + len + 1);
    o->r = r;
    memcpy(o->id, id, 32);
    memcpy(o->ch, ch, len + 1);
    bx_buf_t k = BX_BUF_INIT, h = BX_BUF_INIT;
    ckey(r, &k, id, "s");
    ckey(r, &h, id, "h");
    const char *multi[1] = { "MULTI" }, *exec[1] = { "EXEC" };
    if (cmd0(r, NULL, NULL, 1, multi, NULL) != 0 || cmd0s(r, NULL, NULL, "SADD", k.data, ch) != 0
        || cmd0s(r, NULL, NULL, "GET", h.data, NULL) != 0
        || cmd0(r, on_now_checked, o, 1, exec, NULL) != 0)
        free(o);
    bx_buf_free(&k);
    bx_buf_free(&h);
    return 0;
}

static int r_subscribe(bx_engine_t *e, const char *id, const char *ch, size_t limit,
                       bx_engine_bool_cb cb, void *ud)
{
    return any_subscribe((redis_t *)e, id, ch, 0, limit, cb, ud);
}

static int r_unsubscribe(bx_engine_t *e, const char *id, const char *ch, bx_engine_bool_cb cb,
                         void *ud)
{
    return any_subscribe((redis_t *)e, id, ch, 1, 0, cb, ud);
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

static void on_published(void *ud, int status, redisReply *rep)
{
    pub_t *p = ud;
    redis_t *r = p->r;
    (void)rep;
    r->busy--;
    busy_update(r);
    /* Redis has it: every process subscribed to it gets it (this one
     * too); only a close changes the answer */
    pub_step(p, status == BX_REDIS_ECANCELED ? BX_ECANCELED : 0);
}

/* Whether this process has a confirmed Redis subscription that `ch`'s
 * publishes come back through: its exact one, or a pattern of one of its
 * prefixes ("/a/b" -> "/a/b", "/a/*", "/*"). */
static int has_local_target(redis_t *r, const char *ch, size_t len)
{
    bx_buf_t name = BX_BUF_INIT;
    int found = 0;

    for (size_t i = len; i > 0 && !found; i--) {
        if (i < len && ch[i - 1] != '/')
            continue;
        bx_buf_reset(&name);
        bx_buf_append(&name, ch, i);
        if (i < len)
            bx_buf_append(&name, "*", 1);
        bx_buf_append(&name, "", 1);
        target_t *t = target_get(r, name.data);
        found = t && t->pending == 0;
    }
    bx_buf_free(&name);
    return found;
}

/* Sends the PUBLISH; BX_EUNAVAILABLE when Redis is down (nothing done, no
 * callback). */
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
    const struct rhist *hp = r->nhist ? hist_pattern(r, json_string_value(jch),
                                                     json_string_length(jch)) : NULL;
    if (!bx_redis_up(sh->cmd))
        return BX_EUNAVAILABLE;
    bx_buf_puts(&key, r->ns);
    bx_buf_puts(&key, "/m");
    bx_buf_append(&key, json_string_value(jch), json_string_length(jch));
    bx_buf_printf(&payload, "%s%016llx ", r->node, (unsigned long long)++r->seq);
    if (!hp) {
        json_t *copy = json_copy((json_t *)message);
        json_object_del(copy, "clientId");
        bx_json_dump(copy, &payload);
        json_decref(copy);
    }
    p = bx_calloc(1, sizeof(*p));
    p->r = r;
    p->cb = cb;
    p->ud = ud;
    p->waiting = 1;
    snprintf(p->key, sizeof(p->key), "%016llx", (unsigned long long)r->seq);
    argv[0] = "PUBLISH";
    lens[0] = 7;
    argv[1] = key.data;
    lens[1] = key.len;
    argv[2] = payload.data;
    lens[2] = payload.len;
    rc = hp ? hist_publish(r, sh, hp, message, &key, &payload, p)
            : bx_redis_command(sh->cmd, on_published, p, 3, argv, lens);
    bx_buf_free(&key);
    bx_buf_free(&payload);
    if (rc != 0) {
        free(p);
        return BX_EUNAVAILABLE;
    }
    r->busy++;
    /* delivered here too when it comes back from Redis, not now: every
     * process applies every publish in the one order of the stream, which
     * a handoff's cut relies on. When clients here need it, the answer
     * waits for that (as with the memory engine, a publish answered is
     * queued for them), at most HANDOFF_MS */
    if (bx_redis_up(sh->sub) && has_local_target(r, json_string_value(jch),
                                                 json_string_length(jch))) {
        p->waiting++;
        p->echo = 1;
        p->deadline = uv_now(r->base.loop) + HANDOFF_MS;
        bx_dict_set(&r->echoes, p->key, 16, p);
        r->busy++;
    }
    busy_update(r);
    if (r->base.proxy.trigger)
        r->base.proxy.trigger(r->base.proxy.ud, BX_EV_PUBLISH, bx_json_str(message, "clientId"),
                              json_string_value(jch), json_object_get(message, "data"));
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
        x->op = E_PUBLISH;
        x->msg = json_deep_copy(message);
        x->cb = cb;
        x->ud = ud;
        *r->early_tail = x;
        r->early_tail = &x->next;
        return 0;
    }
    return do_publish(r, message, cb, ud);
}

/* Keeps a call for when the first connection's outcome is known. */
static int defer_early(redis_t *r, int op, const char *id, const char *ch, size_t limit,
                       void (*fn)(void), void *ud)
{
    early_t *x = bx_calloc(1, sizeof(*x));
    x->op = op;
    x->fn = fn;
    x->ud = ud;
    snprintf(x->id, sizeof(x->id), "%s", id ? id : "");
    x->ch = ch ? bx_strdup(ch) : NULL;
    x->limit = limit;
    *r->early_tail = x;
    r->early_tail = &x->next;
    return 0;
}

static int r_create_client(bx_engine_t *e, bx_engine_id_cb cb, void *ud);
static int r_client_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud);
static int r_destroy_client(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud);
static int any_subscribe(redis_t *r, const char *id, const char *ch, int unsub, size_t limit,
                         bx_engine_bool_cb cb, void *ud);
static int r_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud);

/* Makes a kept call now, or answers it with `status`. */
static void run_early(redis_t *r, early_t *x, int status)
{
    bx_engine_t *e = &r->base;
    int rc = status;

    switch (x->op) {
    case E_PUBLISH:
        if (!rc)
            rc = do_publish(r, x->msg, x->cb, x->ud);
        if (rc != 0 && x->cb)
            x->cb(x->ud, rc);
        break;
    case E_CREATE:
        if (!rc)
            rc = r_create_client(e, (bx_engine_id_cb)x->fn, x->ud);
        if (rc != 0)
            ((bx_engine_id_cb)x->fn)(x->ud, rc, NULL);
        break;
    case E_EXISTS:
        if (!rc)
            rc = r_client_exists(e, x->id, (bx_engine_bool_cb)x->fn, x->ud);
        if (rc != 0)
            ((bx_engine_bool_cb)x->fn)(x->ud, rc, 0);
        break;
    case E_DESTROY:
        if (!rc)
            rc = r_destroy_client(e, x->id, (bx_engine_done_cb)x->fn, x->ud);
        if (rc != 0 && x->fn)
            ((bx_engine_done_cb)x->fn)(x->ud, rc);
        break;
    case E_SUBSCRIBE:
    case E_UNSUBSCRIBE:
        if (!rc)
            rc = any_subscribe(r, x->id, x->ch, x->op == E_UNSUBSCRIBE, x->limit,
                               (bx_engine_bool_cb)x->fn, x->ud);
        if (rc != 0 && x->fn)
            ((bx_engine_bool_cb)x->fn)(x->ud, rc, 0);
        break;
    case E_TAKE:
        if (!rc)
            rc = r_take(e, x->id, (bx_engine_take_cb)x->fn, x->ud);
        if (rc != 0) {
            bx_chunkv_t none = BX_CHUNKV_INIT;
            ((bx_engine_take_cb)x->fn)(x->ud, rc, x->id, &none);
        }
        break;
    }
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
        run_early(r, x, status);
        if (x->msg)
            json_decref(x->msg);
        free(x->ch);
        free(x);
        x = next;
    }
}

/* A connection here for a client held elsewhere takes the client over. */
static int r_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    adopt_t *a;

    if (r->closing)
        return BX_ECANCELED;
    if (!id || strlen(id) != 31 || bx_engine_memory_has(r->inner, id))
        return r->inner->ops->take(r->inner, id, cb, ud);
    if ((a = bx_dict_get(&r->adopts, id, 31)) != NULL) {
        take_w_t *t = bx_calloc(1, sizeof(*t));
        t->cb = cb;
        t->ud = ud;
        *a->takes_tail = t;
        a->takes_tail = &t->next;
        return 0;
    }
    if (r->first_connect)
        return defer_early(r, E_TAKE, id, NULL, 0, (void (*)(void))cb, ud);
    if (!up0(r))
        return r->inner->ops->take(r->inner, id, cb, ud);   /* unknown here */
    return adopt_start(r, id, cb, ud);
}

typedef struct {
    redis_t *r;
    bx_engine_done_cb cb;
    void *ud;
} requeued_t;

static void on_requeued(void *ud, int status, redisReply *rep)
{
    requeued_t *q = ud;
    redis_t *r = q->r;

    (void)rep;
    unbusy(r);
    if (q->cb)
        q->cb(q->ud, r->closing ? BX_ECANCELED : status == 0 ? 0 : BX_EUNAVAILABLE);
    free(q);
}

static int r_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs, bx_engine_done_cb cb,
                     void *ud)
{
    redis_t *r = (redis_t *)e;
    if (r->closing) {
        bx_chunkv_clear(msgs);
        return BX_ECANCELED;
    }
    if (msgs->n && id && strlen(id) == 31 && !bx_engine_memory_has(r->inner, id) && up0(r)) {
        /* handed over meanwhile: to the list the next holder takes, in
         * front (LPUSH of the newest first); answered once Redis has them */
        bx_buf_t q = BX_BUF_INIT;
        ckey(r, &q, id, "q");
        const char **argv = bx_malloc((msgs->n + 2) * sizeof(*argv));
        size_t *lens = bx_malloc((msgs->n + 2) * sizeof(*lens));
        argv[0] = "LPUSH";
        lens[0] = 5;
        argv[1] = q.data;
        lens[1] = q.len;
        for (size_t i = 0; i < msgs->n; i++) {
            argv[i + 2] = msgs->v[msgs->n - 1 - i]->data;
            lens[i + 2] = msgs->v[msgs->n - 1 - i]->len;
        }
        requeued_t *rq = bx_calloc(1, sizeof(*rq));
        rq->r = r;
        rq->cb = cb;
        rq->ud = ud;
        int rc = cmd0(r, on_requeued, rq, (int)msgs->n + 2, argv, lens);
        free(argv);
        free(lens);
        bx_buf_free(&q);
        bx_chunkv_clear(msgs);
        if (rc != 0) {
            free(rq);
            return BX_EUNAVAILABLE;
        }
        return 0;
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
    r->open = 2 * r->nshards + 3;
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
    /* the replies are in (canceled): the publishes, handoffs and remote
     * (un)subscribes that waited for them or for a peer are answered
     * "canceled" */
    echo_release(r, BX_ECANCELED);
    bx_dict_free(&r->echoes);
    hist_close(r);
    {
        bx_dict_iter_t it = BX_DICT_ITER_INIT;
        bx_dict_entry_t *en;
        while ((en = bx_dict_next(&r->adopts, &it)) != NULL) {
            adopt_t *a = en->value;
            for (take_w_t *t = a->takes, *next; t; t = next) {
                bx_chunkv_t none = BX_CHUNKV_INIT;
                next = t->next;
                t->cb(t->ud, BX_ECANCELED, a->id, &none);
                free(t);
            }
            for (pop_t *p = a->pops, *next; p; p = next) {
                next = p->next;
                if (p->cb)
                    p->cb(p->ud, BX_ECANCELED, 0);
                free(p);
            }
            adopt_free(a);
        }
        bx_dict_free(&r->adopts);
        it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
        while ((en = bx_dict_next(&r->rops, &it)) != NULL) {
            rop_t *o = en->value;
            if (o->cb)
                o->cb(o->ud, BX_ECANCELED, 0);
            free(o);
        }
        bx_dict_free(&r->rops);
        bx_dict_free(&r->pinged);
    }
    r->inner->ops->close(r->inner, part_closed, r);
    uv_close((uv_handle_t *)&r->keep, keep_closed);
    uv_close((uv_handle_t *)&r->tick, keep_closed);
}

/* ---- Channel history, shared in Redis ----
 *
 * For the channels inside a configured pattern (docs/delivery.md), on the
 * channel's shard (history needs one shard: see r_history):
 *
 *   NS/h<channel>    HASH top (the last offset), epoch; expires ttl + keep
 *                    after the channel's last publish
 *   NS/hm<channel>   LIST "<offset> <expiry ms> <message>", the last `size`;
 *                    expires ttl after the last publish
 *
 * A publish is one script that numbers the message (HINCRBY), writes
 * ext.history into its text (the engine sends the text cut where the
 * position goes), keeps it and PUBLISHes it: the offsets are in the order
 * of the stream every process applies. The epoch is made by the first
 * script that finds no hash: a flushed Redis gives a new one.
 *
 * A subscribe naming positions, for a client held here: the Redis
 * subscription is taken first; once Redis confirmed it, one script reads
 * what each named channel missed and PUBLISHes it as a marker ("<node>
 * <seq> R<json>") on the subscription's own stream. What was published
 * before the script is in the marker, what comes after arrives after it on
 * the same connection; when the marker arrives, the replay goes in front
 * of the client's queue and its subscription is applied, in that turn. A
 * client held elsewhere (or before the first connection) is subscribed
 * first and replayed after, without that guarantee.
 */

/* KEYS: hash, list. ARGV: stream, payload prefix, text before the
 * position, text after it, a new epoch, size, ttl ms, keep ms. */
static const char HIST_PUBLISH[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ep = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not ep then ep = ARGV[5]; redis.call('HSET', KEYS[1], 'epoch', ep) end\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'top', 1)\n"
    "local msg = ARGV[3] .. '{\"offset\":' .. n .. ',\"epoch\":\"' .. ep .. '\"}' .. ARGV[4]\n"
    "redis.call('RPUSH', KEYS[2], n .. ' ' .. (now + tonumber(ARGV[7])) .. ' ' .. msg)\n"
    "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[7])\n"
    "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]) + tonumber(ARGV[8]))\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. msg)\n"
    "return n\n";

/* KEYS: hash, list per channel. ARGV: the stream for the marker ("":
 * none), its prefix, a new epoch, then per channel: the offset the client
 * saw (-1: only the position), its epoch, ttl + keep ms. Returns (and
 * publishes) [[status, top, epoch, message...], ...]. */
static const char HIST_REPLAY[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local out = {}\n"
    "for i = 1, #KEYS / 2 do\n"
    "  local h, l = KEYS[2 * i - 1], KEYS[2 * i]\n"
    "  local from, want = tonumber(ARGV[3 * i + 1]), ARGV[3 * i + 2]\n"
    "  local ep = redis.call('HGET', h, 'epoch')\n"
    "  if not ep then\n"
    "    ep = ARGV[3]\n"
    "    redis.call('HSET', h, 'epoch', ep)\n"
    "    redis.call('PEXPIRE', h, ARGV[3 * i + 3])\n"
    "  end\n"
    "  local top = tonumber(redis.call('HGET', h, 'top') or '0')\n"
    "  local r = { 'ok', top, ep }\n"
    "  if from < 0 then r[1] = 'pos'\n"
    "  elseif want ~= ep then r[1] = 'epoch changed'\n"
    "  elseif from > top then r[1] = 'unknown offset'\n"
    "  else\n"
    "    local first, msgs = top + 1, {}\n"
    "    for _, it in ipairs(redis.call('LRANGE', l, 0, -1)) do\n"
    "      local a = string.find(it, ' ', 1, true)\n"
    "      local b = string.find(it, ' ', a + 1, true)\n"
    "      local off = tonumber(string.sub(it, 1, a - 1))\n"
    "      if tonumber(string.sub(it, a + 1, b - 1)) > now then\n"
    "        if off < first then first = off end\n"
    "        if off > from then msgs[#msgs + 1] = string.sub(it, b + 1) end\n"
    "      end\n"
    "    end\n"
    "    if from + 1 < first then r[1] = 'too old'\n"
    "    else for _, m in ipairs(msgs) do r[#r + 1] = m end end\n"
    "  end\n"
    "  out[i] = r\n"
    "end\n"
    "local text = cjson.encode(out)\n"
    "if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2] .. text) end\n"
    "return text\n";

typedef struct rhist {
    char *pattern;
    size_t len, size;
    uint64_t ttl_ms, keep_ms;
} rhist_t;

/* A subscribe with recovery under way. */
typedef struct {
    redis_t *r;
    bx_engine_bool_cb cb;
    void *ud;
    json_t *answer;             /* borrowed: the reply's ext.history */
    json_t *ask;                /* [[channel, offset, epoch], ...] */
    size_t limit;               /* the client's subscriptions at most (0: none) */
    int refs;                   /* the waits that hold it */
    int here;                   /* the marker decides */
    int waiting;                /* in r->hsubs, for its marker */
    int applied, answered, reffed, yes;
    char *text;                 /* the script's reply, before the marker */
    size_t tlen;
    char key[17];
    char id[32];
    char ch[];
} hsub_t;

static const rhist_t *hist_pattern(redis_t *r, const char *ch, size_t len)
{
    for (size_t i = 0; i < r->nhist; i++)
        if (bx_channel_matches(r->hist[i].pattern, r->hist[i].len, ch, len))
            return &r->hist[i];
    return NULL;
}

/* engine.h history: one shard only (a subscribe's replay and its
 * channels' streams must be on one connection). */
static int r_history(bx_engine_t *e, const char *pattern, size_t size, double ttl,
                     double keep)
{
    redis_t *r = (redis_t *)e;
    if (r->nshards != 1)
        return -1;
    r->hist = bx_realloc(r->hist, (r->nhist + 1) * sizeof(*r->hist));
    r->hist[r->nhist].pattern = bx_strdup(pattern);
    r->hist[r->nhist].len = strlen(pattern);
    r->hist[r->nhist].size = size;
    r->hist[r->nhist].ttl_ms = (uint64_t)(ttl * 1000.0 + 0.5);
    r->hist[r->nhist].keep_ms = (uint64_t)(keep * 1000.0 + 0.5);
    r->nhist++;
    return 0;
}

static void hist_keys(redis_t *r, const char *ch, size_t len, bx_buf_t *hash, bx_buf_t *list)
{
    bx_buf_puts(hash, r->ns);
    bx_buf_puts(hash, "/h");
    bx_buf_append(hash, ch, len);
    bx_buf_puts(list, r->ns);
    bx_buf_puts(list, "/hm");
    bx_buf_append(list, ch, len);
}

/* Sends `message` through HIST_PUBLISH instead of a PUBLISH on `stream`
 * (payloads start with `prefix`); as bx_redis_command. */
static int hist_publish(redis_t *r, shard_t *sh, const rhist_t *hp, const json_t *message,
                        const bx_buf_t *stream, const bx_buf_t *prefix, pub_t *p)
{
    static const char mark[] = "\"\\u0001\"}}";     /* where the position goes */
    const char *ch = bx_json_str(message, "channel");
    json_t *copy = json_copy((json_t *)message);
    json_t *ext = json_object_get(copy, "ext");
    bx_buf_t text = BX_BUF_INIT, hash = BX_BUF_INIT, list = BX_BUF_INIT;
    char epoch[32], nums[3][24];
    int rc;

    /* ext.history last in ext, ext last in the message: the text ends
     * with the mark, which nothing else can end it with */
    ext = json_is_object(ext) ? json_copy(ext) : json_object();
    json_object_del(copy, "clientId");
    json_object_del(copy, "ext");
    json_object_del(ext, "history");
    json_object_set_new(ext, "history", json_string("\001"));
    json_object_set_new(copy, "ext", ext);
    bx_json_dump(copy, &text);
    json_decref(copy);
    if (text.len < sizeof(mark) - 1 ||
        memcmp(text.data + text.len - (sizeof(mark) - 1), mark, sizeof(mark) - 1) != 0) {
        bx_buf_free(&text);
        return -1;
    }
    bx_engine_random_id(epoch);
    epoch[12] = '\0';
    snprintf(nums[0], sizeof(nums[0]), "%zu", hp->size);
    snprintf(nums[1], sizeof(nums[1]), "%llu", (unsigned long long)hp->ttl_ms);
    snprintf(nums[2], sizeof(nums[2]), "%llu", (unsigned long long)hp->keep_ms);
    hist_keys(r, ch, strlen(ch), &hash, &list);
    const char *argv[] = { "EVAL", HIST_PUBLISH, "2", hash.data, list.data, stream->data,
                           prefix->data, text.data, "}}", epoch, nums[0], nums[1], nums[2] };
    /* the text before the position ends with "history": */
    size_t lens[] = { 4, sizeof(HIST_PUBLISH) - 1, 1, hash.len, list.len, stream->len,
                      prefix->len, text.len - (sizeof(mark) - 1), 2, 12,
                      strlen(nums[0]), strlen(nums[1]), strlen(nums[2]) };
    rc = bx_redis_command(sh->cmd, on_published, p, 13, argv, lens);
    bx_buf_free(&text);
    bx_buf_free(&hash);
    bx_buf_free(&list);
    return rc;
}

static void hs_unref(hsub_t *hs)
{
    if (--hs->refs > 0)
        return;
    json_decref(hs->ask);
    free(hs->text);
    free(hs);
}

/* The subscribe's answer, once; the Redis subscription taken for the
 * replay is let go (the client's own holds it now, if it was made). */
static void hs_answer(hsub_t *hs, int status, int yes)
{
    redis_t *r = hs->r;
    if (hs->answered)
        return;
    hs->answered = 1;
    if (hs->reffed && !r->closing)
        target_ref(r, hs->ch, -1);
    hs->reffed = 0;
    if (hs->cb)
        hs->cb(hs->ud, status, yes);
}

static void on_hist_subscribed(void *ud, int status, int yes)
{
    hsub_t *hs = ud;
    hs_answer(hs, status, hs->here ? yes : hs->yes);
    hs_unref(hs);
}

/* The script's result (`text`, [[status, top, epoch, message...], ...]):
 * the answer, the replay in front of the queue, then the subscription
 * (held here: in this same turn, before the next message of the stream). */
static void hist_apply(hsub_t *hs, const char *text, size_t len)
{
    redis_t *r = hs->r;
    json_t *res = bx_json_parse(text, len);
    bx_chunkv_t out = BX_CHUNKV_INIT;

    hs->applied = 1;
    if (!json_is_array(res) || json_array_size(res) != json_array_size(hs->ask)) {
        json_decref(res);
        hs_answer(hs, BX_EUNAVAILABLE, 0);
        return;
    }
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *rec = json_array_get(res, i);
        const char *status = json_string_value(json_array_get(rec, 0));
        json_t *pos = json_object();
        json_object_set(pos, "offset", json_array_get(rec, 1));
        json_object_set(pos, "epoch", json_array_get(rec, 2));
        if (status && strcmp(status, "ok") == 0) {
            json_object_set_new(pos, "recovered", json_true());
            for (size_t j = 3; j < json_array_size(rec); j++) {
                json_t *m = json_array_get(rec, j);
                if (json_is_string(m))
                    bx_chunkv_push_new(&out, bx_chunk_new(json_string_value(m),
                                                          json_string_length(m)));
            }
        } else if (status && strcmp(status, "pos") != 0) {
            json_object_set_new(pos, "recovered", json_false());
            json_object_set_new(pos, "reason", json_string(status));
        }
        json_object_set_new(hs->answer,
                            json_string_value(json_array_get(json_array_get(hs->ask, i), 0)),
                            pos);
    }
    json_decref(res);
    if (out.n)
        r_requeue(&r->base, hs->id, &out, NULL, NULL);
    bx_chunkv_free(&out);
    if (!hs->here) {
        hs_answer(hs, 0, hs->yes);
        return;
    }
    hs->refs++;
    int now = bx_engine_memory_has(r->inner, hs->id) && !bx_dict_get(&r->adopts, hs->id, 31);
    int rc = now ? now_subscribe(r, hs->id, hs->ch, hs->limit, on_hist_subscribed, hs)
                 : any_subscribe(r, hs->id, hs->ch, 0, hs->limit, on_hist_subscribed, hs);
    if (rc != 0) {
        hs->refs--;
        hs_answer(hs, rc, 0);
    }
}

static void on_hist_reply(void *ud, int status, redisReply *rep)
{
    hsub_t *hs = ud;
    redis_t *r = hs->r;

    unbusy(r);
    if (status != 0 || !rep || rep->type != REDIS_REPLY_STRING || r->closing) {
        if (hs->waiting) {
            hs->waiting = 0;
            bx_dict_del(&r->hsubs, hs->key, 16);
            hs->refs--;
        }
        hs_answer(hs, r->closing || status == BX_REDIS_ECANCELED ? BX_ECANCELED
                                                                 : BX_EUNAVAILABLE, 0);
    } else if (!hs->waiting && !hs->applied) {
        hist_apply(hs, rep->str, rep->len);
    } else if (hs->waiting) {
        /* the marker is the one that counts; this, if it never comes */
        hs->text = bx_malloc(rep->len + 1);
        memcpy(hs->text, rep->str, rep->len);
        hs->tlen = rep->len;
    }
    hs_unref(hs);
}

/* Sends HIST_REPLAY; with `marker`, its result comes back on the stream
 * of the subscription too. */
static int hist_ask(hsub_t *hs)
{
    redis_t *r = hs->r;
    shard_t *sh = &r->shards[0];
    size_t n = json_array_size(hs->ask);
    size_t argc = 6 + 5 * n;
    const char **argv = bx_malloc(argc * sizeof(*argv));
    size_t *lens = bx_malloc(argc * sizeof(*lens));
    bx_buf_t *keys = bx_calloc(2 * n, sizeof(*keys));
    char (*nums)[48] = bx_malloc(n * sizeof(*nums));
    bx_buf_t stream = BX_BUF_INIT, prefix = BX_BUF_INIT;
    char epoch[32], count[24];
    int marker = hs->here && bx_redis_up(sh->sub);
    int rc;

    snprintf(hs->key, sizeof(hs->key), "%016llx", (unsigned long long)++r->seq);
    if (marker) {
        bx_buf_puts(&stream, r->ns);
        bx_buf_puts(&stream, "/m");
        bx_buf_puts(&stream, hs->ch);   /* a pattern's own name matches it */
    }
    bx_buf_printf(&prefix, "%s%s R", r->node, hs->key);
    bx_engine_random_id(epoch);
    snprintf(count, sizeof(count), "%zu", 2 * n);
    argv[0] = "EVAL";
    argv[1] = HIST_REPLAY;
    argv[2] = count;
    argv[3 + 2 * n] = stream.len ? stream.data : "";
    argv[4 + 2 * n] = prefix.data;
    argv[5 + 2 * n] = epoch;
    lens[0] = 4;
    lens[1] = sizeof(HIST_REPLAY) - 1;
    lens[2] = strlen(count);
    lens[3 + 2 * n] = stream.len;
    lens[4 + 2 * n] = prefix.len;
    lens[5 + 2 * n] = 12;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(hs->ask, i);
        const char *ch = json_string_value(json_array_get(a, 0));
        const rhist_t *hp = hist_pattern(r, ch, strlen(ch));
        hist_keys(r, ch, strlen(ch), &keys[2 * i], &keys[2 * i + 1]);
        argv[3 + 2 * i] = keys[2 * i].data;
        lens[3 + 2 * i] = keys[2 * i].len;
        argv[4 + 2 * i] = keys[2 * i + 1].data;
        lens[4 + 2 * i] = keys[2 * i + 1].len;
        snprintf(nums[i], 24, "%lld", (long long)json_integer_value(json_array_get(a, 1)));
        snprintf(nums[i] + 24, 24, "%llu", (unsigned long long)(hp->ttl_ms + hp->keep_ms));
        argv[6 + 2 * n + 3 * i] = nums[i];
        lens[6 + 2 * n + 3 * i] = strlen(nums[i]);
        argv[7 + 2 * n + 3 * i] = json_string_value(json_array_get(a, 2));
        lens[7 + 2 * n + 3 * i] = json_string_length(json_array_get(a, 2));
        argv[8 + 2 * n + 3 * i] = nums[i] + 24;
        lens[8 + 2 * n + 3 * i] = strlen(nums[i] + 24);
    }
    rc = bx_redis_command(sh->cmd, on_hist_reply, hs, (int)(6 + 5 * n), argv, lens);
    for (size_t i = 0; i < 2 * n; i++)
        bx_buf_free(&keys[i]);
    free(keys);
    free(nums);
    free(argv);
    free(lens);
    bx_buf_free(&stream);
    bx_buf_free(&prefix);
    if (rc != 0)
        return BX_EUNAVAILABLE;
    r->busy++;
    busy_update(r);
    hs->refs++;
    if (marker) {
        hs->waiting = 1;
        hs->refs++;
        bx_dict_set(&r->hsubs, hs->key, 16, hs);
    }
    return 0;
}

/* The Redis subscription is confirmed (or its connection is down: then
 * no marker will come, and the reply decides). */
static void on_hist_target(void *ud, int status, int yes)
{
    hsub_t *hs = ud;
    int rc = status;
    (void)yes;
    if (rc == 0)
        rc = hist_ask(hs);
    if (rc != 0)
        hs_answer(hs, rc, 0);
    hs_unref(hs);
}

/* Held elsewhere: subscribed; now the replay. */
static void on_hist_fb_subscribed(void *ud, int status, int yes)
{
    hsub_t *hs = ud;
    int rc = status;
    hs->yes = yes;
    if (rc == 0)
        rc = hist_ask(hs);
    if (rc != 0)
        hs_answer(hs, rc, 0);
    hs_unref(hs);
}

/* A marker from the stream: "<node><seq> R<json>". */
static void hist_marker(redis_t *r, const char *text, size_t len)
{
    hsub_t *hs;
    if (r->closing || memcmp(text, r->node, 31) != 0 ||
        (hs = bx_dict_del(&r->hsubs, text + 31, 16)) == NULL)
        return;                 /* another process's */
    hs->waiting = 0;
    hist_apply(hs, text + 49, len - 49);
    hs_unref(hs);
}

/* A subscriber connection went down: the markers it owed will not come;
 * each replay goes by the script's reply. */
static void hist_release(redis_t *r, int status)
{
    bx_dict_iter_t it;
    bx_dict_entry_t *e;
    hsub_t *due[64];
    int n;
    do {
        n = 0;
        it = (bx_dict_iter_t)BX_DICT_ITER_INIT;
        while (n < 64 && (e = bx_dict_next(&r->hsubs, &it)) != NULL)
            due[n++] = e->value;
        for (int i = 0; i < n; i++) {
            hsub_t *hs = due[i];
            bx_dict_del(&r->hsubs, hs->key, 16);
            hs->waiting = 0;
            if (status)
                hs_answer(hs, status, 0);
            else if (hs->text)
                hist_apply(hs, hs->text, hs->tlen);
            hs_unref(hs);
        }
    } while (n == 64);
}

/* engine.h subscribe_history. */
static int r_subscribe_history(bx_engine_t *e, const char *id, const char *ch,
                               size_t limit, const json_t *want, json_t *answer, bx_engine_bool_cb cb,
                               void *ud)
{
    redis_t *r = (redis_t *)e;
    size_t len = strlen(ch);
    json_t *ask = json_array();
    const char *key;
    json_t *pos;
    hsub_t *hs;
    int rc;

    if (r->closing) {
        json_decref(ask);
        return BX_ECANCELED;
    }
    json_object_foreach((json_t *)want, key, pos) {
        size_t klen = strlen(key);
        if (!bx_channel_matches(ch, len, key, klen))
            continue;
        if (!hist_pattern(r, key, klen)) {
            json_t *no = json_pack("{s:i,s:s,s:b,s:s}", "offset", 0, "epoch", "",
                                   "recovered", 0, "reason", "no history");
            json_object_set_new(answer, key, no);
            continue;
        }
        json_array_append_new(ask, json_pack("[s,O,O]", key, json_object_get(pos, "offset"),
                                             json_object_get(pos, "epoch")));
    }
    if (!json_object_get(want, ch) && !(bx_channel_parse(ch, len) & BX_CHANNEL_PATTERN) &&
        hist_pattern(r, ch, len))
        json_array_append_new(ask, json_pack("[s,i,s]", ch, -1, ""));
    if (json_array_size(ask) == 0) {
        json_decref(ask);
        return any_subscribe(r, id, ch, 0, limit, cb, ud);
    }
    hs = bx_calloc(1, sizeof(*hs) + len + 1);
    hs->r = r;
    hs->cb = cb;
    hs->ud = ud;
    hs->answer = answer;
    hs->ask = ask;
    hs->limit = limit;
    memcpy(hs->ch, ch, len + 1);
    snprintf(hs->id, sizeof(hs->id), "%s", id ? id : "");
    hs->here = id && strlen(id) == 31 && !r->first_connect &&
               !bx_dict_get(&r->adopts, id, 31) && bx_engine_memory_has(r->inner, id);
    hs->refs = 1;
    if (!hs->here) {
        rc = any_subscribe(r, id, ch, 0, limit, on_hist_fb_subscribed, hs);
    } else {
        target_t *t;
        target_ref(r, ch, 1);
        hs->reffed = 1;
        t = target_get(r, ch);
        int wait = t->pending > 0 || r->shards[0].sub_first;
        if (wait) {
            waiter_t *w = bx_calloc(1, sizeof(*w));
            w->cb = on_hist_target;
            w->ud = hs;
            w->next = t->waiters;
            t->waiters = w;
            r->busy++;
            busy_update(r);
            rc = 0;
        } else {
            rc = hist_ask(hs);
            if (rc == 0)
                hs_unref(hs);   /* the call's own hold */
        }
        if (rc != 0) {
            target_ref(r, ch, -1);
            hs->reffed = 0;
        }
    }
    if (rc != 0) {
        hs->answered = 1;
        hs_unref(hs);
    }
    return rc;
}

/* The engine closes: the patterns go, and replays waiting for a marker
 * are answered "canceled". */
static void hist_close(redis_t *r)
{
    hist_release(r, BX_ECANCELED);
    bx_dict_free(&r->hsubs);
    for (size_t i = 0; i < r->nhist; i++)
        free(r->hist[i].pattern);
    free(r->hist);
}

/* ---- The shared store: commands of the layers above (engine.h) ---- */

typedef struct {
    redis_t *r;
    bx_engine_store_cb cb;
    void *ud;
} store_t;

json_t *bx_engine_redis_reply_json(const struct redisReply *rep)
{
    switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return json_stringn_nocheck(rep->str, rep->len);
    case REDIS_REPLY_INTEGER:
        return json_integer(rep->integer);
    case REDIS_REPLY_ARRAY: {
        json_t *a = json_array();
        for (size_t i = 0; i < rep->elements; i++)
            json_array_append_new(a, bx_engine_redis_reply_json(rep->element[i]));
        return a;
    }
    case REDIS_REPLY_ERROR:
        return json_pack("{s:s%}", "error", rep->str, rep->len);
    default:
        return json_null();
    }
}

static void on_stored(void *ud, int status, redisReply *rep)
{
    store_t *s = ud;
    redis_t *r = s->r;
    json_t *j = NULL;
    int st = status == BX_REDIS_ECANCELED || r->closing ? BX_ECANCELED
           : status ? BX_EUNAVAILABLE : 0;

    unbusy(r);
    if (st == 0)
        j = rep ? bx_engine_redis_reply_json(rep) : json_null();
    s->cb(s->ud, st, j);
    json_decref(j);
    free(s);
}

int bx_engine_redis_store(bx_engine_t *e, int argc, const char **argv, const size_t *lens,
                          bx_engine_store_cb cb, void *ud)
{
    redis_t *r = (redis_t *)e;
    if (r->closing)
        return BX_ECANCELED;
    if (!up0(r))
        return BX_EUNAVAILABLE;
    store_t *s = bx_calloc(1, sizeof(*s));
    s->r = r;
    s->cb = cb;
    s->ud = ud;
    if (cmd0(r, on_stored, s, argc, argv, lens) != 0) {
        free(s);
        return BX_EUNAVAILABLE;
    }
    return 0;
}

const char *bx_engine_redis_ns(bx_engine_t *e)
{
    return ((redis_t *)e)->ns;
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
    r_history,
    r_subscribe_history,
};

bx_engine_t *bx_engine_redis_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                 const bx_engine_opts_t *opts, const char *url, char *err,
                                 size_t errlen)
{
    redis_t *r;
    bx_redis_addr_t addrs[MAX_SHARDS];
    const char *names[MAX_SHARDS];
    bx_proxy_t inner_proxy = { 0 };
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
    snprintf(r->ctlkey, sizeof(r->ctlkey), "S%s/ctl", r->ns);
    r->ctl = r->ctlkey + 1;
    {
        /* the control channel, on the first shard, for the life of the engine */
        target_t *t = bx_calloc(1, sizeof(*t));
        t->refs = 1;
        bx_dict_set(&r->targets, r->ctlkey, strlen(r->ctlkey), t);
    }
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, 100, 100);
    uv_unref((uv_handle_t *)&r->tick);
    busy_update(r);
    for (int i = 0; i < n; i++) {
        shard_t *sh = &r->shards[i];
        sh->cmd = bx_redis_new(loop, &sh->addr, NULL, on_cmd_state, NULL, sh);
        sh->sub = bx_redis_new(loop, &sh->addr, NULL, on_sub_state, on_push, sh);
    }
    return &r->base;
}
