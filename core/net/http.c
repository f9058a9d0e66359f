/*
 * http.c - HTTP/1.1 server on libuv and http-parser.
 *
 * Each connection (hconn) parses its input with http-parser. A complete
 * request joins the connection's queue and is handed to the application at
 * once, even if earlier requests are still unanswered (pipelining); the
 * answers are buffered in the request and written strictly from the head of
 * the queue. The parser is paused after every message so that the
 * application runs outside http_parser_execute() and may hijack or close.
 *
 * Work that must not run inside a bx_http_* call (abort callbacks, handing
 * leftover bytes to a hijacker, resuming a suspended parser) goes through
 * the server's "defer" entry of the later-turn queue (base/later.h). Idle connections sit on one list
 * ordered by last activity, watched by one timer for the whole server;
 * connections reading a request head, and those reading a body, sit on two
 * more lists (each ordered by start, as every entry has the same timeout)
 * watched by a third timer.
 *
 * The request head is checked byte by byte before http-parser sees it:
 * http-parser 2.9 as Debian builds it (HTTP_PARSER_STRICT off) accepts a
 * bare LF as a line end, obs-folded lines and blanks inside a field name,
 * which RFC 9112 says to reject (each is a request-smuggling shape behind
 * a proxy that reads the head differently). Only the head's bytes are fed
 * to the parser until the head ends, so the check knows where it stops.
 */
#include "net/http.h"
#include "base/dict.h"
#include "base/later.h"
#include "base/list.h"
#include "base/log.h"
#include "base/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>

/* Unanswered requests per connection before we stop parsing its input:
 * bounds the memory a client can pin by pipelining behind a held request. */
#define MAX_PIPELINE    16

/* ---- Types ---- */

typedef struct hconn hconn_t;

typedef struct {
    size_t name, name_len, value, value_len;    /* offsets into raw */
} hoff_t;

typedef struct hreq {
    bx_http_req_t pub;
    hconn_t *hc;                /* NULL once detached from its connection */
    hconn_t *reading;           /* its connection while its body streams in */
    struct hreq *next;          /* connection queue, or the server's abort list */
    bx_buf_t raw;               /* url then header bytes; pub points into it */
    size_t url_len;
    hoff_t *offs;
    size_t noffs, capoffs;
    bx_chunkv_t out;            /* the answer, waiting for earlier answers */
    struct filebody *file;      /* a file still to send after `out` */
    char ip[48];                /* copy: the request may outlive its conn */
    bx_http_body_t stream;      /* the body's reader, when streamed */
    uint64_t began;             /* loop time of its first byte (access log) */
    unsigned in_value : 1;      /* last header callback was a value */
    unsigned headers_done : 1;  /* trailers must not move raw */
    unsigned delivered : 1;     /* the application has seen it */
    unsigned answered : 1;
    unsigned close : 1;         /* close the connection after the answer */
    unsigned keep_alive : 1;
    unsigned head : 1;          /* HEAD: no body in the answer */
    unsigned hijacked : 1;
    unsigned streamed : 1;      /* the body goes to `stream`, not `pub.body` */
} hreq_t;

/* Bytes read past a hijacked request, delivered on a later turn. */
typedef struct handoff {
    bx_conn_t *conn;
    bx_conn_read_cb on_read;
    bx_conn_close_cb on_close;
    void *ud;
    bx_buf_t buf;
    int closed;
    struct handoff *next;
} handoff_t;

struct hconn {
    bx_http_server_t *s;
    bx_conn_t *conn;
    http_parser parser;
    hreq_t *cur;                /* being parsed */
    hreq_t *ready;              /* just completed, to deliver */
    hreq_t *qhead, *qtail;      /* delivered or answered, oldest first */
    size_t qlen;
    size_t hbytes;              /* request line + header bytes so far */
    int err_status;             /* set by a parser callback that failed */
    bx_buf_t inbuf;             /* input kept while parsing is suspended */
    uint64_t idle_since;
    uint64_t head_since;        /* first byte of the head being read */
    uint64_t body_since;        /* end of the head whose body is being read */
    bx_list_t all, idle, resume, headl, bodyl;
    /* the strict head check (scan_head) */
    uint32_t hs_lines;          /* lines of the head completed */
    uint32_t hs_linelen;        /* bytes of the current line */
    handoff_t *handoff;
    unsigned stop : 1;          /* parse nothing more; input is discarded */
    unsigned suspended : 1;     /* parsing and reading paused */
    unsigned upgraded : 1;      /* suspended for good after an Upgrade request */
    unsigned feeding : 1;       /* inside feed(): hijack must not free us */
    unsigned hijacked : 1;
    unsigned in_body : 1;       /* the head is fed; the parser reads a body */
    unsigned hs_started : 1;    /* a byte of the next head has arrived */
    unsigned hs_cr : 1;         /* the last byte was a CR */
    unsigned hs_value : 1;      /* past the colon of a field line */
    unsigned body_paused : 1;   /* a streamed body's reader is behind */
};

struct bx_http_server_s {
    uv_loop_t *loop;
    bx_http_limits_t lim;
    uint64_t idle_ms;           /* 0: no idle timeout */
    bx_http_request_cb on_request;
    bx_http_abort_cb on_abort;
    bx_http_head_cb on_head;
    void *ud;
    uv_tcp_t listener;
    int port;
    bx_tls_ctx_t *tls;          /* a reference; NULL: plain HTTP */
    bx_later_t defer;           /* runs run_deferred() on a later turn */
    uv_timer_t idle;
    uv_timer_t deadline;        /* head_list and body_list */
    uint64_t head_ms, body_ms;  /* 0: no deadline */
    uint64_t deadline_due;      /* loop time the deadline timer fires */
    bx_list_t conns, idle_list, resume_list, head_list, body_list;
    bx_list_t refused;          /* connections answered 429, still closing */
    unsigned nconns;
    struct addrs *addrs;        /* max_conns_per_addr: the counts, or NULL */
    hreq_t *aborts, *aborts_tail;
    handoff_t *handoffs, *handoffs_tail;
    int closing, listener_closed, finishing, timers_closed;
    void (*done)(void *ud);
    void *done_ud;
};

static void feed(hconn_t *hc, const char *data, size_t len);
static void flush_queue(hconn_t *hc);
static void file_detach(struct filebody *fb);

/* ---- Small helpers ---- */

void bx_http_limits_default(bx_http_limits_t *l)
{
    l->max_body = 1024 * 1024;
    l->max_header = 16 * 1024;
    l->idle_timeout = 120;
    l->head_timeout = 30;
    l->body_timeout = 60;
    l->max_conns = 10000;
}

const char *bx_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static const char day_names[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char month_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Writes v as `n` decimal digits at p. */
static void put_digits(char *p, int v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

void bx_http_date_format(time_t t, char out[BX_HTTP_DATE_SIZE])
{
    struct tm tm;
    int year;

    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm));
    /* clamped so the text always has its fixed length */
    year = tm.tm_year + 1900 < 0 ? 0 : tm.tm_year + 1900 > 9999 ? 9999 : tm.tm_year + 1900;
    memcpy(out, "Sun, 00 Jan 0000 00:00:00 GMT", BX_HTTP_DATE_SIZE);
    memcpy(out, day_names[(unsigned)tm.tm_wday % 7], 3);
    put_digits(out + 5, tm.tm_mday, 2);
    memcpy(out + 8, month_names[(unsigned)tm.tm_mon % 12], 3);
    put_digits(out + 12, year, 4);
    put_digits(out + 17, tm.tm_hour, 2);
    put_digits(out + 20, tm.tm_min, 2);
    put_digits(out + 23, tm.tm_sec, 2);
}

/* Reads `n` decimal digits at s; -1 if any is not one. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int bx_http_date_parse(const char *s, size_t len, time_t *t)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    int day, mon = -1, year, hh, mm, ss, wday = -1;

    if (len != BX_HTTP_DATE_SIZE - 1 || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' ||
        s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
        memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(s, day_names[i], 3) == 0)
            wday = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, month_names[i], 3) == 0)
            mon = i + 1;
    day = digits(s + 5, 2);
    year = digits(s + 12, 4);
    hh = digits(s + 17, 2);
    mm = digits(s + 20, 2);
    ss = digits(s + 23, 2);
    if (wday < 0 || mon < 0 || day < 1 || day > 31 || year < 0 || hh < 0 || hh > 23 ||
        mm < 0 || mm > 59 || ss < 0 || ss > 60)
        return -1;
    /* days from the civil date (proleptic Gregorian), no time zone involved */
    int y = mon <= 2 ? year - 1 : year;
    long era = y / 400;     /* y >= -1: only y == -1 rounds the wrong way */
    if (y < 0)
        era = -1;
    long yoe = y - era * 400;
    long doy = (153L * (mon > 2 ? mon - 3 : mon + 9) + 2) / 5 + day - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = (long long)era * 146097 + doe - 719468;
    *t = (time_t)(days * 86400 + hh * 3600 + mm * 60 + ss);
    return 0;
}

/* The Date header's value, made once per second. */
static const char *http_date(void)
{
    static char buf[BX_HTTP_DATE_SIZE];
    static time_t last = -1;
    time_t now = time(NULL);

    if (now != last) {
        bx_http_date_format(now, buf);
        last = now;
    }
    return buf;
}

static void req_free(hreq_t *r)
{
    /* a streamed body not handed over: its reader lets go */
    if (r->streamed && !r->delivered && r->stream.gone)
        r->stream.gone(r->stream.ud);
    if (r->file)
        file_detach(r->file);
    bx_buf_free(&r->raw);
    bx_buf_free(&r->pub.body);
    bx_chunkv_free(&r->out);
    free(r->pub.headers);
    free(r->offs);
    free(r);
}

static void defer_cb(void *ud);

static void schedule(bx_http_server_t *s)
{
    /* never inside the caller; while finishing, finish() drains instead */
    if (!s->finishing)
        bx_later_queue(s->loop, &s->defer);
}

/* ---- Idle timeout ---- */

static void idle_cb(uv_timer_t *t);

static void idle_touch(hconn_t *hc)
{
    if (bx_list_empty(&hc->idle))
        return;
    bx_list_remove(&hc->idle);
    hc->idle_since = uv_now(hc->s->loop);
    bx_list_push_tail(&hc->s->idle_list, &hc->idle);
}

static void idle_remove(hconn_t *hc)
{
    bx_list_remove(&hc->idle);
}

static void idle_insert(hconn_t *hc)
{
    bx_http_server_t *s = hc->s;

    if (!s->idle_ms || !bx_list_empty(&hc->idle))
        return;
    hc->idle_since = uv_now(s->loop);
    bx_list_push_tail(&s->idle_list, &hc->idle);
    /* The list is ordered by idle_since, so the head's deadline is the
     * earliest; an already running timer fires no later than ours. */
    if (!uv_is_active((uv_handle_t *)&s->idle))
        uv_timer_start(&s->idle, idle_cb, s->idle_ms, 0);
}

static void idle_cb(uv_timer_t *t)
{
    bx_http_server_t *s = t->data;
    uint64_t now = uv_now(s->loop);

    while (!bx_list_empty(&s->idle_list)) {
        hconn_t *hc = BX_CONTAINER(s->idle_list.next, hconn_t, idle);
        if (hc->idle_since + s->idle_ms > now) {
            uv_timer_start(&s->idle, idle_cb, hc->idle_since + s->idle_ms - now, 0);
            break;
        }
        idle_remove(hc);
        hc->stop = 1;
        bx_conn_close(hc->conn);    /* silently: no request to answer */
    }
}

/* ---- Head and body deadlines ---- */

static void fail(hconn_t *hc, int status);
static void deadline_cb(uv_timer_t *t);

/* Starts the deadline timer for `due` unless it already fires earlier. */
static void deadline_arm(bx_http_server_t *s, uint64_t due)
{
    uint64_t now = uv_now(s->loop);

    if (uv_is_active((uv_handle_t *)&s->deadline) && s->deadline_due <= due)
        return;
    s->deadline_due = due;
    uv_timer_start(&s->deadline, deadline_cb, due > now ? due - now : 0, 0);
}

static void head_start(hconn_t *hc)
{
    bx_http_server_t *s = hc->s;

    hc->hs_started = 1;
    if (!s->head_ms)
        return;
    hc->head_since = uv_now(s->loop);
    bx_list_push_tail(&s->head_list, &hc->headl);
    deadline_arm(s, hc->head_since + s->head_ms);
}

static void body_start(hconn_t *hc)
{
    bx_http_server_t *s = hc->s;

    hc->in_body = 1;
    bx_list_remove(&hc->headl);
    if (!s->body_ms)
        return;
    hc->body_since = uv_now(s->loop);
    bx_list_push_tail(&s->body_list, &hc->bodyl);
    deadline_arm(s, hc->body_since + s->body_ms);
}

/* A request is complete (or the connection gives up parsing): the next
 * byte starts a new head. */
static void request_end(hconn_t *hc)
{
    bx_list_remove(&hc->headl);
    bx_list_remove(&hc->bodyl);
    hc->in_body = 0;
    hc->hs_started = 0;
    hc->hs_cr = 0;
    hc->hs_value = 0;
    hc->hs_lines = 0;
    hc->hs_linelen = 0;
}

/* A head or body took too long: 408, or a plain close when earlier
 * answers are still owed (the 408 would wait behind them). */
static void expire(hconn_t *hc)
{
    request_end(hc);
    if (hc->qhead) {
        hc->stop = 1;
        bx_conn_close(hc->conn);
    } else {
        fail(hc, 408);
    }
}

static void deadline_cb(uv_timer_t *t)
{
    bx_http_server_t *s = t->data;
    uint64_t now = uv_now(s->loop), due = UINT64_MAX;

    while (!bx_list_empty(&s->head_list)) {
        hconn_t *hc = BX_CONTAINER(s->head_list.next, hconn_t, headl);
        if (hc->head_since + s->head_ms > now) {
            due = hc->head_since + s->head_ms;
            break;
        }
        expire(hc);
    }
    while (!bx_list_empty(&s->body_list)) {
        hconn_t *hc = BX_CONTAINER(s->body_list.next, hconn_t, bodyl);
        if (hc->body_since + s->body_ms > now) {
            if (hc->body_since + s->body_ms < due)
                due = hc->body_since + s->body_ms;
            break;
        }
        expire(hc);
    }
    if (due != UINT64_MAX)
        deadline_arm(s, due);
}

/* ---- Request queue ---- */

static void enqueue(hconn_t *hc, hreq_t *r)
{
    r->hc = hc;
    r->reading = NULL;
    r->next = NULL;
    if (hc->qtail)
        hc->qtail->next = r;
    else
        hc->qhead = r;
    hc->qtail = r;
    hc->qlen++;
    idle_remove(hc);            /* we owe an answer: not idle */
}

/* Moves every queued request to the server's abort list. */
static void abort_queue(hconn_t *hc)
{
    bx_http_server_t *s = hc->s;
    hreq_t *r;

    if (!hc->qhead)
        return;
    for (r = hc->qhead; r; r = r->next)
        r->hc = NULL;
    if (s->aborts_tail)
        s->aborts_tail->next = hc->qhead;
    else
        s->aborts = hc->qhead;
    s->aborts_tail = hc->qtail;
    hc->qhead = hc->qtail = NULL;
    hc->qlen = 0;
    schedule(s);
}

/* The access log's line for an answer (limits.access_log): method, path
 * (never the query, which may carry credentials), status, body bytes,
 * milliseconds since the request's first byte, peer. */
static void access_log(bx_http_server_t *s, hreq_t *r, int status, uint64_t bytes)
{
    char st[8], by[24], ms[24], path[512];

    if (!s->lim.access_log || !bx_log_enabled(BX_LOG_INFO))
        return;
    snprintf(st, sizeof(st), "%d", status);
    snprintf(by, sizeof(by), "%llu", (unsigned long long)bytes);
    snprintf(ms, sizeof(ms), "%llu",
             (unsigned long long)(r->began ? uv_now(s->loop) - r->began : 0));
    snprintf(path, sizeof(path), "%.*s", (int)r->pub.path.len,
             r->pub.path.base ? r->pub.path.base : "-");
    const char *kv[] = {
        "method", r->pub.method ? r->pub.method : "-", "path", path, "status", st,
        "bytes", by, "ms", ms, "peer", r->ip[0] ? r->ip : NULL
    };
    bx_log_kv(BX_LOG_INFO, "access", "answer", kv, 6);
}

/* The decimal digits of `n` at the end of `d` (20 bytes); returns how many. */
static size_t uint_digits(char d[20], uint64_t n)
{
    size_t i = 20;

    do {
        d[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    return 20 - i;
}

/* Builds the status line and the headers the layer owns, straight into
 * the chunk: a long-polling fan-out builds one per delivered response, and
 * printf's format parsing and a buffer copied into the chunk were most of
 * its cost. */
static bx_chunk_t *response_head(int status, const char *headers, size_t body_len, int close)
{
    char st[20], cl[20];
    const char *reason = bx_http_reason(status), *date = http_date();
    const char *conn = close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
    /* 1xx, 204 and 304 carry no body and no Content-Length (RFC 9110) */
    int has_len = status >= 200 && status != 204 && status != 304;
    size_t nst = uint_digits(st, (uint64_t)(status < 0 ? 0 : status));
    size_t ncl = has_len ? uint_digits(cl, body_len) : 0;
    size_t nreason = strlen(reason), nheaders = headers ? strlen(headers) : 0;
    size_t ndate = strlen(date), nconn = strlen(conn);
    size_t len = 9 + nst + 1 + nreason + 2 + nheaders + 6 + ndate + 2 +
                 (has_len ? 16 + ncl + 2 : 0) + nconn;
    bx_chunk_t *c = bx_chunk_alloc(len);
    char *p = c->data;

#define PUT(s, n) (memcpy(p, (s), (n)), p += (n))
    PUT("HTTP/1.1 ", 9);
    PUT(st + 20 - nst, nst);
    PUT(" ", 1);
    PUT(reason, nreason);
    PUT("\r\n", 2);
    if (nheaders)
        PUT(headers, nheaders);
    PUT("Date: ", 6);
    PUT(date, ndate);
    PUT("\r\n", 2);
    if (has_len) {
        PUT("Content-Length: ", 16);
        PUT(cl + 20 - ncl, ncl);
        PUT("\r\n", 2);
    }
    PUT(conn, nconn);
#undef PUT
    c->len = len;
    c->data[len] = '\0';
    return c;
}

/* ---- File bodies ---- */
/*
 * bx_http_respond_file(): the file is opened and stat'ed with uv_fs_*, the
 * head is built from its size, and once the request is at the head of its
 * connection's queue the body is read FILE_CHUNK bytes at a time, each
 * chunk queued on the connection; past FILE_AHEAD queued bytes the next
 * read waits until the connection has drained. The request stays at the
 * head of the queue meanwhile, so later answers follow the file's bytes.
 *
 * A filebody lives apart from its request: a request freed while an fs
 * operation is in flight (its connection closed) only detaches it, and the
 * operation's callback closes the file and frees it.
 */

#define FILE_CHUNK  (64 * 1024)
#define FILE_AHEAD  (256 * 1024)

typedef enum { FB_OPENING, FB_READY, FB_STREAMING } fb_state_t;

typedef struct filebody {
    uv_fs_t fs;
    uv_loop_t *loop;
    hreq_t *r;                  /* NULL once the request is gone */
    uv_file fd;                 /* -1 until opened */
    fb_state_t state;
    int status;
    char *headers;              /* until the head is built */
    uint64_t size, off;
    bx_chunk_t *chunk;          /* being read into */
    unsigned busy : 1;          /* fs is in flight */
} filebody_t;

static void file_closed_cb(uv_fs_t *fs)
{
    filebody_t *fb = fs->data;

    uv_fs_req_cleanup(fs);
    free(fb);
}

/* Closes the file and frees fb; only when no fs operation is in flight. */
static void file_free(filebody_t *fb)
{
    free(fb->headers);
    bx_chunk_unref(fb->chunk);
    fb->headers = NULL;
    fb->chunk = NULL;
    if (fb->fd >= 0 &&
        uv_fs_close(fb->loop, &fb->fs, fb->fd, file_closed_cb) == 0)
        return;
    free(fb);
}

/* The request is done with the file (sent, failed or gone). */
static void file_detach(filebody_t *fb)
{
    hreq_t *r = fb->r;

    if (r) {
        r->file = NULL;
        fb->r = NULL;
        if (r->hc && fb->state == FB_STREAMING)
            bx_conn_when_drained(r->hc->conn, NULL, NULL);
    }
    if (!fb->busy)
        file_free(fb);
}

/* The file cannot be sent: a plain-text answer replaces it. */
static void file_fail(filebody_t *fb, int err)
{
    hreq_t *r = fb->r;
    int status = err == UV_ENOENT || err == UV_ENOTDIR || err == UV_EISDIR ? 404
               : err == UV_EACCES || err == UV_EPERM ? 403 : 500;
    const char *text = status == 404 ? "Not found\n" : status == 403 ? "Forbidden\n"
                                                                    : "Internal server error\n";

    bx_chunkv_push_new(&r->out, response_head(status, "Content-Type: text/plain; charset=utf-8\r\n",
                                              strlen(text), r->close));
    if (!r->head)
        bx_chunkv_push_new(&r->out, bx_chunk_new(text, strlen(text)));
    file_detach(fb);
    if (r->hc)
        flush_queue(r->hc);
}

static void file_read(filebody_t *fb);

static void file_drained(bx_conn_t *c, void *ud)
{
    file_read(ud);
}

static void file_read_cb(uv_fs_t *fs)
{
    filebody_t *fb = fs->data;
    hreq_t *r = fb->r;
    ssize_t n = fs->result;
    bx_chunk_t *chunk = fb->chunk;

    uv_fs_req_cleanup(fs);
    fb->busy = 0;
    fb->chunk = NULL;
    if (!r || !r->hc) {
        bx_chunk_unref(chunk);
        if (!r)
            file_free(fb);
        return;                 /* r's free detaches fb */
    }
    hconn_t *hc = r->hc;
    if (n <= 0) {
        /* an error, or the file shrank: the promised length cannot be kept */
        bx_chunk_unref(chunk);
        bx_conn_close(hc->conn);
        return;
    }
    chunk->len = (size_t)n;
    fb->off += (uint64_t)n;
    bx_conn_write_chunk(hc->conn, chunk);
    if (fb->off >= fb->size) {
        file_detach(fb);        /* done: r is an ordinary answer again */
        flush_queue(hc);
    } else if (bx_conn_pending_bytes(hc->conn) < FILE_AHEAD) {
        file_read(fb);
    } else {
        bx_conn_when_drained(hc->conn, file_drained, fb);
    }
}

static void file_read(filebody_t *fb)
{
    uint64_t left = fb->size - fb->off;
    size_t n = left < FILE_CHUNK ? (size_t)left : FILE_CHUNK;
    uv_buf_t buf;

    fb->chunk = bx_chunk_alloc(n);
    buf = uv_buf_init(fb->chunk->data, (unsigned)n);
    fb->fs.data = fb;
    if (uv_fs_read(fb->loop, &fb->fs, fb->fd, &buf, 1, (int64_t)fb->off, file_read_cb) < 0) {
        bx_chunk_unref(fb->chunk);
        fb->chunk = NULL;
        bx_conn_close(fb->r->hc->conn);
        return;
    }
    fb->busy = 1;
}

static void file_stat_cb(uv_fs_t *fs)
{
    filebody_t *fb = fs->data;
    hreq_t *r = fb->r;
    int err = fs->result < 0 ? (int)fs->result : 0;

    if (!err && !S_ISREG(fs->statbuf.st_mode))
        err = S_ISDIR(fs->statbuf.st_mode) ? UV_EISDIR : UV_EINVAL;
    fb->size = fs->statbuf.st_size;
    uv_fs_req_cleanup(fs);
    fb->busy = 0;
    if (!r) {
        file_free(fb);
        return;
    }
    if (err) {
        file_fail(fb, err);
        return;
    }
    if (r->hc)
        access_log(r->hc->s, r, fb->status, r->head ? 0 : fb->size);
    bx_chunkv_push_new(&r->out, response_head(fb->status, fb->headers, fb->size, r->close));
    free(fb->headers);
    fb->headers = NULL;
    fb->state = FB_READY;
    if (r->hc)
        flush_queue(r->hc);
}

static void file_open_cb(uv_fs_t *fs)
{
    filebody_t *fb = fs->data;
    ssize_t result = fs->result;

    uv_fs_req_cleanup(fs);
    fb->busy = 0;
    if (result >= 0)
        fb->fd = (uv_file)result;
    if (!fb->r) {
        file_free(fb);
        return;
    }
    if (result < 0) {
        file_fail(fb, (int)result);
        return;
    }
    fb->fs.data = fb;
    if (uv_fs_fstat(fb->loop, &fb->fs, fb->fd, file_stat_cb) < 0) {
        file_fail(fb, UV_EIO);
        return;
    }
    fb->busy = 1;
}

/* flush_queue has reached r, which has a file: writes its head and starts
 * the body. Returns 1 if r is now an ordinary answer (nothing to stream),
 * 0 to stop flushing for now. */
static int file_next(hreq_t *r)
{
    filebody_t *fb = r->file;

    if (fb->state != FB_READY)
        return 0;
    bx_conn_write(r->hc->conn, &r->out);
    if (r->head || fb->size == 0) {
        file_detach(fb);
        return 1;
    }
    fb->state = FB_STREAMING;
    file_read(fb);
    return 0;
}

void bx_http_respond_file(bx_http_req_t *req, int status, const char *headers,
                          const char *path, int flags)
{
    hreq_t *r = (hreq_t *)req;
    hconn_t *hc = r->hc;
    filebody_t *fb;

    if (r->answered || r->hijacked || !hc) {
        r->answered = 1;
        return;
    }
    r->answered = 1;
    r->close = (flags & BX_HTTP_CLOSE) || !r->keep_alive || r->pub.upgrade || hc->s->closing;
    fb = bx_calloc(1, sizeof(*fb));
    fb->loop = hc->s->loop;
    fb->r = r;
    fb->fd = -1;
    fb->state = FB_OPENING;
    fb->status = status;
    fb->headers = bx_strdup(headers ? headers : "");
    fb->fs.data = fb;
    r->file = fb;
    /* O_NONBLOCK: a FIFO put in place of the file must not hold a worker
     * thread waiting for a writer; it changes nothing for a regular file */
    if (uv_fs_open(fb->loop, &fb->fs, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0, file_open_cb) < 0) {
        file_fail(fb, UV_EIO);
        return;
    }
    fb->busy = 1;
}

/* Writes the answered requests at the head of the queue, in order. */
static void flush_queue(hconn_t *hc)
{
    hreq_t *r;

    while ((r = hc->qhead) != NULL && r->answered) {
        if (r->file && !file_next(r))
            break;              /* being opened, or its body is streaming */
        int close = r->close;
        hc->qhead = r->next;
        if (!hc->qhead)
            hc->qtail = NULL;
        hc->qlen--;
        bx_conn_write(hc->conn, &r->out);
        req_free(r);
        if (close) {
            hc->stop = 1;
            bx_conn_close_after_write(hc->conn);
            abort_queue(hc);
            return;
        }
    }
    if (!hc->qhead && !hc->stop)
        idle_insert(hc);
    if (hc->suspended && !hc->upgraded && !hc->stop && hc->qlen < MAX_PIPELINE &&
        bx_list_empty(&hc->resume)) {
        bx_list_push_tail(&hc->s->resume_list, &hc->resume);
        schedule(hc->s);
    }
}

/* Answers a request the parser rejected, after the earlier answers. */
static void fail(hconn_t *hc, int status)
{
    const char *text = status == 400 ? "Bad request" : bx_http_reason(status);
    size_t len = strlen(text);
    hreq_t *r = bx_calloc(1, sizeof(*r));

    hc->stop = 1;
    if (hc->cur) {
        req_free(hc->cur);
        hc->cur = NULL;
    }
    r->answered = 1;
    r->close = 1;
    access_log(hc->s, r, status, len);
    bx_chunkv_push_new(&r->out, response_head(status, "Content-Type: text/plain\r\n", len, 1));
    bx_chunkv_push_new(&r->out, bx_chunk_new(text, len));
    enqueue(hc, r);
    flush_queue(hc);
}

/* ---- Parser callbacks ---- */

static int count_header(hconn_t *hc, size_t len)
{
    hc->hbytes += len;
    if (hc->hbytes > hc->s->lim.max_header) {
        hc->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    hconn_t *hc = p->data;

    static uint64_t serial;

    hc->cur = bx_calloc(1, sizeof(hreq_t));
    hc->cur->pub.serial = ++serial;
    hc->cur->began = uv_now(hc->s->loop);
    hc->hbytes = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;

    if (count_header(hc, len))
        return -1;
    bx_buf_append(&hc->cur->raw, at, len);
    hc->cur->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    hreq_t *r = hc->cur;

    if (r->headers_done)
        return 0;               /* chunked trailers: ignored */
    if (r->noffs == 0 || r->in_value) {
        if (count_header(hc, len + 4))  /* ": " and CRLF */
            return -1;
        if (r->noffs == r->capoffs) {
            r->capoffs = r->capoffs ? r->capoffs * 2 : 8;
            r->offs = bx_realloc(r->offs, r->capoffs * sizeof(*r->offs));
        }
        r->offs[r->noffs++] = (hoff_t){ r->raw.len, 0, r->raw.len, 0 };
        r->in_value = 0;
    } else if (count_header(hc, len)) {
        return -1;
    }
    bx_buf_append(&r->raw, at, len);
    r->offs[r->noffs - 1].name_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    hreq_t *r = hc->cur;
    hoff_t *o;

    if (r->headers_done || r->noffs == 0)
        return 0;
    if (count_header(hc, len))
        return -1;
    o = &r->offs[r->noffs - 1];
    if (!r->in_value) {
        o->value = r->raw.len;
        r->in_value = 1;
    }
    bx_buf_append(&r->raw, at, len);
    o->value_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hconn_t *hc = p->data;
    hreq_t *r = hc->cur;
    bx_http_req_t *q = &r->pub;
    const char *mark;

    /* raw will not grow any more, so pointers into it stay valid. */
    r->headers_done = 1;
    q->headers = bx_calloc(r->noffs ? r->noffs : 1, sizeof(*q->headers));
    for (size_t i = 0; i < r->noffs; i++) {
        const char *v = r->raw.data + r->offs[i].value;
        size_t vl = r->offs[i].value_len;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        q->headers[i].name = (bx_str_t){ r->raw.data + r->offs[i].name, r->offs[i].name_len };
        q->headers[i].value = (bx_str_t){ v, vl };
    }
    q->nheaders = r->noffs;
    /* the offsets served their purpose: a request may wait long (a held
     * connect, a socket's upgrade request kept for its whole life) */
    free(r->offs);
    r->offs = NULL;
    r->capoffs = 0;
    q->url = (bx_str_t){ r->raw.data ? r->raw.data : "", r->url_len };
    mark = memchr(q->url.base, '?', q->url.len);
    if (mark) {
        q->path = (bx_str_t){ q->url.base, (size_t)(mark - q->url.base) };
        q->query = (bx_str_t){ mark + 1, q->url.len - q->path.len - 1 };
    } else {
        q->path = q->url;
        q->query = (bx_str_t){ q->url.base + q->url.len, 0 };
    }
    q->method = http_method_str((enum http_method)p->method);
    q->http_minor = p->http_minor;
    r->head = p->method == HTTP_HEAD;
    snprintf(r->ip, sizeof(r->ip), "%s", bx_conn_peer_ip(hc->conn));
    q->remote_addr = r->ip;
    return 0;
}

/* The head of hc->cur is parsed and a body follows: the head callback
 * chooses between collecting and streaming it (outside the parser, as it
 * is the application's), then an oversize declared body is refused before
 * the client sends it, and a client waiting for 100 Continue gets it.
 * Returns 0, or the status to fail the connection with. */
static int head_done(hconn_t *hc)
{
    hreq_t *r = hc->cur;
    http_parser *p = &hc->parser;
    bx_http_server_t *s = hc->s;

    if (s->on_head) {
        bx_http_body_t body = { NULL, NULL, NULL };
        int rc = s->on_head(s->ud, &r->pub, &body);
        if (rc >= 400)
            return rc;
        if (rc == 1 && body.data) {
            r->stream = body;
            r->streamed = 1;
            r->reading = hc;
        }
    }
    if (!r->streamed && (p->flags & F_CONTENTLENGTH) && p->content_length > s->lim.max_body)
        return 413;
    /* curl and others wait for this before a large upload. Only when no
     * answer is owed, or it would jump ahead of an earlier response. */
    if (p->http_major == 1 && p->http_minor >= 1 && !hc->qhead) {
        const bx_str_t *e = bx_http_header(&r->pub, "Expect");
        if (e && e->len == 12 && strncasecmp(e->base, "100-continue", 12) == 0)
            bx_conn_write_copy(hc->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hconn_t *hc = p->data;
    hreq_t *r = hc->cur;
    bx_buf_t *body = &r->pub.body;

    if (r->streamed) {
        int rc = r->stream.data(r->stream.ud, at, len);
        if (rc == BX_HTTP_BODY_PAUSE) {
            hc->body_paused = 1;    /* hc_read stops reading once this input is parsed */
        } else if (rc != 0) {
            hc->err_status = rc >= 400 && rc <= 599 ? rc : 500;
            return -1;
        }
        return 0;
    }
    if (body->len + len > hc->s->lim.max_body) {
        hc->err_status = 413;
        return -1;
    }
    bx_buf_append(body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hconn_t *hc = p->data;
    hreq_t *r = hc->cur;

    hc->cur = NULL;
    r->keep_alive = http_should_keep_alive(p) != 0;
    r->pub.upgrade = p->upgrade;
    bx_metrics.http_requests++;
    hc->ready = r;
    /* Return to feed() so the application runs outside the parser. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- Input ---- */

/* RFC 9110 5.6.2 tchar: what a field name is made of. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Checks the head's bytes in `data` (RFC 9112 2.2, 5.1, 5.2): every line
 * ends in CRLF, no line of the field section starts with a blank (obs-fold),
 * a field name is tchars up to its colon, no control byte but HTAB in a
 * field value and none at all in the request line. Empty lines before the
 * request line are skipped, as the RFC allows. Returns how many bytes of
 * `data` belong to the head (all of them, or up to its final LF, setting
 * *end), or (size_t)-1 for a head to refuse with 400. */
static size_t scan_head(hconn_t *hc, const char *data, size_t len, int *end)
{
    size_t i;

    *end = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];

        if (hc->hs_cr) {
            if (c != '\n')
                return (size_t)-1;
            hc->hs_cr = 0;
            if (hc->hs_linelen == 0 && hc->hs_lines > 0) {
                *end = 1;
                return i + 1;
            }
            if (hc->hs_linelen > 0)
                hc->hs_lines++;
            hc->hs_linelen = 0;
            hc->hs_value = 0;
            continue;
        }
        if (c == '\r') {
            hc->hs_cr = 1;
            continue;
        }
        if (c == '\n')
            return (size_t)-1;              /* a bare LF */
        if (hc->hs_lines == 0) {
            if (c < 0x20 || c == 0x7f)
                return (size_t)-1;
        } else if (!hc->hs_value) {
            if (c == ':' && hc->hs_linelen > 0)
                hc->hs_value = 1;
            else if (!is_tchar(c))          /* also a leading blank: obs-fold */
                return (size_t)-1;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return (size_t)-1;
        }
        hc->hs_linelen++;
    }
    return len;
}

static void suspend(hconn_t *hc, const char *data, size_t len)
{
    hc->suspended = 1;
    bx_conn_pause(hc->conn);
    bx_buf_append(&hc->inbuf, data, len);
}

/* Parses input, delivering each complete request. Runs with hc->feeding
 * set; the caller frees hc afterwards if it was hijacked meanwhile. */
static void feed(hconn_t *hc, const char *data, size_t len)
{
    while (len > 0) {
        size_t n;
        enum http_errno e;
        hreq_t *r;
        int upgrade, keep_alive;

        if (hc->hijacked) {
            bx_buf_append(&hc->handoff->buf, data, len);
            return;
        }
        if (hc->stop || bx_conn_is_closing(hc->conn))
            return;
        if (hc->suspended) {
            bx_buf_append(&hc->inbuf, data, len);
            return;
        }
        size_t chunk = len;
        int head_end = 0;
        if (!hc->in_body) {
            if (!hc->hs_started)
                head_start(hc);
            chunk = scan_head(hc, data, len, &head_end);
            if (chunk == (size_t)-1) {
                request_end(hc);
                fail(hc, 400);
                return;
            }
        }
        n = http_parser_execute(&hc->parser, &settings, data, chunk);
        e = HTTP_PARSER_ERRNO(&hc->parser);
        if (n > chunk)
            n = chunk;
        data += n;
        len -= n;
        if (e == HPE_PAUSED) {
            http_parser_pause(&hc->parser, 0);
        } else if (e != HPE_OK) {
            request_end(hc);
            fail(hc, hc->err_status ? hc->err_status
                                    : e == HPE_HEADER_OVERFLOW ? 431 : 400);
            return;
        }
        r = hc->ready;
        if (!r) {
            if (head_end) {
                int status = head_done(hc);
                if (status) {
                    request_end(hc);
                    fail(hc, status);
                    return;
                }
                body_start(hc);
            }
            if (n == 0)
                return;         /* defensive: the parser made no progress */
            continue;
        }
        hc->ready = NULL;
        request_end(hc);
        enqueue(hc, r);
        r->delivered = 1;
        /* r may be answered and freed by the callback: read it first. */
        upgrade = r->pub.upgrade;
        keep_alive = r->keep_alive;
        hc->s->on_request(hc->s->ud, &r->pub);
        if (hc->hijacked) {
            bx_buf_append(&hc->handoff->buf, data, len);
            return;
        }
        if (hc->stop || bx_conn_is_closing(hc->conn))
            return;
        if (upgrade) {
            /* The rest is another protocol: keep it for a hijacker. */
            hc->upgraded = 1;
            suspend(hc, data, len);
            return;
        }
        if (!keep_alive) {
            hc->stop = 1;       /* the answer closes; ignore the rest */
            return;
        }
        if (hc->qlen >= MAX_PIPELINE) {
            suspend(hc, data, len);
            return;
        }
    }
}

static void hc_free(hconn_t *hc)
{
    if (hc->cur)
        req_free(hc->cur);
    if (hc->ready)
        req_free(hc->ready);
    bx_buf_free(&hc->inbuf);
    free(hc);
}

/* Takes hc out of the server: lists, count, queue (to the abort list). */
static void hc_detach(hconn_t *hc)
{
    bx_list_remove(&hc->all);
    bx_list_remove(&hc->idle);
    bx_list_remove(&hc->resume);
    bx_list_remove(&hc->headl);
    bx_list_remove(&hc->bodyl);
    hc->s->nconns--;
    abort_queue(hc);
}

static void hc_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    hconn_t *hc = ud;

    if (status < 0 || len == 0) {
        hc->stop = 1;           /* the connection is closing; hc_close follows */
        return;
    }
    idle_touch(hc);
    hc->feeding = 1;
    feed(hc, data, len);
    hc->feeding = 0;
    if (hc->hijacked) {
        hc_free(hc);
        return;
    }
    if (hc->body_paused && !hc->stop)
        bx_conn_pause(hc->conn);
}

static void maybe_finish(bx_http_server_t *s);

static void hc_close(bx_conn_t *c, void *ud)
{
    hconn_t *hc = ud;
    bx_http_server_t *s = hc->s;

    hc_detach(hc);
    hc_free(hc);
    maybe_finish(s);
}

/* Parses input kept while suspended, then reads again. */
static void hc_resume(hconn_t *hc)
{
    bx_buf_t in = hc->inbuf;

    hc->inbuf = (bx_buf_t)BX_BUF_INIT;
    hc->suspended = 0;
    hc->feeding = 1;
    feed(hc, in.data, in.len);
    hc->feeding = 0;
    bx_buf_free(&in);
    if (hc->hijacked) {
        hc_free(hc);
        return;
    }
    if (!hc->suspended && !hc->body_paused)
        bx_conn_resume(hc->conn);
}

/* ---- Deferred work ---- */

static void handoff_finish(handoff_t *h)
{
    if (!h->closed) {
        bx_conn_set_callbacks(h->conn, h->on_read, h->on_close, h->ud);
        if (h->buf.len && h->on_read)
            h->on_read(h->conn, h->ud, h->buf.data, h->buf.len, 0);
        bx_conn_resume(h->conn);
    }
    bx_buf_free(&h->buf);
    free(h);
}

static void run_deferred(bx_http_server_t *s)
{
    for (;;) {
        if (s->aborts) {
            hreq_t *r = s->aborts;
            s->aborts = r->next;
            if (!s->aborts)
                s->aborts_tail = NULL;
            if (r->delivered && !r->answered && s->on_abort)
                s->on_abort(s->ud, &r->pub);
            req_free(r);
        } else if (s->handoffs) {
            handoff_t *h = s->handoffs;
            s->handoffs = h->next;
            if (!s->handoffs)
                s->handoffs_tail = NULL;
            handoff_finish(h);
        } else if (!bx_list_empty(&s->resume_list)) {
            hconn_t *hc = BX_CONTAINER(s->resume_list.next, hconn_t, resume);
            bx_list_remove(&hc->resume);
            hc_resume(hc);
        } else {
            break;
        }
    }
}

static void defer_cb(void *ud)
{
    run_deferred(ud);
}

/* ---- Accepting ---- */

/* Connections per IP address. The table outlives the server while a
 * counted connection does (a WebSocket is closed by its own owner, maybe
 * after the HTTP server is gone): each such connection holds a reference. */
typedef struct addrs {
    bx_dict_t counts;           /* ip -> count (as a pointer) */
    size_t refs;                /* the server, and each counted connection */
} addrs_t;

typedef struct {
    addrs_t *t;
    char ip[48];
} addr_ref_t;

static void addrs_unref(addrs_t *t)
{
    if (--t->refs == 0) {
        bx_dict_free(&t->counts);
        free(t);
    }
}

/* bx_conn_on_free: the connection is gone, from whatever owned it. */
static void addr_release(void *ud)
{
    addr_ref_t *a = ud;
    size_t len = strlen(a->ip);
    uintptr_t n = (uintptr_t)bx_dict_get(&a->t->counts, a->ip, len);

    if (n > 1)
        bx_dict_set(&a->t->counts, a->ip, len, (void *)(n - 1));
    else
        bx_dict_del(&a->t->counts, a->ip, len);
    addrs_unref(a->t);
    free(a);
}

/* A connection refused for its address: kept on the server's list until
 * it has closed, so that closing the server closes it too. */
typedef struct {
    bx_list_t l;
    bx_conn_t *conn;
    bx_http_server_t *s;
} refused_t;


static void refused_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
}

static void refused_close(bx_conn_t *c, void *ud)
{
    refused_t *r = ud;

    if (!r)
        return;                 /* closed before it was admitted or refused */
    bx_list_remove(&r->l);
    maybe_finish(r->s);
    free(r);
}

/* Counts `conn` for its address; returns 0, or -1 if that address is at
 * max_conns_per_addr: `conn` is then answered 429 and closed. */
static int addr_admit(bx_http_server_t *s, bx_conn_t *conn)
{
    static const char refusal[] =
        "HTTP/1.1 429 Too Many Requests\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 39\r\n"
        "Connection: close\r\n"
        "\r\n"
        "Too many connections from your address\n";
    const char *ip = bx_conn_peer_ip(conn);
    size_t len = strlen(ip);
    uintptr_t n = (uintptr_t)bx_dict_get(&s->addrs->counts, ip, len);

    if (n >= s->lim.max_conns_per_addr) {
        refused_t *r = bx_malloc(sizeof(*r));
        r->conn = conn;
        r->s = s;
        bx_list_push_tail(&s->refused, &r->l);
        bx_conn_set_callbacks(conn, refused_read, refused_close, r);
        bx_conn_write_copy(conn, refusal, sizeof(refusal) - 1);
        bx_conn_close_after_write(conn);
        return -1;
    }
    addr_ref_t *a = bx_malloc(sizeof(*a));
    a->t = s->addrs;
    snprintf(a->ip, sizeof(a->ip), "%s", ip);
    bx_dict_set(&s->addrs->counts, a->ip, len, (void *)(n + 1));
    s->addrs->refs++;
    bx_conn_on_free(conn, addr_release, a);
    return 0;
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

/* At max_conns: closes the connection that least deserves its slot, so
 * that idle and slow clients cannot keep healthy ones out. Returns 0 if
 * every connection owes or is owed a request in progress. */
static int shed(bx_http_server_t *s)
{
    bx_list_t *l = !bx_list_empty(&s->idle_list) ? s->idle_list.next
              : !bx_list_empty(&s->head_list) ? s->head_list.next
              : !bx_list_empty(&s->body_list) ? s->body_list.next : NULL;
    hconn_t *hc;

    if (!l)
        return 0;
    hc = l == s->idle_list.next ? BX_CONTAINER(l, hconn_t, idle)
       : l == s->head_list.next ? BX_CONTAINER(l, hconn_t, headl) : BX_CONTAINER(l, hconn_t, bodyl);
    /* off the lists now, so the next accept of this turn picks another */
    bx_list_remove(&hc->idle);
    request_end(hc);
    hc->stop = 1;
    bx_conn_close(hc->conn);
    return 1;
}

static void accept_conn(bx_http_server_t *s, bx_conn_t *conn);

static void on_connection(uv_stream_t *server, int status)
{
    bx_http_server_t *s = server->data;
    uv_tcp_t *tcp;

    if (status < 0)
        return;
    tcp = bx_malloc(sizeof(*tcp));
    uv_tcp_init(s->loop, tcp);
    if (uv_accept(server, (uv_stream_t *)tcp) < 0 || s->closing) {
        uv_close((uv_handle_t *)tcp, free_handle_cb);
        return;
    }
    uv_tcp_nodelay(tcp, 1);
    bx_http_adopt(s, tcp);
}

void bx_http_adopt(bx_http_server_t *s, uv_tcp_t *tcp)
{
    bx_conn_t *conn;

    if (s->closing) {
        uv_close((uv_handle_t *)tcp, free_handle_cb);
        return;
    }
    conn = bx_conn_new(s->loop, tcp, refused_read, refused_close, NULL);
    if (s->tls)
        bx_conn_use_tls(conn, s->tls);
    /* the address first: a refused one must not shed anybody */
    if (s->addrs && addr_admit(s, conn) < 0)
        return;
    if (s->nconns >= s->lim.max_conns && !shed(s)) {
        bx_conn_close(conn);
        return;
    }
    accept_conn(s, conn);
}

/* Makes `conn` one of the server's HTTP connections. */
static void accept_conn(bx_http_server_t *s, bx_conn_t *conn)
{
    hconn_t *hc = bx_calloc(1, sizeof(*hc));

    hc->s = s;
    bx_list_init(&hc->all);
    bx_list_init(&hc->idle);
    bx_list_init(&hc->resume);
    bx_list_init(&hc->headl);
    bx_list_init(&hc->bodyl);
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    bx_list_push_tail(&s->conns, &hc->all);
    s->nconns++;
    bx_metrics.conns_accepted++;
    hc->conn = conn;
    bx_conn_set_callbacks(conn, hc_read, hc_close, hc);
    idle_insert(hc);
}

/* ---- Public API ---- */

bx_http_server_t *bx_http_server_new(uv_loop_t *loop, const bx_http_limits_t *limits,
                                     bx_http_request_cb on_request, bx_http_abort_cb on_abort,
                                     void *ud)
{
    bx_http_server_t *s = bx_calloc(1, sizeof(*s));
    bx_http_limits_t def;

    bx_http_limits_default(&def);
    s->lim = limits ? *limits : def;
    /* Zero means "default", so callers may fill in only what they change. */
    if (!s->lim.max_body)
        s->lim.max_body = def.max_body;
    if (!s->lim.max_header)
        s->lim.max_header = def.max_header;
    if (s->lim.idle_timeout == 0)
        s->lim.idle_timeout = def.idle_timeout;
    if (!s->lim.max_conns)
        s->lim.max_conns = def.max_conns;
    if (s->lim.max_conns_per_addr) {
        s->addrs = bx_calloc(1, sizeof(*s->addrs));
        s->addrs->refs = 1;
    }
    s->idle_ms = s->lim.idle_timeout > 0 ? (uint64_t)(s->lim.idle_timeout * 1000.0 + 0.5) : 0;
    if (s->lim.idle_timeout > 0 && s->idle_ms == 0)
        s->idle_ms = 1;
    /* negative: no deadline; zero: the default */
    if (s->lim.head_timeout == 0)
        s->lim.head_timeout = def.head_timeout;
    if (s->lim.body_timeout == 0)
        s->lim.body_timeout = def.body_timeout;
    s->head_ms = s->lim.head_timeout > 0 ? (uint64_t)(s->lim.head_timeout * 1000.0 + 0.5) : 0;
    s->body_ms = s->lim.body_timeout > 0 ? (uint64_t)(s->lim.body_timeout * 1000.0 + 0.5) : 0;
    if (s->lim.head_timeout > 0 && s->head_ms == 0)
        s->head_ms = 1;
    if (s->lim.body_timeout > 0 && s->body_ms == 0)
        s->body_ms = 1;
    s->loop = loop;
    s->on_request = on_request;
    s->on_abort = on_abort;
    s->ud = ud;
    s->port = -1;
    uv_tcp_init(loop, &s->listener);    /* no socket until bind */
    s->listener.data = s;
    bx_later_init(&s->defer, defer_cb, s);
    uv_timer_init(loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(loop, &s->deadline);
    s->deadline.data = s;
    bx_list_init(&s->head_list);
    bx_list_init(&s->body_list);
    bx_list_init(&s->conns);
    bx_list_init(&s->refused);
    bx_list_init(&s->idle_list);
    bx_list_init(&s->resume_list);
    return s;
}

void bx_http_server_on_head(bx_http_server_t *s, bx_http_head_cb on_head)
{
    s->on_head = on_head;
}

void bx_http_body_resume(bx_http_req_t *req)
{
    hreq_t *r = (hreq_t *)req;
    /* while its body is read the request is its connection's current one;
     * then it is queued (and detached if the connection closes) */
    hconn_t *hc = r->hc ? r->hc : r->reading;

    if (!hc || !hc->body_paused)
        return;
    hc->body_paused = 0;
    if (!hc->suspended && !hc->stop && !bx_conn_is_closing(hc->conn))
        bx_conn_resume(hc->conn);
}

void bx_http_server_set_tls(bx_http_server_t *s, bx_tls_ctx_t *ctx)
{
    if (ctx)
        bx_tls_ctx_ref(ctx);
    bx_tls_ctx_unref(s->tls);
    s->tls = ctx;
}

int bx_http_listen(bx_http_server_t *s, const char *host, int port)
{
    return bx_http_listen_ex(s, host, port, 0);
}

/* A socket of `family` with SO_REUSEPORT set, opened into `tcp`: several
 * processes bind the same port and the kernel spreads connections over
 * them (libuv 1.44 has no flag for it). */
static int open_reuseport(uv_tcp_t *tcp, int family)
{
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_tcp_open(tcp, fd);
    if (rc < 0)
        close(fd);
    return rc;
}

int bx_http_listen_ex(bx_http_server_t *s, const char *host, int port, int reuseport)
{
    struct sockaddr_storage ss;
    char name[64];
    int r, len;

    if (s->closing)
        return UV_EINVAL;
    if (!host || !*host || !strcmp(host, "*"))
        host = "0.0.0.0";
    else if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    snprintf(name, sizeof(name), "%s", host);
    if (name[0] == '[') {       /* "[::1]" */
        memmove(name, name + 1, strlen(name));
        name[strcspn(name, "]")] = '\0';
    }
    if (strchr(name, ':'))
        r = uv_ip6_addr(name, port, (struct sockaddr_in6 *)&ss);
    else
        r = uv_ip4_addr(name, port, (struct sockaddr_in *)&ss);
    if (r < 0)
        return r;
    if (reuseport && (r = open_reuseport(&s->listener, ss.ss_family)) < 0)
        return r;
    if ((r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) < 0)
        return r;
    if ((r = uv_listen((uv_stream_t *)&s->listener, 511, on_connection)) < 0)
        return r;
    len = sizeof(ss);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int bx_http_port(const bx_http_server_t *s)
{
    return s->port;
}

static void timer_closed_cb(uv_handle_t *h)
{
    bx_http_server_t *s = h->data;

    if (++s->timers_closed < 2)
        return;
    run_deferred(s);            /* anything the last callbacks queued */
    if (s->addrs)
        addrs_unref(s->addrs);  /* upgraded connections may still hold it */
    bx_tls_ctx_unref(s->tls);   /* the connections' sessions hold their own */
    if (s->done)
        s->done(s->done_ud);
    free(s);
}

static void maybe_finish(bx_http_server_t *s)
{
    if (!s->closing || !s->listener_closed || s->nconns || !bx_list_empty(&s->refused) ||
        s->finishing)
        return;
    s->finishing = 1;
    run_deferred(s);
    bx_later_cancel(&s->defer);
    uv_close((uv_handle_t *)&s->idle, timer_closed_cb);
    uv_close((uv_handle_t *)&s->deadline, timer_closed_cb);
}

static void listener_closed_cb(uv_handle_t *h)
{
    bx_http_server_t *s = h->data;

    s->listener_closed = 1;
    maybe_finish(s);
}

void bx_http_server_close(bx_http_server_t *s, void (*done)(void *ud), void *ud)
{
    bx_list_t *l;

    if (s->closing)
        return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    s->port = -1;
    uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
    for (l = s->conns.next; l != &s->conns; l = l->next) {
        hconn_t *hc = BX_CONTAINER(l, hconn_t, all);
        hc->stop = 1;
        bx_conn_close(hc->conn);    /* hc_close runs on a later turn */
    }
    for (l = s->refused.next; l != &s->refused; l = l->next)
        bx_conn_close(BX_CONTAINER(l, refused_t, l)->conn);    /* refused_close follows */
    uv_timer_stop(&s->idle);
    uv_timer_stop(&s->deadline);
}

const char *bx_http_cookie(const bx_http_req_t *req, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    for (size_t i = 0; i < req->nheaders; i++) {
        const bx_http_header_t *h = &req->headers[i];
        if (h->name.len != 6 || strncasecmp(h->name.base, "Cookie", 6) != 0)
            continue;
        const char *p = h->value.base, *end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *pair_end = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(pair_end - p));
            if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1, *ve = pair_end;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"')
                    v++, ve--;
                *len = (size_t)(ve - v);
                return v;
            }
            p = pair_end;
        }
    }
    return NULL;
}

const bx_str_t *bx_http_header(const bx_http_req_t *req, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < req->nheaders; i++) {
        const bx_http_header_t *h = &req->headers[i];
        if (h->name.len == len && strncasecmp(h->name.base, name, len) == 0)
            return &h->value;
    }
    return NULL;
}

/* Whether the comma-separated list `v` has the element `token`. */
static int list_has(const bx_str_t *v, const char *token)
{
    size_t t = strlen(token), i = 0;

    while (i < v->len) {
        while (i < v->len && (v->base[i] == ' ' || v->base[i] == '\t' || v->base[i] == ','))
            i++;
        size_t j = i;
        while (j < v->len && v->base[j] != ',')
            j++;
        size_t e = j;
        while (e > i && (v->base[e - 1] == ' ' || v->base[e - 1] == '\t'))
            e--;
        if (e - i == t && strncasecmp(v->base + i, token, t) == 0)
            return 1;
        i = j;
    }
    return 0;
}

int bx_http_header_has(const bx_http_req_t *req, const char *name, const char *token)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < req->nheaders; i++) {
        const bx_http_header_t *h = &req->headers[i];
        if (h->name.len == len && strncasecmp(h->name.base, name, len) == 0 &&
            list_has(&h->value, token))
            return 1;
    }
    return 0;
}

void bx_http_respond(bx_http_req_t *req, int status, const char *headers, bx_chunkv_t *body,
                     int flags)
{
    hreq_t *r = (hreq_t *)req;
    hconn_t *hc = r->hc;
    size_t body_len = body ? bx_chunkv_bytes(body) : 0;
    int close;

    if (r->answered || r->hijacked || !hc) {
        /* Detached (its abort is pending) or misuse: drop the answer. */
        r->answered = 1;
        if (body)
            bx_chunkv_free(body);
        return;
    }
    r->answered = 1;
    close = (flags & BX_HTTP_CLOSE) || !r->keep_alive || r->pub.upgrade || hc->s->closing;
    r->close = close;
    access_log(hc->s, r, status, r->head ? 0 : body_len);
    bx_chunkv_push_new(&r->out, response_head(status, headers, body_len, close));
    if (body) {
        if (r->head)
            bx_chunkv_clear(body);
        else
            bx_chunkv_move(&r->out, body);
        bx_chunkv_free(body);
    }
    flush_queue(hc);
}

void bx_http_respond_text(bx_http_req_t *req, int status, const char *content_type,
                          const char *text, int flags)
{
    bx_chunkv_t body = BX_CHUNKV_INIT;
    bx_buf_t h = BX_BUF_INIT;

    bx_buf_printf(&h, "Content-Type: %s\r\n", content_type ? content_type : "text/plain");
    bx_buf_append(&h, "", 1);
    if (text && *text)
        bx_chunkv_push_new(&body, bx_chunk_new(text, strlen(text)));
    bx_http_respond(req, status, h.data, &body, flags);
    bx_buf_free(&h);
}

static void shim_read(bx_conn_t *c, void *ud, const char *data, size_t len, int status)
{
    handoff_t *h = ud;

    /* Reading is paused until the handoff, so this is only a safety net. */
    if (len)
        bx_buf_append(&h->buf, data, len);
}

static void shim_close(bx_conn_t *c, void *ud)
{
    handoff_t *h = ud;

    h->closed = 1;
    if (h->on_close)
        h->on_close(c, h->ud);
}

/* The request a hijacker keeps for the life of its socket (extensions read
 * it), in one allocation: the parser's bookkeeping, the answer queue and the
 * slack of the growing buffers are left behind, a few hundred bytes per idle
 * socket. The body is not kept: an upgrade or a stream request has none. */
static bx_http_req_t *req_compact(const hreq_t *r)
{
    const bx_http_req_t *o = &r->pub;
    size_t hbytes = o->nheaders * sizeof(bx_http_header_t);
    size_t iplen = strlen(r->ip) + 1;
    bx_http_req_t *q = bx_malloc(sizeof(*q) + hbytes + r->raw.len + iplen);
    bx_http_header_t *h = (bx_http_header_t *)(void *)(q + 1);
    char *raw = (char *)h + hbytes, *ip = raw + r->raw.len;
    const char *base = r->raw.data;

#define REBASE(str) ((bx_str_t){ raw + ((str).base - base), (str).len })
    *q = *o;
    if (r->raw.len)
        memcpy(raw, base, r->raw.len);
    memcpy(ip, r->ip, iplen);
    for (size_t i = 0; i < o->nheaders; i++) {
        h[i].name = REBASE(o->headers[i].name);
        h[i].value = REBASE(o->headers[i].value);
    }
    q->headers = h;
    if (base) {
        q->url = REBASE(o->url);
        q->path = REBASE(o->path);
        q->query = REBASE(o->query);
    }
#undef REBASE
    q->body = (bx_buf_t)BX_BUF_INIT;
    q->remote_addr = ip;
    return q;
}

bx_conn_t *bx_http_hijack(bx_http_req_t **req, bx_conn_read_cb on_read,
                          bx_conn_close_cb on_close, void *ud)
{
    hreq_t *r = (hreq_t *)*req;
    hconn_t *hc = r->hc;
    bx_http_server_t *s;
    handoff_t *h;
    bx_conn_t *conn;

    if (!hc || hc->qhead != r || r->answered || bx_conn_is_closing(hc->conn))
        return NULL;
    s = hc->s;
    conn = hc->conn;
    hc->qhead = r->next;
    if (!hc->qhead)
        hc->qtail = NULL;
    hc->qlen--;
    r->hc = NULL;
    r->next = NULL;
    r->hijacked = 1;
    access_log(s, r, r->pub.upgrade ? 101 : 200, 0);  /* a stream from here on */

    h = bx_calloc(1, sizeof(*h));
    h->conn = conn;
    h->on_read = on_read;
    h->on_close = on_close;
    h->ud = ud;
    h->buf = hc->inbuf;         /* unparsed bytes kept while suspended */
    hc->inbuf = (bx_buf_t)BX_BUF_INIT;
    /* Paused until the leftover is delivered, so the new owner sees the
     * bytes in order; a shim reports a close that comes first. */
    bx_conn_pause(conn);
    bx_conn_set_callbacks(conn, shim_read, shim_close, h);
    if (s->handoffs_tail)
        s->handoffs_tail->next = h;
    else
        s->handoffs = h;
    s->handoffs_tail = h;
    schedule(s);

    hc->hijacked = 1;
    hc->handoff = h;
    hc_detach(hc);              /* later pipelined requests are aborted */
    if (!hc->feeding)
        hc_free(hc);            /* else feed()'s caller frees it */
    *req = req_compact(r);
    req_free(r);
    return conn;
}

void bx_http_hijack_done(bx_http_req_t *req)
{
    free(req);
}
