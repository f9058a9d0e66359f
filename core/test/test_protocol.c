/*
 * test_protocol.c - Bayeux semantics driven through bx_protocol_process on a
 * server that does not listen (reference/bayeux-faye.md §1-§6).
 *
 * Each test makes a server on its own loop, feeds it JSON batches, captures
 * the reply (chunks joined and parsed) and compares fields. It ends with
 * bx_server_close, runs the loop until the server is gone, and
 * BX_LOOP_CLOSE.
 */
#include "bx_test.h"
#include "base/json.h"
#include "bayeux/protocol.h"
#include "server.h"

#include <stdlib.h>

static int g_inside;            /* set while bx_protocol_process runs */
static int g_reentered;         /* a reply came from inside the call */

typedef struct {
    int calls;
    size_t nmsgs;
    char *text;                 /* the joined reply */
    json_t *reply;              /* parsed */
} cap_t;

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    cap_t *c = ud;
    bx_buf_t b = BX_BUF_INIT;

    g_reentered |= g_inside;
    c->calls++;
    c->nmsgs = nmsgs;
    for (size_t i = 0; i < reply->n; i++)
        bx_buf_append(&b, reply->v[i]->data, reply->v[i]->len);
    bx_buf_append(&b, "", 1);
    free(c->text);
    if (c->reply)
        json_decref(c->reply);
    c->text = b.data;
    c->reply = bx_json_parse(b.data, b.len - 1);
}

static void cap_free(cap_t *c)
{
    free(c->text);
    if (c->reply)
        json_decref(c->reply);
    memset(c, 0, sizeof(*c));
}

/* Element i of the reply array (borrowed) or NULL. */
static json_t *rep(const cap_t *c, size_t i)
{
    return json_is_array(c->reply) ? json_array_get(c->reply, i) : NULL;
}

static size_t rep_n(const cap_t *c)
{
    return json_is_array(c->reply) ? json_array_size(c->reply) : (size_t)-1;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = bx_json_str(o, k);
    return s ? s : "(absent)";
}

static int is_true(const json_t *o, const char *k)
{
    return json_is_true(json_object_get(o, k));
}

static int is_false(const json_t *o, const char *k)
{
    return json_is_false(json_object_get(o, k));
}

/* Whether o[k] equals the JSON text `want`. */
static int field_is(const json_t *o, const char *k, const char *want)
{
    json_t *w = bx_json_parse(want, strlen(want));
    int eq = w && json_equal(json_object_get(o, k), w);
    if (!eq) {
        char *got = json_dumps(json_object_get(o, k), JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(stderr, "  %s: got %s, want %s\n", k, got ? got : "(absent)", want);
        free(got);
    }
    if (w)
        json_decref(w);
    return eq;
}

/* ---- Driving ---- */

typedef struct {
    uv_loop_t loop;
    bx_server_t *s;
} env_t;

static bx_batch_t *send_flags(env_t *env, const char *text, int flags, cap_t *c)
{
    json_t *m = bx_json_parse(text, strlen(text));
    if (!m && strcmp(text, "null") != 0) {
        fprintf(stderr, "  bad test JSON: %s\n", text);
        abort();
    }
    g_inside = 1;
    bx_batch_t *b = bx_protocol_process(bx_server_hub(env->s), m, NULL, flags, on_reply, c);
    g_inside = 0;
    if (m)
        json_decref(m);         /* borrowed by the protocol */
    return b;
}

static bx_batch_t *post(env_t *env, const char *text, cap_t *c)
{
    return send_flags(env, text, 0, c);
}

static void turns(env_t *env, int n)
{
    while (n-- > 0)
        uv_run(&env->loop, UV_RUN_NOWAIT);
}

/* Runs turns until `c` has its reply (at most `max`); returns the count. */
static int wait_reply(env_t *env, cap_t *c, int max)
{
    int n = 0;
    while (!c->calls && n < max) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
        n++;
    }
    return n;
}

/* Sends and waits; returns the reply's first element. */
static json_t *roundtrip_flags(env_t *env, const char *text, int flags, cap_t *c)
{
    cap_free(c);
    send_flags(env, text, flags, c);
    if (c->calls)
        return NULL;            /* answered inside the call: a failure */
    wait_reply(env, c, 20);
    return c->calls == 1 ? rep(c, 0) : NULL;
}

static json_t *roundtrip(env_t *env, const char *text, cap_t *c)
{
    return roundtrip_flags(env, text, 0, c);
}

/* Handshakes; fills `id`. */
static int handshake(env_t *env, char id[32])
{
    cap_t c = { 0 };
    json_t *r = roundtrip(env, "{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                               "\"supportedConnectionTypes\":[\"long-polling\"]}", &c);
    int ok = r && is_true(r, "successful") && strlen(str(r, "clientId")) == 31;
    if (ok)
        memcpy(id, str(r, "clientId"), 32);
    cap_free(&c);
    return ok ? 0 : -1;
}

static int subscribe_ok(env_t *env, const char *id, const char *channel)
{
    char text[256];
    cap_t c = { 0 };
    snprintf(text, sizeof(text),
             "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"%s\"}",
             id, channel);
    json_t *r = roundtrip(env, text, &c);
    int ok = r && is_true(r, "successful");
    cap_free(&c);
    return ok ? 0 : -1;
}

static void connect_text(char *out, size_t n, const char *id, int timeout_ms)
{
    if (timeout_ms >= 0)
        snprintf(out, n, "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
                         "\"long-polling\",\"id\":\"c\",\"advice\":{\"timeout\":%d}}", id,
                 timeout_ms);
    else
        snprintf(out, n, "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
                         "\"long-polling\",\"id\":\"c\"}", id);
}

static void env_open(env_t *env)
{
    bx_server_opts_t o;
    uv_loop_init(&env->loop);
    bx_server_opts_default(&o);
    env->s = bx_server_new(&env->loop, &o, NULL, 0);
    g_reentered = 0;
}

static void closed(void *ud)
{
    (*(int *)ud)++;
}

#define ENV_CLOSE(env)                                                        \
    do {                                                                      \
        int closed_ = 0;                                                      \
        bx_server_close((env)->s, closed, &closed_);                          \
        BX_CHECK_INT(closed_, 0);                                             \
        uv_run(&(env)->loop, UV_RUN_DEFAULT);                                 \
        BX_CHECK_INT(closed_, 1);                                             \
        BX_CHECK(!g_reentered);                                               \
        BX_LOOP_CLOSE(&(env)->loop);                                          \
    } while (0)

static const char *const TYPES =
    "[\"long-polling\",\"cross-origin-long-polling\",\"callback-polling\","
    "\"websocket\",\"eventsource\",\"in-process\"]";

/* ---- /meta/handshake ---- */

static void test_handshake_ok(void)
{
    env_t env;
    cap_t c = { 0 };
    env_open(&env);

    post(&env, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
               "\"supportedConnectionTypes\":[\"long-polling\"],\"id\":\"1\"}]", &c);
    BX_CHECK_INT(c.calls, 0);                   /* never inside the call */
    wait_reply(&env, &c, 20);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(c.nmsgs, 1);
    BX_CHECK_INT(rep_n(&c), 1);
    json_t *r = rep(&c, 0);
    BX_CHECK_STR(str(r, "id"), "1");
    BX_CHECK_STR(str(r, "channel"), "/meta/handshake");
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "version"), "1.0");
    BX_CHECK(field_is(r, "supportedConnectionTypes", TYPES));
    const char *id = str(r, "clientId");
    BX_CHECK_INT(strlen(id), 31);
    for (int i = 0; i < 31; i++)
        BX_CHECK((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z'));
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"retry\",\"interval\":0,\"timeout\":60000}"));
    BX_CHECK(json_object_get(r, "error") == NULL);
    BX_CHECK(json_object_get(r, "ext") == NULL);

    /* a single object (not an array) is accepted; any truthy version */
    json_t *r2 = roundtrip(&env, "{\"channel\":\"/meta/handshake\",\"version\":2,"
                                 "\"supportedConnectionTypes\":[\"iframe\",\"websocket\"]}", &c);
    BX_CHECK(r2 != NULL);
    BX_CHECK(is_true(r2, "successful"));
    BX_CHECK(json_object_get(r2, "id") == NULL);
    BX_CHECK_INT(strlen(str(r2, "clientId")), 31);
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_handshake_errors(void)
{
    env_t env;
    cap_t c = { 0 };
    json_t *r;
    env_open(&env);

    r = roundtrip(&env, "{\"channel\":\"/meta/handshake\",\"supportedConnectionTypes\":"
                        "[\"long-polling\"],\"id\":\"2\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "402:version:Missing required parameter");
    BX_CHECK(json_object_get(r, "clientId") == NULL);
    BX_CHECK_STR(str(r, "version"), "1.0");
    BX_CHECK(field_is(r, "supportedConnectionTypes", TYPES));
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"handshake\"}"));

    r = roundtrip(&env, "{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                        "\"supportedConnectionTypes\":[\"foo\",\"bar\"],\"id\":\"4\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "301:foo,bar:Connection types not supported");
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"handshake\"}"));
    BX_CHECK(json_object_get(r, "clientId") == NULL);

    /* later checks overwrite earlier ones: no version and no types */
    r = roundtrip(&env, "{\"channel\":\"/meta/handshake\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:supportedConnectionTypes:Missing required parameter");
    /* a version "" is falsy */
    r = roundtrip(&env, "{\"channel\":\"/meta/handshake\",\"version\":\"\","
                        "\"supportedConnectionTypes\":[\"long-polling\"]}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:version:Missing required parameter");
    cap_free(&c);
    ENV_CLOSE(&env);
}

/* ---- /meta/connect ---- */

static void test_connect_errors(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[256];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    r = roundtrip(&env, "{\"channel\":\"/meta/connect\",\"clientId\":\"nope\","
                        "\"connectionType\":\"long-polling\",\"id\":\"c1\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_INT(rep_n(&c), 1);
    BX_CHECK_STR(str(r, "id"), "c1");
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "401:nope:Unknown client");
    BX_CHECK(json_object_get(r, "clientId") == NULL);
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"handshake\"}"));

    snprintf(text, sizeof(text), "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:connectionType:Missing required parameter");
    BX_CHECK(json_object_get(r, "clientId") == NULL);
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"handshake\"}"));

    snprintf(text, sizeof(text),
             "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":\"foo\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "301:foo:Connection types not supported");

    r = roundtrip(&env, "{\"channel\":\"/meta/connect\",\"connectionType\":\"long-polling\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:clientId:Missing required parameter");
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_connect_timeout_zero(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    connect_text(text, sizeof(text), id, 0);
    post(&env, text, &c);
    BX_CHECK_INT(c.calls, 0);
    int n = wait_reply(&env, &c, 10);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK(n <= 3);                           /* answered at once, not held */
    BX_CHECK_INT(rep_n(&c), 1);
    json_t *r = rep(&c, 0);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "channel"), "/meta/connect");
    BX_CHECK_STR(str(r, "clientId"), id);
    BX_CHECK_STR(str(r, "id"), "c");
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"retry\",\"interval\":0,\"timeout\":60000}"));

    /* eventsource: hold forced to 0, interval = timeout, timeout = 0 */
    snprintf(text, sizeof(text), "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
                                 "\"connectionType\":\"eventsource\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"retry\",\"interval\":60000,\"timeout\":0}"));
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_connect_timeout_zero_flushes_queue(void)
{
    /* Faye's connect opens the connection, empties the queue into it, then
     * answers: a connect with advice.timeout 0 (what the Faye client sends
     * when a connect travels with other messages) carries what was queued */
    env_t env;
    cap_t c = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    BX_CHECK_INT(subscribe_ok(&env, id, "/z"), 0);
    BX_CHECK(roundtrip(&env, "{\"channel\":\"/z\",\"data\":\"queued\"}", &c) != NULL);

    connect_text(text, sizeof(text), id, 0);
    json_t *r = roundtrip(&env, text, &c);
    int ok = r && is_true(r, "successful");
    size_t n = rep_n(&c);
    int queued = n == 2 && strcmp(str(rep(&c, 1), "data"), "queued") == 0;
    cap_free(&c);
    ENV_CLOSE(&env);            /* before the checks: a failure leaks nothing */
    BX_CHECK(ok);
    BX_CHECK_INT(n, 2);
    BX_CHECK(queued);
}

static void test_connect_held_then_message(void)
{
    env_t env;
    cap_t c = { 0 }, p = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    BX_CHECK_INT(subscribe_ok(&env, id, "/h"), 0);

    connect_text(text, sizeof(text), id, -1);   /* held for the server timeout */
    post(&env, text, &c);
    turns(&env, 10);
    BX_CHECK_INT(c.calls, 0);

    json_t *ack = roundtrip(&env, "{\"channel\":\"/h\",\"data\":\"x\",\"id\":\"p1\","
                                  "\"ext\":{\"a\":1}}", &p);
    BX_CHECK(ack != NULL);
    BX_CHECK(is_true(ack, "successful"));
    wait_reply(&env, &c, 10);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(c.nmsgs, 2);
    BX_CHECK_INT(rep_n(&c), 2);
    json_t *r = rep(&c, 0), *m = rep(&c, 1);
    BX_CHECK_STR(str(r, "channel"), "/meta/connect");
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "clientId"), id);
    BX_CHECK_STR(str(m, "channel"), "/h");
    BX_CHECK_STR(str(m, "data"), "x");
    BX_CHECK_STR(str(m, "id"), "p1");
    BX_CHECK(field_is(m, "ext", "{\"a\":1}"));
    BX_CHECK(json_object_get(m, "successful") == NULL);
    BX_CHECK(json_object_get(m, "clientId") == NULL);
    cap_free(&c);
    cap_free(&p);
    ENV_CLOSE(&env);
}

/* A held connect keeps its reply as its id only when the text is of a
 * shape seen before (held_keep): whatever the id (string, number, escapes,
 * a text that looks like a member, too long to keep short, none), each client
 * held at once gets its own id and clientId back, and the rest of the
 * reply as it was. */
static void test_held_reply_ids(void)
{
    static const char *const IDS[] = {
        "\"c\"", "\"1\"", "7", "\"a\\\"b\"", "\"\\\"clientId\\\":\\\"x\"",
        "\"a-very-long-message-id-0123456789\"", "\"\\u0000\"", "12345678901234", NULL,
    };
    enum { N = sizeof(IDS) / sizeof(IDS[0]) };
    env_t env;
    cap_t c[N], p = { 0 };
    char ids[N][32], text[512];
    env_open(&env);
    memset(c, 0, sizeof(c));
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            if (round == 0) {
                BX_CHECK_INT(handshake(&env, ids[i]), 0);
                BX_CHECK_INT(subscribe_ok(&env, ids[i], "/held"), 0);
            }
            snprintf(text, sizeof(text),
                     "{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
                     "\"long-polling\"%s%s}", ids[i], IDS[i] ? ",\"id\":" : "",
                     IDS[i] ? IDS[i] : "");
            post(&env, text, &c[i]);
        }
        turns(&env, 10);
        json_t *ack = roundtrip(&env, "{\"channel\":\"/held\",\"data\":1}", &p);
        BX_CHECK(ack && is_true(ack, "successful"));
        cap_free(&p);
        for (int i = 0; i < N; i++) {
            wait_reply(&env, &c[i], 10);
            BX_CHECK_INT(c[i].calls, 1);
            json_t *r = rep(&c[i], 0);
            BX_CHECK_STR(str(r, "channel"), "/meta/connect");
            BX_CHECK_STR(str(r, "clientId"), ids[i]);
            BX_CHECK(is_true(r, "successful"));
            if (IDS[i])
                BX_CHECK(field_is(r, "id", IDS[i]));
            else
                BX_CHECK(json_object_get(r, "id") == NULL);
            BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"retry\",\"interval\":0,"
                                          "\"timeout\":60000}"));
            BX_CHECK_INT(json_object_size(r), IDS[i] ? 5 : 4);
            BX_CHECK_STR(str(rep(&c[i], 1), "channel"), "/held");
            cap_free(&c[i]);
        }
    }
    ENV_CLOSE(&env);
}

static void test_connect_batch_with_publish(void)
{
    /* [connect, publish]: the publish ack first (completion order), then
     * the connect reply, then the delivery */
    env_t env;
    cap_t c = { 0 };
    char id[32], text[512];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    BX_CHECK_INT(subscribe_ok(&env, id, "/b"), 0);
    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\",\"connectionType\":"
             "\"long-polling\",\"id\":\"c\"},{\"channel\":\"/b\",\"data\":7,\"id\":\"p\","
             "\"clientId\":\"%s\"}]", id, id);
    post(&env, text, &c);
    wait_reply(&env, &c, 20);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(rep_n(&c), 3);
    BX_CHECK_STR(str(rep(&c, 0), "id"), "p");
    BX_CHECK(is_true(rep(&c, 0), "successful"));
    BX_CHECK_STR(str(rep(&c, 1), "channel"), "/meta/connect");
    BX_CHECK_STR(str(rep(&c, 2), "channel"), "/b");
    BX_CHECK(field_is(rep(&c, 2), "data", "7"));
    BX_CHECK(json_object_get(rep(&c, 2), "clientId") == NULL);
    cap_free(&c);
    ENV_CLOSE(&env);
}

/* ---- /meta/subscribe ---- */

static void test_subscribe_forms(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[512];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                 "\"subscription\":\"/s\",\"id\":\"s1\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "clientId"), id);
    BX_CHECK_STR(str(r, "id"), "s1");
    BX_CHECK(field_is(r, "subscription", "\"/s\""));
    BX_CHECK(json_object_get(r, "advice") == NULL);

    snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                 "\"subscription\":[\"/foo\",\"/bar/*\",\"/baz/**\"]}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK(field_is(r, "subscription", "[\"/foo\",\"/bar/*\",\"/baz/**\"]"));

    /* unknown client: 401, clientId kept, subscription echoed */
    r = roundtrip(&env, "{\"channel\":\"/meta/subscribe\",\"clientId\":\"nope\","
                        "\"subscription\":\"/foo\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "401:nope:Unknown client");
    BX_CHECK_STR(str(r, "clientId"), "nope");
    BX_CHECK(field_is(r, "subscription", "\"/foo\""));

    /* missing subscription: 402, echoed as [] */
    snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:subscription:Missing required parameter");
    BX_CHECK(field_is(r, "subscription", "[]"));

    /* the subscriptions route: /s, /bar/x and /baz/y/z reach the client */
    static const char *const pubs[] = {
        "{\"channel\":\"/s\",\"data\":1}", "{\"channel\":\"/bar/x\",\"data\":2}",
        "{\"channel\":\"/baz/y/z\",\"data\":3}", "{\"channel\":\"/bar/x/y\",\"data\":4}", NULL
    };
    for (int i = 0; pubs[i]; i++)
        BX_CHECK(roundtrip(&env, pubs[i], &c) != NULL);
    connect_text(text, sizeof(text), id, -1);
    BX_CHECK(roundtrip(&env, text, &c) != NULL);
    BX_CHECK_INT(rep_n(&c), 4);
    BX_CHECK(field_is(rep(&c, 1), "data", "1"));
    BX_CHECK(field_is(rep(&c, 2), "data", "2"));
    BX_CHECK(field_is(rep(&c, 3), "data", "3"));
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_subscribe_forbidden(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[512];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    static const char *const chans[] = { "/meta/x", "/service/x", "/service/**", "/meta", NULL };
    for (int i = 0; chans[i]; i++) {
        char want[128];
        snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                     "\"subscription\":\"%s\"}", id, chans[i]);
        r = roundtrip(&env, text, &c);
        BX_CHECK(r != NULL);
        BX_CHECK(is_false(r, "successful"));
        snprintf(want, sizeof(want), "403:%s:Forbidden channel", chans[i]);
        BX_CHECK_STR(str(r, "error"), want);
        BX_CHECK_STR(str(r, "clientId"), id);
        /* an in-process client may */
        r = roundtrip_flags(&env, text, BX_PROTO_LOCAL, &c);
        BX_CHECK(r != NULL);
        BX_CHECK(is_true(r, "successful"));
        /* unsubscribe follows the same rule */
        snprintf(text, sizeof(text), "{\"channel\":\"/meta/unsubscribe\",\"clientId\":\"%s\","
                                     "\"subscription\":\"%s\"}", id, chans[i]);
        r = roundtrip(&env, text, &c);
        BX_CHECK(r != NULL);
        BX_CHECK_STR(str(r, "error"), want);
        r = roundtrip_flags(&env, text, BX_PROTO_LOCAL, &c);
        BX_CHECK(r != NULL);
        BX_CHECK(is_true(r, "successful"));
    }

    /* the loop stops at the first bad channel; earlier ones stay */
    snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                 "\"subscription\":[\"/ok\",\"/meta/x\",\"/ok2\"]}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "403:/meta/x:Forbidden channel");
    BX_CHECK(field_is(r, "subscription", "[\"/ok\",\"/meta/x\",\"/ok2\"]"));
    BX_CHECK(roundtrip(&env, "{\"channel\":\"/ok2\",\"data\":2}", &c) != NULL);
    BX_CHECK(roundtrip(&env, "{\"channel\":\"/ok\",\"data\":1}", &c) != NULL);
    connect_text(text, sizeof(text), id, -1);
    BX_CHECK(roundtrip(&env, text, &c) != NULL);
    BX_CHECK_INT(rep_n(&c), 2);
    BX_CHECK_STR(str(rep(&c, 1), "channel"), "/ok");
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_subscribe_invalid(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[512];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    static const char *const bad[] = { "/foo/*/bar", "foo", "/a b", "/", "/a/***", "", NULL };
    for (int i = 0; bad[i]; i++) {
        char want[128];
        snprintf(want, sizeof(want), "405:%s:Invalid channel", bad[i]);
        for (int local = 0; local < 2; local++) {
            snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                         "\"subscription\":[\"%s\"]}", id, bad[i]);
            r = roundtrip_flags(&env, text, local ? BX_PROTO_LOCAL : 0, &c);
            BX_CHECK(r != NULL);
            BX_CHECK(is_false(r, "successful"));
            BX_CHECK_STR(str(r, "error"), want);
        }
    }
    /* a non-string entry is an invalid channel with an empty name */
    snprintf(text, sizeof(text), "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                                 "\"subscription\":[42]}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "405::Invalid channel");
    cap_free(&c);
    ENV_CLOSE(&env);
}

/* ---- Publish and other channels ---- */

static void test_publish(void)
{
    env_t env;
    cap_t c = { 0 };
    json_t *r;
    env_open(&env);

    r = roundtrip(&env, "{\"channel\":\"/p\",\"data\":1,\"id\":\"x\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "id"), "x");
    BX_CHECK_STR(str(r, "channel"), "/p");
    BX_CHECK_INT(json_object_size(r), 3);       /* skeleton only, no data */

    /* unknown clientId: not validated, echoed */
    r = roundtrip(&env, "{\"channel\":\"/p\",\"data\":null,\"clientId\":\"ghost\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "clientId"), "ghost");

    r = roundtrip(&env, "{\"channel\":\"/p\",\"id\":\"y\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "402:data:Missing required parameter");

    r = roundtrip(&env, "{\"channel\":\"/p/*\",\"data\":1}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "405:/p/*:Invalid channel");
    r = roundtrip(&env, "{\"channel\":\"/p/**\",\"data\":1}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "405:/p/**:Invalid channel");
    r = roundtrip(&env, "{\"data\":1,\"id\":\"p9\"}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "405::Invalid channel");
    BX_CHECK_STR(str(r, "id"), "p9");
    /* 402 data overwrites 405 */
    r = roundtrip(&env, "{}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:data:Missing required parameter");
    BX_CHECK_INT(json_object_size(r), 2);
    /* [1] behaves like {} */
    r = roundtrip(&env, "[1]", &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "402:data:Missing required parameter");
    /* /service is published like any channel */
    r = roundtrip(&env, "{\"channel\":\"/service/x\",\"data\":1}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_meta_other(void)
{
    env_t env;
    cap_t c = { 0 };
    json_t *r;
    env_open(&env);

    static const char *const chans[] = { "/meta/foo", "/meta", "/meta/subscribe/x", NULL };
    for (int i = 0; chans[i]; i++) {
        char text[256], want[128];
        snprintf(text, sizeof(text), "{\"channel\":\"%s\",\"data\":1,\"id\":\"m\"}", chans[i]);
        snprintf(want, sizeof(want), "403:%s:Forbidden channel", chans[i]);
        r = roundtrip(&env, text, &c);
        BX_CHECK(r != NULL);
        BX_CHECK(is_false(r, "successful"));
        BX_CHECK_STR(str(r, "error"), want);
        BX_CHECK_STR(str(r, "id"), "m");
        BX_CHECK(json_object_get(r, "advice") == NULL);
    }
    cap_free(&c);
    ENV_CLOSE(&env);
}

static void test_empty_batches(void)
{
    env_t env;
    cap_t c = { 0 };
    env_open(&env);

    static const char *const empties[] = { "[]", "null", "[null]", "[null,null]", NULL };
    for (int i = 0; empties[i]; i++) {
        cap_free(&c);
        post(&env, empties[i], &c);
        BX_CHECK_INT(c.calls, 0);               /* not inside the call */
        wait_reply(&env, &c, 5);
        BX_CHECK_INT(c.calls, 1);
        BX_CHECK_INT(c.nmsgs, 0);
        BX_CHECK_STR(c.text, "[]");
    }
    /* [null, publish] answers the publish only */
    cap_free(&c);
    post(&env, "[null,{\"channel\":\"/n\",\"data\":1}]", &c);
    wait_reply(&env, &c, 5);
    BX_CHECK_INT(c.nmsgs, 1);
    BX_CHECK_INT(rep_n(&c), 1);
    cap_free(&c);
    ENV_CLOSE(&env);
}

/* ---- Cancel, disconnect, close ---- */

static void test_cancel_held_connect(void)
{
    env_t env;
    cap_t c = { 0 }, p = { 0 }, c2 = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    BX_CHECK_INT(subscribe_ok(&env, id, "/k"), 0);

    connect_text(text, sizeof(text), id, -1);
    bx_batch_t *b = post(&env, text, &c);
    turns(&env, 5);                             /* now held */
    BX_CHECK_INT(c.calls, 0);
    bx_batch_cancel(b);                         /* the transport went away */
    BX_CHECK(roundtrip(&env, "{\"channel\":\"/k\",\"data\":\"kept\"}", &p) != NULL);
    turns(&env, 5);
    BX_CHECK_INT(c.calls, 0);                   /* canceled: never called */

    connect_text(text, sizeof(text), id, -1);
    json_t *r = roundtrip(&env, text, &c2);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_INT(rep_n(&c2), 2);
    BX_CHECK_STR(str(rep(&c2, 1), "data"), "kept");
    BX_CHECK_INT(c.calls, 0);
    cap_free(&c);
    cap_free(&p);
    cap_free(&c2);
    ENV_CLOSE(&env);
}

static void test_cancel_before_hold(void)
{
    /* canceled in the same turn, before the client lookup answered: the
     * connect must not be held later on behalf of the dead batch */
    env_t env;
    cap_t c = { 0 }, p = { 0 }, c2 = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    BX_CHECK_INT(subscribe_ok(&env, id, "/k"), 0);

    connect_text(text, sizeof(text), id, -1);
    bx_batch_t *b = post(&env, text, &c);
    bx_batch_cancel(b);
    turns(&env, 5);
    BX_CHECK(roundtrip(&env, "{\"channel\":\"/k\",\"data\":\"kept\"}", &p) != NULL);
    turns(&env, 5);
    BX_CHECK_INT(c.calls, 0);

    connect_text(text, sizeof(text), id, -1);
    json_t *r = roundtrip(&env, text, &c2);     /* held (no reply) if the message was lost */
    int ok = r && is_true(r, "successful");
    size_t n = rep_n(&c2);
    int kept = n == 2 && strcmp(str(rep(&c2, 1), "data"), "kept") == 0;
    cap_free(&p);
    ENV_CLOSE(&env);            /* answers a connect still held; leaks nothing */
    cap_free(&c);
    cap_free(&c2);
    BX_CHECK_INT(c.calls, 0);
    BX_CHECK(ok);
    BX_CHECK_INT(n, 2);
    BX_CHECK(kept);
}

static void test_disconnect_releases_connect(void)
{
    env_t env;
    cap_t c = { 0 }, d = { 0 };
    char id[32], text[256];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    connect_text(text, sizeof(text), id, -1);
    post(&env, text, &c);
    turns(&env, 5);
    BX_CHECK_INT(c.calls, 0);
    snprintf(text, sizeof(text), "{\"channel\":\"/meta/disconnect\",\"clientId\":\"%s\","
                                 "\"id\":\"d\"}", id);
    r = roundtrip(&env, text, &d);
    BX_CHECK(r != NULL);
    BX_CHECK(is_true(r, "successful"));
    BX_CHECK_STR(str(r, "clientId"), id);
    BX_CHECK(json_object_get(r, "advice") == NULL);
    wait_reply(&env, &c, 10);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK(is_true(rep(&c, 0), "successful"));   /* a normal connect reply */
    BX_CHECK_INT(rep_n(&c), 1);

    /* the client is gone */
    r = roundtrip(&env, text, &d);
    BX_CHECK(r != NULL);
    char want[64];
    snprintf(want, sizeof(want), "401:%s:Unknown client", id);
    BX_CHECK_STR(str(r, "error"), want);
    BX_CHECK(json_object_get(r, "clientId") == NULL);
    cap_free(&c);
    cap_free(&d);
    ENV_CLOSE(&env);
}

static void test_close_answers_held(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[256];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    connect_text(text, sizeof(text), id, -1);
    post(&env, text, &c);
    turns(&env, 5);
    BX_CHECK_INT(c.calls, 0);

    int done = 0;
    bx_server_close(env.s, closed, &done);
    BX_CHECK_INT(c.calls, 1);                   /* answered by close */
    BX_CHECK(is_true(rep(&c, 0), "successful"));
    uv_run(&env.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_CHECK_INT(c.calls, 1);
    cap_free(&c);
    BX_LOOP_CLOSE(&env.loop);
}

/* ---- An engine that answers later, or not at all ---- */

/* The server's engine with some operations replaced (restored before the
 * server closes). */
static const bx_engine_ops_t *g_real;
static bx_engine_ops_t g_ops;
static int g_exists_calls;

static void wrap_engine(env_t *env)
{
    bx_engine_t *e = bx_server_engine(env->s);
    g_real = e->ops;
    g_ops = *g_real;
    g_exists_calls = 0;
    e->ops = &g_ops;
}

static void unwrap_engine(env_t *env)
{
    bx_server_engine(env->s)->ops = g_real;
}

/* An engine whose store is out of reach: the real call runs (so the
 * answer comes on a later turn), its status is replaced. */
typedef struct {
    bx_engine_bool_cb bool_cb;
    bx_engine_done_cb done_cb;
    void *ud;
} unavail_t;

static void unavail_bool(void *ud, int status, int yes)
{
    unavail_t *u = ud;
    u->bool_cb(u->ud, BX_EUNAVAILABLE, 0);
    free(u);
}

static void unavail_done(void *ud, int status)
{
    unavail_t *u = ud;
    if (u->done_cb)
        u->done_cb(u->ud, BX_EUNAVAILABLE);
    free(u);
}

static int unavail_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    unavail_t *u = bx_calloc(1, sizeof(*u));
    u->bool_cb = cb;
    u->ud = ud;
    return g_real->client_exists(e, id, unavail_bool, u);
}

static int unavail_publish(bx_engine_t *e, const json_t *m, bx_engine_done_cb cb, void *ud)
{
    unavail_t *u = bx_calloc(1, sizeof(*u));
    u->done_cb = cb;
    u->ud = ud;
    return g_real->publish(e, m, unavail_done, u);
}

/* An unavailable engine answers 503 with retry advice, never 401 (which
 * would send every client to handshake again). */
static void test_engine_unavailable(void)
{
    env_t env;
    cap_t c = { 0 };
    char id[32], text[256];
    json_t *r;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    wrap_engine(&env);
    g_ops.client_exists = unavail_exists;
    g_ops.publish = unavail_publish;

    connect_text(text, sizeof(text), id, 0);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "503::Engine unavailable");
    BX_CHECK(field_is(r, "advice", "{\"reconnect\":\"retry\",\"interval\":1000}"));

    snprintf(text, sizeof(text),
             "{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/a\"}", id);
    r = roundtrip(&env, text, &c);
    BX_CHECK(r != NULL);
    BX_CHECK_STR(str(r, "error"), "503::Engine unavailable");

    r = roundtrip(&env, "{\"channel\":\"/p\",\"data\":1}", &c);
    BX_CHECK(r != NULL);
    BX_CHECK(is_false(r, "successful"));
    BX_CHECK_STR(str(r, "error"), "503::Engine unavailable");

    unwrap_engine(&env);
    cap_free(&c);
    ENV_CLOSE(&env);
}

/* A subscribe whose engine applies it only a few turns later (a command in
 * flight to a store). */
typedef struct {
    uv_timer_t t;
    bx_engine_t *e;
    char id[32], ch[64];
    size_t limit;
    bx_engine_bool_cb cb;
    void *ud;
    int hops;
} late_t;

static void late_closed(uv_handle_t *h)
{
    free(h->data);
}

static void late_fire(uv_timer_t *t)
{
    late_t *l = t->data;
    if (--l->hops > 0)
        return;                 /* a few loop turns in flight */
    uv_timer_stop(t);
    g_real->subscribe(l->e, l->id, l->ch, l->limit, l->cb, l->ud);
    uv_close((uv_handle_t *)t, late_closed);
}

static int late_subscribe(bx_engine_t *e, const char *id, const char *ch, size_t limit,
                          bx_engine_bool_cb cb, void *ud)
{
    late_t *l = bx_calloc(1, sizeof(*l));
    l->e = e;
    snprintf(l->id, sizeof(l->id), "%s", id);
    snprintf(l->ch, sizeof(l->ch), "%s", ch);
    l->limit = limit;
    l->cb = cb;
    l->ud = ud;
    l->hops = 3;
    uv_timer_init(e->loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, late_fire, 0, 1);
    return 0;
}

static int counting_exists(bx_engine_t *e, const char *id, bx_engine_bool_cb cb, void *ud)
{
    g_exists_calls++;
    return g_real->client_exists(e, id, cb, ud);
}

/* [subscribe, publish] in one batch: the publish reaches the engine after
 * the subscription is answered, however late; a publish costs no lookup. */
static void test_batch_chained(void)
{
    env_t env;
    cap_t c = { 0 }, h = { 0 };
    char id[32], text[512];
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);
    wrap_engine(&env);
    g_ops.subscribe = late_subscribe;
    g_ops.client_exists = counting_exists;

    snprintf(text, sizeof(text),
             "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\",\"subscription\":\"/b\","
             "\"id\":\"s\"},{\"channel\":\"/b\",\"data\":8,\"id\":\"p\"}]", id);
    post(&env, text, &c);
    uv_run(&env.loop, UV_RUN_DEFAULT);          /* the late subscribe's timer runs */
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(rep_n(&c), 2);
    BX_CHECK_STR(str(rep(&c, 0), "id"), "s");
    BX_CHECK(is_true(rep(&c, 0), "successful"));
    BX_CHECK_STR(str(rep(&c, 1), "id"), "p");
    BX_CHECK_INT(g_exists_calls, 1);            /* the subscribe's, not the publish's */

    /* the message waits in the subscriber's queue */
    connect_text(text, sizeof(text), id, 0);
    post(&env, text, &h);
    wait_reply(&env, &h, 20);
    BX_CHECK_INT(h.calls, 1);
    BX_CHECK_INT(rep_n(&h), 2);
    BX_CHECK_STR(str(rep(&h, 1), "channel"), "/b");
    BX_CHECK(field_is(rep(&h, 1), "data", "8"));

    unwrap_engine(&env);
    cap_free(&c);
    cap_free(&h);
    ENV_CLOSE(&env);
}

/* A batch longer than the inline chain (64 messages): every message is
 * answered, in order, and every publish delivered. */
static void test_long_batch(void)
{
    env_t env;
    cap_t c = { 0 }, h = { 0 };
    char id[32], text[256];
    bx_buf_t b = BX_BUF_INIT;
    env_open(&env);
    BX_CHECK_INT(handshake(&env, id), 0);

    bx_buf_printf(&b, "[{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                      "\"subscription\":\"/m\",\"id\":\"0\"}", id);
    for (int i = 1; i < 70; i++)
        bx_buf_printf(&b, ",{\"channel\":\"/m\",\"data\":%d,\"id\":\"%d\"}", i, i);
    bx_buf_append(&b, "]", 2);
    post(&env, b.data, &c);
    uv_run(&env.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(c.calls, 1);
    BX_CHECK_INT(rep_n(&c), 70);
    for (int i = 0; i < 70 && rep_n(&c) == 70; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i);
        BX_CHECK_STR(str(rep(&c, (size_t)i), "id"), want);
        BX_CHECK(is_true(rep(&c, (size_t)i), "successful"));
    }
    connect_text(text, sizeof(text), id, 0);
    post(&env, text, &h);
    uv_run(&env.loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(rep_n(&h), 70);                /* the connect reply and 69 */
    BX_CHECK(rep_n(&h) == 70 && field_is(rep(&h, 69), "data", "69"));

    bx_buf_free(&b);
    cap_free(&c);
    cap_free(&h);
    ENV_CLOSE(&env);
}

int main(void)
{
    BX_RUN(test_handshake_ok);
    BX_RUN(test_handshake_errors);
    BX_RUN(test_connect_errors);
    BX_RUN(test_connect_timeout_zero);
    BX_RUN(test_connect_timeout_zero_flushes_queue);
    BX_RUN(test_connect_held_then_message);
    BX_RUN(test_held_reply_ids);
    BX_RUN(test_connect_batch_with_publish);
    BX_RUN(test_subscribe_forms);
    BX_RUN(test_subscribe_forbidden);
    BX_RUN(test_subscribe_invalid);
    BX_RUN(test_publish);
    BX_RUN(test_meta_other);
    BX_RUN(test_empty_batches);
    BX_RUN(test_cancel_held_connect);
    BX_RUN(test_cancel_before_hold);
    BX_RUN(test_disconnect_releases_connect);
    BX_RUN(test_close_answers_held);
    BX_RUN(test_engine_unavailable);
    BX_RUN(test_batch_chained);
    BX_RUN(test_long_batch);
    return BX_REPORT();
}
