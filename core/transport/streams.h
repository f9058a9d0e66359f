/*
 * streams.h - the long-lived sockets of one server, whatever they speak
 * (WebSocket in ws.c, EventSource in sse.c): a list per server, a periodic
 * timer (pings, keep-alive comments) and the close at server shutdown with
 * a grace period for sockets that will not drain.
 *
 * A transport keeps one `bx_streams_t *` list head for all servers; each
 * socket embeds a bx_stream_t. Nothing here is called from inside another
 * callback's caller: close() reports through `done` on a later loop turn.
 */
#ifndef BX_STREAMS_H
#define BX_STREAMS_H

#include <stddef.h>
#include <uv.h>
#include "base/list.h"
#include "net/conn.h"

struct bx_endpoint_s;
typedef struct bx_streams_s bx_streams_t;
typedef struct bx_stream_s bx_stream_t;

/* Embedded in each socket: links it into its server's set. */
struct bx_stream_s {
    bx_list_t link;             /* on set->streams */
    bx_streams_t *set;
    bx_conn_t *conn;            /* borrowed */
    uint64_t last_rx;           /* loop time of the last byte read (the
                                   transport sets it) or of the last ping */
};

/* Called for every stream of the set (never on a closing set). */
typedef void (*bx_stream_fn)(bx_stream_t *st);

/* The sockets of one server. */
struct bx_streams_s {
    bx_streams_t *next;         /* the transport's list of sets */
    struct bx_endpoint_s *s;      /* NULL once the server closes */
    uv_timer_t timer;           /* `tick`; at close, the grace period */
    bx_list_t streams;          /* of bx_stream_t, newest first */
    bx_stream_fn tick;
    uv_timer_t watch;           /* bx_streams_watch */
    uint64_t idle_ms;
    bx_stream_fn on_idle;
    size_t max_frame;           /* copied from the server's options */
    size_t max_output;
    int closing;
    void (*done)(void *ud);
    void *done_ud;
};

/* The set of `s` in `*list`, made on first use with a timer calling
 * tick(st) for every stream each `period` seconds (none when period <= 0).
 * Borrowed: it lives until the server closes and its last stream goes. */
bx_streams_t *bx_streams_get(bx_streams_t **list, struct bx_endpoint_s *s, double period,
                             bx_stream_fn tick);

/* Calls on_idle(st) for each stream of `set` silent (st->last_rx) for
 * `idle` seconds or more, checking every idle/4 s. The first call for a
 * set starts the check; later ones change nothing. idle <= 0: none. */
void bx_streams_watch(bx_streams_t *set, double idle, bx_stream_fn on_idle);

/* Adds `st` (its conn set by the caller) to `set`; st->last_rx = now. */
void bx_streams_add(bx_streams_t *set, bx_stream_t *st);

/* Removes `st` from its set, from the socket's close callback. The set of
 * a closed server is freed with its last stream (then `done` runs). */
void bx_streams_remove(bx_stream_t *st);

/* Whether the reader of `st` has fallen more than the server's max_output
 * bytes behind. If so the connection is dropped now (the others are not
 * slowed, memory stays bounded) and the reason logged, naming `kind`. */
int bx_stream_too_slow(bx_stream_t *st, const char *kind);

/* The server `s` is closing: its set leaves `*list`, `each(st)` runs for
 * every stream (unbind it, start closing it), and connections still open
 * after a grace period are dropped. Returns 0 if nothing was open, or 1 and
 * then calls done(ud) once, on a later loop turn, when all are freed. */
int bx_streams_close(bx_streams_t **list, struct bx_endpoint_s *s, bx_stream_fn each,
                     void (*done)(void *ud), void *ud);

#endif
