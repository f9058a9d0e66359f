/* bench/bxload.c - the Bayeux load generator of `make bench`: raw Bayeux
 * clients over WebSocket and long-polling on one libuv loop, thousands of
 * sessions from one process over 127.0.0.x source addresses.
 *
 *   bxload --port P [--mount /faye] --scenario fanout|idle|http-handshake|http-publish
 *          [options]     (bench/run.js drives it; `bxload --help` lists them)
 *
 * fanout: SUBS subscribers (WebSocket or long-polling) over ROOMS channels,
 * each in PER rooms; PUBS WebSocket publishers send frames of BATCH messages,
 * each to a random room, either keeping at most INFLIGHT messages in flight
 * (sent, and not yet both acknowledged and delivered to every member of its
 * room) or at RATE frames per second. The message data carries its number
 * and its send time ("bx":"N:T"), so every delivery is counted exactly
 * (batched frames included), checked against a bitmap per subscriber (every
 * member got every message once, nobody got what it should not) and timed.
 *
 * idle: SUBS WebSocket sessions handshake, subscribe and hold a connect;
 * the server's RSS and the kernel's slab memory before and after.
 *
 * http-handshake / http-publish: CONNS keep-alive connections POST one
 * request after another for SECS seconds (at most MSGS in all).
 *
 * --ceiling talks to bench/ceiling.c instead: no Bayeux set-up (subscribers
 * are ready once connected; long-polling ones POST to /hold), acks counted
 * one frame per publish frame.
 *
 * Prints one line "RESULT {json}" (bench/run.js reads it). The generator's
 * own CPU use (getrusage) is in it, so a saturated generator shows; given
 * --pid, so is the server's CPU time over the same window (/proc/PID/stat).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>
#include <zlib.h>

enum { T_WS, T_LP };
enum { S_CONNECTING, S_UPGRADE, S_HANDSHAKE, S_SUBSCRIBE, S_READY, S_DEAD };
enum { R_SUB, R_PUB, R_HTTP };
enum { P_SETUP, P_SETTLE, P_RUN, P_DRAIN, P_DONE };

typedef struct conn conn;
struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int idx;               /* subscriber / publisher / http connection number */
    int role, transport, state;
    char client_id[48];
    char *rbuf;            /* unparsed bytes kept between reads */
    size_t rlen, rcap;
    char *wbuf;            /* bytes to write at the end of this loop turn */
    size_t wlen, wcap;
    conn *next_dirty;
    int dirty;
    http_parser hp;
    char *body;
    size_t blen, bcap;
    uint8_t *seen;         /* subscriber: bitmap of message numbers */
    uint64_t sent, acked, done;  /* publisher: messages */
    uint64_t req_t0;       /* http: send time of the request in flight */
};

static struct {
    const char *host, *mount, *scenario, *channel;
    int port, transport, ceiling, subs, pubs, rooms, per, batch, inflight;
    int size, conns, parallel, pid, deflate;
    long msgs;
    double rate, secs, drain, setup, hold;
} opt = {
    .host = "127.0.0.1", .mount = "/faye", .scenario = "fanout", .channel = "/bench",
    .transport = T_WS,
    .subs = 1000, .pubs = 1, .rooms = 1, .per = 1, .batch = 1, .inflight = 1,
    .size = 60, .conns = 20, .parallel = 100, .msgs = 20000,
    .secs = 3, .drain = 10, .setup = 60,
};

static uv_loop_t *loop;
static uv_check_t check;
static uv_timer_t ticker;
static conn **subs, **pubs, **hconns;
static int n_ready, n_opened, n_conns_total, n_setup_failed;
static int phase = P_SETUP;
static conn *dirty_head;
static char rshared[1 << 18];
static char *pad;

/* message bookkeeping (fanout) */
static uint32_t *msg_room, *msg_got, *room_members;
static uint16_t *msg_pub;
static uint64_t sent_total, done_total, acked_total, frames_sent;
static uint64_t deliveries, dups, wrong, del_frames, del_bytes, errors, conn_errors;
static uint64_t wire_bytes, z_frames, ws_frames;    /* data frames from the server */
static uint64_t http_ok, http_fail;
static uint64_t t_run0, t_end, t_settle;
static struct rusage ru0, ru1;
static double srv_cpu0, srv_cpu1;
static long rss0, rss1, slab0, slab1;
static char fail_reason[256];

/* latency histogram in microseconds: exact below 64, then 32 buckets per
 * power of two (about 3 % wide) */
#define HBUCKETS (64 + 42 * 32)
static uint64_t hist[HBUCKETS], hist_n, hist_max;

static void hist_add(uint64_t us)
{
    int b;
    if (us < 64) {
        b = (int)us;
    } else {
        int e = 63 - __builtin_clzll(us);
        b = 64 + (e - 6) * 32 + (int)((us >> (e - 5)) - 32);
        if (b >= HBUCKETS) b = HBUCKETS - 1;
    }
    hist[b]++;
    hist_n++;
    if (us > hist_max) hist_max = us;
}

static double hist_pct(double p)
{
    uint64_t want, acc = 0;
    if (!hist_n) return NAN;
    want = (uint64_t)ceil(p / 100.0 * (double)hist_n);
    if (want < 1) want = 1;
    for (int b = 0; b < HBUCKETS; b++) {
        acc += hist[b];
        if (acc >= want) {
            if (b < 64) return b;
            int e = (b - 64) / 32 + 6, m = (b - 64) % 32 + 32;
            double mid = ((double)m + 0.5) * (double)(1ull << (e - 5));
            return mid < (double)hist_max ? mid : (double)hist_max;
        }
    }
    return (double)hist_max;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bxload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p && n) die("out of memory");
    return p;
}

static void fail(const char *fmt, ...)
{
    va_list ap;
    if (fail_reason[0]) return;
    va_start(ap, fmt);
    vsnprintf(fail_reason, sizeof fail_reason, fmt, ap);
    va_end(ap);
}

/* ---- /proc readers ---- */

static double proc_cpu(int pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r"))) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')'))) return NAN;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* "Key:   123 kB" from a /proc file, in bytes; -1 when absent */
static long proc_kb(const char *path, const char *key)
{
    char line[256];
    size_t kl = strlen(key);
    long v = -1;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = atol(line + kl + 1) * 1024;
            break;
        }
    fclose(f);
    return v;
}

static long server_rss(void)
{
    char path[64];
    if (!opt.pid) return -1;
    snprintf(path, sizeof path, "/proc/%d/status", opt.pid);
    return proc_kb(path, "VmRSS");
}

/* ---- output: coalesced per loop turn ---- */

static void out(conn *c, const void *p, size_t n)
{
    if (c->wlen + n > c->wcap) {
        c->wcap = (c->wlen + n) * 2 + 256;
        c->wbuf = xrealloc(c->wbuf, c->wcap);
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    if (!c->dirty) {
        c->dirty = 1;
        c->next_dirty = dirty_head;
        dirty_head = c;
    }
}

typedef struct {
    uv_write_t req;
    char *buf;
} wreq;

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    if (status && phase < P_DONE) conn_errors++;
    free(w->buf);
    free(w);
}

static void flush_all(void)
{
    while (dirty_head) {
        conn *c = dirty_head;
        dirty_head = c->next_dirty;
        c->dirty = 0;
        if (c->state == S_DEAD || !c->wlen) continue;
        wreq *w = xrealloc(NULL, sizeof *w);
        uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)c->wlen);
        w->buf = c->wbuf;
        c->wbuf = NULL;
        c->wlen = c->wcap = 0;
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
            conn_errors++;
            free(w->buf);
            free(w);
        }
    }
}

/* one masked client frame (RFC 6455 5.3: client frames must be masked) */
static void ws_send(conn *c, int opcode, const char *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 2;
    static uint32_t seed = 0x9e3779b9;
    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    seed = seed * 1664525u + 1013904223u;
    memcpy(h + hl, &seed, 4);
    uint8_t *mask = h + hl;
    hl += 4;
    out(c, h, hl);
    size_t at = c->wlen;
    out(c, p, n);
    for (size_t i = 0; i < n; i++) c->wbuf[at + i] ^= mask[i & 3];
}

static void http_post(conn *c, const char *path, const char *body, size_t n)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n", path, opt.host, opt.port, n);
    out(c, head, (size_t)hl);
    out(c, body, n);
    c->req_t0 = uv_hrtime();
}

/* sends the Bayeux messages in `json` over the connection's transport */
static void bx_send(conn *c, const char *json)
{
    if (c->transport == T_WS) ws_send(c, 1, json, strlen(json));
    else http_post(c, opt.mount, json, strlen(json));
}

/* ---- rooms: subscriber i is in rooms (i + j*stride) % rooms, j < per ---- */

static int stride(void) { return opt.rooms / opt.per; }

static int member(int sub, uint32_t room)
{
    int d = (int)((room + (uint32_t)opt.rooms - (uint32_t)(sub % opt.rooms)) % (uint32_t)opt.rooms);
    return d % stride() == 0 && d / stride() < opt.per;
}

static void room_name(char *buf, size_t n, uint32_t r)
{
    if (opt.rooms == 1) snprintf(buf, n, "%s", opt.channel);
    else snprintf(buf, n, "%s/r%" PRIu32, opt.channel, r);
}

/* ---- set-up ---- */

static void open_next(void);
static void start_run(void);

static void became_ready(conn *c)
{
    c->state = S_READY;
    n_ready++;
    open_next();
}

static void conn_dead(conn *c, const char *why)
{
    if (c->state == S_DEAD) return;
    if (c->state != S_READY) {
        n_setup_failed++;
        fail("set-up of connection %d failed: %s", c->idx, why);
        c->state = S_DEAD;
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (phase == P_SETUP) open_next();
        return;
    } else if (phase < P_DONE) {
        conn_errors++;
        fail("connection %d lost during the run: %s", c->idx, why);
    }
    c->state = S_DEAD;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

static void send_connect(conn *c)
{
    char m[160];
    if (opt.ceiling) {
        if (c->transport == T_LP) http_post(c, "/hold", "[]", 2);
        return;
    }
    snprintf(m, sizeof m, "[{\"channel\":\"/meta/connect\",\"clientId\":\"%s\","
             "\"connectionType\":\"%s\"}]", c->client_id,
             c->transport == T_WS ? "websocket" : "long-polling");
    bx_send(c, m);
}

static void send_subscribe(conn *c)
{
    size_t cap = (size_t)opt.per * 128 + 8, n = 1;
    char *m = xrealloc(NULL, cap), ch[64];
    m[0] = '[';
    for (int j = 0; j < opt.per; j++) {
        room_name(ch, sizeof ch, (uint32_t)((c->idx + j * stride()) % opt.rooms));
        n += (size_t)snprintf(m + n, cap - n, "%s{\"channel\":\"/meta/subscribe\",\"clientId\":\"%s\","
                              "\"subscription\":\"%s\"}", j ? "," : "", c->client_id, ch);
    }
    snprintf(m + n, cap - n, "]");
    bx_send(c, m);
    free(m);
}

static void send_handshake(conn *c)
{
    bx_send(c, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
               "\"supportedConnectionTypes\":[\"websocket\",\"long-polling\"]}]");
    c->state = S_HANDSHAKE;
}

/* the transport is up (WebSocket upgraded or TCP connected for HTTP) */
static void transport_up(conn *c)
{
    if (opt.ceiling || (c->role == R_HTTP && !strcmp(opt.scenario, "http-handshake"))) {
        became_ready(c);
        if (c->role == R_SUB) send_connect(c);
        return;
    }
    send_handshake(c);
}

static size_t count_str(const char *p, size_t n, const char *s)
{
    size_t k = 0, sl = strlen(s);
    const char *e = p + n;
    while ((p = memmem(p, (size_t)(e - p), s, sl))) {
        k++;
        p += sl;
    }
    return k;
}

static int get_client_id(conn *c, const char *p, size_t n)
{
    const char *k = memmem(p, n, "\"clientId\":\"", 12), *e;
    if (!k) return 0;
    k += 12;
    e = memchr(k, '"', (size_t)(p + n - k));
    if (!e || (size_t)(e - k) >= sizeof c->client_id) return 0;
    memcpy(c->client_id, k, (size_t)(e - k));
    c->client_id[e - k] = 0;
    return 1;
}

/* every "bx":"N:T" in a delivery payload */
static void deliveries_in(conn *c, const char *p, size_t n, uint64_t now)
{
    const char *e = p + n, *q = p;
    int any = 0;
    while ((q = memmem(q, (size_t)(e - q), "\"bx\":\"", 6))) {
        char *end;
        q += 6;
        uint64_t num = strtoull(q, &end, 10);
        if (*end != ':') { errors++; continue; }
        uint64_t t = strtoull(end + 1, &end, 10);
        any = 1;
        deliveries++;
        if (now > t) hist_add((now - t) / 1000);
        else hist_add(0);
        if (num >= sent_total || !member(c->idx, msg_room[num])) {
            wrong++;
            continue;
        }
        if (c->seen[num >> 3] & (1u << (num & 7))) {
            dups++;
            continue;
        }
        c->seen[num >> 3] |= (uint8_t)(1u << (num & 7));
        if (++msg_got[num] == room_members[msg_room[num]]) {
            done_total++;
            pubs[msg_pub[num]]->done++;
        }
    }
    if (any) {
        del_frames++;
        del_bytes += n;
    }
}

/* the next request of an HTTP connection, while the run lasts */
static void http_next(conn *c)
{
    if (phase != P_RUN || (long)(http_ok + http_fail) >= opt.msgs) return;
    if (!strcmp(opt.scenario, "http-handshake")) {
        bx_send(c, "[{\"channel\":\"/meta/handshake\",\"version\":\"1.0\","
                   "\"supportedConnectionTypes\":[\"long-polling\"]}]");
    } else {
        char m[512];
        snprintf(m, sizeof m, "[{\"channel\":\"/bench\",\"clientId\":\"%s\","
                 "\"data\":{\"x\":\"%s\"}}]", c->client_id, pad);
        bx_send(c, m);
    }
}

/* one Bayeux reply payload (a WebSocket text frame or an HTTP body) */
static void on_payload(conn *c, const char *p, size_t n)
{
    uint64_t now = uv_hrtime();
    if (c->state == S_HANDSHAKE) {
        if (!get_client_id(c, p, n) || !memmem(p, n, "\"successful\":true", 17)) {
            conn_dead(c, "handshake refused");
            return;
        }
        if (c->role == R_SUB) {
            c->state = S_SUBSCRIBE;
            send_subscribe(c);
            if (c->transport == T_WS) send_connect(c);
        } else {
            became_ready(c);
        }
        return;
    }
    if (c->state == S_SUBSCRIBE) {
        if (!memmem(p, n, "/meta/subscribe", 15)) return;  /* e.g. an early connect reply */
        if (count_str(p, n, "\"successful\":true") < (size_t)opt.per) {
            conn_dead(c, "subscribe refused");
            return;
        }
        became_ready(c);
        if (c->transport == T_LP) send_connect(c);
        return;
    }
    if (c->state != S_READY) return;
    if (c->role == R_SUB) {
        deliveries_in(c, p, n, now);
        /* a connect answered: connect again, as Faye's client does (over
         * long-polling every response answers the connect) */
        if (c->transport == T_LP || (!opt.ceiling && memmem(p, n, "/meta/connect", 13)))
            send_connect(c);
    } else if (c->role == R_PUB) {
        uint64_t a = opt.ceiling ? (uint64_t)opt.batch : count_str(p, n, "\"successful\":true");
        if (!opt.ceiling && memmem(p, n, "\"successful\":false", 18)) errors++;
        c->acked += a;
        acked_total += a;
    } else {
        if (phase == P_RUN || phase == P_DRAIN) {
            if (opt.ceiling || memmem(p, n, "\"successful\":true", 17)) {
                http_ok++;
                hist_add((now - c->req_t0) / 1000);
            } else {
                http_fail++;
            }
        }
        http_next(c);
    }
}

/* ---- WebSocket frames from the server (unmasked) ---- */

/* --deflate: a message with RSV1 is inflated (no context takeover: each
 * on its own) into a buffer shared by every connection. */
static z_stream zin;
static char *zbuf;
static size_t zcap;

static int ws_inflate(const char *p, size_t n, size_t *outlen)
{
    static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
    size_t len = 0;
    int r = Z_OK;
    if (!zin.state && inflateInit2(&zin, -15) != Z_OK) return -1;
    inflateReset(&zin);
    for (int part = 0; part < 2 && r != Z_STREAM_END; part++) {
        zin.next_in = part ? (Bytef *)tail : (Bytef *)p;
        zin.avail_in = part ? 4 : (uInt)n;
        do {
            if (zcap - len < 65536) {
                zcap = zcap ? zcap * 2 : 1 << 20;
                zbuf = xrealloc(zbuf, zcap);
            }
            zin.next_out = (Bytef *)zbuf + len;
            zin.avail_out = (uInt)(zcap - len);
            r = inflate(&zin, Z_SYNC_FLUSH);
            len = zcap - zin.avail_out;
            if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) return -1;
        } while (zin.avail_out == 0 && r != Z_STREAM_END);
    }
    *outlen = len;
    return 0;
}

static size_t ws_parse(conn *c, const char *p, size_t n)
{
    size_t at = 0;
    while (n - at >= 2 && c->state != S_DEAD) {
        const uint8_t *h = (const uint8_t *)p + at;
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
        if (h[1] & 0x80) { conn_dead(c, "masked frame from the server"); break; }
        if (n - at - hl < len) break;
        int op = h[0] & 0x0f;
        const char *pl = p + at + hl;
        if ((op == 1 || op == 0 || op == 2) && (h[0] & 0x40)) {
            size_t zl;
            ws_frames++;
            z_frames++;
            wire_bytes += len;
            if (ws_inflate(pl, (size_t)len, &zl) != 0) { conn_dead(c, "bad deflate data"); break; }
            on_payload(c, zbuf, zl);
        } else if (op == 1 || op == 0 || op == 2) {
            ws_frames++;
            wire_bytes += len;
            on_payload(c, pl, (size_t)len);
        }
        else if (op == 9) ws_send(c, 10, pl, (size_t)len);
        else if (op == 8) conn_dead(c, "closed by the server");
        at += hl + (size_t)len;
    }
    return at;
}

/* ---- HTTP responses (http_parser) ---- */

static int on_body(http_parser *hp, const char *p, size_t n)
{
    conn *c = hp->data;
    if (c->blen + n > c->bcap) {
        c->bcap = (c->blen + n) * 2;
        c->body = xrealloc(c->body, c->bcap);
    }
    memcpy(c->body + c->blen, p, n);
    c->blen += n;
    return 0;
}

static int on_complete(http_parser *hp)
{
    conn *c = hp->data;
    if (hp->status_code != 200) {
        http_fail += c->state == S_READY && c->role == R_HTTP;
        conn_dead(c, "HTTP status not 200");
        return 0;
    }
    on_payload(c, c->body ? c->body : "", c->blen);
    c->blen = 0;
    return 0;
}

static http_parser_settings hsettings = { .on_body = on_body, .on_message_complete = on_complete };

static size_t http_parse(conn *c, const char *p, size_t n)
{
    size_t k = http_parser_execute(&c->hp, &hsettings, p, n);
    if (c->hp.http_errno) conn_dead(c, http_errno_name(c->hp.http_errno));
    return n;  /* http_parser keeps its own state between calls */
    (void)k;
}

static size_t upgrade_parse(conn *c, const char *p, size_t n)
{
    const char *e = memmem(p, n, "\r\n\r\n", 4);
    if (!e) return 0;
    if (n < 12 || memcmp(p + 9, "101", 3)) {
        conn_dead(c, "WebSocket upgrade refused");
        return n;
    }
    c->state = S_CONNECTING;
    transport_up(c);
    return (size_t)(e + 4 - p);
}

static size_t parse(conn *c, const char *p, size_t n)
{
    size_t used = 0, k;
    while (used < n && c->state != S_DEAD) {
        if (c->state == S_UPGRADE) k = upgrade_parse(c, p + used, n - used);
        else if (c->transport == T_WS) k = ws_parse(c, p + used, n - used);
        else k = http_parse(c, p + used, n - used);
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
    conn *c = (conn *)s;
    const char *p;
    size_t n, used;
    if (nread < 0) {
        conn_dead(c, uv_strerror((int)nread));
        return;
    }
    if (!nread) return;
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
    if (used < n && c->state != S_DEAD) {
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
        if (c->rcap > 65536) {  /* give a burst's buffer back */
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (status) {
        conn_dead(c, uv_strerror(status));
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->transport == T_WS) {
        char m[384];
        int n = snprintf(m, sizeof m, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "%sSec-WebSocket-Version: 13\r\n\r\n", opt.ceiling ? "/ws" : opt.mount,
                         opt.host, opt.port,
                         opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                       "client_no_context_takeover; "
                                       "server_no_context_takeover\r\n" : "");
        c->state = S_UPGRADE;
        out(c, m, (size_t)n);
    } else {
        http_parser_init(&c->hp, HTTP_RESPONSE);
        c->hp.data = c;
        c->state = S_CONNECTING;
        transport_up(c);
    }
    flush_all();
}

static conn *conn_new(int role, int idx, int transport)
{
    conn *c = calloc(1, sizeof *c);
    struct sockaddr_in src, dst;
    char ip[32];
    if (!c) die("out of memory");
    c->role = role;
    c->idx = idx;
    c->transport = transport;
    c->creq.data = c;
    if (role == R_SUB && msg_room && !(c->seen = calloc((size_t)opt.msgs / 8 + 1, 1)))
        die("out of memory");
    uv_tcp_init(loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    /* ~28k ephemeral ports per source address: spread over 127.0.0.2.. */
    int k = n_opened++;
    snprintf(ip, sizeof ip, "127.0.0.%d", 2 + k % 200);
    uv_ip4_addr(ip, 0, &src);
    uv_ip4_addr(opt.host, opt.port, &dst);
    int rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&src, 0);
    if (!rc) rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&dst, on_connect);
    if (rc) {
        c->state = S_CONNECTING;
        conn_dead(c, uv_strerror(rc));
    }
    return c;
}

/* Keeps at most opt.parallel set-ups in flight: subscribers, then
 * publishers, then HTTP connections. */
static void open_next(void)
{
    static int next;
    int idle = !strcmp(opt.scenario, "idle");
    int http = !strncmp(opt.scenario, "http-", 5);
    int nsub = http ? 0 : opt.subs, npub = (http || idle) ? 0 : opt.pubs;
    int nhttp = http ? opt.conns : 0;
    n_conns_total = nsub + npub + nhttp;
    while (next < n_conns_total && next - n_ready - n_setup_failed < opt.parallel) {
        int i = next++;
        if (i < nsub) subs[i] = conn_new(R_SUB, i, opt.transport);
        else if (i < nsub + npub) pubs[i - nsub] = conn_new(R_PUB, i - nsub, T_WS);
        else hconns[i - nsub - npub] = conn_new(R_HTTP, i - nsub - npub, T_LP);
    }
    if (phase == P_SETUP && n_ready + n_setup_failed == n_conns_total) {
        if (n_setup_failed) {
            phase = P_DONE;
            t_end = uv_hrtime();
            uv_stop(loop);
            return;
        }
        phase = P_SETTLE;
        t_settle = uv_hrtime();
    }
}

/* ---- publishing ---- */

static void send_frame(conn *p)
{
    size_t cap = (size_t)opt.batch * (200 + (size_t)opt.size) + 8, n = 1;
    char *m = xrealloc(NULL, cap), ch[64];
    uint64_t now = uv_hrtime();
    m[0] = '[';
    for (int b = 0; b < opt.batch && (long)sent_total < opt.msgs; b++) {
        uint64_t num = sent_total++;
        uint32_t r = opt.rooms == 1 ? 0 : (uint32_t)(rand() % opt.rooms);
        msg_room[num] = r;
        msg_pub[num] = (uint16_t)p->idx;
        p->sent++;
        room_name(ch, sizeof ch, r);
        n += (size_t)snprintf(m + n, cap - n, "%s{\"channel\":\"%s\",\"clientId\":\"%s\","
                              "\"data\":{\"bx\":\"%" PRIu64 ":%" PRIu64 "\",\"x\":\"%s\"}}",
                              b ? "," : "", ch, p->client_id[0] ? p->client_id : "c", num, now, pad);
    }
    snprintf(m + n, cap - n, "]");
    ws_send(p, 1, m, n + 1);
    frames_sent++;
    free(m);
}

static void pump_window(void)
{
    for (int i = 0; i < opt.pubs; i++) {
        conn *p = pubs[i];
        if (p->state != S_READY) continue;
        for (;;) {
            uint64_t settled = p->acked < p->done ? p->acked : p->done;
            if ((long)sent_total >= opt.msgs || p->sent - settled + (uint64_t)opt.batch > (uint64_t)opt.inflight)
                break;
            send_frame(p);
        }
    }
}

static void pump_rate(uint64_t now)
{
    static int rr;
    uint64_t due = (uint64_t)((double)(now - t_run0) / 1e9 * opt.rate) + 1;
    while (frames_sent < due && (long)sent_total < opt.msgs) {
        conn *p = pubs[rr++ % opt.pubs];
        if (p->state == S_READY) send_frame(p);
        else break;
    }
}

static void finish(void)
{
    if (phase == P_DONE) return;
    phase = P_DONE;
    t_end = uv_hrtime();
    getrusage(RUSAGE_SELF, &ru1);
    if (opt.pid) srv_cpu1 = proc_cpu(opt.pid);
    flush_all();
    uv_stop(loop);
}

static void start_run(void)
{
    int http = !strncmp(opt.scenario, "http-", 5);
    phase = P_RUN;
    getrusage(RUSAGE_SELF, &ru0);
    if (opt.pid) srv_cpu0 = proc_cpu(opt.pid);
    t_run0 = uv_hrtime();
    if (http) {
        for (int i = 0; i < opt.conns; i++) http_next(hconns[i]);
    }
}

static void idle_measure(void)
{
    static uint64_t hold_end;

    if (!hold_end) {
        rss1 = server_rss();
        slab1 = proc_kb("/proc/meminfo", "Slab");
        /* --hold keeps the sessions open after measuring, so the server's
         * heap can be looked at (massif, /proc) while they are idle */
        hold_end = uv_hrtime() + (uint64_t)(opt.hold * 1e9) + 1;
        if (opt.hold > 0) {
            printf("HOLD %.0f s\n", opt.hold);
            fflush(stdout);
        }
    }
    if (uv_hrtime() >= hold_end) finish();
}

static void tick(void)
{
    uint64_t now = uv_hrtime();
    double el = (double)(now - t_run0) / 1e9;
    int idle = !strcmp(opt.scenario, "idle");
    int http = !strncmp(opt.scenario, "http-", 5);
    if (phase == P_SETUP && (double)(now - t_run0) / 1e9 > opt.setup) {
        fail("set-up not done after %.0f s: %d of %d connections ready", opt.setup, n_ready,
             n_conns_total);
        finish();
        return;
    }
    if (phase == P_SETTLE) {
        /* let the last connects and subscriptions settle in the server */
        if ((double)(now - t_settle) / 1e9 < (idle ? 1.0 : 0.3)) return;
        if (idle) { idle_measure(); return; }
        start_run();
        return;
    }
    if (phase == P_RUN) {
        if (opt.rate > 0 && !http) pump_rate(now);
        if (el >= opt.secs || (long)sent_total >= opt.msgs ||
            (http && (long)(http_ok + http_fail) >= opt.msgs))
            phase = P_DRAIN;
    }
    if (phase == P_DRAIN) {
        /* an HTTP run ends with its last response; requests still out are
         * not counted */
        int drained = http || (done_total == sent_total && acked_total >= sent_total);
        if (drained || el >= opt.secs + opt.drain) finish();
    }
}

static void on_check(uv_check_t *h)
{
    if (phase == P_RUN && opt.rate <= 0 && strncmp(opt.scenario, "http-", 5)) pump_window();
    if (phase == P_RUN || phase == P_DRAIN) tick();
    flush_all();
}

static void on_tick(uv_timer_t *t)
{
    tick();
    flush_all();
}

/* ---- options and results ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bxload --port P [options]\n"
            "  --host H --mount PATH        server (127.0.0.1, /faye)\n"
            "  --scenario S                 fanout | idle | http-handshake | http-publish\n"
            "  --transport ws|lp            subscribers' transport (ws)\n"
            "  --ceiling                    talk to bench/ceiling (no Bayeux set-up)\n"
            "  --subs N --pubs N            subscribers (1000), publishers (1)\n"
            "  --rooms N --per N            channels, channels per subscriber (1, 1)\n"
            "  --channel C                  the rooms' channel (/bench; rooms C/rN)\n"
            "  --batch N                    messages per publish frame (1)\n"
            "  --inflight N                 messages in flight per publisher (1)\n"
            "  --rate R                     publish frames per second instead of a window\n"
            "  --size B                     padding bytes in each message's data (60)\n"
            "  --deflate                    offer permessage-deflate; inflate what comes\n"
            "                               compressed\n"
            "  --msgs N --secs S            most messages (20000), seconds publishing (3)\n"
            "  --drain S --setup S          wait for the last deliveries (10), set-up (60)\n"
            "  --conns N                    HTTP connections (20)\n"
            "  --parallel N                 set-ups in flight (100)\n"
            "  --pid PID                    the server's process: its CPU time, RSS\n"
            "  --hold S                     idle: keep the sessions S seconds after measuring\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && ++i)
        if (!strcmp(a, "--ceiling")) opt.ceiling = 1;
        else if (!strcmp(a, "--deflate")) opt.deflate = 1;
        else if (!strcmp(a, "--help")) usage();
        else if (OPT("--host")) opt.host = v;
        else if (OPT("--port")) opt.port = atoi(v);
        else if (OPT("--mount")) opt.mount = v;
        else if (OPT("--channel")) opt.channel = v;
        else if (OPT("--scenario")) opt.scenario = v;
        else if (OPT("--transport")) opt.transport = !strcmp(v, "lp") ? T_LP : T_WS;
        else if (OPT("--subs")) opt.subs = atoi(v);
        else if (OPT("--pubs")) opt.pubs = atoi(v);
        else if (OPT("--rooms")) opt.rooms = atoi(v);
        else if (OPT("--per")) opt.per = atoi(v);
        else if (OPT("--batch")) opt.batch = atoi(v);
        else if (OPT("--inflight")) opt.inflight = atoi(v);
        else if (OPT("--rate")) opt.rate = atof(v);
        else if (OPT("--size")) opt.size = atoi(v);
        else if (OPT("--msgs")) opt.msgs = atol(v);
        else if (OPT("--secs")) opt.secs = atof(v);
        else if (OPT("--drain")) opt.drain = atof(v);
        else if (OPT("--setup")) opt.setup = atof(v);
        else if (OPT("--hold")) opt.hold = atof(v);
        else if (OPT("--conns")) opt.conns = atoi(v);
        else if (OPT("--parallel")) opt.parallel = atoi(v);
        else if (OPT("--pid")) opt.pid = atoi(v);
        else usage();
#undef OPT
    }
    if (!opt.port) usage();
    if (opt.rooms < 1 || opt.per < 1 || opt.per > opt.rooms || opt.rooms % opt.per)
        die("--per must divide --rooms");
    if (opt.pubs < 1 || opt.pubs > 65535 || opt.batch < 1 || opt.msgs < 1) die("bad counts");
    if (opt.inflight < opt.batch) opt.inflight = opt.batch;
    if (strcmp(opt.scenario, "fanout") && strcmp(opt.scenario, "idle") &&
        strcmp(opt.scenario, "http-handshake") && strcmp(opt.scenario, "http-publish"))
        die("unknown scenario %s", opt.scenario);
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static void jnum(const char *k, double v)
{
    if (isnan(v) || isinf(v)) printf(",\"%s\":null", k);
    else printf(",\"%s\":%.6g", k, v);
}

static void report(void)
{
    double wall = t_end > t_run0 ? (double)(t_end - t_run0) / 1e9 : 0;
    double gcpu = tv(ru1.ru_utime) + tv(ru1.ru_stime) - tv(ru0.ru_utime) - tv(ru0.ru_stime);
    double scpu = opt.pid ? srv_cpu1 - srv_cpu0 : NAN;
    int fan = !strcmp(opt.scenario, "fanout");
    int http = !strncmp(opt.scenario, "http-", 5);
    uint64_t expected = 0, missing = 0;
    if (fan && msg_room) {
        for (uint64_t m = 0; m < sent_total; m++) expected += room_members[msg_room[m]];
        missing = expected - (deliveries - dups - wrong);
    }
    int ok = !fail_reason[0] && !conn_errors && n_ready == n_conns_total;
    if (fan) ok = ok && !missing && !dups && !wrong && !errors && sent_total > 0;
    if (http) ok = ok && !http_fail && http_ok > 0;
    printf("RESULT {\"scenario\":\"%s\",\"transport\":\"%s\",\"ceiling\":%s,\"ok\":%s",
           opt.scenario, opt.transport == T_WS ? "ws" : "lp", opt.ceiling ? "true" : "false",
           ok ? "true" : "false");
    printf(",\"fail\":\"%s\"", fail_reason);
    jnum("subs", opt.subs);
    jnum("ready", n_ready);
    jnum("wall_s", wall);
    jnum("gen_cpu_s", gcpu);
    jnum("gen_cpu_pct", wall > 0 ? 100 * gcpu / wall : NAN);
    jnum("server_cpu_s", scpu);
    jnum("conn_errors", (double)conn_errors);
    if (fan) {
        jnum("msgs", (double)sent_total);
        jnum("deliveries", (double)deliveries);
        jnum("expected", (double)expected);
        jnum("missing", (double)missing);
        jnum("dup", (double)dups);
        jnum("wrong", (double)wrong);
        jnum("errors", (double)errors);
        jnum("rate", wall > 0 ? (double)deliveries / wall : NAN);
        jnum("per_server_cpu_s", scpu > 0 ? (double)deliveries / scpu : NAN);
        jnum("msgs_per_frame", del_frames ? (double)deliveries / (double)del_frames : NAN);
        jnum("bytes_per_delivery", deliveries ? (double)del_bytes / (double)deliveries : NAN);
        /* payload bytes on the wire (compressed or not) per delivery */
        jnum("wire_bytes_per_delivery",
             deliveries ? (double)wire_bytes / (double)deliveries : NAN);
        jnum("deflated_frames_pct", ws_frames ? 100.0 * (double)z_frames / (double)ws_frames : NAN);
    }
    if (http) {
        jnum("requests", (double)(http_ok + http_fail));
        jnum("failed", (double)http_fail);
        jnum("rate", wall > 0 ? (double)(http_ok + http_fail) / wall : NAN);
        jnum("per_server_cpu_s", scpu > 0 ? (double)(http_ok + http_fail) / scpu : NAN);
    }
    if (fan || http) {
        jnum("p50_ms", hist_pct(50) / 1000);
        jnum("p99_ms", hist_pct(99) / 1000);
        jnum("max_ms", (double)hist_max / 1000);
    }
    if (!strcmp(opt.scenario, "idle")) {
        jnum("rss_before", (double)rss0);
        jnum("rss_after", (double)rss1);
        jnum("user_bytes_per_session", n_ready ? (double)(rss1 - rss0) / n_ready : NAN);
        /* both ends of every loopback connection are sockets of this kernel */
        jnum("kernel_bytes_per_socket", n_ready ? (double)(slab1 - slab0) / (2.0 * n_ready) : NAN);
    }
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    {   /* as many sockets as the hard limit allows */
        struct rlimit rl;
        if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    pad = xrealloc(NULL, (size_t)opt.size + 1);
    memset(pad, 'x', (size_t)opt.size);
    if (opt.deflate) {
        /* words, as a chat message has: 'x' repeated would compress to
         * almost nothing and flatter the extension */
        static const char *words[] = { "the", "meeting", "moved", "to", "room", "four",
            "after", "lunch", "please", "bring", "your", "notes", "and", "a", "laptop",
            "we", "will", "review", "numbers", "for", "next", "quarter" };
        size_t at = 0;
        unsigned seed = 12345;
        while (at < (size_t)opt.size) {
            seed = seed * 1103515245u + 12345u;
            const char *w = words[(seed >> 16) % (sizeof words / sizeof *words)];
            for (size_t i = 0; w[i] && at < (size_t)opt.size; i++) pad[at++] = w[i];
            if (at < (size_t)opt.size) pad[at++] = ' ';
        }
    }
    pad[opt.size] = 0;
    subs = calloc((size_t)opt.subs + 1, sizeof *subs);
    pubs = calloc((size_t)opt.pubs + 1, sizeof *pubs);
    hconns = calloc((size_t)opt.conns + 1, sizeof *hconns);
    if (!strcmp(opt.scenario, "fanout")) {
        msg_room = calloc((size_t)opt.msgs, sizeof *msg_room);
        msg_got = calloc((size_t)opt.msgs, sizeof *msg_got);
        msg_pub = calloc((size_t)opt.msgs, sizeof *msg_pub);
        room_members = calloc((size_t)opt.rooms, sizeof *room_members);
        if (!msg_room || !msg_got || !msg_pub || !room_members) die("out of memory");
        for (int i = 0; i < opt.subs; i++)
            for (int j = 0; j < opt.per; j++) room_members[(i + j * stride()) % opt.rooms]++;
    }
    if (!strcmp(opt.scenario, "idle")) {
        rss0 = server_rss();
        slab0 = proc_kb("/proc/meminfo", "Slab");
    }
    srand(12345);
    uv_check_init(loop, &check);
    uv_check_start(&check, on_check);
    uv_timer_init(loop, &ticker);
    uv_timer_start(&ticker, on_tick, 1, 1);
    t_run0 = uv_hrtime();   /* the set-up's clock until the run starts */
    open_next();
    uv_run(loop, UV_RUN_DEFAULT);
    if (phase != P_DONE) finish();
    report();
    fflush(stdout);
    _exit(0);   /* the kernel closes thousands of sockets faster than we would */
}
