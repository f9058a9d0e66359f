/*
 * tls.h - TLS with OpenSSL over memory BIOs, for net/conn.c.
 *
 * A context (bx_tls_ctx_t) holds a certificate chain and its key, loaded
 * from two PEM files, and can load them again (SIGHUP): connections made
 * after a reload use the new certificate, existing ones keep the one they
 * began with (OpenSSL counts references to its SSL_CTX). A bad new file
 * leaves the old certificate in place.
 *
 * A session (bx_tls_t) is one connection's TLS state. It never touches a
 * socket: the caller feeds it the bytes read (bx_tls_feed), takes plaintext
 * out (bx_tls_read), hands it plaintext to send (bx_tls_write) and takes
 * the records to write (bx_tls_take). So the connection keeps its own
 * coalesced writes: everything sealed during one loop turn leaves in one
 * chunk.
 */
#ifndef BX_TLS_H
#define BX_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include "base/buf.h"

typedef struct bx_tls_ctx_s bx_tls_ctx_t;
typedef struct bx_tls_s bx_tls_t;

/* bx_tls_read's answers besides a byte count (> 0). */
enum {
    BX_TLS_WANT = 0,            /* nothing more until more input is fed */
    BX_TLS_EOF = -1,            /* the peer sent close_notify */
    BX_TLS_ERROR = -2,          /* handshake or record failure: close */
    BX_TLS_PLAIN_HTTP = -3      /* the peer spoke plain HTTP to a TLS port */
};

/* Returns a new server context (one reference) with the certificate chain
 * in `cert_file` and the private key in `key_file` (PEM; the paths are
 * copied for bx_tls_ctx_reload), or NULL with a message in `err`. */
bx_tls_ctx_t *bx_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                             size_t errlen);

/* Returns a new client context (one reference): servers' certificates are
 * checked against the CA certificates in `ca_file` (PEM), or the system's
 * when NULL. NULL with a message in `err` if the file cannot be loaded. */
bx_tls_ctx_t *bx_tls_client_ctx_new(const char *ca_file, char *err, size_t errlen);

/* Loads the context's files again. Returns 0, or -1 with a message in
 * `err` and the previous certificate kept. */
int bx_tls_ctx_reload(bx_tls_ctx_t *ctx, char *err, size_t errlen);

/* Reloads every live context, logging each failure (base/log.h) and each
 * success; returns the number that failed. For SIGHUP. */
int bx_tls_reload_all(void);

/* Adds / drops a reference; the last unref frees the context (sessions
 * already made keep what they need). NULL is ok for unref. */
bx_tls_ctx_t *bx_tls_ctx_ref(bx_tls_ctx_t *ctx);
void bx_tls_ctx_unref(bx_tls_ctx_t *ctx);

/* Returns a new server-side session of `ctx` (borrowed: the session needs
 * no reference to it). */
bx_tls_t *bx_tls_new(bx_tls_ctx_t *ctx);

/* Returns a new client-side session of `ctx` (borrowed) for `host` (a DNS
 * name, sent as SNI, or an IP address), whose certificate must name it.
 * The handshake starts at once: its first records wait in bx_tls_pending. */
bx_tls_t *bx_tls_new_client(bx_tls_ctx_t *ctx, const char *host);

/* Why the session failed ("certificate verify failed: ...") once
 * bx_tls_read answered BX_TLS_ERROR, else NULL. Borrowed from `t`. */
const char *bx_tls_error(const bx_tls_t *t);

/* Frees a session. NULL is ok. */
void bx_tls_free(bx_tls_t *t);

/* Hands the session `len` bytes read from the peer (copied). */
void bx_tls_feed(bx_tls_t *t, const void *data, size_t len);

/* Decrypts into `buf` (at most `cap` bytes); returns a byte count, or one
 * of the BX_TLS_* answers above. Also drives the handshake, which may
 * leave records to send (bx_tls_pending). */
ssize_t bx_tls_read(bx_tls_t *t, void *buf, size_t cap);

/* Seals `len` bytes of plaintext (all of them) into records. Returns 0,
 * 1 if the handshake has not finished yet (nothing was taken: try again
 * later), or -1 on a failure (close the connection). */
int bx_tls_write(bx_tls_t *t, const void *data, size_t len);

/* Queues a close_notify alert once the handshake has finished; does
 * nothing before that or the second time. */
void bx_tls_close_notify(bx_tls_t *t);

/* Whether a close_notify is still owed: the handshake has finished and
 * bx_tls_close_notify has not been called. */
int bx_tls_owes_close(const bx_tls_t *t);

/* Whether the handshake has finished. */
int bx_tls_ready(const bx_tls_t *t);

/* Bytes of records waiting to be sent. */
size_t bx_tls_pending(const bx_tls_t *t);

/* Takes every record waiting to be sent as one new chunk (one reference),
 * or NULL if there is none. */
bx_chunk_t *bx_tls_take(bx_tls_t *t);

#endif
