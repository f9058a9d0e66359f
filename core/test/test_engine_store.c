/*
 * test_engine_store.c - the engines' shared store (engine.h:
 * bx_engine_store_call, bx_engine_store_ns), on which identities and
 * presence live across processes: a private redis-server, both Redis
 * engines (native and faye mode). A command's reply comes as JSON on a
 * later turn (strings, integers, null, arrays, an error as {"error"});
 * the memory engine has no store.
 */
#include "bx_test.h"
#include "bx_redis_server.h"
#include "engine/engine.h"
#include "base/json.h"

#include <stdlib.h>

typedef struct {
    int calls;
    int status;
    int inside;
    char *text;                 /* the reply, JSON-encoded */
} got_t;

static int g_inside;
static bx_rs_t g_rs;
static uv_timer_t g_tick;

static void tick(uv_timer_t *t) { (void)t; }

static int n_has_connection(void *ud, const char *id) { (void)ud; (void)id; return 0; }
static void n_wake(void *ud, const char *id) { (void)ud; (void)id; }

static void on_reply(void *ud, int status, const json_t *reply)
{
    got_t *g = ud;
    g->calls++;
    g->status = status;
    g->inside |= g_inside;
    free(g->text);
    g->text = reply ? json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static int run_until(uv_loop_t *loop, const int *flag, int want, double secs)
{
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + (uint64_t)(secs * 1000);
    while (*flag < want && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    return *flag >= want;
}

/* Sends argv (NULL-terminated) once the store is up; the reply's JSON
 * text, or "" on failure. */
static const char *call(uv_loop_t *loop, bx_engine_t *e, got_t *g, const char *const *argv)
{
    int argc = 0, rc;
    while (argv[argc])
        argc++;
    g->calls = 0;
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + 10000;
    for (;;) {
        g_inside = 1;
        rc = bx_engine_store_call(e, argc, (const char **)argv, NULL, on_reply, g);
        g_inside = 0;
        if (rc != BX_EUNAVAILABLE || uv_now(loop) >= end)
            break;
        uv_run(loop, UV_RUN_ONCE);     /* not connected yet */
        uv_update_time(loop);
    }
    if (rc != 0 || !run_until(loop, &g->calls, 1, 10) || g->status != 0 || !g->text)
        return "";
    return g->text;
}

static void closed(void *ud) { (*(int *)ud)++; }

static void check_engine(const char *query, const char *ns, int faye)
{
    uv_loop_t loop;
    char url[160], err[128];
    bx_proxy_t p = { .has_connection = n_has_connection, .wake = n_wake };
    bx_engine_opts_t o = { .timeout = 60 };
    got_t g = { 0 };
    int done = 0, is_faye = -1;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &g_tick);
    uv_timer_start(&g_tick, tick, 20, 20);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d%s", g_rs.port, query);
    bx_engine_t *e = bx_engine_new(url, &loop, &p, &o, err, sizeof(err));
    BX_CHECK(e != NULL);
    BX_CHECK_STR(bx_engine_store_ns(e, &is_faye), ns);
    BX_CHECK_INT(is_faye, faye);

    BX_CHECK_STR(call(&loop, e, &g, (const char *[]){ "SET", "k", "v", NULL }), "\"OK\"");
    BX_CHECK_INT(g.inside, 0);          /* never inside the call */
    BX_CHECK_STR(call(&loop, e, &g, (const char *[]){ "GET", "k", NULL }), "\"v\"");
    BX_CHECK_STR(call(&loop, e, &g, (const char *[]){ "GET", "nothing", NULL }), "null");
    BX_CHECK_STR(call(&loop, e, &g, (const char *[]){ "EVAL", "return { 1, 'x', false }",
                                                     "0", NULL }), "[1,\"x\",null]");
    BX_CHECK_STR(call(&loop, e, &g, (const char *[]){ "INCRBY", "k", "1", NULL }),
                 "{\"error\":\"ERR value is not an integer or out of range\"}");
    BX_CHECK_INT(g.inside, 0);

    free(g.text);
    g.text = NULL;
    e->ops->close(e, closed, &done);
    run_until(&loop, &done, 1, 10);
    BX_CHECK_INT(done, 1);
    /* closed: nothing more is sent */
    uv_close((uv_handle_t *)&g_tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_LOOP_CLOSE(&loop);
}

static void test_native(void)
{
    check_engine("/0?namespace=st", "st", 0);
}

static void test_faye_mode(void)
{
    check_engine("/0?namespace=fs&mode=faye", "fs", 1);
}

static void test_memory_has_none(void)
{
    uv_loop_t loop;
    char err[128];
    bx_proxy_t p = { .has_connection = n_has_connection, .wake = n_wake };
    bx_engine_opts_t o = { .timeout = 60 };
    got_t g = { 0 };
    int done = 0;
    const char *argv[] = { "GET", "k" };

    uv_loop_init(&loop);
    bx_engine_t *e = bx_engine_new("memory", &loop, &p, &o, err, sizeof(err));
    BX_CHECK(e != NULL);
    BX_CHECK(bx_engine_store_ns(e, NULL) == NULL);
    BX_CHECK_INT(bx_engine_store_call(e, 2, argv, NULL, on_reply, &g), BX_EUNKNOWN);
    uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(g.calls, 0);
    e->ops->close(e, closed, &done);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(done, 1);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    BX_RUN(test_memory_has_none);
    if (bx_rs_start(&g_rs, NULL, NULL) < 0) {
        printf("not ok - redis-server did not start\n");
        bx_test_failed++;
        return BX_REPORT();
    }
    BX_RUN(test_native);
    BX_RUN(test_faye_mode);
    bx_rs_stop(&g_rs);
    return BX_REPORT();
}
