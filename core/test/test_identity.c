/*
 * test_identity.c - the hub's handshake listener (bx_hub_on_handshake),
 * through which an identity an incoming extension attached to a handshake
 * is bound to the client it made (server:enable_users, bayeux.ext.jwt).
 *
 * A server that does not listen, fed handshakes with bx_protocol_process:
 * the listener must see the new id and the message as the extensions left
 * it, once per client made, never inside the call, always before the
 * reply; never for a failed handshake.
 */
#include "bx_test.h"
#include "base/json.h"
#include "bayeux/protocol.h"
#include "server.h"

#include <stdlib.h>

static int g_inside;            /* set while bx_protocol_process runs */

typedef struct {
    int calls;
    int inside;                 /* a call came from inside bx_protocol_process */
    int replies_before;         /* replies already given when it was called */
    char id[32];
    char user[32];
} heard_t;

typedef struct {
    int calls;
    json_t *reply;              /* parsed */
} cap_t;

static cap_t g_cap;

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    cap_t *c = ud;
    bx_buf_t b = BX_BUF_INIT;
    (void)nmsgs;
    c->calls++;
    for (size_t i = 0; i < reply->n; i++)
        bx_buf_append(&b, reply->v[i]->data, reply->v[i]->len);
    if (c->reply)
        json_decref(c->reply);
    c->reply = bx_json_parse(b.data, b.len);
    bx_buf_free(&b);
}

static void on_handshake(void *ud, const char *id, const json_t *msg)
{
    heard_t *h = ud;
    const json_t *user = json_object_get(msg, "user");
    const char *name = bx_json_str(user, "id");
    h->calls++;
    h->inside |= g_inside;
    h->replies_before = g_cap.calls;
    snprintf(h->id, sizeof(h->id), "%s", id);
    snprintf(h->user, sizeof(h->user), "%s", name ? name : "");
}

static void closed(void *ud)
{
    (*(int *)ud)++;
}

/* Sends `text` and runs the loop until it is answered (bounded). */
static void roundtrip(uv_loop_t *loop, bx_server_t *s, const char *text)
{
    json_t *m = bx_json_parse(text, strlen(text));
    if (g_cap.reply)
        json_decref(g_cap.reply);
    memset(&g_cap, 0, sizeof(g_cap));
    g_inside = 1;
    bx_protocol_process(bx_server_hub(s), m, NULL, 0, on_reply, &g_cap);
    g_inside = 0;
    json_decref(m);
    for (int i = 0; i < 20 && !g_cap.calls; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

static void test_handshake_listener(void)
{
    uv_loop_t loop;
    bx_server_opts_t o;
    heard_t h = { 0 };
    int done = 0;

    uv_loop_init(&loop);
    bx_server_opts_default(&o);
    bx_server_t *s = bx_server_new(&loop, &o, NULL, 0);
    bx_hub_on_handshake(bx_server_hub(s), on_handshake, &h);

    roundtrip(&loop, s, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                        "\"supportedConnectionTypes\":[\"long-polling\"],"
                        "\"user\":{\"id\":\"alice\"}}]");
    BX_CHECK_INT(g_cap.calls, 1);
    BX_CHECK_INT(h.calls, 1);
    BX_CHECK_INT(h.inside, 0);
    BX_CHECK_INT(h.replies_before, 0);      /* bound before the reply went */
    BX_CHECK_STR(h.user, "alice");
    json_t *r = json_array_get(g_cap.reply, 0);
    BX_CHECK(json_is_true(json_object_get(r, "successful")));
    BX_CHECK_STR(h.id, bx_json_str(r, "clientId") ? bx_json_str(r, "clientId") : "?");
    /* the reply does not echo what was attached */
    BX_CHECK(json_object_get(r, "user") == NULL);

    /* a failed handshake makes no client: nothing to bind */
    roundtrip(&loop, s, "[{\"channel\":\"/meta/handshake\",\"supportedConnectionTypes\":"
                        "[\"long-polling\"],\"user\":{\"id\":\"mallory\"}}]");
    BX_CHECK_INT(g_cap.calls, 1);
    BX_CHECK_INT(h.calls, 1);

    /* a listener removed hears nothing */
    bx_hub_on_handshake(bx_server_hub(s), NULL, NULL);
    roundtrip(&loop, s, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                        "\"supportedConnectionTypes\":[\"long-polling\"]}]");
    BX_CHECK_INT(g_cap.calls, 1);
    BX_CHECK_INT(h.calls, 1);

    if (g_cap.reply)
        json_decref(g_cap.reply);
    memset(&g_cap, 0, sizeof(g_cap));
    bx_server_close(s, closed, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_LOOP_CLOSE(&loop);
}

typedef struct {
    int calls;
    int hold;                   /* keep the reply back */
    char user[32];
    void (*resume)(void *ud);
    void *resume_ud;
} hold_t;

static int on_hold(void *ud, const char *id, const json_t *msg, void (*resume)(void *),
                   void *resume_ud)
{
    hold_t *h = ud;
    const char *name = bx_json_str(json_object_get(msg, "user"), "id");
    (void)id;
    h->calls++;
    snprintf(h->user, sizeof(h->user), "%s", name ? name : "");
    if (!h->hold)
        return 0;
    h->resume = resume;
    h->resume_ud = resume_ud;
    return 1;
}

/* The handshake hold (bx_hub_on_handshake_hold): a hold that keeps the
 * reply back (an identity on its way to Redis) delays it until resume,
 * however long the loop runs meanwhile; one that declines does not. */
static void test_handshake_hold(void)
{
    uv_loop_t loop;
    bx_server_opts_t o;
    heard_t h = { 0 };
    hold_t k = { .hold = 1 };
    int done = 0;

    uv_loop_init(&loop);
    bx_server_opts_default(&o);
    bx_server_t *s = bx_server_new(&loop, &o, NULL, 0);
    BX_CHECK(s != NULL);
    bx_hub_on_handshake(bx_server_hub(s), on_handshake, &h);
    bx_hub_on_handshake_hold(bx_server_hub(s), on_hold, &k);

    roundtrip(&loop, s, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                        "\"supportedConnectionTypes\":[\"long-polling\"],"
                        "\"user\":{\"id\":\"alice\"}}]");
    BX_CHECK_INT(h.calls, 1);               /* the listener first */
    BX_CHECK_INT(k.calls, 1);
    BX_CHECK_STR(k.user, "alice");
    BX_CHECK_INT(g_cap.calls, 0);           /* held: no reply yet */
    BX_CHECK(k.resume != NULL);
    if (k.resume)
        k.resume(k.resume_ud);
    for (int i = 0; i < 20 && !g_cap.calls; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(g_cap.calls, 1);
    json_t *r = json_array_get(g_cap.reply, 0);
    BX_CHECK(json_is_true(json_object_get(r, "successful")));
    BX_CHECK_STR(h.id, bx_json_str(r, "clientId") ? bx_json_str(r, "clientId") : "?");

    /* a hold that declines: the reply goes at once */
    k.hold = 0;
    k.resume = NULL;
    roundtrip(&loop, s, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                        "\"supportedConnectionTypes\":[\"long-polling\"]}]");
    BX_CHECK_INT(k.calls, 2);
    BX_CHECK_INT(g_cap.calls, 1);

    if (g_cap.reply)
        json_decref(g_cap.reply);
    memset(&g_cap, 0, sizeof(g_cap));
    bx_server_close(s, closed, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    BX_RUN(test_handshake_listener);
    BX_RUN(test_handshake_hold);
    return BX_REPORT();
}
