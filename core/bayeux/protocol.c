/*
 * protocol.c - Bayeux semantics (see protocol.h).
 *
 * Every message of a batch becomes an op that moves through:
 *   incoming extensions -> handler (engine calls, possibly a held connect)
 *   -> outgoing extensions -> done.
 * The batch answers when its last op is done, replies in order of
 * completion (as Faye does), the deliveries of its connects last.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/channel.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "bayeux/history.h"
#include "bayeux/protocol.h"
#include "bayeux/retain.h"

const char *const bx_connection_types[] = {
    "long-polling", "cross-origin-long-polling", "callback-polling",
    "websocket", "eventsource", "in-process", NULL
};

struct bx_batch_s {
    bx_hub_t *hub;
    void *request;
    int flags;
    uint32_t nops;              /* messages in the batch */
    bx_protocol_reply_cb cb;
    void *ud;
    uint32_t pending;           /* ops not done yet */
    uint32_t nreplies;
    uint32_t turn;              /* the first message not past the gate */
    uint8_t canceled;
    uint8_t finished;           /* cb called (or canceled and drained) */
    uint8_t advancing;          /* gate_advance is running */
    bx_buf_t replies;           /* serialized replies, comma separated */
    struct given *given;        /* deliveries of released connects, in order */
    struct op *holds;           /* connect ops currently held */
    /* The engine work of the batch's messages is chained in their order:
     * a message reaches the engine once every earlier one is answered (a
     * [subscribe, publish] batch finds the subscription in place, whatever
     * order an engine completes different calls in); a publish lets the
     * next go as soon as it is made (engine.h: calls are applied in the
     * order they are made). A batch lives as long as its held connect:
     * its fields are packed so that the chain costs an idle client no
     * bytes (the batch stays within the allocator's 128-byte class). */
    union {
        uint64_t bits;          /* up to 64 messages: bit i, message i */
        unsigned char *bytes;   /* more: one byte each */
    } passed;                   /* the message's engine work is over */
    struct op *parked;          /* ops waiting for their turn, by seq */
    char *browser;              /* BX_PROTO_BROWSER: the request's browser id
                                   ("" without a cookie); owned */
};

/* The messages a released connect took from its client's queue: the batch
 * answers with them, or gives them back if it is canceled first. */
typedef struct given {
    struct given *next;
    char client_id[32];
    bx_chunkv_t msgs;
} given_t;

typedef struct op {
    bx_batch_t *batch;
    /* which member is in use: `held` says (an idle client's held
     * connect is one of these: it is kept in glibc's 160-byte class) */
    union {
        struct {                /* not held */
            json_t *msg;        /* the message after incoming extensions */
            json_t *reply;
        };
        bx_chunk_t *held_reply; /* HELD_TEXT: the reply, serialized (a few
                                   hundred bytes less per idle client than
                                   the json_t tree and the message) */
        char held_id[16];       /* HELD_SHORT: the reply's id, as JSON (""
                                   for none), in template `tpl` (held_keep) */
    };
    bx_waiter_t waiter;         /* while a connect is held */
    bx_timeout_t timeout;       /* while held with a timeout */
    struct op *next;            /* while parked: the batch's parked ops;
                                   while held: its held connects */
    char client_id[32];
    uint32_t outstanding;       /* engine calls not answered yet */
    uint32_t seq;               /* its place in the batch */
    int8_t engine_status;       /* the engine could not answer (a status) */
    uint8_t exists;
    uint8_t held;               /* 0, HELD_TEXT or HELD_SHORT */
    uint8_t tpl;                /* HELD_SHORT: the template's index */
    /* while parked, what runs when its turn comes; then, during a lookup,
     * what runs after it */
    void (*step)(struct op *op);
} op_t;

enum { HELD_TEXT = 1, HELD_SHORT = 2 };

#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(op_t) <= 152, "a held connect stays in glibc's 160-byte class");
#endif

static void op_reply(op_t *op);
static void held_write(const op_t *op, bx_buf_t *out);
static void held_expand(op_t *op);

/* ---- Errors and skeletons ---- */

static const char *error_text(int code)
{
    switch (code) {
    case 301: return "Connection types not supported";
    case 401: return "Unknown client";
    case 402: return "Missing required parameter";
    case 403: return "Forbidden channel";
    case 405: return "Invalid channel";
    case 407: return "Failed to publish";   /* Faye's text; the engine's store is away */
    case 409: return "Client bound to another browser";
    case 429: return "Too many publishes";
    case 500: return "Internal server error";
    case 503: return "Engine unavailable";
    default: return "Bad request";
    }
}

void bx_protocol_error(char *out, size_t n, int code, const char *args)
{
    snprintf(out, n, "%d:%s:%s", code, args ? args : "", error_text(code));
}

/* `args` is `len` bytes: a channel name may hold a NUL (JSON's \u0000),
 * and the error names it whole. */
static void set_error_n(json_t *reply, int code, const char *args, size_t len)
{
    const char *text = error_text(code);
    bx_buf_t b = BX_BUF_INIT;

    bx_buf_printf(&b, "%d:", code);
    bx_buf_append(&b, args ? args : "", args ? len : 0);
    bx_buf_printf(&b, ":%s", text);
    json_object_set_new(reply, "error", json_stringn(b.data, b.len));
    json_object_set_new(reply, "successful", json_false());
    bx_buf_free(&b);
}

static void set_error(json_t *reply, int code, const char *args)
{
    set_error_n(reply, code, args, args ? strlen(args) : 0);
}

/* An error whose text is not the code's usual one (a limit). */
static void set_error_text(json_t *reply, int code, const char *args, const char *text)
{
    bx_buf_t b = BX_BUF_INIT;

    bx_buf_printf(&b, "%d:%s:%s", code, args ? args : "", text);
    json_object_set_new(reply, "error", json_stringn(b.data, b.len));
    json_object_set_new(reply, "successful", json_false());
    bx_buf_free(&b);
}

/* Faye's _makeResponse: id, clientId, channel and error copied when truthy;
 * successful = !error. */
static json_t *skeleton(const json_t *msg)
{
    static const char *const keys[] = { "id", "clientId", "channel", NULL };
    json_t *r = json_object();
    json_t *err = json_object_get(msg, "error");

    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(msg, keys[i]);
        if (bx_json_truthy(v))
            json_object_set(r, keys[i], v);
    }
    json_object_set_new(r, "successful", json_boolean(!bx_json_truthy(err)));
    if (bx_json_truthy(err))
        json_object_set(r, "error", err);
    return r;
}

/* How long a client is told to wait before it retries, when the engine
 * cannot answer (ms). */
#define ENGINE_RETRY_MS 1000

/* Whether an engine status means "not now" rather than a fact about the
 * client: such a reply says 503 and advises a retry, never a handshake
 * (a 401 would send every client of a node whose store blinked back to
 * handshake at once). */
static int unavailable(int status)
{
    return status != 0 && status != BX_ECANCELED && status != BX_EUNKNOWN &&
           status != BX_ESUBSLIMIT && status != BX_ECHANLIMIT;
}

static void set_unavailable(json_t *reply)
{
    json_t *advice = json_object();
    set_error(reply, 503, NULL);
    json_object_set_new(advice, "reconnect", json_string("retry"));
    json_object_set_new(advice, "interval", json_integer(ENGINE_RETRY_MS));
    json_object_set_new(reply, "advice", advice);
}

static int has_error(const json_t *reply)
{
    return json_object_get(reply, "error") != NULL;
}

static void advise(op_t *op, const char *ctype)
{
    const bx_hub_opts_t *o = bx_hub_opts(op->batch->hub);

    if (op->engine_status)
        return;                 /* set_unavailable advised a retry */
    json_t *advice = json_object();

    if (has_error(op->reply)) {
        json_object_set_new(advice, "reconnect", json_string("handshake"));
    } else {
        double interval = floor(o->interval * 1000), timeout = floor(o->timeout * 1000);
        if (ctype && strcmp(ctype, "eventsource") == 0) {
            interval = timeout;
            timeout = 0;
        }
        json_object_set_new(advice, "reconnect", json_string("retry"));
        json_object_set_new(advice, "interval", json_integer((json_int_t)interval));
        json_object_set_new(advice, "timeout", json_integer((json_int_t)timeout));
    }
    json_object_set_new(op->reply, "advice", advice);
}

static int known_type(const char *t)
{
    for (int i = 0; t && bx_connection_types[i]; i++)
        if (strcmp(t, bx_connection_types[i]) == 0)
            return 1;
    return 0;
}

static json_t *connection_types(void)
{
    json_t *a = json_array();
    for (int i = 0; bx_connection_types[i]; i++)
        json_array_append_new(a, json_string(bx_connection_types[i]));
    return a;
}

/* ---- Batch completion ---- */

static void batch_free(bx_batch_t *b)
{
    if (b->nops > 64)
        free(b->passed.bytes);
    free(b->browser);
    bx_buf_free(&b->replies);
    while (b->given) {
        given_t *g = b->given;
        b->given = g->next;
        bx_chunkv_free(&g->msgs);
        free(g);
    }
    free(b);
}

static void batch_finish(bx_batch_t *b)
{
    BX_CHUNK_STATIC(open_bracket, "[");
    BX_CHUNK_STATIC(close_bracket, "]");
    bx_chunkv_t out = BX_CHUNKV_INIT;
    size_t ndelivered = 0;

    b->finished = 1;
    if (b->canceled) {
        /* the transport left after a connect was released (an outgoing
         * extension was still at work on the replies): its messages were
         * never sent, so they go back to the client's queue */
        for (given_t *g = b->given; g; g = g->next)
            bx_session_give_back(b->hub, g->client_id, &g->msgs);
        batch_free(b);
        return;
    }
    bx_chunkv_push(&out, open_bracket);
    if (b->replies.len)
        bx_chunkv_push_new(&out, bx_chunk_from_buf(&b->replies));
    for (given_t *g = b->given; g; g = g->next) {
        bx_chunkv_push_joined(&out, &g->msgs, b->nreplies + ndelivered == 0);
        ndelivered += g->msgs.n;
    }
    bx_chunkv_push(&out, close_bracket);
    b->cb(b->ud, &out, b->nreplies + ndelivered);
    bx_chunkv_free(&out);
    batch_free(b);
}

static void deferred_finish(void *ud)
{
    batch_finish(ud);
}

/* Starts the next entry of the batch's comma-separated replies. */
static void batch_next_reply(bx_batch_t *b)
{
    if (b->nreplies++ > 0)
        bx_buf_append(&b->replies, ",", 1);
}

/* ---- The chain of a batch's engine work ---- */

/* Runs the parked ops whose turn has come, in order. Iterative: an op
 * that passes at once (an error found before any engine call) lets the
 * next one run from this same loop, not from a deeper call. */
static void gate_advance(bx_batch_t *b)
{
    if (b->advancing)
        return;
    b->advancing = 1;
    while (b->parked && b->parked->seq == b->turn) {
        op_t *op = b->parked;
        void (*fn)(op_t *) = op->step;
        b->parked = op->next;
        op->next = NULL;
        op->step = NULL;
        fn(op);
    }
    b->advancing = 0;
}

static int passed(const bx_batch_t *b, uint32_t seq)
{
    return b->nops <= 64 ? (int)((b->passed.bits >> seq) & 1) : b->passed.bytes[seq];
}

/* `op`'s engine work is over (or it needs none): the next may go. Once
 * per op; later calls do nothing. */
static void gate_pass(op_t *op)
{
    bx_batch_t *b = op->batch;

    if (passed(b, op->seq))
        return;
    if (b->nops <= 64)
        b->passed.bits |= (uint64_t)1 << op->seq;
    else
        b->passed.bytes[op->seq] = 1;
    while (b->turn < b->nops && passed(b, b->turn))
        b->turn++;
    gate_advance(b);
}

/* Runs fn(op) when every earlier message of the batch is past the gate:
 * now, or later from gate_advance. */
static void gate(op_t *op, void (*fn)(op_t *op))
{
    bx_batch_t *b = op->batch;
    op_t **pp = &b->parked;

    if (op->seq == b->turn && !b->advancing) {
        fn(op);
        return;
    }
    op->step = fn;
    while (*pp && (*pp)->seq < op->seq)
        pp = &(*pp)->next;
    op->next = *pp;
    *pp = op;
    gate_advance(b);            /* its turn may be now (inside an advance) */
}

/* An op is over: its reply (if any) joins the batch. */
static void op_done(op_t *op, json_t *reply)
{
    bx_batch_t *b = op->batch;

    gate_pass(op);              /* dropped or answered before its engine work */

    if (reply) {
        if (!b->canceled) {
            batch_next_reply(b);
            bx_json_dump(reply, &b->replies);
        }
        json_decref(reply);
    }
    if (op->held == HELD_TEXT) {
        bx_chunk_unref(op->held_reply);
    } else if (!op->held) {
        json_decref(op->msg);
        if (op->reply)
            json_decref(op->reply);
    }
    free(op);
    if (--b->pending == 0)
        batch_finish(b);
}

static void outgoing_next(void *ud, json_t *reply)
{
    op_done(ud, reply);
}

/* Counts a reply (base/metrics.h) before the outgoing extensions see it,
 * and logs handshakes and errors at debug level. A held connect's reply
 * (op->held_reply) is a success and is not looked at. */
static void account(op_t *op, const json_t *reply)
{
    const char *ch = json_string_value(json_object_get(op->msg, "channel"));
    const char *err = json_string_value(json_object_get(reply, "error"));
    int kind = BX_MK_PUBLISH;

    if (ch && strncmp(ch, "/meta/", 6) == 0) {
        const char *m = ch + 6;
        kind = !strcmp(m, "handshake") ? BX_MK_HANDSHAKE : !strcmp(m, "connect") ? BX_MK_CONNECT
             : !strcmp(m, "subscribe") ? BX_MK_SUBSCRIBE
             : !strcmp(m, "unsubscribe") ? BX_MK_UNSUBSCRIBE
             : !strcmp(m, "disconnect") ? BX_MK_DISCONNECT : -1;
    }
    if (!err) {
        if (kind == BX_MK_PUBLISH) {
            bx_metrics.messages_in++;
        } else if (kind == BX_MK_HANDSHAKE) {
            bx_metrics.handshakes++;
            if (bx_log_enabled(BX_LOG_DEBUG)) {
                const char *kv[] = {
                    "client", json_string_value(json_object_get(reply, "clientId"))
                };
                bx_log_kv(BX_LOG_DEBUG, "bayeux", "handshake", kv, 1);
            }
        }
        return;
    }
    if (kind >= 0)
        bx_metrics.errors[kind][bx_metrics_code_slot(atoi(err))]++;
    if (bx_log_enabled(BX_LOG_DEBUG)) {
        const char *kv[] = {
            "channel", ch, "error", err,
            "client", json_string_value(json_object_get(op->msg, "clientId"))
        };
        bx_log_kv(BX_LOG_DEBUG, "bayeux", "error", kv, 3);
    }
}

/* The handler produced op->reply: run it through outgoing extensions. */
static void op_reply(op_t *op)
{
    gate_pass(op);              /* the reply is known: no more engine work */
    if (!op->held && op->reply)
        account(op, op->reply);
    void *eud;
    bx_ext_hook out = bx_hub_outgoing(op->batch->hub, &eud);
    json_t *reply = NULL;

    if (!op->held) {
        reply = op->reply;
        op->reply = NULL;
    } else {
        bx_batch_t *b = op->batch;
        if (!out || b->canceled) {
            /* the common case: the text goes out as it was kept, made
             * again straight into the batch's replies if kept short */
            if (!b->canceled) {
                batch_next_reply(b);
                if (op->held == HELD_SHORT)
                    held_write(op, &b->replies);
                else
                    bx_buf_append(&b->replies, op->held_reply->data, op->held_reply->len);
            }
            op_done(op, NULL);
            return;
        }
        held_expand(op);
        bx_chunk_t *text = op->held_reply;
        reply = bx_json_parse(text->data, text->len);
        if (!reply)
            reply = json_object();  /* not reached: we wrote that text */
    }
    if (out && !op->batch->canceled)
        out(eud, reply, op->batch->request, outgoing_next, op);
    else
        op_done(op, reply);
}

/* ---- /meta/handshake ---- */

/* ---- Acknowledged delivery (docs/delivery.md) ---- */

/* Whether a handshake asks for acknowledged delivery: CometD's
 * AckExtension sends ext.ack = true. */
static int ack_wanted(const json_t *msg)
{
    return json_is_true(json_object_get(json_object_get(msg, "ext"), "ack"));
}

/* The batch id a connect acknowledges: its ext.ack when an integer, else
 * -1 (none: whatever was answered last goes again). */
static int64_t ack_of(const json_t *msg)
{
    json_t *a = json_object_get(json_object_get(msg, "ext"), "ack");
    return json_is_integer(a) && json_integer_value(a) >= 0 ? (int64_t)json_integer_value(a) : -1;
}

/* The handshake made a client that acknowledges batches: the hub keeps
 * them, and the reply says so (ext.ack = true, which every CometD client
 * version reads as enabled). */
static void ack_handshaken(op_t *op, const char *id)
{
    json_t *ext = json_object_get(op->reply, "ext");
    bx_session_ack_enable(op->batch->hub, id);
    if (!json_is_object(ext)) {
        ext = json_object();
        json_object_set_new(op->reply, "ext", ext);
    }
    json_object_set_new(ext, "ack", json_true());
}

/* Puts the batch id `id` in the ext.ack of a held connect's reply. */
static void ack_stamp(op_t *op, int64_t id)
{
    held_expand(op);
    json_t *reply = bx_json_parse(op->held_reply->data, op->held_reply->len);
    json_t *ext;

    if (!reply)
        return;                 /* not reached: we wrote that text */
    ext = json_object_get(reply, "ext");
    if (!json_is_object(ext)) {
        ext = json_object();
        json_object_set_new(reply, "ext", ext);
    }
    json_object_set_new(ext, "ack", json_integer((json_int_t)id));
    bx_chunk_unref(op->held_reply);
    op->held_reply = bx_json_chunk(reply);
    json_decref(reply);
}

static void handshake_answer(void *ud)
{
    op_t *op = ud;
    advise(op, NULL);
    op_reply(op);
}

static void handshake_created(void *ud, int status, const char *id)
{
    op_t *op = ud;
    if (status == 0) {
        json_object_set_new(op->reply, "clientId", json_string(id));
        if (ack_wanted(op->msg))
            ack_handshaken(op, id);
        if (op->batch->browser)
            bx_session_set_browser(op->batch->hub, id, op->batch->browser);
        /* an identity on its way to the shared store: the reply waits */
        if (bx_hub_handshaken(op->batch->hub, id, op->msg, handshake_answer, op))
            return;
    } else if (unavailable(status)) {
        op->engine_status = status;
        set_unavailable(op->reply);
    } else {
        set_error(op->reply, 500, NULL);
    }
    handshake_answer(op);
}

static void handshake(op_t *op)
{
    json_t *msg = op->msg, *types = json_object_get(msg, "supportedConnectionTypes");

    op->reply = skeleton(msg);
    json_object_set_new(op->reply, "version", json_string("1.0"));
    json_object_set_new(op->reply, "supportedConnectionTypes", connection_types());
    if (!bx_json_truthy(json_object_get(msg, "version")))
        set_error(op->reply, 402, "version");
    if (types) {
        int common = 0;
        bx_buf_t list = BX_BUF_INIT;
        size_t i;
        json_t *t;
        if (json_is_array(types)) {
            json_array_foreach(types, i, t) {
                const char *s = json_is_string(t) ? json_string_value(t) : "";
                common |= known_type(s);
                if (i)
                    bx_buf_append(&list, ",", 1);
                bx_buf_puts(&list, s);
            }
        } else if (json_is_string(types)) {
            bx_buf_puts(&list, json_string_value(types));
        }
        bx_buf_append(&list, "", 1);
        if (!common)
            set_error(op->reply, 301, list.data);
        bx_buf_free(&list);
    } else {
        set_error(op->reply, 402, "supportedConnectionTypes");
    }
    if (has_error(op->reply)) {
        advise(op, NULL);
        op_reply(op);
        return;
    }
    bx_engine_t *e = bx_hub_engine(op->batch->hub);
    int rc = e->ops->create_client(e, handshake_created, op);
    if (rc != 0)
        handshake_created(op, rc, NULL);
}

/* ---- Client lookup shared by connect, (un)subscribe, disconnect ---- */

typedef void (*after_exists_fn)(op_t *op);

static void exists_cb(void *ud, int status, int yes)
{
    op_t *op = ud;
    op->exists = status == 0 && yes;
    if (unavailable(status))
        op->engine_status = status;
    op->step(op);
}

static void lookup(op_t *op, after_exists_fn next)
{
    const char *id = bx_json_str(op->msg, "clientId");
    bx_engine_t *e = bx_hub_engine(op->batch->hub);

    if (id && strlen(id) < sizeof(op->client_id))
        strcpy(op->client_id, id);
    op->step = next;
    int rc = e->ops->client_exists(e, op->client_id, exists_cb, op);
    if (rc != 0)
        exists_cb(op, rc, 0);
}

static void lookup_connect(op_t *op);
static void lookup_subscribe(op_t *op);
static void lookup_unsubscribe(op_t *op);
static void lookup_disconnect(op_t *op);
static void lookup_publish(op_t *op);

/* Checks common to the meta channels that need a client: an error from an
 * extension, then 401, then 402 clientId (later checks overwrite); an
 * engine that could not look the client up answers 503 instead. */
static void client_checks(op_t *op)
{
    json_t *cid = json_object_get(op->msg, "clientId");
    op->reply = skeleton(op->msg);
    if (op->engine_status) {
        set_unavailable(op->reply);
        return;
    }
    if (!op->exists)
        set_error(op->reply, 401, json_is_string(cid) ? json_string_value(cid) : "");
    if (!bx_json_truthy(cid))
        set_error(op->reply, 402, "clientId");
    if (op->exists && op->batch->browser) {
        /* a client handshaken with a browser cookie answers only to it: a
         * clientId learnt elsewhere is no use without the HttpOnly cookie */
        const char *bound = bx_session_browser(op->batch->hub, op->client_id);
        if (bound && strcmp(bound, op->batch->browser) != 0)
            set_error(op->reply, 409, op->client_id);
    }
}

/* ---- /meta/connect ---- */

/* A held connect's reply text is the same for every client but for its
 * id and clientId: the shapes seen (few: the reply is the server's but for
 * the id, which may be a string or a number, and the connection type's
 * advice) are kept once each, as the text with those two values cut out,
 * so that an idle client keeps 16 bytes of its reply instead of a block of
 * ~190 (the largest part of an idle session's memory). A process-wide
 * table, never emptied: each entry is a text the server wrote, and a text
 * that fits none, once the table is full, is kept whole as before. */
typedef struct {
    size_t len;                 /* text without the two values */
    uint32_t first, second;     /* where the first and the second value go */
    uint8_t id_first;           /* the first is the id (else the clientId) */
    char *text;
} held_tpl_t;

#define HELD_TPLS 32
#define CID_JSON 33             /* a client id as JSON: 31 bytes in quotes */
static held_tpl_t g_tpls[HELD_TPLS];
static int g_ntpls;

/* The two values in `t`'s order. */
static void tpl_values(const held_tpl_t *t, const char *id, size_t idlen, const char *cid,
                       const char **v1, size_t *l1, const char **v2, size_t *l2)
{
    *v1 = t->id_first ? id : cid;
    *l1 = t->id_first ? idlen : CID_JSON;
    *v2 = t->id_first ? cid : id;
    *l2 = t->id_first ? CID_JSON : idlen;
}

/* Whether `t` with `id` (idlen bytes of JSON) and `cid` (the client id as
 * JSON) is `text`. */
static int tpl_is(const held_tpl_t *t, const char *id, size_t idlen, const char *cid,
                  const char *text, size_t len)
{
    const char *v1, *v2;
    size_t l1, l2;
    tpl_values(t, id, idlen, cid, &v1, &l1, &v2, &l2);
    if (len != t->len + l1 + l2)
        return 0;
    const char *p = text;
    size_t mid = t->second - t->first;
    if (memcmp(p, t->text, t->first) != 0 || memcmp(p + t->first, v1, l1) != 0)
        return 0;
    p += t->first + l1;
    if (memcmp(p, t->text + t->first, mid) != 0 || memcmp(p + mid, v2, l2) != 0)
        return 0;
    p += mid + l2;
    return memcmp(p, t->text + t->second, t->len - t->second) == 0;
}

/* Where member `name` (with its quotes and colon) has value `v` in
 * `text`, or NULL. A member name cannot occur inside a JSON string (its
 * quotes would be escaped); tpl_find checks the result anyway. */
static const char *member_at(const char *text, size_t len, const char *name, const char *v,
                             size_t vlen)
{
    size_t nlen = strlen(name);
    const char *end = text + len;
    for (const char *q = text; (q = memmem(q, (size_t)(end - q), name, nlen)) != NULL; q++)
        if ((size_t)(end - (q + nlen)) >= vlen && memcmp(q + nlen, v, vlen) == 0)
            return q + nlen;
    return NULL;
}

/* Finds (or adds) the template `text` is of; its index, or -1. */
static int tpl_find(const char *id, size_t idlen, const char *cid, const char *text,
                    size_t len)
{
    for (int i = 0; i < g_ntpls; i++)
        if (tpl_is(&g_tpls[i], id, idlen, cid, text, len))
            return i;
    if (g_ntpls == HELD_TPLS)
        return -1;
    /* no id (a connect need not have one): an empty value at the end */
    const char *pi = idlen ? member_at(text, len, "\"id\":", id, idlen) : text + len;
    const char *pc = member_at(text, len, "\"clientId\":", cid, CID_JSON);
    if (!pi || !pc || (pi < pc && pi + idlen > pc) || (pc < pi && pc + CID_JSON > pi))
        return -1;
    held_tpl_t t = { .id_first = pi < pc };
    const char *v1, *v2;
    size_t l1, l2;
    tpl_values(&t, pi, idlen, pc, &v1, &l1, &v2, &l2);
    size_t mid = (size_t)(v2 - (v1 + l1));
    t.len = len - idlen - CID_JSON;
    t.first = (uint32_t)(v1 - text);
    t.second = (uint32_t)(t.first + mid);
    t.text = bx_malloc(t.len + 1);
    memcpy(t.text, text, t.first);
    memcpy(t.text + t.first, v1 + l1, mid);
    memcpy(t.text + t.second, v2 + l2, t.len - t.second);
    t.text[t.len] = '\0';
    if (!tpl_is(&t, id, idlen, cid, text, len)) {
        free(t.text);
        return -1;
    }
    g_tpls[g_ntpls] = t;
    return g_ntpls++;
}

/* Keeps a connect's final reply for its hold: as its id only when the
 * text is of a known shape, else the text; the message and the reply
 * (json_t) are let go either way. */
static void held_keep(op_t *op)
{
    json_t *id = json_object_get(op->reply, "id");
    bx_buf_t text = BX_BUF_INIT, idj = BX_BUF_INIT;
    char cid[CID_JSON + 1];
    int i = -1;

    bx_json_dump(op->reply, &text);
    if (strlen(op->client_id) == 31) {
        if (id)
            bx_json_dump(id, &idj);
        snprintf(cid, sizeof(cid), "\"%s\"", op->client_id);
        if (idj.len < sizeof(op->held_id) && (!id || idj.len > 0))
            i = tpl_find(idj.data ? idj.data : "", idj.len, cid, text.data, text.len);
    }
    json_decref(op->reply);
    json_decref(op->msg);
    memset(op->held_id, 0, sizeof(op->held_id));
    if (i >= 0) {
        if (idj.len)
            memcpy(op->held_id, idj.data, idj.len);
        op->held = HELD_SHORT;
        op->tpl = (uint8_t)i;
    } else {
        op->held = HELD_TEXT;
        op->held_reply = bx_chunk_new(text.data, text.len);
    }
    bx_buf_free(&text);
    bx_buf_free(&idj);
}

/* Appends a HELD_SHORT op's reply text to `out`. */
static void held_write(const op_t *op, bx_buf_t *out)
{
    const held_tpl_t *t = &g_tpls[op->tpl];
    char cid[CID_JSON + 1];
    const char *v1, *v2;
    size_t l1, l2;

    snprintf(cid, sizeof(cid), "\"%s\"", op->client_id);
    tpl_values(t, op->held_id, strnlen(op->held_id, sizeof(op->held_id)), cid, &v1, &l1, &v2,
               &l2);
    bx_buf_append(out, t->text, t->first);
    bx_buf_append(out, v1, l1);
    bx_buf_append(out, t->text + t->first, t->second - t->first);
    bx_buf_append(out, v2, l2);
    bx_buf_append(out, t->text + t->second, t->len - t->second);
}

/* The held reply as a chunk of text (HELD_TEXT), for what changes it or
 * shows it to an extension. */
static void held_expand(op_t *op)
{
    if (op->held != HELD_SHORT)
        return;
    bx_buf_t b = BX_BUF_INIT;
    held_write(op, &b);
    memset(op->held_id, 0, sizeof(op->held_id));
    op->held = HELD_TEXT;
    op->held_reply = bx_chunk_from_buf(&b);
}

static void hold_stop(op_t *op)
{
    bx_batch_t *b = op->batch;
    for (op_t **pp = &b->holds; *pp; pp = &(*pp)->next)
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    bx_timeouts_remove(&op->timeout);
}

static void hold_release(bx_waiter_t *w, bx_chunkv_t *msgs)
{
    op_t *op = (op_t *)((char *)w - offsetof(op_t, waiter));
    bx_batch_t *b = op->batch;
    hold_stop(op);
    if (w->batch >= 0)
        ack_stamp(op, w->batch);
    if (msgs->n) {
        given_t *g = bx_calloc(1, sizeof(*g));
        memcpy(g->client_id, op->client_id, sizeof(g->client_id));
        bx_chunkv_move(&g->msgs, msgs);
        given_t **pp = &b->given;      /* one per connect of the batch: short */
        while (*pp)
            pp = &(*pp)->next;
        *pp = g;
    }
    op_reply(op);
}

static void *hold_request(bx_waiter_t *w)
{
    op_t *op = (op_t *)((char *)w - offsetof(op_t, waiter));
    return op->batch->request;
}

static const bx_waiter_ops_t HOLD_OPS = { hold_release, hold_request };

static void hold_timeout(bx_timeout_t *t)
{
    op_t *op = (op_t *)((char *)t - offsetof(op_t, timeout));
    bx_chunkv_t none = BX_CHUNKV_INIT;
    bx_session_unhold(op->batch->hub, op->client_id, &op->waiter);
    hold_release(&op->waiter, &none);
}

static void connect_checked(op_t *op)
{
    const char *ctype = bx_json_str(op->msg, "connectionType");
    json_t *jtype = json_object_get(op->msg, "connectionType");
    bx_hub_t *s = op->batch->hub;
    double hold = bx_hub_opts(s)->timeout;

    /* the lookup was its engine work (the ping needs no answer): the next
     * message of the batch may go while this one is held */
    gate_pass(op);
    client_checks(op);
    if (bx_json_truthy(jtype) && !known_type(ctype))
        set_error(op->reply, 301, ctype ? ctype : "");
    if (!bx_json_truthy(jtype))
        set_error(op->reply, 402, "connectionType");
    if (has_error(op->reply)) {
        json_object_del(op->reply, "clientId");
        advise(op, NULL);
        op_reply(op);
        return;
    }
    advise(op, ctype);
    bx_engine_t *e = bx_hub_engine(s);
    e->ops->ping(e, op->client_id);
    if (op->batch->canceled || bx_hub_closing(s)) {
        /* the transport left (or the server is closing) while the client
         * was looked up: holding now would swallow messages nobody reads,
         * or outlive the server; answer at once, messages stay queued */
        op_reply(op);
        return;
    }

    json_t *advice = json_object_get(op->msg, "advice");
    json_t *to = json_object_get(advice, "timeout");
    if (json_is_number(to))
        hold = json_number_value(to) / 1000.0;
    if (strcmp(ctype, "eventsource") == 0 || hold < 0)
        hold = 0;
    if (hold > 86400)
        hold = 86400;           /* a client cannot pin a request for days */

    /* the connect's ext.ack, for a client that acknowledges (the hub
     * decides: one may arrive from another node while this is held) */
    op->waiter.ack = ack_of(op->msg);
    op->waiter.batch = -1;
    /* the message is done with and the reply is final until released:
     * keep them as the reply's text only */
    held_keep(op);

    op->waiter.ops = &HOLD_OPS;
    op->next = op->batch->holds;
    op->batch->holds = op;
    bx_session_hold(s, op->client_id, &op->waiter);
    if (hold == 0) {
        /* answered by the next delivery pass, with what is queued: a timer
         * could fire before that pass and miss the queue */
        bx_session_release_soon(s, op->client_id);
        return;
    }
    bx_timeouts_add(bx_hub_timeouts(s), &op->timeout, (uint64_t)(hold * 1000), hold_timeout);
}

/* ---- /meta/subscribe and /meta/unsubscribe ---- */

/* A subscribe is answered: each channel it subscribed gets the messages
 * its retained channels keep (sent on a later turn, after the answer). */
static void send_retained(op_t *op)
{
    json_t *sub = json_object_get(op->msg, "subscription");
    bx_hub_t *hub = op->batch->hub;

    if (!bx_hub_store(hub) || !op->client_id[0] || has_error(op->reply) || op->engine_status)
        return;
    size_t n = json_is_array(sub) ? json_array_size(sub) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *jch = json_is_array(sub) ? json_array_get(sub, i) : sub;
        if (json_is_string(jch))
            bx_retain_subscribed(bx_retain_of(hub), op->client_id, json_string_value(jch));
    }
}

/* Every channel of a (un)subscribe has its engine answer: the reply. */
static void subscription_done(op_t *op)
{
    if (op->engine_status)
        set_unavailable(op->reply);
    if (strcmp(bx_json_str(op->msg, "channel"), "/meta/subscribe") == 0)
        send_retained(op);
    op_reply(op);
}

/* A limit the engine enforces: the error names the subscription (a list
 * comma-separated, as 301 names connection types). */
static void set_limit_error(op_t *op, int status)
{
    json_t *sub = json_object_get(op->reply, "subscription"), *ch;
    bx_buf_t list = BX_BUF_INIT;
    size_t i;

    if (json_is_array(sub)) {
        json_array_foreach(sub, i, ch) {
            if (i)
                bx_buf_append(&list, ",", 1);
            bx_buf_puts(&list, json_is_string(ch) ? json_string_value(ch) : "");
        }
    } else if (json_is_string(sub)) {
        bx_buf_puts(&list, json_string_value(sub));
    }
    bx_buf_append(&list, "", 1);
    set_error_text(op->reply, 403, list.data,
                   status == BX_ESUBSLIMIT ? "Too many subscriptions" : "Too many channels");
    bx_buf_free(&list);
}

static void subscribed(void *ud, int status, int changed)
{
    op_t *op = ud;
    if (unavailable(status))
        op->engine_status = status;
    if (status == BX_ESUBSLIMIT || status == BX_ECHANLIMIT)
        set_limit_error(op, status);
    if (--op->outstanding == 0)
        subscription_done(op);
}

/* The channels the client of `op` may hold after a subscribe: the
 * server's limit for a request from the network; none for the server's own
 * in-process clients, which subscribe on behalf of the application (a
 * presence roster, a bridge) and may need more than any one user. */
static size_t sub_limit(const op_t *op)
{
    if (op->batch->flags & BX_PROTO_LOCAL)
        return 0;
    return bx_hub_opts(op->batch->hub)->max_subscriptions;
}

/* Whether `ch` is within the server's channel caps. A name past them is
 * "invalid" (405), as Faye's grammar would have it if it had caps: the
 * caps keep one message from costing the loop O(length x depth). */
static int within_caps(op_t *op, const char *ch, size_t n)
{
    const bx_hub_opts_t *o = bx_hub_opts(op->batch->hub);
    return bx_channel_within(ch, n, o->max_channel_length, o->max_channel_depth);
}

static int check_channel(op_t *op, const json_t *jch)
{
    const char *ch = json_is_string(jch) ? json_string_value(jch) : "";
    size_t n = json_is_string(jch) ? json_string_length(jch) : 0;
    int kind = bx_channel_parse(ch, n);
    int err = 0;

    if (!(op->batch->flags & BX_PROTO_LOCAL) && !bx_channel_subscribable(ch, n))
        err = 403;
    if (!kind || strlen(ch) != n || !within_caps(op, ch, n))
        err = 405;
    if (err)
        set_error_n(op->reply, err, ch, n);
    return err;
}

/* Channel history (history.h): the positions a subscribe names, when the
 * server keeps history; NULL otherwise (nothing else is looked at). A bad
 * one is the subscribe's error. */
static const json_t *history_wanted(op_t *op)
{
    bx_history_t *h = bx_history_get(op->batch->hub);
    json_t *want;

    if (!h)
        return NULL;
    want = json_object_get(json_object_get(op->msg, "ext"), "history");
    if (want && !bx_history_valid(want)) {
        set_error_text(op->reply, 400, "ext.history", "Bad history position");
        return NULL;
    }
    return want;
}

/* The engine took the subscription of `jch` (the memory engine applies it
 * in the call): what the client missed goes in front of its queue now,
 * and the reply says where it stands. */
static json_t *history_answer(op_t *op)
{
    json_t *ext = json_object_get(op->reply, "ext");
    json_t *answer;

    if (!ext) {
        ext = json_object();
        json_object_set_new(op->reply, "ext", ext);
    }
    answer = json_object_get(ext, "history");
    if (!answer) {
        answer = json_object();
        json_object_set_new(ext, "history", answer);
    }
    return answer;
}

static void history_subscribed(op_t *op, const json_t *want, const json_t *jch)
{
    bx_history_subscribed(bx_history_get(op->batch->hub), op->client_id,
                          json_string_value(jch), want, history_answer(op));
}

/* A subscribe naming positions when the engine keeps the history (the
 * Redis engine, shared by every process): the engine subscribes and
 * replays in one, and fills the answer before its callback. */
static int history_subscribe(op_t *op, const json_t *want, const json_t *jch)
{
    bx_engine_t *e = bx_hub_engine(op->batch->hub);
    return e->ops->subscribe_history(e, op->client_id, json_string_value(jch), sub_limit(op),
                                     want, history_answer(op), subscribed, op);
}

static void subscription_checked(op_t *op, int subscribe)
{
    json_t *sub = json_object_get(op->msg, "subscription");
    bx_engine_t *e = bx_hub_engine(op->batch->hub);

    client_checks(op);
    if (!bx_json_truthy(sub))
        set_error(op->reply, 402, "subscription");
    json_object_set_new(op->reply, "subscription", sub ? json_incref(sub) : json_array());
    const json_t *want = subscribe && !has_error(op->reply) ? history_wanted(op) : NULL;
    if (has_error(op->reply)) {
        op_reply(op);
        return;
    }

    /* one engine call per channel; stop at the first bad one, leaving the
     * earlier ones subscribed, exactly as Faye does */
    size_t n = json_is_array(sub) ? json_array_size(sub) : 1;
    op->outstanding = 1;        /* held by this loop until it ends */
    for (size_t i = 0; i < n; i++) {
        json_t *jch = json_is_array(sub) ? json_array_get(sub, i) : sub;
        if (check_channel(op, jch))
            break;
        op->outstanding++;
        int shared = want && bx_history_shared(bx_history_get(op->batch->hub));
        int rc = shared ? history_subscribe(op, want, jch)
            : subscribe
            ? e->ops->subscribe(e, op->client_id, json_string_value(jch), sub_limit(op),
                                subscribed, op)
            : e->ops->unsubscribe(e, op->client_id, json_string_value(jch), subscribed, op);
        if (rc != 0) {
            op->outstanding--;
            if (unavailable(rc))
                op->engine_status = rc;
        } else if (want && !shared) {
            history_subscribed(op, want, jch);
        }
    }
    if (--op->outstanding == 0)
        subscription_done(op);
}

static void subscribe_checked(op_t *op)
{
    subscription_checked(op, 1);
}

static void unsubscribe_checked(op_t *op)
{
    subscription_checked(op, 0);
}

/* ---- /meta/disconnect ---- */

static void destroyed(void *ud, int status)
{
    op_t *op = ud;
    if (unavailable(status)) {
        op->engine_status = status;
        set_unavailable(op->reply);
    }
    op_reply(op);
}

static void disconnect_checked(op_t *op)
{
    client_checks(op);
    if (has_error(op->reply)) {
        json_object_del(op->reply, "clientId");
        op_reply(op);
        return;
    }
    bx_engine_t *e = bx_hub_engine(op->batch->hub);
    int rc = e->ops->destroy_client(e, op->client_id, destroyed, op);
    if (rc != 0)
        destroyed(op, rc);
}

/* ---- Publish ---- */

static void published(void *ud, int status)
{
    op_t *op = ud;
    if (unavailable(status)) {
        op->engine_status = status;
        set_unavailable(op->reply);
    } else if (status != 0 && status != BX_ECANCELED) {
        set_error(op->reply, 407, bx_json_str(op->msg, "channel"));
    }
    op_reply(op);
}

/* Whether a publish of this batch is subject to publish_rate. */
static int rate_limited(const op_t *op)
{
    return !(op->batch->flags & BX_PROTO_LOCAL) && bx_hub_opts(op->batch->hub)->publish_rate > 0;
}

static void publish_checked(op_t *op)
{
    json_t *jch = json_object_get(op->msg, "channel");
    const char *ch = json_is_string(jch) ? json_string_value(jch) : "";
    size_t n = json_is_string(jch) ? json_string_length(jch) : 0;

    op->reply = skeleton(op->msg);
    if (!(bx_channel_parse(ch, n) & BX_CHANNEL_NAME) || strlen(ch) != n ||
        !within_caps(op, ch, n))
        set_error_n(op->reply, 405, ch, n);
    if (!json_object_get(op->msg, "data"))
        set_error(op->reply, 402, "data");
    if (!has_error(op->reply) && rate_limited(op)) {
        /* the rate is per live client (rate_limited looked it up): a
         * publish naming none, or an id nobody handshook (Faye needs
         * neither), draws from the one bucket of "", so inventing ids
         * does not get round it */
        const char *key = op->exists ? op->client_id : "";
        op->engine_status = 0;  /* the lookup's; the publish answers for itself */
        if (!bx_hub_publish_allowed(op->batch->hub, key, strlen(key)))
            set_error_n(op->reply, 429, ch, n);
    }
    if (has_error(op->reply)) {
        op_reply(op);
        return;
    }
    bx_engine_t *e = bx_hub_engine(op->batch->hub);
    if (bx_history_get(op->batch->hub))
        bx_history_publish(bx_history_get(op->batch->hub), op->msg);
    int rc = e->ops->publish(e, op->msg, published, op);
    if (rc != 0) {
        published(op, rc);
        return;
    }
    if (bx_hub_store(op->batch->hub))
        bx_retain_publish(bx_retain_of(op->batch->hub), op->msg);
    /* nothing later in the batch depends on a publish's answer, only on
     * its place: the next message may go now (publishes of one batch reach
     * the engine together, and their deliveries leave in one write) */
    gate_pass(op);
}

/* ---- Dispatch ---- */

static void forbidden(op_t *op, const char *ch)
{
    op->reply = skeleton(op->msg);
    set_error(op->reply, 403, ch);
    op_reply(op);
}

static void handle(op_t *op)
{
    const char *ch = bx_json_str(op->msg, "channel");

    /* An error set by an incoming extension rides in the skeleton; the
     * handlers still run their checks (which may overwrite it, as in Faye)
     * and skip the operation when an error remains. */
    if (ch && strncmp(ch, "/meta", 5) == 0 && (ch[5] == '\0' || ch[5] == '/')) {
        if (strcmp(ch, "/meta/handshake") == 0)
            gate(op, handshake);
        else if (strcmp(ch, "/meta/connect") == 0)
            gate(op, lookup_connect);
        else if (strcmp(ch, "/meta/subscribe") == 0)
            gate(op, lookup_subscribe);
        else if (strcmp(ch, "/meta/unsubscribe") == 0)
            gate(op, lookup_unsubscribe);
        else if (strcmp(ch, "/meta/disconnect") == 0)
            gate(op, lookup_disconnect);
        else
            forbidden(op, ch);
        return;
    }
    /* A publish needs no client (Faye never checks it): no lookup, unless
     * its rate is limited per client. The gate keeps it behind the
     * batch's earlier messages, so a batch [subscribe, publish] finds the
     * subscription in place. */
    gate(op, rate_limited(op) ? lookup_publish : publish_checked);
}

static void lookup_connect(op_t *op)
{
    lookup(op, connect_checked);
}

static void lookup_publish(op_t *op)
{
    lookup(op, publish_checked);
}

static void lookup_subscribe(op_t *op)
{
    lookup(op, subscribe_checked);
}

static void lookup_unsubscribe(op_t *op)
{
    lookup(op, unsubscribe_checked);
}

static void lookup_disconnect(op_t *op)
{
    lookup(op, disconnect_checked);
}

static void incoming_next(void *ud, json_t *msg)
{
    op_t *op = ud;
    if (!msg) {
        op_done(op, NULL);      /* dropped: no reply at all */
        return;
    }
    json_decref(op->msg);
    op->msg = msg;
    if (!json_is_object(msg)) {
        op->msg = json_object();
        json_decref(msg);
    }
    handle(op);
}

static void start(bx_batch_t *b, json_t *msg, uint32_t seq)
{
    op_t *op = bx_calloc(1, sizeof(*op));
    void *eud;
    bx_ext_hook in = bx_hub_incoming(b->hub, &eud);

    op->batch = b;
    op->seq = seq;
    bx_metrics.messages_received++;
    /* a non-object element behaves like {} (Faye reads fields of it). The
     * caller only releases the messages after the call, so the op takes
     * the object itself, not a copy (a deep copy was 5 % of a long-polling
     * fan-out's instructions) */
    op->msg = json_is_object(msg) ? json_incref(msg) : json_object();
    if (in)
        in(eud, json_incref(op->msg), b->request, incoming_next, op);
    else
        handle(op);
}

bx_batch_t *bx_protocol_process(bx_hub_t *s, const json_t *msgs, void *request, int flags,
                                bx_protocol_reply_cb cb, void *ud)
{
    return bx_protocol_process_browser(s, msgs, request, flags, NULL, cb, ud);
}

bx_batch_t *bx_protocol_process_browser(bx_hub_t *s, const json_t *msgs, void *request,
                                        int flags, const char *browser,
                                        bx_protocol_reply_cb cb, void *ud)
{
    bx_batch_t *b = bx_calloc(1, sizeof(*b));
    size_t i, n;
    json_t *m;

    b->hub = s;
    b->browser = browser ? bx_strdup(browser) : NULL;
    b->request = request;
    b->flags = flags;
    b->cb = cb;
    b->ud = ud;
    if (json_is_array(msgs)) {
        n = 0;
        json_array_foreach(msgs, i, m)
            if (!json_is_null(m))
                n++;
    } else {
        n = json_is_null(msgs) || !msgs ? 0 : 1;
    }
    /* one extra count, released below, so no op can finish the batch while
     * others are still being started */
    b->pending = (uint32_t)n + 1;
    b->nops = (uint32_t)n;
    if (n > 64)
        b->passed.bytes = bx_calloc(n, 1);
    if (json_is_array(msgs)) {
        uint32_t seq = 0;
        json_array_foreach(msgs, i, m)
            if (!json_is_null(m))
                start(b, m, seq++);
    } else if (n) {
        start(b, (json_t *)msgs, 0);
    }
    if (--b->pending == 0)
        bx_hub_defer(s, deferred_finish, b);     /* never answer inside the call */
    return b;
}

void bx_batch_cancel(bx_batch_t *b)
{
    b->canceled = 1;
    if (b->pending == 0)
        return;                 /* a deferred finish is queued; it frees b */
    b->pending++;               /* keep b alive while its holds let go */
    while (b->holds) {
        op_t *op = b->holds;
        bx_chunkv_t none = BX_CHUNKV_INIT;
        bx_session_unhold(b->hub, op->client_id, &op->waiter);
        hold_release(&op->waiter, &none);
    }
    if (--b->pending == 0)
        batch_finish(b);
}
