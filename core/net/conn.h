/*
 * conn.h - one TCP connection on libuv: reading, coalesced output, close.
 *
 * Output written with bx_conn_write() is not sent at once: it is appended to
 * the connection's pending chunk list and the connection is marked dirty.
 * Right before the loop polls for I/O (a uv_prepare pass) every dirty
 * connection is flushed with ONE uv_write (writev) of all its pending chunks.
 * So everything produced for a connection during one loop iteration leaves
 * in one system call (../shared/reference/performance.md).
 *
 * Lifetime: a connection is freed only after its uv close callback. Code
 * running inside a connection's callback may call bx_conn_close(); the free
 * happens later. Callbacks never fire inside the call that started them.
 */
#ifndef BX_CONN_H
#define BX_CONN_H

#include <uv.h>
#include "base/buf.h"
#include "net/tls.h"

typedef struct bx_conn_s bx_conn_t;

/* Data arrived: `data` is borrowed for the duration of the call. A read
 * error or EOF is reported with len == 0 and status < 0 (UV_EOF on EOF);
 * the connection is being closed when that happens. */
typedef void (*bx_conn_read_cb)(bx_conn_t *c, void *ud, const char *data, size_t len,
                                int status);

/* The connection was closed and is about to be freed; called exactly once. */
typedef void (*bx_conn_close_cb)(bx_conn_t *c, void *ud);

/* Creates a connection around an accepted stream. `tcp` must have been
 * initialised on `loop` and accepted; the connection takes ownership of it
 * (it is closed and freed with the connection). Reading starts at once. */
bx_conn_t *bx_conn_new(uv_loop_t *loop, uv_tcp_t *tcp, bx_conn_read_cb on_read,
                       bx_conn_close_cb on_close, void *ud);

/* Makes `c` the server side of a TLS session of `ctx` (borrowed): the
 * bytes read are decrypted before the read callback sees them, and what is
 * written is sealed into records at the flush pass (one writev still).
 * Call right after bx_conn_new, before anything is written. A failed
 * handshake closes the connection (the read callback gets UV_EPROTO); the
 * peer's close_notify reads as EOF; close_after_write sends close_notify.
 * Bytes counted by bx_conn_pending_bytes are plaintext while queued and
 * records once sealed. */
void bx_conn_use_tls(bx_conn_t *c, bx_tls_ctx_t *ctx);

/* Makes `c` the client side of a TLS session of `ctx` (borrowed) with
 * `host` (checked against the server's certificate); otherwise as
 * bx_conn_use_tls. The handshake starts at the next flush pass. */
void bx_conn_use_tls_client(bx_conn_t *c, bx_tls_ctx_t *ctx, const char *host);

/* Why the TLS session of `c` failed, or NULL (none, or no failure).
 * Borrowed from `c`. */
const char *bx_conn_tls_error(const bx_conn_t *c);

/* Replaces the callbacks and their user data (used when a protocol takes
 * over a connection, e.g. an HTTP upgrade). */
void bx_conn_set_callbacks(bx_conn_t *c, bx_conn_read_cb on_read, bx_conn_close_cb on_close,
                           void *ud);

/* Queues chunks for output. bx_conn_write steals the caller's reference to
 * each entry of `cv` (the vector is left empty); bx_conn_write_chunk steals
 * one reference; bx_conn_write_copy copies the bytes. Writing to a closing
 * connection drops the data. */
void bx_conn_write(bx_conn_t *c, bx_chunkv_t *cv);
void bx_conn_write_chunk(bx_conn_t *c, bx_chunk_t *chunk);
void bx_conn_write_copy(bx_conn_t *c, const void *data, size_t len);

/* Bytes queued or in flight and not yet acknowledged by the kernel. */
size_t bx_conn_pending_bytes(const bx_conn_t *c);

/* Everything queued on the connection has been handed to the kernel. */
typedef void (*bx_conn_drain_cb)(bx_conn_t *c, void *ud);

/* Calls cb(c, ud) once, on a later loop turn, when no queued output is left
 * unwritten (the next flush pass if nothing is queued now). Replaces an
 * earlier request; cb == NULL cancels it. Never called once the connection
 * is closing: its close callback comes instead. Used to stream a body no
 * faster than the peer reads it. */
void bx_conn_when_drained(bx_conn_t *c, bx_conn_drain_cb cb, void *ud);

/* Stops / resumes reading (backpressure while a request is processed). */
void bx_conn_pause(bx_conn_t *c);
void bx_conn_resume(bx_conn_t *c);

/* Closes the connection once everything queued so far has been written
 * (graceful: used after a final response). */
void bx_conn_close_after_write(bx_conn_t *c);

/* Calls fn(ud) once when `c` is closed and freed, after its close callback,
 * whoever owns it by then (bx_conn_set_callbacks leaves it in place): the
 * HTTP server counts connections per address through hijacks with it.
 * One per connection; a later call replaces it. */
void bx_conn_on_free(bx_conn_t *c, void (*fn)(void *ud), void *ud);

/* Closes now, dropping any pending output. Idempotent. */
void bx_conn_close(bx_conn_t *c);

/* Whether the connection is closing or closed. */
int bx_conn_is_closing(const bx_conn_t *c);

/* The loop `c` runs on. */
uv_loop_t *bx_conn_loop(const bx_conn_t *c);

/* The peer's address as "ip:port" ("[ip]:port" for IPv6). Borrowed: a
 * static buffer, valid until the next call; copy it to keep it. */
const char *bx_conn_peer(const bx_conn_t *c);

/* The peer's IP address only ("" if unknown). Borrowed, as bx_conn_peer. */
const char *bx_conn_peer_ip(const bx_conn_t *c);

/* Flushes every dirty connection of `loop` now. Normally the prepare pass
 * does it; this is for shutdown paths. */
void bx_conn_flush_all(uv_loop_t *loop);

/* Number of live connections (for tests and stats). */
size_t bx_conn_count(void);

/* Number of uv_write calls issued so far by every connection (for tests and
 * stats: with coalescing it grows by at most one per connection per loop
 * iteration). */
uint64_t bx_conn_write_calls(void);

/* Closes the module's per-loop handles (the prepare pass). Call after every
 * connection of `loop` has been closed, before uv_loop_close(); they are
 * created again on demand. */
void bx_conn_cleanup(uv_loop_t *loop);

#endif
