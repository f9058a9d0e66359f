/*
 * test_ack.c - acknowledged delivery in the hub (docs/delivery.md): a
 * client that negotiated it gets its messages only through held connects,
 * each answer a batch with a new id; the next connect acknowledges it or
 * gets it again ahead of newer messages; its state moves to another node
 * with the engine's handoff (the proxy's leave / arrive, as redis.c calls
 * them), where the held connect is checked against it.
 *
 * Two servers without listeners share a loop; a connect is a waiter whose
 * release records the messages and the batch id. Run under ASan (make
 * check), LeakSanitizer checks that kept batches are freed.
 */
#include "bx_test.h"
#include "engine/engine.h"
#include "engine/memory.h"
#include "bayeux/hub.h"
#include "base/json.h"
#include "server.h"

#include <stdlib.h>

typedef struct {
    bx_waiter_t w;
    int released;
    int64_t batch;
    bx_chunkv_t got;
} conn_t;

static void on_release(bx_waiter_t *w, bx_chunkv_t *msgs)
{
    conn_t *c = (conn_t *)w;
    c->released++;
    c->batch = w->batch;
    bx_chunkv_move(&c->got, msgs);
}

static const bx_waiter_ops_t RELEASE_OPS = { on_release, NULL };

typedef struct {
    bx_server_t *s;
    bx_hub_t *hub;
    bx_engine_t *e;
    int closed;
} node_t;

static void id_cb(void *ud, int status, const char *id)
{
    if (status == 0)
        snprintf(ud, 32, "%s", id);
}

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

static void node_open(node_t *n, uv_loop_t *loop)
{
    bx_server_opts_t o;
    bx_server_opts_default(&o);
    memset(n, 0, sizeof(*n));
    n->s = bx_server_new(loop, &o, NULL, 0);
    n->hub = bx_server_hub(n->s);
    n->e = bx_server_engine(n->s);
}

static void node_close(node_t *n, uv_loop_t *loop)
{
    bx_server_close(n->s, closed_cb, &n->closed);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void publish(node_t *n, uv_loop_t *loop, const char *data)
{
    json_t *m = json_pack("{s:s, s:s}", "channel", "/q", "data", data);
    n->e->ops->publish(n->e, m, NULL, NULL);
    json_decref(m);
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* A connect carrying ext.ack = `ack` (-1: none), answered as soon as the
 * pass has something (or at once, with nothing, if `now`). */
static void do_connect(node_t *n, uv_loop_t *loop, const char *id, conn_t *c, int64_t ack, int now)
{
    bx_chunkv_free(&c->got);
    memset(c, 0, sizeof(*c));
    c->w.ops = &RELEASE_OPS;
    c->w.ack = ack;
    c->w.batch = -1;
    bx_session_hold(n->hub, id, &c->w);
    if (now)
        bx_session_release_soon(n->hub, id);
    for (int i = 0; i < 10 && !c->released; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

/* Whether message i of `c` carries `data`. */
static int has(const conn_t *c, size_t i, const char *data)
{
    char want[64];
    snprintf(want, sizeof(want), "\"data\":\"%s\"", data);
    return i < c->got.n && memmem(c->got.v[i]->data, c->got.v[i]->len, want, strlen(want));
}

static void client(node_t *n, uv_loop_t *loop, char id[32])
{
    BX_CHECK_INT(n->e->ops->create_client(n->e, id_cb, id), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(strlen(id), 31);
    BX_CHECK_INT(n->e->ops->subscribe(n->e, id, "/q", 0, NULL, NULL), 0);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_batches_acknowledged_or_sent_again(void)
{
    uv_loop_t loop;
    node_t a;
    conn_t c = { 0 };
    char id[32] = "";

    uv_loop_init(&loop);
    node_open(&a, &loop);
    client(&a, &loop, id);
    bx_session_ack_enable(a.hub, id);
    BX_CHECK_INT(bx_hub_acks(a.hub), 1);

    do_connect(&a, &loop, id, &c, 0, 1);           /* nothing yet: the last id, 0 */
    BX_CHECK_INT(c.released, 1);
    BX_CHECK_INT(c.got.n, 0);
    BX_CHECK_INT(c.batch, 0);

    publish(&a, &loop, "m1");
    publish(&a, &loop, "m2");
    do_connect(&a, &loop, id, &c, 0, 0);
    BX_CHECK_INT(c.got.n, 2);
    BX_CHECK(has(&c, 0, "m1") && has(&c, 1, "m2"));
    BX_CHECK_INT(c.batch, 1);

    /* not acknowledged (an older id): again, ahead of a newer one */
    publish(&a, &loop, "m3");
    do_connect(&a, &loop, id, &c, 0, 0);
    BX_CHECK_INT(c.got.n, 3);
    BX_CHECK(has(&c, 0, "m1") && has(&c, 1, "m2") && has(&c, 2, "m3"));
    BX_CHECK_INT(c.batch, 2);

    /* acknowledged: gone */
    do_connect(&a, &loop, id, &c, 2, 1);
    BX_CHECK_INT(c.got.n, 0);
    BX_CHECK_INT(c.batch, 2);

    /* a batch left unacknowledged is freed with the hub (LeakSanitizer) */
    publish(&a, &loop, "m4");
    do_connect(&a, &loop, id, &c, 2, 0);
    BX_CHECK_INT(c.got.n, 1);
    BX_CHECK_INT(c.batch, 3);
    bx_chunkv_free(&c.got);
    node_close(&a, &loop);
    BX_CHECK_INT(a.closed, 1);
    BX_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_plain_client_unchanged(void)
{
    uv_loop_t loop;
    node_t a;
    conn_t c = { 0 };
    char id[32] = "";

    uv_loop_init(&loop);
    node_open(&a, &loop);
    client(&a, &loop, id);
    publish(&a, &loop, "m1");
    do_connect(&a, &loop, id, &c, 5, 0);           /* ext.ack without negotiation */
    BX_CHECK_INT(c.got.n, 1);
    BX_CHECK_INT(c.batch, -1);
    do_connect(&a, &loop, id, &c, 0, 1);
    BX_CHECK_INT(c.got.n, 0);                   /* nothing kept, nothing again */
    BX_CHECK_INT(bx_hub_acks(a.hub), 0);
    BX_CHECK_INT(bx_hub_sessions(a.hub), 0);    /* no session without a connection */
    bx_chunkv_free(&c.got);
    node_close(&a, &loop);
    BX_CHECK_INT(uv_loop_close(&loop), 0);
}

/* The client moves from node a to node b with a batch unacknowledged:
 * b's held connect, whatever it carried when it came, is checked against
 * the state that arrives. */
static void handoff(int acknowledged)
{
    uv_loop_t loop;
    node_t a, b;
    conn_t c = { 0 };
    char id[32] = "";
    size_t len = 0;

    uv_loop_init(&loop);
    node_open(&a, &loop);
    node_open(&b, &loop);
    client(&a, &loop, id);
    bx_session_ack_enable(a.hub, id);
    publish(&a, &loop, "m1");
    do_connect(&a, &loop, id, &c, 0, 0);
    BX_CHECK_INT(c.got.n, 1);
    BX_CHECK_INT(c.batch, 1);

    /* b makes the client (as a handoff's cut does) and holds its connect
     * before the state comes */
    BX_CHECK_INT(bx_engine_memory_adopt(b.e, id), 0);
    BX_CHECK_INT(b.e->ops->subscribe(b.e, id, "/q", 0, NULL, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    bx_chunkv_free(&c.got);
    memset(&c, 0, sizeof(c));
    c.w.ops = &RELEASE_OPS;
    c.w.ack = acknowledged ? 1 : 0;
    bx_session_hold(b.hub, id, &c.w);
    BX_CHECK_INT(bx_hub_acks(b.hub), 0);

    bx_proxy_t pa = bx_hub_proxy(a.hub), pb = bx_hub_proxy(b.hub);
    char *state = pa.leave(pa.ud, id, &len);
    BX_CHECK(state != NULL);
    BX_CHECK_INT(bx_hub_acks(a.hub), 0);        /* a forgot it */
    BX_CHECK(pa.leave(pa.ud, id, &len) == NULL);
    pb.arrive(pb.ud, id, state, len);
    free(state);
    BX_CHECK_INT(bx_hub_acks(b.hub), 1);
    publish(&b, &loop, "m2");
    for (int i = 0; i < 10 && !c.released; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    BX_CHECK_INT(c.released, 1);
    if (acknowledged) {
        BX_CHECK_INT(c.got.n, 1);
        BX_CHECK(has(&c, 0, "m2"));
    } else {
        BX_CHECK_INT(c.got.n, 2);
        BX_CHECK(has(&c, 0, "m1") && has(&c, 1, "m2"));
    }
    BX_CHECK_INT(c.batch, 2);                   /* ids go on from a's */
    bx_chunkv_free(&c.got);
    node_close(&a, &loop);
    node_close(&b, &loop);
    BX_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_handoff_unacknowledged_sent_again(void)
{
    handoff(0);
}

static void test_handoff_acknowledged_dropped(void)
{
    handoff(1);
}

int main(void)
{
    BX_RUN(test_batches_acknowledged_or_sent_again);
    BX_RUN(test_plain_client_unchanged);
    BX_RUN(test_handoff_unacknowledged_sent_again);
    BX_RUN(test_handoff_acknowledged_dropped);
    return BX_REPORT();
}
