/*
 * metrics.h - the process's counters, read by the Prometheus exposition
 * (core/metrics.c) and the monitor.
 *
 * One plain struct per process, incremented in place by every level: no
 * locks (one loop thread), no allocation, no lookups, so counting costs a
 * memory increment where it happens. Gauges are read where they are
 * kept (the engine's counts, the open sockets) when they are exposed.
 * Several servers in one process share the counters.
 */
#ifndef BX_METRICS_H
#define BX_METRICS_H

#include <stdint.h>

/* The Bayeux message kinds errors are counted by. */
enum {
    BX_MK_HANDSHAKE, BX_MK_CONNECT, BX_MK_SUBSCRIBE, BX_MK_UNSUBSCRIBE, BX_MK_DISCONNECT,
    BX_MK_PUBLISH, BX_MK_COUNT
};

/* The error codes counted one by one; any other lands in the last slot. */
#define BX_METRIC_CODES { 301, 400, 401, 402, 403, 404, 405, 407, 500, 503 }
#define BX_METRIC_NCODES 11

typedef struct {
    /* net/conn.c: TCP */
    uint64_t conns_accepted;
    uint64_t bytes_in, bytes_out;
    /* net/http.c */
    uint64_t http_requests;
    /* transport/: sockets opened by kind (open now: bx_ws_count()...) */
    uint64_t ws_opened, sse_opened;
    uint64_t slow_readers;      /* sockets dropped past max_output */
    /* bayeux/: messages */
    uint64_t messages_received; /* every Bayeux message in a request */
    uint64_t messages_in;       /* publishes accepted */
    uint64_t messages_out;      /* messages handed to connections */
    uint64_t handshakes;        /* successful */
    uint64_t errors[BX_MK_COUNT][BX_METRIC_NCODES];
    /* lua/: extensions */
    uint64_t ext_calls;         /* messages through an extension chain */
    uint64_t ext_ns;            /* time spent in them (C to Lua and back) */
    uint64_t ext_errors;        /* raised, called back twice, missed deadline */
    /* the loop: lag of a 1 s timer */
    uint64_t lag_samples, lag_ns_sum, lag_ns_last, lag_ns_max;
    /* engine/redis.c */
    uint64_t redis_commands;    /* commands answered (latency samples) */
    uint64_t redis_ns_sum;
    uint64_t redis_reconnects;  /* a lost connection made again */
    uint64_t redis_down;        /* shards unreachable now */
} bx_metrics_t;

extern bx_metrics_t bx_metrics;

/* The slot of `code` in errors[kind]. */
int bx_metrics_code_slot(int code);

/* The code of a slot (0 for the last, "other"). */
int bx_metrics_slot_code(int slot);

#endif
