/* bench/ceiling.c - the ceiling beside bayeux in `make bench`: a server
 * that does nothing but accept subscribers and write what is published to
 * them, with no Bayeux, no JSON and no per-subscriber state beyond the
 * socket. Whatever rate bench/bxload measures against it is the most the
 * generator, the kernel and this machine allow; bayeux's figures are given
 * as a share of it.
 *
 *   ceiling [--port P] [--host H]     (port 0, the default, picks a free one)
 *
 * Prints "bayeux: listening on http://HOST:PORT/faye", as bin/bayeux does.
 *
 * WebSocket: any upgrade is accepted (the 101 is prebuilt for the fixed key
 * bxload sends). A connection that sends a data frame is a publisher; the
 * messages of the frames read in one loop turn (JSON arrays: their
 * brackets dropped, commas between) become one text frame, written to every
 * other WebSocket in one write each, as bayeux writes once per connection
 * per turn; each publish frame is answered with a prebuilt ack frame.
 *
 * HTTP: a POST to /hold... is held until something is published (what was
 * published while it was not held waits for the next one), then answered
 * with the raw payloads; any other request gets a prebuilt JSON answer at
 * once (the handshake and publish request rates' ceiling).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/resource.h>

#include <uv.h>

enum { K_HEAD, K_WS, K_PUB, K_HTTP };

typedef struct chunk {
    int ref;
    size_t len;
    char data[];
} chunk;

typedef struct cconn {
    uv_tcp_t tcp;
    int kind;
    int pos;            /* index in ws_subs or lp_conns, -1 when in neither */
    char *rbuf;
    size_t rlen, rcap;
    size_t body_left;   /* HTTP: request body bytes still to skip */
    int hold_next;      /* HTTP: the request being read is a /hold */
    int held;
    chunk **pend;
    int npend, cpend;
    int acks;
    int ack_dirty;
    int closing;
} cconn;

static uv_loop_t *loop;
static char rshared[1 << 18];
static cconn **ws_subs, **lp_conns, **ackers;
static int n_ws, c_ws, n_lp, c_lp, n_ack, c_ack;
static char *ws_acc, *lp_acc;
static size_t ws_len, ws_cap, lp_len, lp_cap;

static const char R101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
static const char ACK_FRAME[] = "\x81\x15[{\"successful\":true}]";
static const char R200[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Content-Length: 21\r\n\r\n[{\"successful\":true}]";

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p && n) {
        fprintf(stderr, "ceiling: out of memory\n");
        exit(1);
    }
    return p;
}

static void append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 1024;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

static void list_add(cconn ***list, int *n, int *cap, cconn *c)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *list = xrealloc(*list, (size_t)*cap * sizeof **list);
    }
    c->pos = *n;
    (*list)[(*n)++] = c;
}

static void list_del(cconn **list, int *n, cconn *c)
{
    if (c->pos < 0) return;
    list[c->pos] = list[--*n];
    list[c->pos]->pos = c->pos;
    c->pos = -1;
}

static void chunk_unref(chunk *k)
{
    if (--k->ref == 0) free(k);
}

/* a write holding up to `nk` chunk references and its own head bytes */
typedef struct wreq {
    uv_write_t req;
    int nk;
    char *own;
    chunk *k[];
} wreq;

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    for (int i = 0; i < w->nk; i++) chunk_unref(w->k[i]);
    free(w->own);
    free(w);
}

static void write_static(cconn *c, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) == (int)n) return;
    wreq *w = xrealloc(NULL, sizeof *w);
    w->nk = 0;
    w->own = xrealloc(NULL, n);
    memcpy(w->own, p, n);
    b = uv_buf_init(w->own, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) on_write(&w->req, -1);
}

/* answers a held long-poll with everything pending for it */
static void respond_pending(cconn *c)
{
    size_t body = 0;
    uv_buf_t bufs[65];
    int nb = 0;
    int n = c->npend < 64 ? c->npend : 64;
    wreq *w = xrealloc(NULL, sizeof *w + (size_t)n * sizeof(chunk *));
    for (int i = 0; i < n; i++) body += c->pend[i]->len;
    w->own = xrealloc(NULL, 128);
    int hl = snprintf(w->own, 128, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n", body);
    bufs[nb++] = uv_buf_init(w->own, (unsigned)hl);
    w->nk = n;
    for (int i = 0; i < n; i++) {
        w->k[i] = c->pend[i];
        bufs[nb++] = uv_buf_init(c->pend[i]->data, (unsigned)c->pend[i]->len);
    }
    memmove(c->pend, c->pend + n, (size_t)(c->npend - n) * sizeof *c->pend);
    c->npend -= n;
    c->held = 0;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, (unsigned)nb, on_write)) on_write(&w->req, -1);
}

static void on_closed(uv_handle_t *h)
{
    cconn *c = (cconn *)h;
    for (int i = 0; i < c->npend; i++) chunk_unref(c->pend[i]);
    free(c->pend);
    free(c->rbuf);
    free(c);
}

static void conn_close(cconn *c)
{
    if (c->closing) return;
    c->closing = 1;
    if (c->kind == K_WS) list_del(ws_subs, &n_ws, c);
    else if (c->kind == K_HTTP) list_del(lp_conns, &n_lp, c);
    if (c->ack_dirty) {
        for (int i = 0; i < n_ack; i++)
            if (ackers[i] == c) ackers[i] = ackers[--n_ack];
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* a request head: upgrade, /hold or anything else */
static size_t head_parse(cconn *c, char *p, size_t n)
{
    char *e = memmem(p, n, "\r\n\r\n", 4);
    if (!e) return 0;
    size_t hl = (size_t)(e + 4 - p);
    *e = 0;
    if (strcasestr(p, "upgrade: websocket")) {
        if (c->kind == K_HTTP) list_del(lp_conns, &n_lp, c);
        c->kind = K_WS;
        list_add(&ws_subs, &n_ws, &c_ws, c);
        write_static(c, R101, sizeof R101 - 1);
        return hl;
    }
    if (c->kind != K_HTTP) {
        c->kind = K_HTTP;
        list_add(&lp_conns, &n_lp, &c_lp, c);
    }
    char *sp = strchr(p, ' ');
    c->hold_next = sp && !strncmp(sp + 1, "/hold", 5);
    char *cl = strcasestr(p, "\r\ncontent-length:");
    c->body_left = cl ? strtoul(cl + 17, NULL, 10) : 0;
    return hl;
}

static void request_done(cconn *c)
{
    if (!c->hold_next) {
        write_static(c, R200, sizeof R200 - 1);
        return;
    }
    c->held = 1;
    if (c->npend) respond_pending(c);
}

static size_t ws_parse(cconn *c, char *p, size_t n)
{
    size_t at = 0;
    while (n - at >= 2) {
        uint8_t *h = (uint8_t *)p + at;
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (n - at < 4) break;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (n - at < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
            hl = 10;
        }
        int masked = h[1] & 0x80;
        if (n - at < hl + (masked ? 4 : 0) + len) break;
        uint8_t *mask = h + hl;
        char *pl = p + at + hl + (masked ? 4 : 0);
        int op = h[0] & 0x0f;
        if (masked)
            for (uint64_t i = 0; i < len; i++) pl[i] ^= (char)mask[i & 3];
        if (op == 8) {
            conn_close(c);
            return n;
        }
        if (op <= 2) {
            if (c->kind == K_WS) {
                list_del(ws_subs, &n_ws, c);
                c->kind = K_PUB;
            }
            /* the messages of a turn go out as one JSON array, as bayeux
             * sends them: the publisher's arrays lose their brackets */
            if (n_ws && len >= 2 && pl[0] == '[' && pl[len - 1] == ']') {
                if (ws_len) append(&ws_acc, &ws_len, &ws_cap, ",", 1);
                append(&ws_acc, &ws_len, &ws_cap, pl + 1, (size_t)len - 2);
            }
            if (n_lp) append(&lp_acc, &lp_len, &lp_cap, pl, (size_t)len);
            c->acks++;
            if (!c->ack_dirty) {
                c->ack_dirty = 1;
                list_add(&ackers, &n_ack, &c_ack, c);
                c->pos = -1;   /* ackers is not indexed by pos */
            }
        }
        at += hl + (masked ? 4 : 0) + (size_t)len;
    }
    return at;
}

static size_t parse(cconn *c, char *p, size_t n)
{
    size_t used = 0;
    while (used < n && !c->closing) {
        size_t k;
        if (c->kind == K_WS || c->kind == K_PUB) {
            k = ws_parse(c, p + used, n - used);
        } else if (c->body_left) {
            k = c->body_left < n - used ? c->body_left : n - used;
            c->body_left -= k;
            if (!c->body_left) request_done(c);
        } else {
            k = head_parse(c, p + used, n - used);
            if (k && c->kind == K_HTTP && !c->body_left) request_done(c);
        }
        if (!k) break;
        used += k;
    }
    return used;
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    *buf = uv_buf_init(rshared, sizeof rshared);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cconn *c = (cconn *)s;
    char *p;
    size_t n, used;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->rlen) {
        if (c->rlen + (size_t)nread > c->rcap) {
            c->rcap = (c->rlen + (size_t)nread) * 2;
            c->rbuf = xrealloc(c->rbuf, c->rcap);
        }
        memcpy(c->rbuf + c->rlen, buf->base, (size_t)nread);
        c->rlen += (size_t)nread;
        p = c->rbuf;
        n = c->rlen;
    } else {
        p = buf->base;
        n = (size_t)nread;
    }
    used = parse(c, p, n);
    if (c->closing) return;
    if (used < n) {
        size_t left = n - used;
        if (p == c->rbuf) {
            memmove(c->rbuf, c->rbuf + used, left);
        } else {
            if (left > c->rcap) {
                c->rcap = left * 2;
                c->rbuf = xrealloc(c->rbuf, c->rcap);
            }
            memcpy(c->rbuf, p + used, left);
        }
        c->rlen = left;
    } else {
        c->rlen = 0;
    }
}

static chunk *chunk_of(const char *p, size_t n)
{
    chunk *k = xrealloc(NULL, sizeof *k + n);
    k->ref = 1;
    k->len = n;
    memcpy(k->data, p, n);
    return k;
}

/* end of a loop turn: what was published in it goes out, one write per
 * connection */
static void on_check(uv_check_t *h)
{
    if (ws_len) {
        /* one text frame: [ + the turn's messages + ] */
        uint8_t sh[10];
        size_t shl = 2, len = ws_len + 2;
        sh[0] = 0x81;
        if (len < 126) {
            sh[1] = (uint8_t)len;
        } else if (len < 65536) {
            sh[1] = 126;
            sh[2] = (uint8_t)(len >> 8);
            sh[3] = (uint8_t)len;
            shl = 4;
        } else {
            sh[1] = 127;
            for (int i = 0; i < 8; i++) sh[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
            shl = 10;
        }
        chunk *k = xrealloc(NULL, sizeof *k + shl + len);
        k->ref = 1;
        k->len = shl + len;
        memcpy(k->data, sh, shl);
        k->data[shl] = '[';
        memcpy(k->data + shl + 1, ws_acc, ws_len);
        k->data[shl + 1 + ws_len] = ']';
        uv_buf_t b = uv_buf_init(k->data, (unsigned)k->len);
        ws_len = 0;
        for (int i = 0; i < n_ws; i++) {
            wreq *w = xrealloc(NULL, sizeof *w + sizeof(chunk *));
            w->nk = 1;
            w->own = NULL;
            w->k[0] = k;
            k->ref++;
            if (uv_write(&w->req, (uv_stream_t *)&ws_subs[i]->tcp, &b, 1, on_write))
                on_write(&w->req, -1);
        }
        chunk_unref(k);
    }
    if (lp_len) {
        chunk *k = chunk_of(lp_acc, lp_len);
        lp_len = 0;
        for (int i = 0; i < n_lp; i++) {
            cconn *c = lp_conns[i];
            if (c->npend == c->cpend) {
                c->cpend = c->cpend ? c->cpend * 2 : 4;
                c->pend = xrealloc(c->pend, (size_t)c->cpend * sizeof *c->pend);
            }
            c->pend[c->npend++] = k;
            k->ref++;
            if (c->held) respond_pending(c);
        }
        chunk_unref(k);
    }
    for (int i = 0; i < n_ack; i++) {
        cconn *c = ackers[i];
        size_t n = (size_t)c->acks * (sizeof ACK_FRAME - 1);
        wreq *w = xrealloc(NULL, sizeof *w);
        w->nk = 0;
        w->own = xrealloc(NULL, n);
        for (int j = 0; j < c->acks; j++)
            memcpy(w->own + (size_t)j * (sizeof ACK_FRAME - 1), ACK_FRAME, sizeof ACK_FRAME - 1);
        uv_buf_t b = uv_buf_init(w->own, (unsigned)n);
        c->acks = 0;
        c->ack_dirty = 0;
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) on_write(&w->req, -1);
    }
    n_ack = 0;
}

static void on_conn(uv_stream_t *server, int status)
{
    cconn *c;
    if (status) return;
    c = calloc(1, sizeof *c);
    if (!c) return;
    c->pos = -1;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *s, int signum)
{
    exit(0);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    uv_tcp_t server;
    uv_check_t check;
    uv_signal_t sigterm, sigint;
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    }
    signal(SIGPIPE, SIG_IGN);
    {   /* as many sockets as the hard limit allows */
        struct rlimit rl;
        if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    uv_ip4_addr(host, port, &addr);
    if (uv_tcp_bind(&server, (struct sockaddr *)&addr, 0) ||
        uv_listen((uv_stream_t *)&server, 4096, on_conn)) {
        fprintf(stderr, "ceiling: cannot listen on %s:%d\n", host, port);
        return 1;
    }
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("bayeux: listening on http://%s:%d/faye\n", host,
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    uv_check_init(loop, &check);
    uv_check_start(&check, on_check);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    return uv_run(loop, UV_RUN_DEFAULT);
}
