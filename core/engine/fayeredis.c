/*
 * fayeredis.c - the Redis engine in faye-redis mode: all state in Redis,
 * in faye-redis 0.2.0's layout (reference §13), so bayeux processes and
 * Node Faye + faye-redis servers on one Redis behave as one server:
 *
 *   NS/clients                  ZSET: client id -> last ping, ms since epoch
 *   NS/clients/<id>/channels    SET of its subscriptions
 *   NS/channels<channel>        SET of the ids subscribed to <channel>
 *   NS/clients/<id>/messages    LIST of JSON messages, oldest first
 *   NS/locks/gc                 the GC lock (SETNX / GETSET, value = expiry)
 *   PUBLISH NS/notifications/messages <id>   a message was queued for <id>
 *   PUBLISH NS/notifications/close <id>      <id> was destroyed
 *
 * Each operation is one command: a plain one where faye-redis's is
 * (ZADD, ZSCORE), a script where faye-redis sends several, so that no
 * other server sees half of it (EVALSHA; the scripts are loaded on every
 * connection, and sent whole to a Redis that lost them). Where faye-redis loses messages, this
 * engine does not: a take reads and deletes the queue in one script (and
 * only for the process that holds the connection, as faye-redis), and what
 * a connection that went away did not send comes back in front of the
 * queue (requeue), with a notification, so whichever server holds the
 * client's next connection delivers it.
 *
 * Liveness as faye-redis: a client exists while its score is above now -
 * 1.6 x timeout; the GC destroys those at or below now - 2 x timeout.
 * Every server must use the same timeout, and clocks that agree.
 *
 * Wakes: a process wakes its proxy for a client it holds a connection of
 * when a publish it made queued for it (from the reply) and on every
 * message notification; once per take (a wake already told is not told
 * again until the proxy takes).
 *
 * The connections' handles keep no loop alive (net/redis.h); a prepare
 * handle does while a reply is awaited or the first connection is being
 * made, so that a caller running the loop until its callbacks came sees
 * them.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/sha.h>
#include "base/channel.h"
#include "base/dict.h"
#include "base/json.h"
#include "engine/fayeredis.h"
#include "engine/redis.h"

#define DEFAULT_QUEUE_LIMIT 1000
#define ID_MAX 64               /* client ids of other servers: up to this */
#define LOCK_TIMEOUT_MS 120000  /* faye-redis's GC lock lifetime */
#define REQUEUE_ARGS 8          /* EVAL, script, 2, two keys, id, limit,
                                   channel: then the messages */

typedef struct op op_t;
/* A reply handler: status (0 or BX_E*) and the reply (NULL unless 0).
 * Returns 1 when it sent `op` again (it keeps it), else 0 (op freed). */
typedef int (*op_fn)(op_t *op, int status, redisReply *rep);

typedef struct fr_s {
    bx_engine_t base;
    bx_redis_addr_t addr;
    char name[300];             /* host:port/db or path/db, for logs */
    char ns[128];
    bx_redis_t *cmd, *sub;
    int first;                  /* first outcomes awaited: the command
                                   connection's, the subscriptions' */
    int sub_first;              /* the subscriptions' is one of them */
    int cmd_seen;               /* the command connection's came */
    int was_down;
    size_t limit;
    size_t busy;                /* replies awaited */
    uv_prepare_t keep;
    uv_timer_t gc;
    int gc_running;
    long long gc_expiry;        /* the lock's value while we hold it */
    char gc_seen[32];           /* the value read when the lock was taken */
    size_t gc_left;             /* destroys of the sweep not answered yet */
    op_t *early, **early_tail;  /* commands made before the first outcome */
    bx_dict_t woken;            /* ids woken and not taken since */
    bx_dict_t held;             /* ids taken for here (connections here) */
    op_t *fence_wait, **fence_tail;     /* publishes answered, waiting
                                           for their notifications */
    op_t *fence_sent;           /* those the PING out covers */
    int fence_out;              /* a PING is out on the subscriber */
    bx_dict_t destroying;       /* ids with a destroy of ours out (count):
                                   its close notification is ours */
    size_t nclients;
    unsigned long dropped;
    int closing, open;
    void (*close_done)(void *ud);
    void *close_ud;
} fr_t;

struct op {
    op_t *next;
    fr_t *r;
    op_fn fn;
    union {
        bx_engine_id_cb id;
        bx_engine_bool_cb b;
        bx_engine_done_cb d;
        bx_engine_take_cb t;
    } cb;
    void *ud;
    char id[ID_MAX];
    char *channel;
    json_t *msg;                /* publish: the message, for the event */
    void (*finish)(op_t *op, int status);   /* past the fence */
    bx_buf_t extra;             /* destroy: the channels, NUL-separated */
    size_t nextra;
    int gc;                     /* a destroy made by the GC sweep */
    int on;                     /* subscribe (1) or unsubscribe (0) */
    const char *script;         /* an EVALSHA's script, for a NOSCRIPT */
    bx_buf_t args;              /* the command's arguments, back to back */
    size_t *len;
    int argc, cap;
};

/* ---- Scripts ----
 *
 * Keys are passed through KEYS where the script knows them beforehand;
 * the per-client keys the publish reaches are built inside (one Redis,
 * no cluster: faye-redis's layout is not cluster-safe anyway). */

/* KEYS: clients, client's channels, its messages; ARGV: id, NS/channels,
 * NS/notifications/close. nil for an unknown client, else the channels
 * it was subscribed to. */
static const char DESTROY_LUA[] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end\n"
    "redis.call('ZADD', KEYS[1], 0, ARGV[1])\n"
    "local chans = redis.call('SMEMBERS', KEYS[2])\n"
    "for _, c in ipairs(chans) do\n"
    "  redis.call('SREM', KEYS[2], c)\n"
    "  redis.call('SREM', ARGV[2] .. c, ARGV[1])\n"
    "end\n"
    "redis.call('DEL', KEYS[3])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[1])\n"
    "return chans\n";

/* The same, for the GC: only while the client is still expired (ARGV[4]:
 * the cutoff), so that a ping since the sweep's range read keeps it. */
static const char SWEEP_LUA[] =
    "local s = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not s or tonumber(s) > tonumber(ARGV[4]) then return false end\n"
    "redis.call('ZADD', KEYS[1], 0, ARGV[1])\n"
    "local chans = redis.call('SMEMBERS', KEYS[2])\n"
    "for _, c in ipairs(chans) do\n"
    "  redis.call('SREM', KEYS[2], c)\n"
    "  redis.call('SREM', ARGV[2] .. c, ARGV[1])\n"
    "end\n"
    "redis.call('DEL', KEYS[3])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[1])\n"
    "return chans\n";

/* KEYS: clients, client's channels, NS/channels<channel>; ARGV: id,
 * channel, SADD or SREM, the limit of channels per client (0: none). -1
 * for an unknown client, -2 for a subscribe past the limit (nothing
 * changed), else whether the client's set changed. */
static const char SUBSCRIBE_LUA[] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end\n"
    "local limit = tonumber(ARGV[4])\n"
    "if ARGV[3] == 'SADD' and limit > 0 and redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0\n"
    "   and redis.call('SCARD', KEYS[2]) >= limit then return -2 end\n"
    "local n = redis.call(ARGV[3], KEYS[2], ARGV[2])\n"
    "redis.call(ARGV[3], KEYS[3], ARGV[1])\n"
    "return n\n";

/* KEYS: NS/channels<pattern> for every pattern matching the channel;
 * ARGV: message JSON, NS, cutoff (ms), queue limit. Returns {dropped,
 * {ids queued for and alive}}: faye-redis's publish, each recipient's
 * queue capped at the limit (the oldest go). */
static const char PUBLISH_LUA[] =
    "local ids = redis.call('SUNION', unpack(KEYS))\n"
    "local clients = ARGV[2] .. '/clients'\n"
    "local note = ARGV[2] .. '/notifications/messages'\n"
    "local cutoff, limit, dropped, out = tonumber(ARGV[3]), tonumber(ARGV[4]), 0, {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local q = clients .. '/' .. id .. '/messages'\n"
    "  local n = redis.call('RPUSH', q, ARGV[1])\n"
    "  if limit > 0 and n > limit then\n"
    "    redis.call('LTRIM', q, -limit, -1)\n"
    "    dropped = dropped + n - limit\n"
    "  end\n"
    "  redis.call('PUBLISH', note, id)\n"
    "  local s = redis.call('ZSCORE', clients, id)\n"
    "  if not s or tonumber(s) <= cutoff then redis.call('DEL', q)\n"
    "  else out[#out + 1] = id end\n"
    "end\n"
    "return {dropped, out}\n";

/* KEYS: clients, the client's messages; ARGV: id. nil for an unknown
 * client, else its queue, which is emptied in the same step. */
static const char TAKE_LUA[] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end\n"
    "local m = redis.call('LRANGE', KEYS[2], 0, -1)\n"
    "if #m > 0 then redis.call('DEL', KEYS[2]) end\n"
    "return m\n";

/* KEYS: clients, the client's messages; ARGV: id, queue limit,
 * NS/notifications/messages, then the messages, oldest first: they go in
 * front of the queue. -1 for an unknown client, else the number dropped
 * (the oldest, beyond the limit). */
static const char REQUEUE_LUA[] =
    "if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end\n"
    "for i = #ARGV, 4, -1 do redis.call('LPUSH', KEYS[2], ARGV[i]) end\n"
    "local limit, n, d = tonumber(ARGV[2]), redis.call('LLEN', KEYS[2]), 0\n"
    "if limit > 0 and n > limit then\n"
    "  redis.call('LTRIM', KEYS[2], -limit, -1)\n"
    "  d = n - limit\n"
    "end\n"
    "if #ARGV >= 4 then redis.call('PUBLISH', ARGV[3], ARGV[1]) end\n"
    "return d\n";

/* ---- Helpers ---- */

static void on_keep(uv_prepare_t *h) { (void)h; }

static void busy_update(fr_t *r)
{
    if (r->closing)
        return;
    if (r->busy || r->first)
        uv_prepare_start(&r->keep, on_keep);
    else
        uv_prepare_stop(&r->keep);
}

/* Milliseconds since the epoch: the scores every server compares. */
static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static op_t *op_new(fr_t *r, op_fn fn, void *ud)
{
    op_t *op = bx_calloc(1, sizeof(*op));
    op->r = r;
    op->fn = fn;
    op->ud = ud;
    return op;
}

static void op_free(op_t *op)
{
    bx_buf_free(&op->extra);
    free(op->channel);
    if (op->msg)
        json_decref(op->msg);
    bx_buf_free(&op->args);
    free(op->len);
    free(op);
}

/* Drops the arguments (to build another command on the same op). */
static void op_reset(op_t *op)
{
    bx_buf_reset(&op->args);
    op->argc = 0;
}

static void op_argn(op_t *op, const char *s, size_t n)
{
    if (op->argc == op->cap) {
        op->cap = op->cap ? 2 * op->cap : 8;
        op->len = bx_realloc(op->len, (size_t)op->cap * sizeof(*op->len));
    }
    bx_buf_append(&op->args, s, n);
    op->len[op->argc++] = n;
}

static void op_arg(op_t *op, const char *s)
{
    op_argn(op, s, strlen(s));
}

static void op_argf(op_t *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void op_argf(op_t *op, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(tmp)) {
        op_argn(op, tmp, (size_t)n);
        return;
    }
    /* a long namespace or channel */
    char *big = bx_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    op_argn(op, big, (size_t)n);
    free(big);
}

/* The key NS + suffix ... as an argument. */
static void op_key(op_t *op, const char *a, const char *b, const char *c)
{
    op_argf(op, "%s%s%s%s", op->r->ns, a, b ? b : "", c ? c : "");
}

/* The SHA1 (hex) of `script`, as EVALSHA names it. */
static void script_sha(const char *script, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)script, strlen(script), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* EVALSHA of `script` with `nkeys` keys: its first arguments (call before
 * the keys and arguments). Redis keeps scripts once loaded: the text goes
 * only when a server answers NOSCRIPT (on_reply sends EVAL then). */
static void op_eval(op_t *op, const char *script, int nkeys)
{
    char sha[41];
    script_sha(script, sha);
    op->script = script;
    op_arg(op, "EVALSHA");
    op_arg(op, sha);
    op_argf(op, "%d", nkeys);
}

/* Replaces argument `i` with `s` (`n` bytes). */
static void op_set_arg(op_t *op, int i, const char *s, size_t n)
{
    bx_buf_t b = BX_BUF_INIT;
    size_t off = 0;
    for (int k = 0; k < i; k++)
        off += op->len[k];
    bx_buf_append(&b, op->args.data, off);
    bx_buf_append(&b, s, n);
    bx_buf_append(&b, op->args.data + off + op->len[i], op->args.len - off - op->len[i]);
    bx_buf_free(&op->args);
    op->args = b;
    op->len[i] = n;
}

/* Patches the EVALSHA's key count (for the publish, whose count is known
 * once the keys are in). */
static void op_eval_nkeys(op_t *op, int nkeys)
{
    char n[16];
    int len = snprintf(n, sizeof(n), "%d", nkeys);
    op_set_arg(op, 2, n, (size_t)len);
}

static void on_reply(void *ud, int status, redisReply *rep);

/* Sends `op`'s command. */
static int op_send(op_t *op)
{
    const char *argv[op->argc];
    size_t off = 0;
    for (int i = 0; i < op->argc; i++) {
        argv[i] = op->args.data + off;
        off += op->len[i];
    }
    if (bx_redis_command(op->r->cmd, on_reply, op, op->argc, argv, op->len) != 0)
        return BX_EUNAVAILABLE;
    op->r->busy++;
    busy_update(op->r);
    return 0;
}

/* Starts `op`: sent now, or kept until the first connection's outcome.
 * Returns 0 (op owned by the engine, fn called once later), or an error
 * (op freed, fn never called). */
static int op_start(op_t *op)
{
    fr_t *r = op->r;
    int rc;

    if (r->closing) {
        op_free(op);
        return BX_ECANCELED;
    }
    if (r->first) {
        *r->early_tail = op;
        r->early_tail = &op->next;
        return 0;
    }
    rc = op_send(op);
    if (rc != 0)
        op_free(op);
    return rc;
}

static void on_reply(void *ud, int status, redisReply *rep)
{
    op_t *op = ud;
    fr_t *r = op->r;
    int st = status == 0 ? 0 : status == BX_REDIS_ECANCELED ? BX_ECANCELED : BX_EUNAVAILABLE;

    r->busy--;
    if (st == 0 && rep->type == REDIS_REPLY_ERROR && op->script && rep->len >= 8
        && memcmp(rep->str, "NOSCRIPT", 8) == 0 && !r->closing) {
        /* the script is not loaded there (yet, or any more): its text */
        op_set_arg(op, 0, "EVAL", 4);
        op_set_arg(op, 1, op->script, strlen(op->script));
        op->script = NULL;
        if (op_send(op) == 0) {
            busy_update(r);
            return;
        }
        st = BX_EUNAVAILABLE;
    }
    if (st == 0 && rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bayeux: redis engine (faye mode): %s: %.*s\n", r->name,
                (int)rep->len, rep->str);
        st = BX_EUNAVAILABLE;
    }
    if (!op->fn(op, st, st ? NULL : rep))
        op_free(op);
    busy_update(r);
}

/* The commands made before the first outcome: sent now, or answered with
 * `status`. */
static void flush_early(fr_t *r, int status)
{
    op_t *op = r->early;
    r->early = NULL;
    r->early_tail = &r->early;
    while (op) {
        op_t *next = op->next;
        op->next = NULL;
        int rc = status ? status : op_send(op);
        if (rc != 0 && !op->fn(op, rc, NULL))
            op_free(op);
        op = next;
    }
}

static int set_has(bx_dict_t *d, const char *id)
{
    return bx_dict_get(d, id, strlen(id)) != NULL;
}

static void set_add(bx_dict_t *d, const char *id)
{
    bx_dict_set(d, id, strlen(id), (void *)1);
}

static void set_del(bx_dict_t *d, const char *id)
{
    bx_dict_del(d, id, strlen(id));
}

/* Tells the proxy that `id` has messages, if it holds its connection. */
static void wake(fr_t *r, const char *id)
{
    if (r->closing || set_has(&r->woken, id))
        return;
    if (!r->base.proxy.has_connection(r->base.proxy.ud, id))
        return;
    set_add(&r->woken, id);
    r->base.proxy.wake(r->base.proxy.ud, id);
}

static void trigger(fr_t *r, bx_event_t ev, const char *id, const char *ch,
                    const json_t *data)
{
    if (r->base.proxy.trigger)
        r->base.proxy.trigger(r->base.proxy.ud, ev, id, ch, data);
}

static int copy_id(char out[ID_MAX], const char *id)
{
    size_t n = strlen(id);
    if (n >= ID_MAX)
        return -1;
    memcpy(out, id, n + 1);
    return 0;
}

/* ---- Operations ---- */

/* ZADD NX: faye-redis's ZADD 0 and its ping in one step. */
static void build_create(op_t *op)
{
    bx_engine_random_id(op->id);
    op_arg(op, "ZADD");
    op_key(op, "/clients", NULL, NULL);
    op_arg(op, "NX");
    op_argf(op, "%lld", now_ms());
    op_arg(op, op->id);
}

static int on_created(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    if (status == 0 && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0
        && !r->closing) {
        /* the id was taken: another one, as faye-redis */
        op_reset(op);
        build_create(op);
        if (op_send(op) == 0)
            return 1;
        status = BX_EUNAVAILABLE;
    }
    if (status == 0) {
        r->nclients++;
        trigger(r, BX_EV_HANDSHAKE, op->id, NULL, NULL);
    }
    if (op->cb.id)
        op->cb.id(op->ud, status, status ? NULL : op->id);
    return 0;
}

static int fr_create_client(bx_engine_t *e, bx_engine_id_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    op_t *op = op_new(r, on_created, ud);
    op->cb.id = cb;
    build_create(op);
    return op_start(op);
}

static int on_exists(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    int yes = 0;
    if (status == 0 && rep->type == REDIS_REPLY_STRING) {
        double score = strtod(rep->str, NULL);
        yes = score > (double)now_ms() - 1600.0 * r->base.timeout;
    }
    if (op->cb.b)
        op->cb.b(op->ud, status, yes);
    return 0;
}

static int fr_client_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    op_t *op = op_new(r, on_exists, ud);
    op->cb.b = cb;
    op_arg(op, "ZSCORE");
    op_key(op, "/clients", NULL, NULL);
    op_arg(op, id);
    return op_start(op);
}

static void gc_destroyed(fr_t *r);

static void fence_add(fr_t *r, op_t *op);

static void count_add(bx_dict_t *d, const char *id, int delta)
{
    uintptr_t n = (uintptr_t)bx_dict_get(d, id, strlen(id));
    n += (uintptr_t)(intptr_t)delta;
    if (n == 0)
        bx_dict_del(d, id, strlen(id));
    else
        bx_dict_set(d, id, strlen(id), (void *)n);
}

/* The end of a destroy, once its close notification has come by: the
 * events, proxy->closed, the callback. */
static void destroyed(op_t *op, int status)
{
    fr_t *r = op->r;
    count_add(&r->destroying, op->id, -1);
    if (status == 0) {
        if (r->nclients)
            r->nclients--;
        set_del(&r->woken, op->id);
        set_del(&r->held, op->id);
        const char *ch = op->extra.data;
        for (size_t i = 0; i < op->nextra; i++, ch += strlen(ch) + 1)
            trigger(r, BX_EV_UNSUBSCRIBE, op->id, ch, NULL);
        trigger(r, BX_EV_DISCONNECT, op->id, NULL, NULL);
        if (!r->closing && r->base.proxy.closed)
            r->base.proxy.closed(r->base.proxy.ud, op->id);
    }
    if (op->gc)
        gc_destroyed(r);
    else if (op->cb.d)
        op->cb.d(op->ud, status);
}

static int on_destroyed(op_t *op, int status, redisReply *rep)
{
    if (status == 0 && rep->type != REDIS_REPLY_ARRAY)
        status = BX_EUNKNOWN;
    if (status == 0) {
        for (size_t i = 0; i < rep->elements; i++)
            if (rep->element[i]->type == REDIS_REPLY_STRING) {
                bx_buf_append(&op->extra, rep->element[i]->str, rep->element[i]->len + 1);
                op->nextra++;
            }
        if (!op->r->closing) {
            fence_add(op->r, op);
            return 1;
        }
    }
    destroyed(op, status);
    return 0;
}

/* A destroy of `id`; `cutoff` >= 0 for the GC (only if still expired). */
static op_t *destroy_op(fr_t *r, const char *id, long long cutoff)
{
    op_t *op = op_new(r, on_destroyed, NULL);
    if (copy_id(op->id, id) < 0) {
        op_free(op);
        return NULL;
    }
    op->finish = destroyed;
    count_add(&r->destroying, id, 1);
    op_eval(op, cutoff >= 0 ? SWEEP_LUA : DESTROY_LUA, 3);
    op_key(op, "/clients", NULL, NULL);
    op_key(op, "/clients/", id, "/channels");
    op_key(op, "/clients/", id, "/messages");
    op_arg(op, id);
    op_key(op, "/channels", NULL, NULL);
    op_key(op, "/notifications/close", NULL, NULL);
    if (cutoff >= 0) {
        op->gc = 1;
        op_argf(op, "%lld", cutoff);
    }
    return op;
}

/* An answer for an id no client can have: on a later turn, as always. */
static int on_unknown(op_t *op, int status, redisReply *rep)
{
    (void)rep;
    if (status == 0)
        status = BX_EUNKNOWN;
    if (op->cb.d)
        op->cb.d(op->ud, status);
    return 0;
}

static int fr_destroy_client(bx_engine_t *e, const char *id, bx_engine_done_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    op_t *op = destroy_op(r, id, -1);
    int rc;
    if (!op) {
        op = op_new(r, on_unknown, ud);
        op_arg(op, "PING");
        op->cb.d = cb;
        return op_start(op);
    }
    op->cb.d = cb;
    op->ud = ud;
    rc = op_start(op);          /* frees op on an error */
    if (rc != 0)
        count_add(&r->destroying, id, -1);
    return rc;
}

static int on_ignored(op_t *op, int status, redisReply *rep)
{
    (void)op;
    (void)status;
    (void)rep;
    return 0;
}

static void fr_ping(bx_engine_t *e, const char *id)
{
    fr_t *r = (fr_t *)e;
    op_t *op = op_new(r, on_ignored, NULL);
    /* XX: a ping never brings a destroyed client back */
    op_arg(op, "ZADD");
    op_key(op, "/clients", NULL, NULL);
    op_arg(op, "XX");
    op_argf(op, "%lld", now_ms());
    op_arg(op, id);
    (void)op_start(op);
}

static int on_subscribed(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    int yes = 0;
    if (status == 0) {
        if (rep->type == REDIS_REPLY_INTEGER && rep->integer == -2)
            status = BX_ESUBSLIMIT;
        else if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0)
            status = BX_EUNKNOWN;
        else
            yes = rep->integer > 0;
    }
    if (yes)
        trigger(r, op->on ? BX_EV_SUBSCRIBE : BX_EV_UNSUBSCRIBE, op->id, op->channel, NULL);
    if (op->cb.b)
        op->cb.b(op->ud, status, yes);
    return 0;
}

static int sub_op(fr_t *r, const char *id, const char *ch, int on, size_t limit,
                  bx_engine_bool_cb cb, void *ud)
{
    op_t *op = op_new(r, on_subscribed, ud);
    op->cb.b = cb;
    op->on = on;
    if (copy_id(op->id, id) < 0)
        op->id[0] = '\0';       /* no such client: the script says so */
    op->channel = bx_malloc(strlen(ch) + 1);
    strcpy(op->channel, ch);
    op_eval(op, SUBSCRIBE_LUA, 3);
    op_key(op, "/clients", NULL, NULL);
    op_key(op, "/clients/", op->id, "/channels");
    op_key(op, "/channels", ch, NULL);
    op_arg(op, op->id);
    op_arg(op, ch);
    op_arg(op, on ? "SADD" : "SREM");
    op_argf(op, "%zu", limit);
    return op_start(op);
}

static int fr_subscribe(bx_engine_t *e, const char *id, const char *ch, size_t limit,
                        bx_engine_bool_cb cb, void *ud)
{
    return sub_op((fr_t *)e, id, ch, 1, limit, cb, ud);
}

static int fr_unsubscribe(bx_engine_t *e, const char *id, const char *ch,
                          bx_engine_bool_cb cb, void *ud)
{
    return sub_op((fr_t *)e, id, ch, 0, 0, cb, ud);
}

/* The end of a publish: the event and the callback. */
static void published(op_t *op, int status)
{
    fr_t *r = op->r;
    if (status == 0) {
        const char *from = bx_json_str(op->msg, "clientId");
        trigger(r, BX_EV_PUBLISH, from, bx_json_str(op->msg, "channel"),
                json_object_get(op->msg, "data"));
    }
    if (op->cb.d)
        op->cb.d(op->ud, status);
}

/* ---- The fence ----
 *
 * A publish answers once the notifications it sent have reached this
 * process too: the subscriber connection gets a PING after the reply, and
 * Redis answers it after every message it sent that connection before.
 * So a caller that waits for the answer sees the wakes the publish causes
 * here, and no notification of an old publish wakes a connection made
 * since (the queue it announced was taken already). One PING covers every
 * publish answered before it went out. The PING is a SUBSCRIBE to the
 * channel it is subscribed to already (hiredis 0.14 drops the "pong" of
 * a subscriber): Redis confirms it, in order, changing nothing. */

static void fence_release(op_t *list, int status)
{
    while (list) {
        op_t *next = list->next;
        list->finish(list, status);
        op_free(list);
        list = next;
    }
}

static void fence_push(fr_t *r)
{
    bx_buf_t ch = BX_BUF_INIT;
    int rc;
    if (r->fence_out || !r->fence_wait)
        return;
    bx_buf_printf(&ch, "%s/notifications/messages", r->ns);
    const char *argv[2] = { "SUBSCRIBE", ch.data };
    size_t lens[2] = { 9, ch.len };
    rc = bx_redis_command(r->sub, NULL, NULL, 2, argv, lens);
    bx_buf_free(&ch);
    if (rc != 0) {
        /* no subscriber: nothing to wait for */
        op_t *list = r->fence_wait;
        r->fence_wait = NULL;
        r->busy--;
        fence_release(list, 0);
        return;
    }
    r->fence_sent = r->fence_wait;
    r->fence_wait = NULL;
    r->fence_out = 1;
}

/* The PING's answer (or the subscriber went down: the same). */
static void fence_pass(fr_t *r, int status)
{
    op_t *list = r->fence_sent;
    if (!r->fence_out)
        return;
    r->fence_sent = NULL;
    r->fence_out = 0;
    r->busy--;
    fence_push(r);
    fence_release(list, status);
    busy_update(r);
}

/* Keeps `op` (answered) until the notifications sent before its reply have
 * come; then op->finish. */
static void fence_add(fr_t *r, op_t *op)
{
    op->next = NULL;
    if (!r->fence_wait) {
        r->busy++;              /* one count per list, dropped on release */
        r->fence_tail = &r->fence_wait;
    }
    *r->fence_tail = op;
    r->fence_tail = &op->next;
    fence_push(r);
}

static int on_published(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    if (status == 0 && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        if (rep->element[0]->type == REDIS_REPLY_INTEGER)
            r->dropped += (unsigned long)rep->element[0]->integer;
        redisReply *ids = rep->element[1];
        for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements; i++)
            if (ids->element[i]->type == REDIS_REPLY_STRING)
                wake(r, ids->element[i]->str);
    }
    if (status != 0 || r->closing) {
        published(op, status);
        return 0;
    }
    fence_add(r, op);
    return 1;
}

static void add_pattern_key(void *ud, const char *pattern, size_t len, uint32_t hash)
{
    op_t *op = ud;
    (void)hash;
    bx_buf_t b = BX_BUF_INIT;
    bx_buf_puts(&b, op->r->ns);
    bx_buf_puts(&b, "/channels");
    bx_buf_append(&b, pattern, len);
    op_argn(op, b.data, b.len);
    bx_buf_free(&b);
}

static int fr_publish(bx_engine_t *e, const json_t *message, bx_engine_done_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    json_t *jch = json_object_get(message, "channel");
    op_t *op = op_new(r, on_published, ud);
    bx_buf_t json = BX_BUF_INIT;
    size_t nkeys = 0;

    op->cb.d = cb;
    op->finish = published;
    /* the message may change after this call: a copy for the event */
    op->msg = json_deep_copy(message);
    op_eval(op, PUBLISH_LUA, 0);
    if (json_is_string(jch))
        nkeys = bx_channel_expand(json_string_value(jch), json_string_length(jch),
                                  add_pattern_key, op);
    if (nkeys == 0) {
        /* SUNION needs a key: one nobody subscribes to */
        op_key(op, "/channels", NULL, NULL);
        nkeys = 1;
    }
    op_eval_nkeys(op, (int)nkeys);
    /* stored as faye-redis stores it: the whole message, clientId too
     * (readers drop it) */
    bx_json_dump(message, &json);
    op_argn(op, json.data, json.len);
    bx_buf_free(&json);
    op_arg(op, r->ns);
    op_argf(op, "%lld", now_ms() - (long long)(1600.0 * r->base.timeout));
    op_argf(op, "%zu", r->limit);
    return op_start(op);
}

/* A stored message as a subscriber gets it: without the publisher's
 * clientId. NULL for what is not a JSON object. */
static bx_chunk_t *delivery_of(const char *s, size_t n)
{
    json_t *m = bx_json_parse(s, n);
    bx_chunk_t *c;
    if (!m)
        return NULL;
    if (!json_is_object(m)) {
        json_decref(m);
        return NULL;
    }
    if (json_object_get(m, "clientId")) {
        json_object_del(m, "clientId");
        c = bx_json_chunk(m);
    } else {
        c = bx_chunk_new(s, n);     /* as written, already what goes out */
    }
    json_decref(m);
    return c;
}

static int on_taken(op_t *op, int status, redisReply *rep)
{
    bx_chunkv_t msgs = BX_CHUNKV_INIT;
    if (status == 0 && rep->type != REDIS_REPLY_ARRAY)
        status = BX_EUNKNOWN;
    for (size_t i = 0; status == 0 && i < rep->elements; i++) {
        redisReply *el = rep->element[i];
        bx_chunk_t *c = el->type == REDIS_REPLY_STRING ? delivery_of(el->str, el->len) : NULL;
        if (c)
            bx_chunkv_push_new(&msgs, c);
    }
    op->cb.t(op->ud, status, op->id, &msgs);
    bx_chunkv_free(&msgs);
    return 0;
}

static int fr_take(bx_engine_t *e, const char *id, bx_engine_take_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    op_t *op = op_new(r, on_taken, ud);
    op->cb.t = cb;
    if (copy_id(op->id, id) < 0)
        op->id[0] = '\0';
    set_del(&r->woken, op->id);     /* what comes from now on wakes again */
    if (op->id[0])
        set_add(&r->held, op->id);
    op_eval(op, TAKE_LUA, 2);
    op_key(op, "/clients", NULL, NULL);
    op_key(op, "/clients/", op->id, "/messages");
    op_arg(op, op->id);
    return op_start(op);
}

static int on_requeued(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    int answer = status;

    if (status == 0 && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0) {
        r->dropped += (unsigned long)rep->integer;
        if (op->argc > REQUEUE_ARGS)
            wake(r, op->id);
    } else if (status == 0 && rep->type == REDIS_REPLY_INTEGER) {
        answer = BX_EUNKNOWN;   /* the script's -1: the messages are dropped */
    } else {
        if (status == 0)
            answer = BX_EUNAVAILABLE;
        if (answer != BX_ECANCELED)
            r->dropped += (unsigned long)(op->argc - REQUEUE_ARGS);
    }
    if (op->cb.d)
        op->cb.d(op->ud, answer);
    return 0;
}

static int fr_requeue(bx_engine_t *e, const char *id, bx_chunkv_t *msgs, bx_engine_done_cb cb,
                      void *ud)
{
    fr_t *r = (fr_t *)e;
    op_t *op;
    size_t n;
    int rc;

    if (r->closing) {
        bx_chunkv_clear(msgs);
        return BX_ECANCELED;
    }
    if (!id || strlen(id) >= ID_MAX) {
        bx_chunkv_clear(msgs);
        return BX_EUNKNOWN;
    }
    /* even with nothing to put back, the answer comes from Redis (a later
     * turn, and whether the client exists) */
    op = op_new(r, on_requeued, ud);
    op->cb.d = cb;
    copy_id(op->id, id);
    op_eval(op, REQUEUE_LUA, 2);
    op_key(op, "/clients", NULL, NULL);
    op_key(op, "/clients/", id, "/messages");
    op_arg(op, id);
    op_argf(op, "%zu", r->limit);
    op_key(op, "/notifications/messages", NULL, NULL);
    for (size_t i = 0; i < msgs->n; i++)
        op_argn(op, msgs->v[i]->data, msgs->v[i]->len);
    n = msgs->n;
    bx_chunkv_clear(msgs);
    rc = op_start(op);
    if (rc != 0)                /* op is freed: Redis is out of reach */
        r->dropped += (unsigned long)n;
    return rc;
}

static void fr_stats(bx_engine_t *e, bx_engine_stats_t *out)
{
    fr_t *r = (fr_t *)e;
    out->clients = r->nclients;
    out->dropped = r->dropped;
}

/* ---- GC: faye-redis's sweep under its lock ---- */

static void gc_release(fr_t *r)
{
    /* the lock is ours only until its expiry, as faye-redis */
    if (now_ms() < r->gc_expiry && !r->closing) {
        op_t *op = op_new(r, on_ignored, NULL);
        op_arg(op, "DEL");
        op_key(op, "/locks/gc", NULL, NULL);
        (void)op_start(op);
    }
    r->gc_running = 0;
}

static void gc_destroyed(fr_t *r)
{
    if (r->gc_left > 0 && --r->gc_left == 0)
        gc_release(r);
}

static int on_gc_card(op_t *op, int status, redisReply *rep)
{
    if (status == 0 && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0)
        op->r->nclients = (size_t)rep->integer;
    return 0;
}

static int on_gc_range(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    long long cutoff = strtoll(op->channel, NULL, 10);

    if (status != 0 || rep->type != REDIS_REPLY_ARRAY || r->closing) {
        if (status != BX_ECANCELED)
            gc_release(r);
        return 0;
    }
    r->gc_left = 1;             /* held until every destroy is sent */
    for (size_t i = 0; i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_STRING)
            continue;
        op_t *d = destroy_op(r, rep->element[i]->str, cutoff);
        if (d && op_send(d) == 0) {
            r->gc_left++;
        } else if (d) {
            count_add(&r->destroying, d->id, -1);
            op_free(d);
        }
    }
    gc_destroyed(r);
    return 0;
}

static void gc_sweep(fr_t *r)
{
    long long cutoff = now_ms() - (long long)(2000.0 * r->base.timeout);
    op_t *op = op_new(r, on_gc_range, NULL);
    char num[32];

    snprintf(num, sizeof(num), "%lld", cutoff);
    op->channel = bx_malloc(strlen(num) + 1);
    strcpy(op->channel, num);
    op_arg(op, "ZRANGEBYSCORE");
    op_key(op, "/clients", NULL, NULL);
    op_arg(op, "0");
    op_arg(op, num);
    if (op_start(op) != 0)
        r->gc_running = 0;
}

static int on_gc_getset(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    if (status == 0 && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, r->gc_seen) == 0)
        gc_sweep(r);
    else
        r->gc_running = 0;
    return 0;
}

static int on_gc_get(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    if (status != 0 || rep->type != REDIS_REPLY_STRING
        || now_ms() < strtoll(rep->str, NULL, 10) || rep->len >= sizeof(r->gc_seen)) {
        r->gc_running = 0;      /* someone else holds it */
        return 0;
    }
    memcpy(r->gc_seen, rep->str, rep->len + 1);
    op_reset(op);
    op->fn = on_gc_getset;
    op_arg(op, "GETSET");
    op_key(op, "/locks/gc", NULL, NULL);
    op_argf(op, "%lld", r->gc_expiry);
    if (op_send(op) != 0) {
        r->gc_running = 0;
        return 0;
    }
    return 1;
}

static int on_gc_setnx(op_t *op, int status, redisReply *rep)
{
    fr_t *r = op->r;
    if (status == 0 && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
        gc_sweep(r);
        return 0;
    }
    if (status != 0 || r->closing) {
        r->gc_running = 0;
        return 0;
    }
    op_reset(op);
    op->fn = on_gc_get;
    op_arg(op, "GET");
    op_key(op, "/locks/gc", NULL, NULL);
    if (op_send(op) != 0) {
        r->gc_running = 0;
        return 0;
    }
    return 1;
}

static void on_gc_timer(uv_timer_t *t)
{
    fr_t *r = t->data;
    op_t *op;

    if (r->closing || r->first || !bx_redis_up(r->cmd))
        return;
    op = op_new(r, on_gc_card, NULL);
    op_arg(op, "ZCARD");
    op_key(op, "/clients", NULL, NULL);
    (void)op_start(op);
    if (r->gc_running)
        return;
    r->gc_running = 1;
    /* faye-redis holds the lock for 120 s; a short timeout (tests) for
     * less, so that a process gone mid-sweep does not stop the GC long */
    long long hold = (long long)(2000.0 * r->base.timeout);
    r->gc_expiry = now_ms() + (hold < LOCK_TIMEOUT_MS ? hold : LOCK_TIMEOUT_MS) + 1;
    op = op_new(r, on_gc_setnx, NULL);
    op_arg(op, "SETNX");
    op_key(op, "/locks/gc", NULL, NULL);
    op_argf(op, "%lld", r->gc_expiry);
    if (op_start(op) != 0)
        r->gc_running = 0;
}

/* ---- Connections ---- */

/* One first outcome is in: when both are, the early commands go (or are
 * refused when the command connection is down). A command waits so for
 * the subscriptions: once answered, what it causes anywhere reaches this
 * process. */
static void first_done(fr_t *r)
{
    if (r->first > 0 && --r->first == 0)
        flush_early(r, bx_redis_up(r->cmd) ? 0 : BX_EUNAVAILABLE);
}

static void on_cmd_state(void *ud, int up, const char *why)
{
    fr_t *r = ud;
    static const char *const scripts[] = { DESTROY_LUA, SWEEP_LUA, SUBSCRIBE_LUA,
                                           PUBLISH_LUA, TAKE_LUA, REQUEUE_LUA };
    /* loaded before anything else goes: the EVALSHAs find them (a restarted
     * or flushed Redis answers NOSCRIPT, and the text follows) */
    for (size_t i = 0; up && i < sizeof(scripts) / sizeof(*scripts); i++) {
        const char *argv[3] = { "SCRIPT", "LOAD", scripts[i] };
        (void)bx_redis_command(r->cmd, NULL, NULL, 3, argv, NULL);
    }
    if (up && r->was_down)
        fprintf(stderr, "bayeux: redis engine (faye mode): %s is back\n", r->name);
    else if (!up)
        fprintf(stderr, "bayeux: redis engine (faye mode): %s unreachable (%s); answering "
                "'unavailable' until it is back\n", r->name, why ? why : "?");
    if (r->first && !r->cmd_seen) {
        r->cmd_seen = 1;
        first_done(r);
    }
    r->was_down = !up;
    busy_update(r);
}

static void on_sub_state(void *ud, int up, const char *why)
{
    fr_t *r = ud;
    (void)why;
    if (up) {
        bx_buf_t a = BX_BUF_INIT, b = BX_BUF_INIT;
        bx_buf_printf(&a, "%s/notifications/messages", r->ns);
        bx_buf_printf(&b, "%s/notifications/close", r->ns);
        const char *argv[3] = { "SUBSCRIBE", a.data, b.data };
        size_t lens[3] = { 9, a.len, b.len };
        (void)bx_redis_command(r->sub, NULL, NULL, 3, argv, lens);
        bx_buf_free(&a);
        bx_buf_free(&b);
    } else {
        fence_pass(r, 0);       /* nothing more comes before it is back */
        if (r->sub_first) {
            r->sub_first = 0;
            first_done(r);
        }
    }
    busy_update(r);
}

/* Subscribed again after the subscriber connection was down: what was
 * announced meanwhile was not heard, so every connection here looks. */
static void wake_held(fr_t *r)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    bx_dict_t held = r->held;

    memset(&r->held, 0, sizeof(r->held));
    while ((e = bx_dict_next(&held, &it)) != NULL) {
        char id[ID_MAX];
        if (e->klen >= ID_MAX)
            continue;
        memcpy(id, e->key, e->klen);
        id[e->klen] = '\0';
        if (!r->base.proxy.has_connection(r->base.proxy.ud, id))
            continue;           /* gone: forgotten */
        set_add(&r->held, id);
        set_del(&r->woken, id);
        wake(r, id);
    }
    bx_dict_free(&held);
}

/* A notification: ["message", channel, id]. */
static void on_push(void *ud, redisReply *rep)
{
    fr_t *r = ud;
    char id[ID_MAX];
    size_t nslen = strlen(r->ns);

    if (!r->closing && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3
        && rep->element[0]->type == REDIS_REPLY_STRING
        && strcmp(rep->element[0]->str, "subscribe") == 0) {
        /* the close channel's confirmation: subscribed to both; the
         * messages channel's alone: a fence */
        size_t nlen = rep->element[1]->type == REDIS_REPLY_STRING ? rep->element[1]->len : 0;
        if (nlen == strlen(r->ns) + 20
            && memcmp(rep->element[1]->str + nlen - 20, "/notifications/close", 20) == 0) {
            if (r->sub_first) {
                r->sub_first = 0;
                first_done(r);
            } else {
                wake_held(r);
            }
        } else {
            fence_pass(r, 0);
        }
        busy_update(r);
        return;
    }
    if (r->closing || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3
        || rep->element[0]->type != REDIS_REPLY_STRING
        || strcmp(rep->element[0]->str, "message") != 0
        || rep->element[1]->type != REDIS_REPLY_STRING
        || rep->element[2]->type != REDIS_REPLY_STRING
        || rep->element[2]->len >= ID_MAX || rep->element[1]->len < nslen
        || memcmp(rep->element[1]->str, r->ns, nslen) != 0)
        return;
    memcpy(id, rep->element[2]->str, rep->element[2]->len + 1);
    const char *what = rep->element[1]->str + nslen;
    if (strcmp(what, "/notifications/messages") == 0) {
        wake(r, id);
    } else if (strcmp(what, "/notifications/close") == 0) {
        if (bx_dict_get(&r->destroying, id, strlen(id)))
            return;             /* destroyed here: the destroy tells */
        set_del(&r->woken, id);
        set_del(&r->held, id);
        if (r->base.proxy.closed)
            r->base.proxy.closed(r->base.proxy.ud, id);
    }
}

/* ---- Life cycle ---- */

static void part_closed(void *ud)
{
    fr_t *r = ud;
    if (--r->open > 0)
        return;
    void (*done)(void *) = r->close_done;
    void *dud = r->close_ud;
    bx_dict_free(&r->woken);
    bx_dict_free(&r->held);
    bx_dict_free(&r->destroying);
    free(r);
    if (done)
        done(dud);
}

static void handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void fr_close(bx_engine_t *e, void (*done)(void *ud), void *ud)
{
    fr_t *r = (fr_t *)e;

    r->closing = 1;
    r->close_done = done;
    r->close_ud = ud;
    r->open = 4;
    flush_early(r, BX_ECANCELED);
    fence_release(r->fence_sent, BX_ECANCELED);
    fence_release(r->fence_wait, BX_ECANCELED);
    r->fence_sent = r->fence_wait = NULL;
    /* pending replies are answered, canceled, from inside these */
    bx_redis_close(r->cmd, part_closed, r);
    bx_redis_close(r->sub, part_closed, r);
    uv_close((uv_handle_t *)&r->keep, handle_closed);
    uv_close((uv_handle_t *)&r->gc, handle_closed);
}

/* ---- The shared store: commands of the layers above (engine.h) ---- */

typedef struct {
    fr_t *r;
    bx_engine_store_cb cb;
    void *ud;
} store_t;

static void on_stored(void *ud, int status, redisReply *rep)
{
    store_t *s = ud;
    fr_t *r = s->r;
    json_t *j = NULL;
    int st = status == BX_REDIS_ECANCELED || r->closing ? BX_ECANCELED
           : status ? BX_EUNAVAILABLE : 0;

    r->busy--;
    busy_update(r);
    if (st == 0)
        j = rep ? bx_engine_redis_reply_json(rep) : json_null();
    s->cb(s->ud, st, j);
    json_decref(j);
    free(s);
}

int bx_engine_fayeredis_store(bx_engine_t *e, int argc, const char **argv,
                              const size_t *lens, bx_engine_store_cb cb, void *ud)
{
    fr_t *r = (fr_t *)e;
    if (r->closing)
        return BX_ECANCELED;
    if (!bx_redis_up(r->cmd))
        return BX_EUNAVAILABLE;
    store_t *s = bx_calloc(1, sizeof(*s));
    s->r = r;
    s->cb = cb;
    s->ud = ud;
    if (bx_redis_command(r->cmd, on_stored, s, argc, argv, lens) != 0) {
        free(s);
        return BX_EUNAVAILABLE;
    }
    r->busy++;
    busy_update(r);
    return 0;
}

const char *bx_engine_fayeredis_ns(bx_engine_t *e)
{
    return ((fr_t *)e)->ns;
}

static const bx_engine_ops_t fayeredis_ops = {
    "fayeredis",
    fr_create_client,
    fr_client_exists,
    fr_destroy_client,
    fr_ping,
    fr_subscribe,
    fr_unsubscribe,
    fr_publish,
    fr_take,
    fr_requeue,
    fr_stats,
    fr_close,
    NULL,               /* history: not in faye-redis's layout */
    NULL,
};

bx_engine_t *bx_engine_fayeredis_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                     const bx_engine_opts_t *opts,
                                     const bx_redis_addr_t *addr)
{
    fr_t *r = bx_calloc(1, sizeof(*r));
    double every;

    r->base.ops = &fayeredis_ops;
    r->base.proxy = *proxy;
    r->base.loop = loop;
    r->base.timeout = opts && opts->timeout > 0 ? opts->timeout : 60;
    r->limit = opts && opts->queue_limit ? opts->queue_limit : DEFAULT_QUEUE_LIMIT;
    r->addr = *addr;
    snprintf(r->ns, sizeof(r->ns), "%s", addr->ns);
    if (addr->path[0])
        snprintf(r->name, sizeof(r->name), "%s/%d", addr->path, addr->db);
    else
        snprintf(r->name, sizeof(r->name), "%s:%d/%d", addr->host, addr->port, addr->db);
    r->first = 2;
    r->sub_first = 1;
    r->early_tail = &r->early;
    uv_prepare_init(loop, &r->keep);
    r->keep.data = r;
    /* a sweep every quarter timeout (at most a minute, faye-redis's
     * default): a client is gone between 2 and 2.25 x timeout after its
     * last connect */
    every = r->base.timeout / 4;
    if (every > 60)
        every = 60;
    if (every < 0.01)
        every = 0.01;
    uv_timer_init(loop, &r->gc);
    uv_unref((uv_handle_t *)&r->gc);
    r->gc.data = r;
    uv_timer_start(&r->gc, on_gc_timer, (uint64_t)(every * 1000), (uint64_t)(every * 1000));
    busy_update(r);
    r->cmd = bx_redis_new(loop, &r->addr, NULL, on_cmd_state, NULL, r);
    r->sub = bx_redis_new(loop, &r->addr, NULL, on_sub_state, on_push, r);
    return &r->base;
}
