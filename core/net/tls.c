/*
 * tls.c - TLS with OpenSSL over memory BIOs (tls.h).
 *
 * Each session reads its records from one memory BIO (filled by
 * bx_tls_feed) and writes them to another (emptied by bx_tls_take), so
 * OpenSSL never blocks and never sees the socket. The contexts live on one
 * list for bx_tls_reload_all: the server is single-threaded.
 */
#include "net/tls.h"
#include "base/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bx_tls_ctx_s {
    SSL_CTX *ssl;               /* the current one; sessions hold their own */
    char *cert, *key;
    unsigned refs;
    bx_tls_ctx_t *next;         /* on `contexts` */
};

struct bx_tls_s {
    SSL *ssl;
    BIO *in, *out;              /* owned by ssl */
    char *error;                /* bx_tls_error */
};

static bx_tls_ctx_t *contexts;

/* The first error of OpenSSL's queue as text (the queue is emptied). */
static void ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char why[256] = "unknown error";

    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, file, why);
}

/* Browsers offer h2 first: answer http/1.1, the only protocol we speak,
 * instead of leaving ALPN unanswered. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char h1[] = "\x08http/1.1";
    unsigned char *sel;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *load(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *x;

    ERR_clear_error();
    x = SSL_CTX_new(TLS_server_method());
    if (!x) {
        ssl_error(err, errlen, "cannot create a TLS context for", cert);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    /* renegotiation only serves attacks (CPU, CVE-2009-3555) here */
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                           SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* an idle connection should not keep OpenSSL's 16 KB record buffers */
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(x, alpn_cb, NULL);
    if (SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
        ssl_error(err, errlen, "cannot load the certificate", cert);
        SSL_CTX_free(x);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, errlen, "cannot load the key", key);
        SSL_CTX_free(x);
        return NULL;
    }
    if (SSL_CTX_check_private_key(x) != 1) {
        ssl_error(err, errlen, "the key does not match the certificate in", key);
        SSL_CTX_free(x);
        return NULL;
    }
    return x;
}

bx_tls_ctx_t *bx_tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                             size_t errlen)
{
    SSL_CTX *x = load(cert_file, key_file, err, errlen);
    bx_tls_ctx_t *ctx;

    if (!x)
        return NULL;
    ctx = bx_calloc(1, sizeof(*ctx));
    ctx->ssl = x;
    ctx->cert = bx_strdup(cert_file);
    ctx->key = bx_strdup(key_file);
    ctx->refs = 1;
    ctx->next = contexts;
    contexts = ctx;
    return ctx;
}

bx_tls_ctx_t *bx_tls_client_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *x;
    bx_tls_ctx_t *ctx;

    ERR_clear_error();
    x = SSL_CTX_new(TLS_client_method());
    if (!x) {
        ssl_error(err, errlen, "cannot create a TLS context for", "a client");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
    if ((ca_file ? SSL_CTX_load_verify_locations(x, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(x)) != 1) {
        ssl_error(err, errlen, "cannot load the CA certificates", ca_file ? ca_file : "(system)");
        SSL_CTX_free(x);
        return NULL;
    }
    ctx = bx_calloc(1, sizeof(*ctx));
    ctx->ssl = x;
    ctx->refs = 1;              /* not on `contexts`: nothing to reload */
    return ctx;
}

int bx_tls_ctx_reload(bx_tls_ctx_t *ctx, char *err, size_t errlen)
{
    SSL_CTX *x;

    if (!ctx->cert) {
        snprintf(err, errlen, "a client context has no files to reload");
        return -1;
    }
    x = load(ctx->cert, ctx->key, err, errlen);
    if (!x)
        return -1;
    SSL_CTX_free(ctx->ssl);     /* sessions made from it hold a reference */
    ctx->ssl = x;
    return 0;
}

int bx_tls_reload_all(void)
{
    char err[512];
    int failed = 0;

    for (bx_tls_ctx_t *ctx = contexts; ctx; ctx = ctx->next) {
        if (bx_tls_ctx_reload(ctx, err, sizeof(err)) < 0) {
            bx_logf(BX_LOG_ERROR, "tls", "reload failed, keeping the old certificate: %s", err);
            failed++;
        } else {
            bx_logf(BX_LOG_INFO, "tls", "reloaded %s", ctx->cert);
        }
    }
    return failed;
}

bx_tls_ctx_t *bx_tls_ctx_ref(bx_tls_ctx_t *ctx)
{
    ctx->refs++;
    return ctx;
}

void bx_tls_ctx_unref(bx_tls_ctx_t *ctx)
{
    bx_tls_ctx_t **pp;

    if (!ctx || --ctx->refs > 0)
        return;
    for (pp = &contexts; *pp; pp = &(*pp)->next) {
        if (*pp == ctx) {
            *pp = ctx->next;
            break;
        }
    }
    SSL_CTX_free(ctx->ssl);
    free(ctx->cert);
    free(ctx->key);
    free(ctx);
}

bx_tls_t *bx_tls_new(bx_tls_ctx_t *ctx)
{
    bx_tls_t *t = bx_calloc(1, sizeof(*t));

    t->ssl = SSL_new(ctx->ssl);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        fprintf(stderr, "bayeux: out of memory (TLS session)\n");
        abort();
    }
    /* an empty input BIO means "wait for more", not end of file */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_accept_state(t->ssl);
    return t;
}

bx_tls_t *bx_tls_new_client(bx_tls_ctx_t *ctx, const char *host)
{
    bx_tls_t *t = bx_tls_new(ctx);
    X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);

    SSL_set_connect_state(t->ssl);
    /* an IP address is checked as one, and is not sent as SNI (RFC 6066) */
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
        ERR_clear_error();
        SSL_set_tlsext_host_name(t->ssl, host);
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    }
    ERR_clear_error();
    SSL_do_handshake(t->ssl);   /* the ClientHello, into the output BIO */
    ERR_clear_error();
    return t;
}

const char *bx_tls_error(const bx_tls_t *t)
{
    return t->error;
}

void bx_tls_free(bx_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);           /* and both BIOs */
    free(t->error);
    free(t);
}

void bx_tls_feed(bx_tls_t *t, const void *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        size_t n = len - done > 0x40000000 ? 0x40000000 : len - done;
        if (BIO_write(t->in, (const char *)data + done, (int)n) <= 0) {
            fprintf(stderr, "bayeux: out of memory (TLS input)\n");
            abort();
        }
        done += n;
    }
}

ssize_t bx_tls_read(bx_tls_t *t, void *buf, size_t cap)
{
    size_t got = 0;
    int rc;

    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, cap, &got) == 1)
        return (ssize_t)got;
    rc = SSL_get_error(t->ssl, 0);
    switch (rc) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return BX_TLS_WANT;
    case SSL_ERROR_ZERO_RETURN:
        return BX_TLS_EOF;
    default:
        rc = ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST ? BX_TLS_PLAIN_HTTP
                                                                    : BX_TLS_ERROR;
        if (!t->error) {
            char why[300] = "TLS failure";
            unsigned long e = ERR_peek_error();
            long v = SSL_get_verify_result(t->ssl);
            if (v != X509_V_OK)
                snprintf(why, sizeof(why), "certificate verify failed: %s",
                         X509_verify_cert_error_string(v));
            else if (e)
                ERR_error_string_n(e, why, sizeof(why));
            t->error = bx_strdup(why);
            bx_logf(BX_LOG_DEBUG, "tls", "connection failed: %s", why);
        }
        ERR_clear_error();
        return rc;
    }
}

int bx_tls_write(bx_tls_t *t, const void *data, size_t len)
{
    size_t done = 0;

    if (!SSL_is_init_finished(t->ssl))
        return 1;
    if (len == 0)
        return 0;
    ERR_clear_error();
    /* the output BIO grows as needed, so a write takes everything */
    if (SSL_write_ex(t->ssl, data, len, &done) == 1 && done == len)
        return 0;
    ERR_clear_error();
    return -1;
}

void bx_tls_close_notify(bx_tls_t *t)
{
    if (!bx_tls_owes_close(t))
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int bx_tls_owes_close(const bx_tls_t *t)
{
    return SSL_is_init_finished(t->ssl) && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN);
}

int bx_tls_ready(const bx_tls_t *t)
{
    return SSL_is_init_finished(t->ssl);
}

size_t bx_tls_pending(const bx_tls_t *t)
{
    return BIO_ctrl_pending(t->out);
}

bx_chunk_t *bx_tls_take(bx_tls_t *t)
{
    size_t n = BIO_ctrl_pending(t->out);
    bx_chunk_t *c;
    int got;

    if (n == 0)
        return NULL;
    c = bx_chunk_alloc(n);
    got = BIO_read(t->out, c->data, (int)n);
    c->len = got > 0 ? (size_t)got : 0;
    return c;
}
