/*
 * history.c - channel history with recovery (see history.h).
 *
 * One dict, channel -> its stream: a ring of the last `size` messages,
 * each serialized once (as the engine serializes a delivery, without its
 * clientId, with its ext.history), its offset and its expiry, and the top
 * offset given so far. Offsets are contiguous within a channel, starting
 * at 1. The messages go at their ttl (the ring is freed when empty); the
 * counter stays `keep` seconds longer, so that a client returning after a
 * quiet spell is told the truth (nothing missed, or too old). A channel
 * forgotten after that and published on again starts above every offset
 * a forgotten channel reached, so an old offset is "too old", never a
 * position in the new stream. The epoch is drawn once per store, so that
 * a restart (history lost) is seen as a changed epoch.
 *
 * Replay goes through the engine's requeue right after the engine applied
 * the subscription (the memory engine applies calls as they are made): the
 * messages up to the top offset go in front of the queue, and everything
 * published later comes behind them through the live subscription, so a
 * fresh session gets each message once, in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/channel.h"
#include "base/dict.h"
#include "base/json.h"
#include "bayeux/history.h"

typedef struct {
    char *pattern;
    size_t len;
    size_t size;
    uint64_t ttl_ms;
    uint64_t keep_ms;
} hpat_t;

typedef struct {
    uint64_t offset;
    uint64_t expires;           /* loop time, ms */
    bx_chunk_t *msg;
} hmsg_t;

typedef struct {
    hmsg_t *ring;               /* `size` slots; NULL while empty */
    size_t size, head, n;       /* oldest at head */
    uint64_t top;               /* the last offset given */
    uint64_t forget;            /* loop time (ms) after which an empty
                                   stream is forgotten */
} hchan_t;

struct bx_history_s {
    bx_hub_t *hub;
    hpat_t *pats;
    size_t npats;
    bx_dict_t chans;
    uint64_t swept;
    uint64_t forgotten;         /* the highest top of a forgotten stream */
    int shared;                 /* the engine keeps it (engine.h history) */
    char epoch[13];
};

static void chan_free(hchan_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        bx_chunk_unref(c->ring[(c->head + i) % c->size].msg);
    free(c->ring);
    free(c);
}

static void history_free(void *ud)
{
    bx_history_t *h = ud;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    while ((e = bx_dict_next(&h->chans, &it)) != NULL)
        chan_free(e->value);
    bx_dict_free(&h->chans);
    for (size_t i = 0; i < h->npats; i++)
        free(h->pats[i].pattern);
    free(h->pats);
    free(h);
}

bx_history_t *bx_history_of(bx_hub_t *hub)
{
    bx_history_t *h = bx_hub_history(hub);

    if (!h) {
        char id[32];
        h = bx_calloc(1, sizeof(*h));
        h->hub = hub;
        bx_engine_random_id(id);
        memcpy(h->epoch, id, sizeof(h->epoch) - 1);
        bx_hub_set_history(hub, h, history_free);
    }
    return h;
}

bx_history_t *bx_history_get(bx_hub_t *hub)
{
    return bx_hub_history(hub);
}

int bx_history_shared(const bx_history_t *h)
{
    return h->shared;
}

const char *bx_history_epoch(const bx_history_t *h)
{
    return h->epoch;
}

int bx_history_add(bx_history_t *h, const char *pattern, size_t size, double ttl,
                   double keep)
{
    size_t len = strlen(pattern);

    if (!(bx_channel_parse(pattern, len) & (BX_CHANNEL_NAME | BX_CHANNEL_PATTERN)) ||
        size == 0 || size > 1000000 || !(ttl > 0) || !(keep >= 0))
        return -1;
    bx_engine_t *e = bx_hub_engine(h->hub);
    if (e->ops->history) {
        /* shared by every process: the engine numbers and keeps */
        if (e->ops->history(e, pattern, size, ttl, keep) != 0)
            return -2;
        h->shared = 1;
    } else if (strcmp(e->ops->name, "memory") != 0) {
        return -2;              /* another process would number its own */
    }
    h->pats = bx_realloc(h->pats, (h->npats + 1) * sizeof(*h->pats));
    h->pats[h->npats].pattern = bx_strdup(pattern);
    h->pats[h->npats].len = len;
    h->pats[h->npats].size = size;
    h->pats[h->npats].ttl_ms = (uint64_t)(ttl * 1000.0 + 0.5);
    h->pats[h->npats].keep_ms = (uint64_t)(keep * 1000.0 + 0.5);
    h->npats++;
    return 0;
}

static const hpat_t *pattern_of(const bx_history_t *h, const char *ch, size_t len)
{
    for (size_t i = 0; i < h->npats; i++)
        if (bx_channel_matches(h->pats[i].pattern, h->pats[i].len, ch, len))
            return &h->pats[i];
    return NULL;
}

/* Drops the expired messages at the front (they are in publish order,
 * and one channel has one ttl). */
static void expire(hchan_t *c, uint64_t now)
{
    while (c->n && c->ring[c->head].expires <= now) {
        bx_chunk_unref(c->ring[c->head].msg);
        c->head = (c->head + 1) % c->size;
        c->n--;
    }
    if (!c->n && c->ring) {
        free(c->ring);
        c->ring = NULL;
        c->head = 0;
    }
}

/* Expired messages go; streams empty past their `forget` time are
 * forgotten (a publish on every new channel name must not keep memory). */
static void sweep(bx_history_t *h, uint64_t now)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    h->swept = now;
    while ((e = bx_dict_next(&h->chans, &it)) != NULL) {
        hchan_t *c = e->value;
        expire(c, now);
        if (!c->n && c->forget <= now) {
            if (c->top > h->forgotten)
                h->forgotten = c->top;
            bx_dict_del(&h->chans, e->key, e->klen);
            chan_free(c);
        }
    }
}

void bx_history_publish(bx_history_t *h, json_t *msg)
{
    json_t *jch = json_object_get(msg, "channel");
    const char *ch = json_string_value(jch);
    size_t len = json_string_length(jch);
    json_t *ext = json_object_get(msg, "ext");
    uint64_t now = uv_now(bx_hub_loop(h->hub));
    const hpat_t *p = ch ? pattern_of(h, ch, len) : NULL;

    if (h->shared) {
        /* the engine stamps it; only the server speaks for history */
        if (json_is_object(ext))
            json_object_del(ext, "history");
        return;
    }
    if (now - h->swept >= 1000)
        sweep(h, now);
    if (!p) {
        if (json_is_object(ext))
            json_object_del(ext, "history");
        return;
    }
    hchan_t *c = bx_dict_get(&h->chans, ch, len);
    if (!c) {
        c = bx_calloc(1, sizeof(*c));
        c->size = p->size;
        c->top = h->forgotten;
        bx_dict_set(&h->chans, ch, len, c);
    }
    expire(c, now);
    if (!c->ring)
        c->ring = bx_calloc(c->size, sizeof(*c->ring));
    c->forget = now + p->ttl_ms + p->keep_ms;
    if (!json_is_object(ext)) {
        ext = json_object();
        json_object_set_new(msg, "ext", ext);
    }
    uint64_t offset = ++c->top;
    json_t *pos = json_object();
    json_object_set_new(pos, "offset", json_integer((json_int_t)offset));
    json_object_set_new(pos, "epoch", json_string(h->epoch));
    json_object_set_new(ext, "history", pos);

    json_t *copy = json_copy(msg);
    json_object_del(copy, "clientId");
    if (c->n == c->size) {
        bx_chunk_unref(c->ring[c->head].msg);
        c->head = (c->head + 1) % c->size;
        c->n--;
    }
    hmsg_t *m = &c->ring[(c->head + c->n) % c->size];
    m->offset = offset;
    m->expires = now + p->ttl_ms;
    m->msg = bx_json_chunk(copy);
    c->n++;
    json_decref(copy);
}

int bx_history_valid(const json_t *want)
{
    const char *key;
    json_t *pos;

    if (!json_is_object(want) || json_object_size(want) > BX_HISTORY_MAX_POSITIONS)
        return 0;
    json_object_foreach((json_t *)want, key, pos) {
        json_t *off = json_object_get(pos, "offset");
        if (!json_is_object(pos) || !json_is_integer(off) || json_integer_value(off) < 0 ||
            !json_is_string(json_object_get(pos, "epoch")))
            return 0;
    }
    return 1;
}

static json_t *position(const bx_history_t *h, const hchan_t *c)
{
    json_t *pos = json_object();
    json_object_set_new(pos, "offset", json_integer(c ? (json_int_t)c->top : 0));
    json_object_set_new(pos, "epoch", json_string(h->epoch));
    return pos;
}

static void refuse(json_t *pos, const char *reason)
{
    json_object_set_new(pos, "recovered", json_false());
    json_object_set_new(pos, "reason", json_string(reason));
}

/* What one named channel missed: its messages after `want`'s offset go
 * to `out`; the answer says whether that is all of it. */
static json_t *recover(bx_history_t *h, const char *ch, size_t len, const json_t *want,
                       uint64_t now, bx_chunkv_t *out)
{
    hchan_t *c = bx_dict_get(&h->chans, ch, len);
    uint64_t from = (uint64_t)json_integer_value(json_object_get(want, "offset"));
    const char *epoch = json_string_value(json_object_get(want, "epoch"));
    json_t *pos = position(h, c);

    if (!pattern_of(h, ch, len)) {
        refuse(pos, "no history");
        return pos;
    }
    if (strcmp(epoch, h->epoch) != 0) {
        refuse(pos, "epoch changed");
        return pos;
    }
    uint64_t top = c ? c->top : 0;
    if (!c && from > 0 && from <= h->forgotten) {
        refuse(pos, "too old");         /* its stream was forgotten */
        return pos;
    }
    if (from > top) {
        refuse(pos, "unknown offset");
        return pos;
    }
    if (c)
        expire(c, now);
    /* the first offset still kept (top + 1 when none is) */
    uint64_t first = c && c->n ? c->ring[c->head].offset : top + 1;
    if (from + 1 < first) {
        refuse(pos, "too old");
        return pos;
    }
    for (size_t i = 0; c && i < c->n; i++) {
        hmsg_t *m = &c->ring[(c->head + i) % c->size];
        if (m->offset > from)
            bx_chunkv_push(out, m->msg);
    }
    json_object_set_new(pos, "recovered", json_true());
    return pos;
}

void bx_history_subscribed(bx_history_t *h, const char *client_id, const char *sub,
                           const json_t *want, json_t *answer)
{
    size_t slen = strlen(sub);
    uint64_t now = uv_now(bx_hub_loop(h->hub));
    bx_chunkv_t out = BX_CHUNKV_INIT;
    const char *key;
    json_t *pos;

    json_object_foreach((json_t *)want, key, pos) {
        size_t klen = strlen(key);
        if (bx_channel_matches(sub, slen, key, klen))
            json_object_set_new(answer, key, recover(h, key, klen, pos, now, &out));
    }
    /* the starting points of the channels it did not name */
    if (bx_channel_parse(sub, slen) & BX_CHANNEL_PATTERN) {
        bx_dict_iter_t it = BX_DICT_ITER_INIT;
        bx_dict_entry_t *e;
        while ((e = bx_dict_next(&h->chans, &it)) != NULL) {
            if (strlen(e->key) != e->klen || json_object_get(answer, e->key) ||
                !bx_channel_matches(sub, slen, e->key, e->klen))
                continue;
            json_object_set_new(answer, e->key, position(h, e->value));
        }
    } else if (!json_object_get(answer, sub) && pattern_of(h, sub, slen)) {
        json_object_set_new(answer, sub, position(h, bx_dict_get(&h->chans, sub, slen)));
    }
    if (out.n) {
        bx_engine_t *e = bx_hub_engine(h->hub);
        /* in front of what is queued: older than anything published since
         * the subscription took effect; nobody waits on the answer */
        e->ops->requeue(e, client_id, &out, NULL, NULL);
    }
    bx_chunkv_free(&out);
}
