/*
 * redis.c - a Redis connection on the libuv loop (redis.h).
 *
 * hiredis does the protocol and the buffering; a small adapter of our own
 * polls the socket (hiredis 0.14's adapters/libuv.h ignores a poll error,
 * so a refused connection would only be seen by the connect timeout; here
 * an error is handed to hiredis as a read, which reports it). What hiredis 0.14 cannot
 * do is done with one uv timer per connection, used for one thing at a
 * time: the connect deadline while connecting, the back-off while down, a
 * watchdog on the oldest pending reply while up.
 *
 * Every command is wrapped in a req_t kept in a list in send order (Redis
 * answers in order), so the watchdog sees the oldest one. When the
 * connection is dropped or closed by us, each req is detached (req->c =
 * NULL) and answered here; hiredis then calls back with a NULL reply and
 * the handler only frees the detached req. hiredis may defer its own free
 * when we are inside one of its callbacks: detaching makes that harmless.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <async.h>
#include "base/metrics.h"
#include "net/redis.h"
#include "base/list.h"

typedef enum { ST_DOWN, ST_CONNECTING, ST_UP, ST_CLOSED } state_t;

typedef struct req {
    bx_list_t link;             /* on c->pending while sent */
    bx_redis_t *c;              /* NULL once detached */
    bx_redis_reply_cb cb;
    void *ud;
    uint64_t sent;              /* uv_now */
    uint64_t sent_ns;           /* uv_hrtime, for the latency metric */
    int handshake;              /* AUTH / SELECT / PING of a (re)connection */
} req_t;

struct bx_redis_s {
    uv_loop_t *loop;
    bx_redis_addr_t addr;
    bx_redis_opts_t opts;
    bx_redis_state_cb state_cb;
    bx_redis_push_cb push;
    void *ud;
    redisAsyncContext *ac;
    state_t state;
    int reported;               /* -1 nothing said yet, else the last `up` told */
    int ever_up;                /* a later connection is a reconnect (metrics) */
    double backoff;             /* seconds, next delay */
    uv_timer_t timer;
    bx_list_t pending;          /* of req_t, oldest first */
    size_t npending;
    void (*close_done)(void *ud);
    void *close_ud;
};

static void connect_now(bx_redis_t *c);

/* ---- The loop adapter ---- */

typedef struct {
    redisAsyncContext *ac;      /* NULL once hiredis let go */
    uv_poll_t poll;
    int events;
} ev_t;

static void ev_poll(uv_poll_t *h, int status, int events)
{
    ev_t *ev = h->data;
    if (status < 0) {
        /* an error on the socket (a refused connect): hiredis's read sees it */
        if (ev->ac)
            redisAsyncHandleRead(ev->ac);
        return;
    }
    if (ev->ac && (events & UV_READABLE))
        redisAsyncHandleRead(ev->ac);
    if (ev->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(ev->ac);
}

static void ev_update(ev_t *ev, int add, int del)
{
    ev->events = (ev->events | add) & ~del;
    if (ev->events)
        uv_poll_start(&ev->poll, ev->events, ev_poll);
    else
        uv_poll_stop(&ev->poll);
}

static void ev_add_read(void *p) { ev_update(p, UV_READABLE, 0); }
static void ev_del_read(void *p) { ev_update(p, 0, UV_READABLE); }
static void ev_add_write(void *p) { ev_update(p, UV_WRITABLE, 0); }
static void ev_del_write(void *p) { ev_update(p, 0, UV_WRITABLE); }

static void ev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *p)
{
    ev_t *ev = p;
    ev->ac = NULL;
    uv_close((uv_handle_t *)&ev->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    ev_t *ev = calloc(1, sizeof(*ev));
    if (!ev)
        abort();
    if (uv_poll_init(loop, &ev->poll, ac->c.fd) != 0) {
        free(ev);
        return -1;
    }
    uv_unref((uv_handle_t *)&ev->poll);     /* see redis.h: no loop kept alive */
    ev->ac = ac;
    ev->poll.data = ev;
    ac->ev.data = ev;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- URLs ---- */

/* Copies [s, e) into `out` (`cap` bytes); -1 when it does not fit. */
static int copy_part(char *out, size_t cap, const char *s, const char *e)
{
    size_t n = (size_t)(e - s);
    if (n >= cap)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int parse_int(const char *s, const char *e, int lo, int hi, int *out)
{
    long v = 0;
    if (s == e)
        return -1;
    for (const char *p = s; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > hi)
            return -1;
    }
    if (v < lo)
        return -1;
    *out = (int)v;
    return 0;
}

/* The query string: namespace=, db=, password= (the last two for unix
 * sockets, which have no authority part). */
static int parse_query(const char *q, bx_redis_addr_t *out, char *err, size_t errlen)
{
    while (q && *q) {
        const char *amp = strchr(q, '&');
        const char *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        if (!eq) {
            snprintf(err, errlen, "bad query parameter '%.*s'", (int)(end - q), q);
            return -1;
        }
        size_t klen = (size_t)(eq - q);
        if (klen == 9 && memcmp(q, "namespace", 9) == 0) {
            if (eq + 1 == end || copy_part(out->ns, sizeof(out->ns), eq + 1, end) < 0) {
                snprintf(err, errlen, "bad namespace");
                return -1;
            }
        } else if (klen == 2 && memcmp(q, "db", 2) == 0) {
            if (parse_int(eq + 1, end, 0, 1 << 20, &out->db) < 0) {
                snprintf(err, errlen, "bad db '%.*s'", (int)(end - eq - 1), eq + 1);
                return -1;
            }
        } else if (klen == 8 && memcmp(q, "password", 8) == 0) {
            if (copy_part(out->password, sizeof(out->password), eq + 1, end) < 0) {
                snprintf(err, errlen, "password too long");
                return -1;
            }
        } else {
            snprintf(err, errlen, "unknown query parameter '%.*s'", (int)klen, q);
            return -1;
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

int bx_redis_parse_url(const char *url, bx_redis_addr_t *out, char *err, size_t errlen)
{
    const char *p, *q, *auth_end, *host, *host_end, *path;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    strcpy(out->ns, "bayeux");
    if (!url) {
        snprintf(err, errlen, "no Redis URL");
        return -1;
    }
    q = strchr(url, '?');
    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        if (*p != '/' || copy_part(out->path, sizeof(out->path), p, q ? q : p + strlen(p)) < 0
            || strlen(out->path) < 2) {
            snprintf(err, errlen, "bad unix socket URL '%s' (unix:///path/to.sock)", url);
            return -1;
        }
        return parse_query(q ? q + 1 : NULL, out, err, errlen);
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "bad Redis URL '%s' (redis://[:password@]host[:port][/db]"
                 "[?namespace=NS] or unix:///path)", url);
        return -1;
    }
    p = url + 8;
    path = p + strcspn(p, "/?");
    auth_end = memchr(p, '@', (size_t)(path - p));
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (!colon || copy_part(out->user, sizeof(out->user), p, colon) < 0
            || copy_part(out->password, sizeof(out->password), colon + 1, auth_end) < 0) {
            snprintf(err, errlen, "bad credentials in '%s' ([user]:password@)", url);
            return -1;
        }
        host = auth_end + 1;
    } else {
        host = p;
    }
    host_end = memchr(host, ':', (size_t)(path - host));
    if (host_end) {
        if (parse_int(host_end + 1, path, 1, 65535, &out->port) < 0) {
            snprintf(err, errlen, "bad port in '%s'", url);
            return -1;
        }
    } else {
        host_end = path;
    }
    if (host_end == host)
        strcpy(out->host, "127.0.0.1");
    else if (copy_part(out->host, sizeof(out->host), host, host_end) < 0) {
        snprintf(err, errlen, "host too long in '%s'", url);
        return -1;
    }
    if (*path == '/' && path + 1 != (q ? q : path + strlen(path))) {
        if (parse_int(path + 1, q ? q : path + strlen(path), 0, 1 << 20, &out->db) < 0) {
            snprintf(err, errlen, "bad db number in '%s'", url);
            return -1;
        }
    }
    return parse_query(q ? q + 1 : NULL, out, err, errlen);
}

/* ---- State ---- */

static void tell(bx_redis_t *c, int up, const char *why)
{
    if (c->reported == up)
        return;
    c->reported = up;
    if (c->state_cb)
        c->state_cb(c->ud, up, why);
}

static void req_unlink(bx_redis_t *c, req_t *r)
{
    bx_list_remove(&r->link);
    c->npending--;
}

/* Answers every pending command with `status`, detaching them from their
 * hiredis callbacks (which then only free them). */
static void fail_pending(bx_redis_t *c, int status)
{
    while (!bx_list_empty(&c->pending)) {
        req_t *r = BX_CONTAINER(c->pending.next, req_t, link);
        req_unlink(c, r);
        r->c = NULL;
        if (r->cb && !r->handshake)
            r->cb(r->ud, status, NULL);
        r->cb = NULL;
    }
}

static void on_timer(uv_timer_t *t);

static void schedule_reconnect(bx_redis_t *c)
{
    c->state = ST_DOWN;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_timer, (uint64_t)(c->backoff * 1000), 0);
    c->backoff *= 2;
    if (c->backoff > c->opts.backoff_max)
        c->backoff = c->opts.backoff_max;
}

/* Lets go of the hiredis context (if any) and fails what was pending. */
static void release(bx_redis_t *c, int status)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    fail_pending(c, status);
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

void bx_redis_drop(bx_redis_t *c, const char *why)
{
    if (c->state == ST_CLOSED)
        return;
    release(c, BX_REDIS_EDOWN);
    schedule_reconnect(c);
    tell(c, 0, why);
}

/* ---- hiredis callbacks ---- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    req_t *r = priv;
    bx_redis_t *c = r->c;

    (void)ac;
    if (!c) {
        free(r);                /* detached: answered already */
        return;
    }
    req_unlink(c, r);
    if (r->handshake) {
        redisReply *rep = reply;
        int last = r->handshake == 2;
        free(r);
        if (!rep) {
            return;             /* the disconnect callback follows */
        } else if (rep->type == REDIS_REPLY_ERROR) {
            char why[300];
            snprintf(why, sizeof(why), "%.*s", (int)rep->len, rep->str);
            bx_redis_drop(c, why);
        } else if (last && c->state == ST_CONNECTING) {
            c->state = ST_UP;
            if (c->ever_up)
                bx_metrics.redis_reconnects++;
            c->ever_up = 1;
            c->backoff = c->opts.backoff_min;
            uv_timer_stop(&c->timer);
            if (c->opts.command_timeout > 0) {
                uint64_t every = (uint64_t)(c->opts.command_timeout * 250);
                uv_timer_start(&c->timer, on_timer, every ? every : 1, every ? every : 1);
            }
            tell(c, 1, NULL);
        }
        return;
    }
    if (reply) {
        bx_metrics.redis_commands++;
        bx_metrics.redis_ns_sum += uv_hrtime() - r->sent_ns;
    }
    if (r->cb)
        r->cb(r->ud, reply ? 0 : BX_REDIS_EDOWN, reply);
    free(r);
}

static void on_push(redisAsyncContext *ac, void *reply, void *priv)
{
    bx_redis_t *c = ac->data;
    (void)priv;
    if (c && reply && c->push)
        c->push(c->ud, reply);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bx_redis_t *c = ac->data;
    if (!c || status == REDIS_OK)
        return;                 /* the handshake's last reply makes it up */
    /* hiredis frees the context after this */
    char why[300];
    snprintf(why, sizeof(why), "%s", ac->errstr[0] ? ac->errstr : "connect failed");
    c->ac = NULL;
    fail_pending(c, BX_REDIS_EDOWN);
    schedule_reconnect(c);
    tell(c, 0, why);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bx_redis_t *c = ac->data;
    if (!c)
        return;
    char why[300];
    snprintf(why, sizeof(why), "%s", status == REDIS_OK ? "connection closed"
             : ac->errstr[0] ? ac->errstr : "connection lost");
    c->ac = NULL;
    fail_pending(c, BX_REDIS_EDOWN);
    schedule_reconnect(c);
    tell(c, 0, why);
}

/* ---- Commands ---- */

static int send_req(bx_redis_t *c, req_t *r, redisCallbackFn *fn, int argc,
                    const char **argv, const size_t *lens)
{
    if (redisAsyncCommandArgv(c->ac, fn, fn == on_reply ? r : NULL, argc, argv, lens)
        != REDIS_OK)
        return -1;
    if (fn != on_reply)
        return 0;
    r->c = c;
    r->sent = uv_now(c->loop);
    r->sent_ns = uv_hrtime();
    bx_list_push_tail(&c->pending, &r->link);
    c->npending++;
    return 0;
}

static void handshake(bx_redis_t *c, const char *cmd, const char *a, const char *b, int last)
{
    const char *argv[3] = { cmd, a, b };
    req_t *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    bx_list_init(&r->link);
    r->handshake = last ? 2 : 1;
    if (send_req(c, r, on_reply, b ? 3 : a ? 2 : 1, argv, NULL) < 0)
        free(r);
}

static void connect_now(bx_redis_t *c)
{
    redisAsyncContext *ac;
    char db[16];

    ac = c->addr.path[0] ? redisAsyncConnectUnix(c->addr.path)
                         : redisAsyncConnect(c->addr.host, c->addr.port);
    if (!ac || ac->err) {
        char why[300];
        snprintf(why, sizeof(why), "%s", ac && ac->errstr[0] ? ac->errstr : "connect failed");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(c);
        tell(c, 0, why);
        return;
    }
    if (ev_attach(ac, c->loop) < 0) {
        redisAsyncFree(ac);
        schedule_reconnect(c);
        tell(c, 0, "cannot attach to the loop");
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued before the connection is made: they go out first, in order */
    if (c->addr.password[0])
        handshake(c, "AUTH", c->addr.user[0] ? c->addr.user : c->addr.password,
                  c->addr.user[0] ? c->addr.password : NULL, 0);
    if (c->addr.db) {
        snprintf(db, sizeof(db), "%d", c->addr.db);
        handshake(c, "SELECT", db, NULL, 0);
    }
    handshake(c, "PING", NULL, NULL, 1);
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_timer, (uint64_t)(c->opts.connect_timeout * 1000), 0);
}

static void on_timer(uv_timer_t *t)
{
    bx_redis_t *c = t->data;

    switch (c->state) {
    case ST_DOWN:
        connect_now(c);
        break;
    case ST_CONNECTING:
        bx_redis_drop(c, "connect timeout");
        break;
    case ST_UP:
        if (!bx_list_empty(&c->pending)
            && uv_now(c->loop) - BX_CONTAINER(c->pending.next, req_t, link)->sent
               >= (uint64_t)(c->opts.command_timeout * 1000))
            bx_redis_drop(c, "command timeout");
        break;
    case ST_CLOSED:
        break;
    }
}

int bx_redis_command(bx_redis_t *c, bx_redis_reply_cb cb, void *ud, int argc,
                     const char **argv, const size_t *lens)
{
    req_t *r;

    if (c->state != ST_UP || !c->ac)
        return BX_REDIS_EDOWN;
    if (c->push)
        return redisAsyncCommandArgv(c->ac, on_push, NULL, argc, argv, lens) == REDIS_OK
               ? 0 : BX_REDIS_EDOWN;
    r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    bx_list_init(&r->link);
    r->cb = cb;
    r->ud = ud;
    if (send_req(c, r, on_reply, argc, argv, lens) < 0) {
        free(r);
        return BX_REDIS_EDOWN;
    }
    return 0;
}

size_t bx_redis_pending(const bx_redis_t *c)
{
    return c->npending;
}

int bx_redis_up(const bx_redis_t *c)
{
    return c->state == ST_UP;
}

/* ---- Life cycle ---- */

bx_redis_t *bx_redis_new(uv_loop_t *loop, const bx_redis_addr_t *addr,
                         const bx_redis_opts_t *opts, bx_redis_state_cb state,
                         bx_redis_push_cb push, void *ud)
{
    bx_redis_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->loop = loop;
    bx_list_init(&c->pending);
    c->addr = *addr;
    if (opts)
        c->opts = *opts;
    if (c->opts.connect_timeout <= 0)
        c->opts.connect_timeout = 2;
    if (c->opts.command_timeout <= 0)
        c->opts.command_timeout = 5;
    if (c->opts.backoff_min <= 0)
        c->opts.backoff_min = 0.05;
    if (c->opts.backoff_max < c->opts.backoff_min)
        c->opts.backoff_max = c->opts.backoff_min > 1 ? c->opts.backoff_min : 1;
    c->backoff = c->opts.backoff_min;
    c->state_cb = state;
    c->push = push;
    c->ud = ud;
    c->reported = -1;
    uv_timer_init(loop, &c->timer);
    uv_unref((uv_handle_t *)&c->timer);
    c->timer.data = c;
    /* the first attempt from the timer too: nothing, not even a synchronous
     * connect error, calls back from inside bx_redis_new */
    c->state = ST_DOWN;
    uv_timer_start(&c->timer, on_timer, 0, 0);
    return c;
}

static void on_timer_closed(uv_handle_t *h)
{
    bx_redis_t *c = h->data;
    void (*done)(void *) = c->close_done;
    void *ud = c->close_ud;
    free(c);
    if (done)
        done(ud);
}

void bx_redis_close(bx_redis_t *c, void (*done)(void *ud), void *ud)
{
    c->state = ST_CLOSED;
    c->close_done = done;
    c->close_ud = ud;
    release(c, BX_REDIS_ECANCELED);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
