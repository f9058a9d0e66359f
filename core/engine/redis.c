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
 * Not here yet (see the issue): clients, subscriptions and queues in Redis
 * so that any process can serve any client (today a client's requests must
 * reach the process that made it), shards.
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
#include "engine/memory.h"
#include "engine/redis.h"
#include "net/redis.h"

typedef struct {
    bx_engine_t base;
    bx_engine_t *inner;         /* the memory engine: this process's state */
    bx_redis_t *cmd;            /* PUBLISH */
    bx_redis_t *sub;            /* SUBSCRIBE / PSUBSCRIBE */
    bx_redis_addr_t addr;
    char node[32];              /* this process's id in payloads */
    uint64_t seq;
    char last[48];              /* id of the last message applied */
    bx_dict_t targets;          /* "S<chan>" / "P<pattern>" -> target_t */
    int remote;                 /* applying another process's publish */
    size_t busy;                /* replies waited for */
    int first_connect;          /* the first attempt is not over */
    int was_down;               /* the last state told was "down" */
    int sub_first;              /* the subscriber connection's first attempt
                                   is not over */
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
    int confirmed;              /* Redis said so (since the last connect) */
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
        bx_buf_puts(b, r->addr.ns);
        bx_buf_puts(b, "/m");
        bx_buf_append(b, ch, len);
        return;
    }
    /* escape glob characters in what must match literally */
    const char *parts[2] = { r->addr.ns, "/m" };
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

static void send_target(redis_t *r, const char *t, size_t len, int on)
{
    const char *argv[2] = { t[0] == 'P' ? (on ? "PSUBSCRIBE" : "PUNSUBSCRIBE")
                                        : (on ? "SUBSCRIBE" : "UNSUBSCRIBE"), t + 1 };
    size_t lens[2] = { strlen(argv[0]), len - 1 };
    /* down: the whole set is sent again when the connection is back */
    bx_redis_command(r->sub, NULL, NULL, 2, argv, lens);
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
            bx_dict_set(&r->targets, b.data, b.len, t);
            send_target(r, b.data, b.len, 1);
        }
        t->refs++;
    } else if (t && --t->refs == 0) {
        release_waiters(r, t, 0);
        bx_dict_del(&r->targets, b.data, b.len);
        free(t);
        send_target(r, b.data, b.len, 0);
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
    redis_t *r = ud;
    if (up && r->was_down)
        fprintf(stderr, "bayeux: redis engine: %s%s:%d is back\n", r->addr.path,
                r->addr.host, r->addr.path[0] ? 0 : r->addr.port);
    else if (!up)
        fprintf(stderr, "bayeux: redis engine: %s%s:%d unreachable (%s); publishing "
                "answers 'unavailable' until it is back\n", r->addr.path, r->addr.host,
                r->addr.path[0] ? 0 : r->addr.port, why ? why : "?");
    r->was_down = !up;
    if (r->first_connect) {
        r->first_connect = 0;
        flush_early(r, up ? 0 : BX_EUNAVAILABLE);
    }
    busy_update(r);
}

static void on_sub_state(void *ud, int up, const char *why)
{
    redis_t *r = ud;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    (void)why;
    r->sub_first = 0;
    while ((e = bx_dict_next(&r->targets, &it)) != NULL) {
        target_t *t = e->value;
        t->confirmed = 0;
        if (up)
            send_target(r, e->key, e->klen, 1);
        else
            release_waiters(r, t, 0);   /* subscribed here; Redis follows
                                           when it is back */
    }
    r->last[0] = '\0';
    busy_update(r);
}

/* A message from Redis: ["message", chan, payload] or ["pmessage", pat,
 * chan, payload]. */
static void on_push(void *ud, redisReply *rep)
{
    redis_t *r = ud;
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
            if (t) {
                t->confirmed = 1;
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
    if (memcmp(payload->str, r->last, 47) == 0)
        return;                 /* the same publish through another subscription */
    memcpy(r->last, payload->str, 47);
    r->last[47] = '\0';
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

    if (status == 0 && !r->closing && (bx_redis_up(r->sub) || r->sub_first)) {
        bx_buf_t b = BX_BUF_INIT;
        target_of(r, s->channel, &b);
        t = bx_dict_get(&r->targets, b.data, b.len);
        bx_buf_free(&b);
    }
    if (t && !t->confirmed) {
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
    if (!bx_redis_up(r->cmd))
        return BX_EUNAVAILABLE;
    bx_buf_puts(&key, r->addr.ns);
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
    rc = bx_redis_command(r->cmd, on_published, p, 3, argv, lens);
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

static void r_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs)
{
    redis_t *r = (redis_t *)e;
    if (r->closing)
        bx_chunkv_clear(msgs);
    else
        r->inner->ops->requeue(r->inner, id, msgs);
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
    r->open = 4;
    flush_early(r, BX_ECANCELED);
    {
        bx_dict_iter_t it = BX_DICT_ITER_INIT;
        bx_dict_entry_t *en;
        while ((en = bx_dict_next(&r->targets, &it)) != NULL)
            release_waiters(r, en->value, BX_ECANCELED);
    }
    /* pending PUBLISH replies first (canceled), then the inner engine's
     * callbacks; a publish answers once both are in */
    bx_redis_close(r->cmd, part_closed, r);
    bx_redis_close(r->sub, part_closed, r);
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
    bx_redis_addr_t addr;
    bx_proxy_t inner_proxy;

    if (bx_redis_parse_url(url, &addr, err, errlen) < 0)
        return NULL;
    r = bx_calloc(1, sizeof(*r));
    r->addr = addr;
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
    r->first_connect = 1;
    r->sub_first = 1;
    r->early_tail = &r->early;
    busy_update(r);
    r->cmd = bx_redis_new(loop, &addr, NULL, on_cmd_state, NULL, r);
    r->sub = bx_redis_new(loop, &addr, NULL, on_sub_state, on_push, r);
    return &r->base;
}
