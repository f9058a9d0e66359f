/*
 * workers.h - `bayeux serve --workers N`: a parent that keeps N server
 * processes running on one port (workers.c).
 */
#ifndef BX_WORKERS_H
#define BX_WORKERS_H

#include <uv.h>

/* Reserves host:port (0 = a free port) with SO_REUSEPORT, then runs N
 * copies of the command `argv` (NULL-terminated, borrowed), each given
 * "--port P --reuse-port" after its own arguments, on `loop` until SIGTERM
 * or SIGINT: a worker that exits is logged and started again; the signal
 * is passed to every worker and the call returns once they are all gone;
 * SIGHUP is passed on (each worker reloads its TLS certificate).
 * Returns 0, or a negative libuv error (nothing started) with a message
 * in `err`. */
int bx_workers_run(uv_loop_t *loop, const char *const *argv, int n, const char *host,
                   int port, char *err, size_t errlen);

#endif
