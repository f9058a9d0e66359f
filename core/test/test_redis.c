/*
 * test_redis.c - the Redis connection (net/redis.h) against a real
 * redis-server started on a free loopback port (bx_redis_server.h): URLs,
 * commands and pipelining, AUTH and SELECT, unix sockets, the subscriber
 * connection, a server killed and restarted, command and connect timeouts
 * (a stopped server), an unreachable server.
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "net/redis.h"

static int g_inside;
static int g_reentered;

typedef struct {
    int ups, downs;
    char why[300];
    int replies;
    int status;
    long long integer;
    char str[128];
    int pushes;
    char last_push[128];
} rec_t;

static void on_state(void *ud, int up, const char *why)
{
    rec_t *r = ud;
    g_reentered |= g_inside;
    if (up) {
        r->ups++;
    } else {
        r->downs++;
        snprintf(r->why, sizeof(r->why), "%s", why ? why : "");
    }
}

static void on_reply(void *ud, int status, redisReply *rep)
{
    rec_t *r = ud;
    g_reentered |= g_inside;
    r->replies++;
    r->status = status;
    r->str[0] = '\0';
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        r->integer = rep->integer;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS
                || rep->type == REDIS_REPLY_ERROR))
        snprintf(r->str, sizeof(r->str), "%.*s", (int)rep->len, rep->str);
}

static void on_push(void *ud, redisReply *rep)
{
    rec_t *r = ud;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3
        && strcmp(rep->element[0]->str, "message") == 0) {
        r->pushes++;
        snprintf(r->last_push, sizeof(r->last_push), "%s:%s", rep->element[1]->str,
                 rep->element[2]->str);
    }
}

/* Runs the loop until *flag >= want or `secs` pass; returns whether it got
 * there (the bound only stops a broken test). */
static int run_until(uv_loop_t *loop, const int *flag, int want, double secs)
{
    uint64_t end;
    uv_update_time(loop);
    end = uv_now(loop) + (uint64_t)(secs * 1000);
    while (*flag < want && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    return *flag >= want;
}

/* A tick that keeps UV_RUN_ONCE from blocking forever. */
static uv_timer_t g_tick;
static void tick(uv_timer_t *t) { (void)t; }

static void loop_init(uv_loop_t *loop)
{
    uv_loop_init(loop);
    uv_timer_init(loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    g_reentered = 0;
}

static void closed(void *ud) { (*(int *)ud)++; }

static void close_all(uv_loop_t *loop, bx_redis_t *c)
{
    int done = 0;
    bx_redis_close(c, closed, &done);
    run_until(loop, &done, 1, 5);
}

static int cmd(bx_redis_t *c, rec_t *r, const char *a, const char *b, const char *d)
{
    const char *argv[3] = { a, b, d };
    g_inside = 1;
    int rc = bx_redis_command(c, on_reply, r, d ? 3 : b ? 2 : 1, argv, NULL);
    g_inside = 0;
    return rc;
}

static bx_rs_t g_rs;

static void url(char *out, size_t n, const char *fmt)
{
    snprintf(out, n, fmt, g_rs.port);
}

/* ---- Tests ---- */

static void test_parse_url(void)
{
    bx_redis_addr_t a;
    char err[256];

    BX_CHECK_INT(bx_redis_parse_url("redis://127.0.0.1:6390/2?namespace=app", &a, err,
                                    sizeof(err)), 0);
    BX_CHECK_STR(a.host, "127.0.0.1");
    BX_CHECK_INT(a.port, 6390);
    BX_CHECK_INT(a.db, 2);
    BX_CHECK_STR(a.ns, "app");
    BX_CHECK_STR(a.password, "");
    BX_CHECK_INT(bx_redis_parse_url("redis://:s3cret@example.org", &a, err, sizeof(err)), 0);
    BX_CHECK_STR(a.host, "example.org");
    BX_CHECK_INT(a.port, 6379);
    BX_CHECK_STR(a.password, "s3cret");
    BX_CHECK_STR(a.user, "");
    BX_CHECK_STR(a.ns, "bayeux");
    BX_CHECK_INT(bx_redis_parse_url("redis://bob:pw@h:1/", &a, err, sizeof(err)), 0);
    BX_CHECK_STR(a.user, "bob");
    BX_CHECK_INT(a.db, 0);
    BX_CHECK_INT(bx_redis_parse_url("redis://", &a, err, sizeof(err)), 0);
    BX_CHECK_STR(a.host, "127.0.0.1");
    BX_CHECK_INT(bx_redis_parse_url("unix:///run/redis.sock?db=3&namespace=x&password=p", &a,
                                    err, sizeof(err)), 0);
    BX_CHECK_STR(a.path, "/run/redis.sock");
    BX_CHECK_INT(a.db, 3);
    BX_CHECK_STR(a.password, "p");
    BX_CHECK_STR(a.ns, "x");
    BX_CHECK_INT(a.faye, 0);
    /* faye-redis mode: its namespace defaults to nothing */
    BX_CHECK_INT(bx_redis_parse_url("redis://h/1?mode=faye", &a, err, sizeof(err)), 0);
    BX_CHECK_INT(a.faye, 1);
    BX_CHECK_STR(a.ns, "");
    BX_CHECK_INT(bx_redis_parse_url("redis://h?mode=faye&namespace=fayens", &a, err,
                                    sizeof(err)), 0);
    BX_CHECK_INT(a.faye, 1);
    BX_CHECK_STR(a.ns, "fayens");
    BX_CHECK_INT(bx_redis_parse_url("unix:///s?namespace=n&mode=bayeux", &a, err, sizeof(err)),
                 0);
    BX_CHECK_INT(a.faye, 0);
    BX_CHECK_STR(a.ns, "n");
    BX_CHECK_INT(bx_redis_parse_url("redis://h?mode=node", &a, err, sizeof(err)), -1);
    BX_CHECK_STR(err, "bad mode 'node' (faye or bayeux)");
    BX_CHECK_INT(bx_redis_parse_url("http://x", &a, err, sizeof(err)), -1);
    BX_CHECK(strstr(err, "bad Redis URL") != NULL);
    BX_CHECK_INT(bx_redis_parse_url("redis://h:0", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url("redis://h:99999", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url("redis://h/x", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url("redis://h?nope=1", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url("redis://h?namespace=", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url("unix://relative", &a, err, sizeof(err)), -1);
    BX_CHECK_INT(bx_redis_parse_url(NULL, &a, err, sizeof(err)), -1);
}

static void test_commands_pipelined(void)
{
    uv_loop_t loop;
    bx_redis_addr_t a;
    char u[64], err[128];
    rec_t st = { 0 }, r[100];

    loop_init(&loop);
    memset(r, 0, sizeof(r));
    url(u, sizeof(u), "redis://127.0.0.1:%d");
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    g_inside = 1;
    bx_redis_t *c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    g_inside = 0;
    BX_CHECK(!bx_redis_up(c));
    BX_CHECK_INT(cmd(c, &r[0], "PING", NULL, NULL), BX_REDIS_EDOWN);  /* not up yet */
    BX_CHECK(run_until(&loop, &st.ups, 1, 10));
    BX_CHECK_INT(st.downs, 0);
    BX_CHECK_INT(r[0].replies, 0);
    /* 100 commands in one turn: answered in order, none inside the call */
    BX_CHECK_INT(cmd(c, &r[0], "DEL", "bx:test:n", NULL), 0);
    for (int i = 1; i < 100; i++)
        BX_CHECK_INT(cmd(c, &r[i], "INCR", "bx:test:n", NULL), 0);
    BX_CHECK_INT(bx_redis_pending(c), 100);
    for (int i = 0; i < 100; i++)
        BX_CHECK_INT(r[i].replies, 0);
    BX_CHECK(run_until(&loop, &r[99].replies, 1, 10));
    for (int i = 1; i < 100; i++) {
        BX_CHECK_INT(r[i].replies, 1);
        BX_CHECK_INT(r[i].integer, i);
    }
    BX_CHECK_INT(bx_redis_pending(c), 0);
    /* an error reply is a reply */
    BX_CHECK_INT(cmd(c, &r[0], "NOSUCHCOMMAND", NULL, NULL), 0);
    BX_CHECK(run_until(&loop, &r[0].replies, 2, 10));
    BX_CHECK_INT(r[0].status, 0);
    BX_CHECK(strstr(r[0].str, "unknown command") != NULL);
    /* close answers what is pending, canceled */
    memset(&r[1], 0, sizeof(r[1]));
    BX_CHECK_INT(cmd(c, &r[1], "PING", NULL, NULL), 0);
    close_all(&loop, c);
    BX_CHECK_INT(r[1].replies, 1);
    BX_CHECK_INT(r[1].status, BX_REDIS_ECANCELED);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

static void test_auth_select_unix(void)
{
    static const char *const extra[] = { "--requirepass", "pw1", NULL };
    bx_rs_t s = { 0 };
    uv_loop_t loop;
    bx_redis_addr_t a;
    char u[160], err[128];
    rec_t st = { 0 }, r = { 0 };

    BX_CHECK_INT(bx_rs_start(&s, extra, "pw1"), 0);
    loop_init(&loop);
    snprintf(u, sizeof(u), "unix://%s?db=5&password=pw1", s.sock);
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    bx_redis_t *c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    BX_CHECK(run_until(&loop, &st.ups, 1, 10));
    BX_CHECK_INT(cmd(c, &r, "SET", "k", "in5"), 0);
    BX_CHECK(run_until(&loop, &r.replies, 1, 10));
    BX_CHECK_STR(r.str, "OK");
    close_all(&loop, c);

    /* over TCP with the password in the authority, db 5 again */
    memset(&st, 0, sizeof(st));
    memset(&r, 0, sizeof(r));
    snprintf(u, sizeof(u), "redis://:pw1@127.0.0.1:%d/5", s.port);
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    BX_CHECK(run_until(&loop, &st.ups, 1, 10));
    BX_CHECK_INT(cmd(c, &r, "GET", "k", NULL), 0);
    BX_CHECK(run_until(&loop, &r.replies, 1, 10));
    BX_CHECK_STR(r.str, "in5");
    close_all(&loop, c);

    /* a wrong password: down, with Redis's reason, and never up */
    memset(&st, 0, sizeof(st));
    snprintf(u, sizeof(u), "redis://:wrong@127.0.0.1:%d", s.port);
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    BX_CHECK(run_until(&loop, &st.downs, 1, 10));
    BX_CHECK(strstr(st.why, "WRONGPASS") != NULL || strstr(st.why, "invalid") != NULL);
    BX_CHECK_INT(st.ups, 0);
    close_all(&loop, c);
    bx_rs_stop(&s);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

static void test_subscriber(void)
{
    uv_loop_t loop;
    bx_redis_addr_t a;
    char u[64], err[128];
    rec_t st = { 0 }, sst = { 0 }, r = { 0 };
    const char *sub[2] = { "SUBSCRIBE", "bx:test:ch" };

    loop_init(&loop);
    url(u, sizeof(u), "redis://127.0.0.1:%d");
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    bx_redis_t *c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    bx_redis_t *s = bx_redis_new(&loop, &a, NULL, on_state, on_push, &sst);
    BX_CHECK(run_until(&loop, &st.ups, 1, 10));
    BX_CHECK(run_until(&loop, &sst.ups, 1, 10));
    BX_CHECK_INT(bx_redis_command(s, NULL, NULL, 2, sub, NULL), 0);
    /* publish until the subscription is in place (it is asynchronous) */
    for (int i = 0; i < 100 && sst.pushes == 0; i++) {
        int before = r.replies;
        BX_CHECK_INT(cmd(c, &r, "PUBLISH", "bx:test:ch", "hello"), 0);
        BX_CHECK(run_until(&loop, &r.replies, before + 1, 10));
    }
    run_until(&loop, &sst.pushes, 1, 10);
    BX_CHECK(sst.pushes >= 1);
    BX_CHECK_STR(sst.last_push, "bx:test:ch:hello");
    close_all(&loop, s);
    close_all(&loop, c);
    BX_LOOP_CLOSE(&loop);
}

static void test_killed_and_restarted(void)
{
    bx_rs_t s = { 0 };
    uv_loop_t loop;
    bx_redis_addr_t a;
    char u[64], err[128];
    rec_t st = { 0 }, r = { 0 }, r2 = { 0 };
    bx_redis_opts_t o = { 1, 1, 0.02, 0.2 };

    BX_CHECK_INT(bx_rs_start(&s, NULL, NULL), 0);
    loop_init(&loop);
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", s.port);
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    bx_redis_t *c = bx_redis_new(&loop, &a, &o, on_state, NULL, &st);
    BX_CHECK(run_until(&loop, &st.ups, 1, 10));
    /* a command in flight when the server dies gets EDOWN, once */
    BX_CHECK_INT(cmd(c, &r, "BLPOP", "bx:none", "0"), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    bx_rs_stop(&s);
    BX_CHECK(run_until(&loop, &st.downs, 1, 10));
    BX_CHECK_INT(r.replies, 1);
    BX_CHECK_INT(r.status, BX_REDIS_EDOWN);
    BX_CHECK_INT(cmd(c, &r2, "PING", NULL, NULL), BX_REDIS_EDOWN);
    /* reconnection attempts while it is down: still one "down" */
    run_until(&loop, &st.ups, 1, 0.5);
    BX_CHECK_INT(st.downs, 1);
    BX_CHECK_INT(st.ups, 1);
    BX_CHECK_INT(bx_rs_start(&s, NULL, NULL), 0);
    BX_CHECK(run_until(&loop, &st.ups, 2, 10));
    BX_CHECK_INT(cmd(c, &r2, "PING", NULL, NULL), 0);
    BX_CHECK(run_until(&loop, &r2.replies, 1, 10));
    BX_CHECK_STR(r2.str, "PONG");

    /* a stopped server: the command times out, the connection drops */
    kill(s.pid, SIGSTOP);
    memset(&r2, 0, sizeof(r2));
    BX_CHECK_INT(cmd(c, &r2, "PING", NULL, NULL), 0);
    BX_CHECK(run_until(&loop, &r2.replies, 1, 10));
    BX_CHECK_INT(r2.status, BX_REDIS_EDOWN);
    BX_CHECK_INT(st.downs, 2);
    BX_CHECK_STR(st.why, "command timeout");
    /* and connecting to it times out too (the kernel accepts, nobody
     * answers), without telling "down" again */
    run_until(&loop, &st.ups, 3, 2.5);
    BX_CHECK_INT(st.downs, 2);
    kill(s.pid, SIGCONT);
    BX_CHECK(run_until(&loop, &st.ups, 3, 10));
    close_all(&loop, c);
    bx_rs_stop(&s);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

static void test_unreachable(void)
{
    uv_loop_t loop;
    bx_redis_addr_t a;
    char u[64], err[128];
    rec_t st = { 0 };

    loop_init(&loop);
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", bx_rs_free_port());
    BX_CHECK_INT(bx_redis_parse_url(u, &a, err, sizeof(err)), 0);
    g_inside = 1;
    bx_redis_t *c = bx_redis_new(&loop, &a, NULL, on_state, NULL, &st);
    g_inside = 0;
    BX_CHECK(run_until(&loop, &st.downs, 1, 10));
    if (!strstr(st.why, "refused"))
        fprintf(stderr, "  why: %s\n", st.why);
    BX_CHECK(strstr(st.why, "refused") != NULL);
    close_all(&loop, c);
    BX_CHECK(!g_reentered);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    BX_RUN(test_parse_url);
    if (bx_rs_start(&g_rs, NULL, NULL) < 0) {
        printf("not ok - redis-server did not start\n");
        bx_test_failed++;
        return BX_REPORT();
    }
    BX_RUN(test_commands_pipelined);
    BX_RUN(test_auth_select_unix);
    BX_RUN(test_subscriber);
    BX_RUN(test_killed_and_restarted);
    BX_RUN(test_unreachable);
    bx_rs_stop(&g_rs);
    return BX_REPORT();
}
