/*
 * fuzz_net.h - what the socket-driven libFuzzer targets share: a whole
 * bayeux server (bx_server_t: router, transports, hub, memory engine), a
 * client handshaken in-process for each input that has "@@", whose
 * clientId replaces every "@@" of it (so inputs reach the paths behind the
 * client checks), and one real client connection per input: it writes the
 * bytes, half-closes, and reads until the server closes, or until a
 * safety deadline (a held connect or an open WebSocket the server keeps by
 * design).
 *
 * The connection is a socketpair (AF_UNIX) whose server end the server
 * adopts as if its listener had accepted it (bx_server_adopt): the same
 * reads, writes, half-close and close as a TCP peer's, without a TCP
 * handshake, accept and loopback stack per input, which cost more than
 * the server's own work on most inputs.
 *
 * Header-only, one includer per binary (each target is one .c file).
 */
#ifndef BX_FUZZ_NET_H
#define BX_FUZZ_NET_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include "base/buf.h"
#include "base/json.h"
#include "bayeux/protocol.h"
#include "server.h"

/* How long one input's connection may stay open (ms): the server holds a
 * connect or a socket for longer, so the client ends it. */
#define FUZZ_CONN_MS 100

typedef struct {
    uv_tcp_t tcp;
    uv_write_t write;
    uv_shutdown_t shutdown;
    uv_timer_t deadline;
    uv_buf_t buf;               /* the request, borrowed */
    int closing;
    int done;                   /* both handles closed */
} fuzz_client_t;

static uv_loop_t fuzz_loop;
static bx_server_t *fuzz_server;
static char fuzz_rbuf[65536];
static char fuzz_cid[32];       /* the in-process client, or "" */

static void fuzz_hs_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    bx_buf_t b = BX_BUF_INIT;
    json_t *v;

    (void)ud;
    (void)nmsgs;
    for (size_t i = 0; i < reply->n; i++)
        bx_buf_append(&b, reply->v[i]->data, reply->v[i]->len);
    v = bx_json_parse(b.data, b.len);
    const char *id = bx_json_str(json_array_get(v, 0), "clientId");
    snprintf(fuzz_cid, sizeof(fuzz_cid), "%s", id ? id : "none");
    json_decref(v);
    bx_buf_free(&b);
}

/* Handshakes the client that "@@" names: a fresh one for each input,
 * bound to the browser id `browser` (NULL: none). */
static void fuzz_handshake(const char *browser)
{
    json_t *hs = json_pack("{s:s,s:s,s:[s]}", "channel", "/meta/handshake", "version", "1.0",
                           "supportedConnectionTypes", "websocket");
    bx_protocol_process_browser(bx_server_hub(fuzz_server), hs, NULL, 0, browser,
                                fuzz_hs_reply, NULL);
    json_decref(hs);
    /* NOWAIT: the engine and the hub answer from idle handles; ONCE would
     * then block in poll until the next timer */
    while (!fuzz_cid[0])
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
}

/* Makes the server; `opts` may set what the target wants on top of the
 * defaults (it is called with them filled in). */
static void fuzz_setup(void (*opts)(bx_server_opts_t *o))
{
    bx_server_opts_t o;
    char err[256];

    /* as the Lua module does for a server process: a write to a peer that
     * has gone is an EPIPE to handle, not a signal */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&fuzz_loop);
    bx_server_opts_default(&o);
    /* short: a held connect ends soon, and the "@@" clients (one per
     * input, fuzz_handshake) expire after 2 x timeout, so memory stays
     * bounded over millions of inputs */
    o.timeout = 0.05;
    o.max_channels = 10000;     /* bounded memory over millions of inputs */
    o.http.max_body = 65536;
    if (opts)
        opts(&o);
    fuzz_server = bx_server_new(&fuzz_loop, &o, err, sizeof(err));
    /* listening makes its HTTP server; the inputs come by socketpair */
    if (!fuzz_server || bx_server_listen(fuzz_server, "127.0.0.1", 0) < 0)
        abort();
}

/* A copy of `data` with every "@@" replaced by the id of a client
 * handshaken for this input (bound to `browser`, NULL: none). Only an input
 * that names one gets one: a handshake per input cost more than the rest
 * of most inputs, and an id nobody names reaches nothing. */
static void fuzz_subst(const uint8_t *data, size_t size, const char *browser, bx_buf_t *out)
{
    const char *p = (const char *)data, *end = p + size, *at;

    while ((at = memmem(p, (size_t)(end - p), "@@", 2)) != NULL) {
        if (at > p)
            bx_buf_append(out, p, (size_t)(at - p));
        if (!fuzz_cid[0])
            fuzz_handshake(browser);
        bx_buf_puts(out, fuzz_cid);
        p = at + 2;
    }
    if (end > p)
        bx_buf_append(out, p, (size_t)(end - p));
    fuzz_cid[0] = '\0';
}

static void fuzz_closed(uv_handle_t *h)
{
    ((fuzz_client_t *)h->data)->done++;
}

static void fuzz_close(fuzz_client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, fuzz_closed);
    uv_close((uv_handle_t *)&c->deadline, fuzz_closed);
}

static void fuzz_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    (void)h;
    (void)n;
    *buf = uv_buf_init(fuzz_rbuf, sizeof(fuzz_rbuf));
}

static void fuzz_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0)
        fuzz_close(s->data);
}

static void fuzz_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void fuzz_write_cb(uv_write_t *req, int status)
{
    fuzz_client_t *c = req->data;

    if (status < 0 || c->closing) {
        fuzz_close(c);
        return;
    }
    uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, fuzz_shutdown_cb);
}

static void fuzz_deadline_cb(uv_timer_t *t)
{
    fuzz_close(t->data);
}

/* Sends `len` bytes on a new connection and runs the loop until it is
 * over; then lets the server finish what the close started. */
static void fuzz_exchange(const char *bytes, size_t len)
{
    fuzz_client_t c;
    uv_tcp_t *peer = bx_malloc(sizeof(*peer));
    int sv[2];

    memset(&c, 0, sizeof(c));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    uv_tcp_init(&fuzz_loop, peer);
    uv_tcp_init(&fuzz_loop, &c.tcp);
    if (uv_tcp_open(peer, sv[0]) < 0 || uv_tcp_open(&c.tcp, sv[1]) < 0)
        abort();
    bx_server_adopt(fuzz_server, peer);
    uv_timer_init(&fuzz_loop, &c.deadline);
    c.tcp.data = &c;
    c.deadline.data = &c;
    c.write.data = &c;
    c.buf = uv_buf_init((char *)bytes, (unsigned)len);
    uv_timer_start(&c.deadline, fuzz_deadline_cb, FUZZ_CONN_MS, 0);
    uv_read_start((uv_stream_t *)&c.tcp, fuzz_alloc, fuzz_read);
    uv_write(&c.write, (uv_stream_t *)&c.tcp, &c.buf, 1, fuzz_write_cb);
    while (c.done < 2)
        uv_run(&fuzz_loop, UV_RUN_ONCE);
    for (int i = 0; i < 4; i++)
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
}

#endif
