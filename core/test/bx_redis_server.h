/*
 * bx_redis_server.h - a private redis-server for a C unit test: on a free
 * loopback port, no persistence, in a temporary directory, killed by the
 * kernel if the test dies (PR_SET_PDEATHSIG) and stopped at exit
 * (atexit) otherwise, so no exit path leaves one behind.
 */
#ifndef BX_REDIS_SERVER_H
#define BX_REDIS_SERVER_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <hiredis.h>

#define BX_RS_MAX 4

typedef struct {
    pid_t pid;
    int port;
    char dir[64];
    char sock[96];              /* unix socket path */
} bx_rs_t;

static bx_rs_t *bx_rs_all[BX_RS_MAX];

/* A port nobody listens on now (bound then released). */
__attribute__((unused)) static int bx_rs_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0
        || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        abort();
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void bx_rs_kill(bx_rs_t *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void bx_rs_atexit(void)
{
    for (int i = 0; i < BX_RS_MAX; i++)
        if (bx_rs_all[i]) {
            bx_rs_kill(bx_rs_all[i], SIGKILL);
            unlink(bx_rs_all[i]->sock);
            rmdir(bx_rs_all[i]->dir);
        }
}

/* Whether the server answers PING (a synchronous client, `password` may
 * be NULL). */
static int bx_rs_ping(const bx_rs_t *s, const char *password)
{
    struct timeval tv = { 0, 200000 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r;
        if (password) {
            r = redisCommand(c, "AUTH %s", password);
            if (r)
                freeReplyObject(r);
        }
        r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* Starts (or restarts, on the same port) the server `s` with extra
 * arguments `extra` (NULL-terminated, may be NULL); waits until it
 * answers. Returns 0, or -1. */
__attribute__((unused)) static int bx_rs_start(bx_rs_t *s, const char *const *extra,
                                               const char *password)
{
    static int registered;
    char port[16];
    const char *argv[32];
    int n = 0;

    if (!registered) {
        atexit(bx_rs_atexit);
        registered = 1;
    }
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/bx-redis.XXXXXX");
        if (!mkdtemp(s->dir))
            return -1;
        snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
        for (int i = 0; i < BX_RS_MAX; i++)
            if (!bx_rs_all[i]) {
                bx_rs_all[i] = s;
                break;
            }
    }
    if (!s->port)
        s->port = bx_rs_free_port();
    snprintf(port, sizeof(port), "%d", s->port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--unixsocket";
    argv[n++] = s->sock;
    argv[n++] = "--loglevel";
    argv[n++] = "warning";
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (bx_rs_ping(s, password))
            return 0;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        usleep(25000);
    }
    return -1;
}

/* Stops the server (SIGKILL: an outage, nothing saved). */
__attribute__((unused)) static void bx_rs_stop(bx_rs_t *s)
{
    bx_rs_kill(s, SIGKILL);
}

#endif
