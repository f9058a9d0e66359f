/*
 * workers.c - the parent of `bayeux serve --workers N` (workers.h).
 *
 * The parent binds the port itself, with SO_REUSEPORT and without
 * listening: it learns the port (0 = any free one) and keeps it reserved
 * while workers come and go. Each worker binds the same port with
 * SO_REUSEPORT and listens; the kernel spreads new connections over the
 * listening sockets. A shared engine (Redis) makes the workers one
 * server: any of them serves any request.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "base/buf.h"
#include "base/log.h"
#include "workers.h"

#define MAX_WORKERS 256
#define QUICK_DEATH_MS 1000     /* a worker dying sooner waits before restart */

typedef struct pool_s pool_t;

typedef struct {
    pool_t *pool;
    int idx;
    int running;
    uv_process_t proc;
    uv_timer_t restart;
    uint64_t started;
} worker_t;

struct pool_s {
    uv_loop_t *loop;
    const char **argv;          /* the command, then --port P --reuse-port */
    int n;
    worker_t *w;
    int stopping;
    int alive;                  /* processes running */
    int handles;                /* handles to close before returning */
    uv_signal_t sigterm, sigint, sighup;
};

static void start_worker(worker_t *w);

static void on_restart(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (!w->pool->stopping)
        start_worker(w);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    worker_t *w = p->data;
    pool_t *pool = w->pool;
    uint64_t lived = uv_now(pool->loop) - w->started;

    w->running = 0;
    pool->alive--;
    uv_close((uv_handle_t *)p, NULL);
    if (pool->stopping) {
        if (pool->alive == 0)
            uv_stop(pool->loop);
        return;
    }
    bx_logf(BX_LOG_WARN, "workers", "worker %d (pid %d) exited (%s %d); restarting",
            w->idx + 1, p->pid, sig ? "signal" : "status", sig ? sig : (int)status);
    uv_timer_start(&w->restart, on_restart, lived < QUICK_DEATH_MS ? QUICK_DEATH_MS : 0, 0);
}

static void start_worker(worker_t *w)
{
    pool_t *pool = w->pool;
    uv_process_options_t o;
    uv_stdio_container_t io[3];

    memset(&o, 0, sizeof(o));
    for (int i = 0; i < 3; i++) {
        io[i].flags = UV_INHERIT_FD;
        io[i].data.fd = i;
    }
    o.file = pool->argv[0];
    o.args = (char **)pool->argv;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = on_exit_cb;
    w->proc.data = w;
    w->started = uv_now(pool->loop);
    int rc = uv_spawn(pool->loop, &w->proc, &o);
    if (rc < 0) {
        bx_logf(BX_LOG_ERROR, "workers", "worker %d: cannot start %s: %s; trying again",
                w->idx + 1, pool->argv[0], uv_strerror(rc));
        uv_close((uv_handle_t *)&w->proc, NULL);
        uv_timer_start(&w->restart, on_restart, QUICK_DEATH_MS, 0);
        return;
    }
    w->running = 1;
    pool->alive++;
    bx_logf(BX_LOG_INFO, "workers", "worker %d started (pid %d)", w->idx + 1, w->proc.pid);
}

static void on_signal(uv_signal_t *h, int signum)
{
    pool_t *pool = h->data;
    (void)signum;
    if (pool->stopping)
        return;
    pool->stopping = 1;
    for (int i = 0; i < pool->n; i++) {
        uv_timer_stop(&pool->w[i].restart);
        if (pool->w[i].running)
            uv_process_kill(&pool->w[i].proc, SIGTERM);
    }
    if (pool->alive == 0)
        uv_stop(pool->loop);
}

/* SIGHUP: every worker reloads its TLS certificate (lbx_module.c). */
static void on_sighup(uv_signal_t *h, int signum)
{
    pool_t *pool = h->data;
    (void)signum;
    for (int i = 0; i < pool->n; i++)
        if (pool->w[i].running)
            uv_process_kill(&pool->w[i].proc, SIGHUP);
}

/* Binds host:port with SO_REUSEPORT, not listening; returns the socket or
 * a negative libuv error; `port` becomes the bound port. */
static int reserve(const char *host, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char name[64];
    int one = 1, fd, rc;

    if (!host || !*host || !strcmp(host, "*"))
        host = "0.0.0.0";
    else if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    snprintf(name, sizeof(name), "%s", host);
    if (name[0] == '[') {
        memmove(name, name + 1, strlen(name));
        name[strcspn(name, "]")] = '\0';
    }
    rc = strchr(name, ':') ? uv_ip6_addr(name, *port, (struct sockaddr_in6 *)&ss)
                           : uv_ip4_addr(name, *port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return rc;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0
        || bind(fd, (struct sockaddr *)&ss,
                ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in)) < 0
        || getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void on_closed(uv_handle_t *h)
{
    pool_t *pool = h->data;
    if (--pool->handles == 0)
        uv_stop(pool->loop);
}

int bx_workers_run(uv_loop_t *loop, const char *const *argv, int n, const char *host,
                   int port, char *err, size_t errlen)
{
    pool_t pool;
    char portstr[16];
    int argc = 0, fd;

    if (n < 1 || n > MAX_WORKERS || !argv || !argv[0]) {
        snprintf(err, errlen, "--workers must be 1 to %d", MAX_WORKERS);
        return UV_EINVAL;
    }
    fd = reserve(host, &port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, uv_strerror(fd));
        return fd;
    }
    snprintf(portstr, sizeof(portstr), "%d", port);
    memset(&pool, 0, sizeof(pool));
    pool.loop = loop;
    pool.n = n;
    while (argv[argc])
        argc++;
    pool.argv = bx_calloc((size_t)argc + 4, sizeof(*pool.argv));
    memcpy(pool.argv, argv, (size_t)argc * sizeof(*argv));
    pool.argv[argc] = "--port";
    pool.argv[argc + 1] = portstr;
    pool.argv[argc + 2] = "--reuse-port";
    pool.w = bx_calloc((size_t)n, sizeof(*pool.w));
    uv_signal_init(loop, &pool.sigterm);
    uv_signal_init(loop, &pool.sigint);
    uv_signal_init(loop, &pool.sighup);
    pool.sigterm.data = pool.sigint.data = pool.sighup.data = &pool;
    uv_signal_start(&pool.sigterm, on_signal, SIGTERM);
    uv_signal_start(&pool.sigint, on_signal, SIGINT);
    uv_signal_start(&pool.sighup, on_sighup, SIGHUP);
    for (int i = 0; i < n; i++) {
        worker_t *w = &pool.w[i];
        w->pool = &pool;
        w->idx = i;
        uv_timer_init(loop, &w->restart);
        w->restart.data = w;
        start_worker(w);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    /* every worker is gone: close what is left, then return */
    pool.handles = 3 + n;
    uv_close((uv_handle_t *)&pool.sigterm, on_closed);
    uv_close((uv_handle_t *)&pool.sigint, on_closed);
    uv_close((uv_handle_t *)&pool.sighup, on_closed);
    for (int i = 0; i < n; i++) {
        pool.w[i].restart.data = &pool;
        uv_close((uv_handle_t *)&pool.w[i].restart, on_closed);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    close(fd);
    free(pool.w);
    free(pool.argv);
    return 0;
}
