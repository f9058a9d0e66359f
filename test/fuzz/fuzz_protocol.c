/*
 * fuzz_protocol.c - libFuzzer target: JSON -> Bayeux validation and
 * dispatch (core/bayeux/protocol.c over the hub and the memory engine,
 * in-process: no sockets, so it runs fast).
 *
 * Input: a flags byte, then JSON text in which every "@@" becomes the id
 * of a client handshaken just before (only for an input that has one) (so connects, subscriptions and
 * publishes get past the client checks). Flags: bit 0 an in-process
 * client (BX_PROTO_LOCAL: /meta and /service channels open to it), bit 1
 * cookie binding with no cookie, bit 2 with the right one (so the 409 path
 * and the bound path both run). A batch not answered within a few loop
 * turns (a held connect) is canceled, as a transport that goes away does.
 *
 * Checked on every answer: it is one JSON array of exactly the number of
 * messages the callback says, each an object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "base/buf.h"
#include "base/json.h"
#include "bayeux/protocol.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static bx_server_t *server;
static char cid[32];
static int replied;

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    bx_buf_t b = BX_BUF_INIT;
    json_t *v, *m;
    size_t i;

    for (i = 0; i < reply->n; i++)
        bx_buf_append(&b, reply->v[i]->data, reply->v[i]->len);
    v = bx_json_parse(b.data ? b.data : "", b.len);
    if (!json_is_array(v) || json_array_size(v) != nmsgs) {
        fprintf(stderr, "bad answer (%zu messages said): %.*s\n", nmsgs, (int)b.len, b.data);
        abort();
    }
    json_array_foreach(v, i, m)
        if (!json_is_object(m))
            abort();
    if (ud) {
        const char *id = bx_json_str(json_array_get(v, 0), "clientId");
        snprintf(cid, sizeof(cid), "%s", id ? id : "none");
    }
    json_decref(v);
    bx_buf_free(&b);
    replied = 1;
}

static void handshake(const char *browser)
{
    json_t *hs = json_pack("{s:s,s:s,s:[s]}", "channel", "/meta/handshake", "version", "1.0",
                           "supportedConnectionTypes", "long-polling");
    cid[0] = '\0';
    replied = 0;
    bx_protocol_process_browser(bx_server_hub(server), hs, NULL, 0, browser, on_reply, cid);
    json_decref(hs);
    /* NOWAIT: the engine and the hub answer from idle handles; ONCE would
     * then block in poll until the next timer */
    while (!replied)
        uv_run(&loop, UV_RUN_NOWAIT);
}

static void setup(void)
{
    bx_server_opts_t o;
    char err[256];

    uv_loop_init(&loop);
    bx_server_opts_default(&o);
    /* short: held connects end soon, and the clients (one per input)
     * expire after 2 x timeout: bounded memory over millions of inputs */
    o.timeout = 0.05;
    o.max_channels = 10000;
    o.max_subscriptions = 100;
    o.publish_rate = 1000000;   /* the buckets' code runs, nothing is refused */
    server = bx_server_new(&loop, &o, err, sizeof(err));
    if (!server)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    bx_buf_t text = BX_BUF_INIT;

    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    const char *browser = flags & 2 ? "" : flags & 4 ? "b1" : NULL;
    /* a client only for an input that names one: the handshake cost more
     * than most inputs, and an id nobody names reaches nothing */
    const char *p = (const char *)data + 1, *end = (const char *)data + size, *at;
    cid[0] = '\0';
    while ((at = memmem(p, (size_t)(end - p), "@@", 2)) != NULL) {
        bx_buf_append(&text, p, (size_t)(at - p));
        if (!cid[0])
            handshake(flags & 6 ? "b1" : NULL);
        bx_buf_puts(&text, cid);
        p = at + 2;
    }
    bx_buf_append(&text, p, (size_t)(end - p));
    json_t *msgs = bx_json_parse(text.data ? text.data : "", text.len);
    bx_buf_free(&text);
    /* what the transports hand over: an object, an array, or null */
    if (!msgs || !(json_is_object(msgs) || json_is_array(msgs) || json_is_null(msgs))) {
        json_decref(msgs);
        return 0;
    }
    replied = 0;
    bx_batch_t *b = bx_protocol_process_browser(bx_server_hub(server), msgs, NULL,
                                                flags & 1 ? BX_PROTO_LOCAL : 0, browser,
                                                on_reply, NULL);
    json_decref(msgs);
    for (int turns = 0; !replied && turns < 16; turns++)
        uv_run(&loop, UV_RUN_NOWAIT);
    if (!replied)
        bx_batch_cancel(b);
    for (int i = 0; i < 4; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
