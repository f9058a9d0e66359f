/*
 * retain.c - channels that keep their last message (see retain.h).
 *
 * One dict, channel -> the serialized message and its expiry. A message is
 * serialized once, as the engine serializes a delivery (without its
 * clientId), and handed to a subscriber through the engine's requeue, so
 * it reaches the client by whatever carries its other messages (a held
 * connect, a WebSocket, an EventSource, an in-process sink), through the
 * outgoing extensions as any delivery. Expired entries go at a lookup or in
 * a sweep at most once a second, on a publish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/channel.h"
#include "base/dict.h"
#include "base/json.h"
#include "bayeux/retain.h"

typedef struct {
    char *pattern;
    size_t len;
    uint64_t ttl_ms;
} rpat_t;

typedef struct {
    bx_chunk_t *msg;
    uint64_t expires;           /* loop time, ms */
} rentry_t;

struct bx_retain_s {
    bx_hub_t *hub;
    rpat_t *pats;
    size_t npats;
    bx_dict_t entries;
    uint64_t swept;
};

/* What a deferred send carries to the later turn. */
typedef struct {
    bx_hub_t *hub;
    char id[32];
    bx_chunkv_t msgs;
} rsend_t;

static void retain_free(void *ud)
{
    bx_retain_t *r = ud;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;

    while ((e = bx_dict_next(&r->entries, &it)) != NULL) {
        rentry_t *re = e->value;
        bx_chunk_unref(re->msg);
        free(re);
    }
    bx_dict_free(&r->entries);
    for (size_t i = 0; i < r->npats; i++)
        free(r->pats[i].pattern);
    free(r->pats);
    free(r);
}

bx_retain_t *bx_retain_of(bx_hub_t *h)
{
    bx_retain_t *r = bx_hub_store(h);

    if (!r) {
        r = bx_calloc(1, sizeof(*r));
        r->hub = h;
        bx_hub_set_store(h, r, retain_free);
    }
    return r;
}

int bx_retain_add(bx_retain_t *r, const char *pattern, double ttl)
{
    size_t len = strlen(pattern);

    if (!(bx_channel_parse(pattern, len) & (BX_CHANNEL_NAME | BX_CHANNEL_PATTERN)) || ttl <= 0)
        return -1;
    r->pats = bx_realloc(r->pats, (r->npats + 1) * sizeof(*r->pats));
    r->pats[r->npats].pattern = bx_strdup(pattern);
    r->pats[r->npats].len = len;
    r->pats[r->npats].ttl_ms = (uint64_t)(ttl * 1000.0 + 0.5);
    r->npats++;
    return 0;
}

static void drop(bx_retain_t *r, const char *ch, size_t len)
{
    rentry_t *re = bx_dict_del(&r->entries, ch, len);
    if (re) {
        bx_chunk_unref(re->msg);
        free(re);
    }
}

static void sweep(bx_retain_t *r, uint64_t now)
{
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    bx_buf_t gone = BX_BUF_INIT;            /* NUL-separated keys */

    r->swept = now;
    while ((e = bx_dict_next(&r->entries, &it)) != NULL) {
        rentry_t *re = e->value;
        if (re->expires <= now) {
            bx_buf_append(&gone, e->key, e->klen);
            bx_buf_append(&gone, "", 1);
        }
    }
    for (size_t i = 0; i < gone.len;) {
        size_t n = strlen(gone.data + i);
        drop(r, gone.data + i, n);
        i += n + 1;
    }
    bx_buf_free(&gone);
}

void bx_retain_publish(bx_retain_t *r, const json_t *msg)
{
    json_t *jch = json_object_get(msg, "channel");
    const char *ch = json_string_value(jch);
    size_t len = json_string_length(jch);
    uint64_t now = uv_now(bx_hub_loop(r->hub));
    rpat_t *p = NULL;

    if (!r->npats || !ch)
        return;
    if (now - r->swept >= 1000)
        sweep(r, now);
    for (size_t i = 0; i < r->npats && !p; i++)
        if (bx_channel_matches(r->pats[i].pattern, r->pats[i].len, ch, len))
            p = &r->pats[i];
    if (!p)
        return;
    json_t *data = json_object_get(msg, "data");
    if (json_is_object(data) && json_is_true(json_object_get(data, "final"))) {
        drop(r, ch, len);
        return;
    }
    json_t *copy = json_copy((json_t *)msg);
    json_object_del(copy, "clientId");
    rentry_t *re = bx_calloc(1, sizeof(*re));
    re->msg = bx_json_chunk(copy);
    re->expires = now + p->ttl_ms;
    json_decref(copy);
    rentry_t *old = bx_dict_set(&r->entries, ch, len, re);
    if (old) {
        bx_chunk_unref(old->msg);
        free(old);
    }
}

static void send_later(void *ud)
{
    rsend_t *s = ud;

    if (!bx_hub_closing(s->hub)) {
        bx_engine_t *e = bx_hub_engine(s->hub);
        /* in front of what is queued: it is older; nobody waits on it */
        e->ops->requeue(e, s->id, &s->msgs, NULL, NULL);
    }
    bx_chunkv_free(&s->msgs);
    free(s);
}

void bx_retain_subscribed(bx_retain_t *r, const char *client_id, const char *sub)
{
    size_t slen = strlen(sub);
    uint64_t now = uv_now(bx_hub_loop(r->hub));
    rsend_t *s = NULL;

    if (!r->entries.count)
        return;
    bx_dict_iter_t it = BX_DICT_ITER_INIT;
    bx_dict_entry_t *e;
    while ((e = bx_dict_next(&r->entries, &it)) != NULL) {
        rentry_t *re = e->value;
        if (re->expires <= now || !bx_channel_matches(sub, slen, e->key, e->klen))
            continue;
        if (!s) {
            s = bx_calloc(1, sizeof(*s));
            s->hub = r->hub;
            snprintf(s->id, sizeof(s->id), "%s", client_id);
        }
        bx_chunkv_push(&s->msgs, re->msg);
    }
    if (s)
        bx_hub_defer(r->hub, send_later, s);
}

size_t bx_retain_count(bx_retain_t *r)
{
    return r->entries.count;
}
