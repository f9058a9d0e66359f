/*
 * test_tls.c - HTTPS: the HTTP server with a TLS context (net/tls.h,
 * net/conn.h) against a real OpenSSL client over loopback sockets.
 *
 * The server runs on the test's loop; each client is a thread with
 * blocking sockets (a receive timeout bounds every wait), so it can speak
 * TLS with the plain OpenSSL API. The thread tells the loop it is done
 * through a uv_async. Certificates are made here with the OpenSSL C API:
 * self-signed, for IP 127.0.0.1, which the client trusts and checks.
 */
#include "bx_test.h"
#include "base/buf.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define BIG (1024 * 1024 + 17)      /* one response body, over many records */
#define FILE_SIZE (3 * 1024 * 1024 + 5)

static char dir[64];
static char cert1[96], key1[96], cert2[96], key2[96], certf[96], keyf[96], bigfile[96];

/* ---- Certificates ---- */

static void write_cert(const char *cpath, const char *kpath, const char *cn, long serial)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *nm;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    FILE *f;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, pk, EVP_sha256());
    f = fopen(cpath, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(kpath, "w");
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    size_t n;
    FILE *a = fopen(from, "r"), *b = fopen(to, "w");

    while ((n = fread(buf, 1, sizeof(buf), a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static void make_files(void)
{
    FILE *f;

    snprintf(dir, sizeof(dir), "/tmp/bx_tls_XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(cert1, sizeof(cert1), "%s/one.crt", dir);
    snprintf(key1, sizeof(key1), "%s/one.key", dir);
    snprintf(cert2, sizeof(cert2), "%s/two.crt", dir);
    snprintf(key2, sizeof(key2), "%s/two.key", dir);
    snprintf(certf, sizeof(certf), "%s/served.crt", dir);
    snprintf(keyf, sizeof(keyf), "%s/served.key", dir);
    snprintf(bigfile, sizeof(bigfile), "%s/big.bin", dir);
    write_cert(cert1, key1, "one", 1);
    write_cert(cert2, key2, "two", 2);
    copy_file(cert1, certf);
    copy_file(key1, keyf);
    f = fopen(bigfile, "w");
    for (long i = 0; i < FILE_SIZE; i++)
        fputc('a' + (int)(i % 26), f);
    fclose(f);
}

static void remove_files(void)
{
    const char *files[] = { cert1, key1, cert2, key2, certf, keyf, bigfile };

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++)
        unlink(files[i]);
    rmdir(dir);
}

/* ---- The server ---- */

static int path_is(const bx_http_req_t *req, const char *p)
{
    return req->path.len == strlen(p) && memcmp(req->path.base, p, req->path.len) == 0;
}

static struct {
    uv_loop_t loop;
    bx_http_server_t *s;
    bx_tls_ctx_t *ctx;
    int port;
    int done;
    uv_async_t async;
    uv_timer_t timer;
    int client_done;
} S;

static void on_request(void *ud, bx_http_req_t *req)
{
    (void)ud;
    if (path_is(req, "/big")) {
        bx_chunk_t *c = bx_chunk_alloc(BIG);
        bx_chunkv_t body = BX_CHUNKV_INIT;
        for (size_t i = 0; i < BIG; i++)
            c->data[i] = (char)('A' + i % 26);
        bx_chunkv_push_new(&body, c);
        bx_http_respond(req, 200, "Content-Type: application/octet-stream\r\n", &body, 0);
    } else if (path_is(req, "/file")) {
        bx_http_respond_file(req, 200, "Content-Type: application/octet-stream\r\n", bigfile, 0);
    } else if (path_is(req, "/echo")) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", req->body.len);
        bx_http_respond_text(req, 200, "text/plain", n, 0);
    } else {
        bx_http_respond_text(req, 200, "text/plain", "hello", 0);
    }
}

static void on_abort(void *ud, bx_http_req_t *req)
{
    (void)ud;
    (void)req;
}

static void server_done(void *ud)
{
    (void)ud;
    S.done = 1;
}

static void start_server(const bx_http_limits_t *lim)
{
    char err[512];

    memset(&S, 0, sizeof(S));
    uv_loop_init(&S.loop);
    S.ctx = bx_tls_ctx_new(certf, keyf, err, sizeof(err));
    if (!S.ctx)
        printf("# %s\n", err);
    BX_CHECK(S.ctx != NULL);
    S.s = bx_http_server_new(&S.loop, lim, on_request, on_abort, NULL);
    bx_http_server_set_tls(S.s, S.ctx);
    BX_CHECK_INT(bx_http_listen(S.s, "127.0.0.1", 0), 0);
    S.port = bx_http_port(S.s);
}

static void stop_timer_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void stop_server(void)
{
    bx_http_server_close(S.s, server_done, NULL);
    uv_timer_init(&S.loop, &S.timer);
    uv_timer_start(&S.timer, stop_timer_cb, 5000, 0);
    while (!S.done || bx_conn_count())
        if (!uv_run(&S.loop, UV_RUN_ONCE) || !uv_is_active((uv_handle_t *)&S.timer))
            break;
    BX_CHECK(S.done);
    BX_CHECK_INT(bx_conn_count(), 0);
    uv_close((uv_handle_t *)&S.timer, NULL);
    bx_tls_ctx_unref(S.ctx);
    bx_conn_cleanup(&S.loop);
    BX_LOOP_CLOSE(&S.loop);
}

static void async_cb(uv_async_t *a)
{
    if (S.client_done)
        uv_stop(a->loop);
}

/* Runs the server's loop while `fn` runs as a client in its own thread. */
static void run_client(void (*fn)(void))
{
    pthread_t th;

    S.client_done = 0;
    uv_async_init(&S.loop, &S.async, async_cb);
    pthread_create(&th, NULL, (void *(*)(void *))(void (*)(void))fn, NULL);
    while (!__atomic_load_n(&S.client_done, __ATOMIC_SEQ_CST))
        uv_run(&S.loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    uv_close((uv_handle_t *)&S.async, NULL);
    uv_run(&S.loop, UV_RUN_NOWAIT);
}

static void client_finished(void)
{
    __atomic_store_n(&S.client_done, 1, __ATOMIC_SEQ_CST);
    uv_async_send(&S.async);
}

/* ---- The client (runs in its thread) ---- */

static int tcp_connect(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct timeval tv = { .tv_sec = 10 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A client context trusting `ca` (the served certificate), at most TLS
 * `maxv` (0: any). */
static SSL_CTX *client_ctx(const char *ca, int maxv)
{
    SSL_CTX *cx = SSL_CTX_new(TLS_client_method());

    SSL_CTX_set_verify(cx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_load_verify_locations(cx, ca, NULL);
    if (maxv)
        SSL_CTX_set_max_proto_version(cx, maxv);
    return cx;
}

/* Connects and completes the handshake, checking the certificate; NULL if
 * that fails. */
static SSL *tls_open(SSL_CTX *cx, int port)
{
    int fd = tcp_connect(port);
    SSL *ssl;

    if (fd < 0)
        return NULL;
    ssl = SSL_new(cx);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void tls_close(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);

    SSL_free(ssl);
    close(fd);
}

/* The CN of the certificate the server presented ("" if none). */
static void peer_cn(SSL *ssl, char *out, size_t len)
{
    X509 *x = SSL_get1_peer_certificate(ssl);

    out[0] = '\0';
    if (x) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
        X509_free(x);
    }
}

/* Sends a request and reads one answer with a Content-Length body into
 * `body`; returns the status, or -1. */
static int https_request(SSL *ssl, const char *req, size_t reqlen, bx_buf_t *body)
{
    bx_buf_t in = BX_BUF_INIT;
    char *end;
    size_t want = 0, head;
    int status = -1, n;

    bx_buf_reset(body);
    if (SSL_write(ssl, req, (int)reqlen) != (int)reqlen)
        return -1;
    for (;;) {
        char *p = bx_buf_reserve(&in, 65536);
        n = SSL_read(ssl, p, 65536);
        if (n <= 0)
            goto out;
        in.len += (size_t)n;
        bx_buf_reserve(&in, 1);
        in.data[in.len] = '\0';
        if ((end = strstr(in.data, "\r\n\r\n")) != NULL)
            break;
    }
    head = (size_t)(end + 4 - in.data);
    sscanf(in.data, "HTTP/1.1 %d", &status);
    char *cl = strcasestr(in.data, "content-length:");
    if (!cl || cl > end)
        goto fail;
    want = strtoul(cl + 15, NULL, 10);
    while (in.len - head < want) {
        char *p = bx_buf_reserve(&in, 65536);
        n = SSL_read(ssl, p, 65536);
        if (n <= 0)
            goto fail;
        in.len += (size_t)n;
    }
    bx_buf_append(body, in.data + head, want);
    goto out;
fail:
    status = -1;
out:
    bx_buf_free(&in);
    return status;
}

static int https_get(SSL *ssl, const char *path, bx_buf_t *body)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);

    return https_request(ssl, req, (size_t)n, body);
}

static int body_is(const bx_buf_t *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

/* ---- Tests ---- */

static void cl_get(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    SSL *ssl = tls_open(cx, S.port);
    bx_buf_t body = BX_BUF_INIT;
    char cn[64];

    BX_CHECK(ssl != NULL);
    if (ssl) {
        peer_cn(ssl, cn, sizeof(cn));
        BX_CHECK_STR(cn, "one");
        BX_CHECK_INT(https_get(ssl, "/", &body), 200);
        BX_CHECK(body_is(&body, "hello"));
        /* keep-alive: a second request on the same session */
        BX_CHECK_INT(https_get(ssl, "/again", &body), 200);
        BX_CHECK(body_is(&body, "hello"));
        /* ALPN: the server picks http/1.1 even when h2 is offered first */
        tls_close(ssl);
    }
    /* Connection: close ends with close_notify, a clean TLS close */
    ssl = tls_open(cx, S.port);
    BX_CHECK(ssl != NULL);
    if (ssl) {
        static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        char b[64];
        BX_CHECK_INT(https_request(ssl, req, sizeof(req) - 1, &body), 200);
        BX_CHECK_INT(SSL_read(ssl, b, sizeof(b)), 0);
        BX_CHECK_INT(SSL_get_error(ssl, 0), SSL_ERROR_ZERO_RETURN);
        tls_close(ssl);
    }
    bx_buf_free(&body);
    SSL_CTX_free(cx);
    client_finished();
}

static void test_get(void)
{
    start_server(NULL);
    run_client(cl_get);
    stop_server();
}

static void cl_alpn(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    static const unsigned char protos[] = "\x02h2\x08http/1.1";
    const unsigned char *sel = NULL;
    unsigned len = 0;
    SSL *ssl;

    SSL_CTX_set_alpn_protos(cx, protos, sizeof(protos) - 1);
    ssl = tls_open(cx, S.port);
    BX_CHECK(ssl != NULL);
    if (ssl) {
        SSL_get0_alpn_selected(ssl, &sel, &len);
        BX_CHECK_INT(len, 8);
        BX_CHECK(sel && memcmp(sel, "http/1.1", 8) == 0);
        tls_close(ssl);
    }
    SSL_CTX_free(cx);
    client_finished();
}

static void test_alpn(void)
{
    start_server(NULL);
    run_client(cl_alpn);
    stop_server();
}

static void cl_large(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    SSL *ssl = tls_open(cx, S.port);
    bx_buf_t body = BX_BUF_INIT, req = BX_BUF_INIT;
    int ok = 1;

    BX_CHECK(ssl != NULL);
    if (ssl) {
        BX_CHECK_INT(https_get(ssl, "/big", &body), 200);
        BX_CHECK_INT(body.len, BIG);
        for (size_t i = 0; i < body.len && ok; i++)
            ok = body.data[i] == (char)('A' + i % 26);
        BX_CHECK(ok);
        /* a file streamed no faster than the peer reads (when_drained) */
        BX_CHECK_INT(https_get(ssl, "/file", &body), 200);
        BX_CHECK_INT(body.len, FILE_SIZE);
        for (size_t i = 0; i < body.len && ok; i++)
            ok = body.data[i] == (char)('a' + i % 26);
        BX_CHECK(ok);
        /* a large upload, in many records */
        bx_buf_printf(&req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                      700000);
        char *p = bx_buf_reserve(&req, 700000);
        memset(p, 'z', 700000);
        req.len += 700000;
        BX_CHECK_INT(https_request(ssl, req.data, req.len, &body), 200);
        BX_CHECK(body_is(&body, "700000"));
        tls_close(ssl);
    }
    bx_buf_free(&body);
    bx_buf_free(&req);
    SSL_CTX_free(cx);
    client_finished();
}

static void test_large(void)
{
    start_server(NULL);
    run_client(cl_large);
    stop_server();
}

static SSL *reload_keep;

static void cl_reload_before(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    bx_buf_t body = BX_BUF_INIT;
    char cn[64];

    reload_keep = tls_open(cx, S.port);
    BX_CHECK(reload_keep != NULL);
    if (reload_keep) {
        peer_cn(reload_keep, cn, sizeof(cn));
        BX_CHECK_STR(cn, "one");
        BX_CHECK_INT(https_get(reload_keep, "/", &body), 200);
    }
    bx_buf_free(&body);
    SSL_CTX_free(cx);           /* the session keeps what it needs */
    client_finished();
}

static void cl_reload_after(void)
{
    SSL_CTX *cx = client_ctx(cert2, 0);
    bx_buf_t body = BX_BUF_INIT;
    SSL *ssl = tls_open(cx, S.port);
    char cn[64];

    /* a new connection gets the new certificate */
    BX_CHECK(ssl != NULL);
    if (ssl) {
        peer_cn(ssl, cn, sizeof(cn));
        BX_CHECK_STR(cn, "two");
        BX_CHECK_INT(https_get(ssl, "/", &body), 200);
        tls_close(ssl);
    }
    /* the one made before goes on with the old */
    if (reload_keep) {
        peer_cn(reload_keep, cn, sizeof(cn));
        BX_CHECK_STR(cn, "one");
        BX_CHECK_INT(https_get(reload_keep, "/still", &body), 200);
        BX_CHECK(body_is(&body, "hello"));
        tls_close(reload_keep);
        reload_keep = NULL;
    }
    bx_buf_free(&body);
    SSL_CTX_free(cx);
    client_finished();
}

static void test_reload(void)
{
    char err[512];
    FILE *f;

    start_server(NULL);
    run_client(cl_reload_before);
    copy_file(cert2, certf);
    copy_file(key2, keyf);
    BX_CHECK_INT(bx_tls_reload_all(), 0);
    run_client(cl_reload_after);
    /* a broken file: the reload fails and the certificate stays */
    f = fopen(certf, "w");
    fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n", f);
    fclose(f);
    err[0] = '\0';
    BX_CHECK_INT(bx_tls_ctx_reload(S.ctx, err, sizeof(err)), -1);
    BX_CHECK(strstr(err, "served.crt") != NULL);
    BX_CHECK_INT(bx_tls_reload_all(), 1);
    run_client(cl_reload_after);
    /* a key that does not match the certificate */
    copy_file(cert2, certf);
    copy_file(key1, keyf);
    BX_CHECK_INT(bx_tls_ctx_reload(S.ctx, err, sizeof(err)), -1);
    BX_CHECK(strstr(err, "served.key") != NULL);
    run_client(cl_reload_after);
    copy_file(cert1, certf);
    copy_file(key1, keyf);
    stop_server();
    /* a bad file at start: no context, a message */
    BX_CHECK(bx_tls_ctx_new(bigfile, key1, err, sizeof(err)) == NULL);
    BX_CHECK(strstr(err, "big.bin") != NULL);
}

/* Reads until EOF or error; returns the bytes read (into out, if room). */
static size_t read_all(int fd, char *out, size_t cap, int *closed)
{
    size_t got = 0;
    char tmp[4096];
    ssize_t n;

    *closed = 0;
    while ((n = read(fd, tmp, sizeof(tmp))) > 0) {
        size_t k = (size_t)n < cap - got ? (size_t)n : cap - got;
        memcpy(out + got, tmp, k);
        got += k;
    }
    /* EOF or a reset is a close; a timeout (EAGAIN) is not */
    *closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    return got;
}

static void expect_served(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    SSL *ssl = tls_open(cx, S.port);
    bx_buf_t body = BX_BUF_INIT;

    BX_CHECK(ssl != NULL);
    if (ssl) {
        BX_CHECK_INT(https_get(ssl, "/", &body), 200);
        tls_close(ssl);
    }
    bx_buf_free(&body);
    SSL_CTX_free(cx);
}

static void cl_plain(void)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    char out[1024] = "";
    int closed, fd = tcp_connect(S.port);

    BX_CHECK(fd >= 0);
    BX_CHECK(write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1);
    read_all(fd, out, sizeof(out) - 1, &closed);
    BX_CHECK(closed);
    BX_CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
    BX_CHECK(strstr(out, "HTTPS") != NULL);
    close(fd);
    /* garbage that is not even HTTP */
    fd = tcp_connect(S.port);
    BX_CHECK(write(fd, "\x16\x03\x01\x00\x05zzzzz", 10) == 10);
    read_all(fd, out, sizeof(out) - 1, &closed);
    BX_CHECK(closed);
    close(fd);
    expect_served();
    client_finished();
}

static void test_plain_http_and_garbage(void)
{
    start_server(NULL);
    run_client(cl_plain);
    stop_server();
}

/* The first bytes of a real ClientHello, from a client on memory BIOs. */
static size_t client_hello(unsigned char *out, size_t cap)
{
    SSL_CTX *cx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(cx);
    BIO *in = BIO_new(BIO_s_mem()), *o = BIO_new(BIO_s_mem());
    int n;

    SSL_set_bio(ssl, in, o);
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl);
    n = BIO_read(o, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(cx);
    return n > 0 ? (size_t)n : 0;
}

static void cl_stall(void)
{
    unsigned char hello[2048];
    size_t n = client_hello(hello, sizeof(hello)), sent = 0;
    struct timeval tv = { .tv_usec = 100000 };
    int fd = tcp_connect(S.port), closed = 0;
    char tmp[64];

    BX_CHECK(n > 100);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* one byte every 100 ms, never the last: the handshake never ends;
     * the idle timeout (0.3 s) must close it long before the bytes run out */
    while (sent + 1 < n && !closed) {
        if (write(fd, hello + sent, 1) != 1)
            break;
        sent++;
        read_all(fd, tmp, sizeof(tmp), &closed);
    }
    BX_CHECK(closed);
    BX_CHECK(sent + 1 < n);
    close(fd);
    /* a peer that goes away mid-handshake */
    fd = tcp_connect(S.port);
    BX_CHECK(write(fd, hello, 40) == 40);
    close(fd);
    expect_served();
    client_finished();
}

static void test_stalled_handshake(void)
{
    bx_http_limits_t lim = { .idle_timeout = 0.3 };

    start_server(&lim);
    run_client(cl_stall);
    stop_server();
}

static void cl_renegotiate(void)
{
    SSL_CTX *cx = client_ctx(cert1, TLS1_2_VERSION);
    SSL *ssl = tls_open(cx, S.port);
    bx_buf_t body = BX_BUF_INIT;

    BX_CHECK(ssl != NULL);
    if (ssl) {
        BX_CHECK_INT(SSL_version(ssl), TLS1_2_VERSION);
        BX_CHECK_INT(https_get(ssl, "/", &body), 200);
        /* the server refuses: the renegotiation does not complete */
        SSL_renegotiate(ssl);
        BX_CHECK(SSL_do_handshake(ssl) != 1 || https_get(ssl, "/", &body) != 200 ||
                 SSL_renegotiate_pending(ssl));
        ERR_clear_error();
        tls_close(ssl);
    }
    bx_buf_free(&body);
    SSL_CTX_free(cx);
    expect_served();
    client_finished();
}

static void test_renegotiation(void)
{
    start_server(NULL);
    run_client(cl_renegotiate);
    stop_server();
}

static void cl_refused(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    SSL *a = tls_open(cx, S.port);
    bx_buf_t body = BX_BUF_INIT;
    char out[256];
    int closed, fd;

    BX_CHECK(a != NULL);
    if (a)
        BX_CHECK_INT(https_get(a, "/", &body), 200);
    /* over max_conns_per_addr: refused (a 429 waiting for a handshake that
     * never comes); the server must not keep it open */
    fd = tcp_connect(S.port);
    BX_CHECK(fd >= 0);
    read_all(fd, out, sizeof(out), &closed);
    BX_CHECK(closed);
    close(fd);
    /* one that does handshake reads the refusal */
    SSL *b = tls_open(cx, S.port);
    BX_CHECK(b != NULL);
    if (b) {
        int n = SSL_read(b, out, sizeof(out) - 1);
        BX_CHECK(n > 0 && strncmp(out, "HTTP/1.1 429 ", 13) == 0);
        tls_close(b);
    }
    if (a)
        tls_close(a);
    bx_buf_free(&body);
    SSL_CTX_free(cx);
    client_finished();
}

/* A refused connection (max_conns_per_addr) is closed after its answer
 * even when its peer never sends a handshake to carry it. */
static void test_refused_without_handshake(void)
{
    bx_http_limits_t lim = { .max_conns_per_addr = 1 };

    start_server(&lim);
    run_client(cl_refused);
    stop_server();
}

static int conns_seen;

static void cl_no_close_notify(void)
{
    SSL_CTX *cx = client_ctx(cert1, 0);
    SSL *ssl = tls_open(cx, S.port);
    static const char part[] = "GET / HTTP/1.1\r\nHo";

    BX_CHECK(ssl != NULL);
    if (ssl) {
        /* half a request, then the socket closes without close_notify */
        SSL_write(ssl, part, sizeof(part) - 1);
        close(SSL_get_fd(ssl));
        SSL_free(ssl);
    }
    ssl = tls_open(cx, S.port);
    BX_CHECK(ssl != NULL);
    if (ssl) {
        bx_buf_t body = BX_BUF_INIT;
        BX_CHECK_INT(https_get(ssl, "/", &body), 200);
        close(SSL_get_fd(ssl));     /* after an answer: no close_notify either */
        SSL_free(ssl);
        bx_buf_free(&body);
    }
    SSL_CTX_free(cx);
    client_finished();
}

static void count_timer_cb(uv_timer_t *t)
{
    if (bx_conn_count() == 0)
        uv_stop(t->loop);
}

static void test_no_close_notify(void)
{
    uv_timer_t t;

    start_server(NULL);
    run_client(cl_no_close_notify);
    /* both connections are gone from the server, without a timeout */
    uv_timer_init(&S.loop, &t);
    uv_timer_start(&t, count_timer_cb, 10, 10);
    conns_seen = 0;
    for (int i = 0; i < 500 && bx_conn_count() > 0; i++)
        uv_run(&S.loop, UV_RUN_ONCE);
    BX_CHECK_INT(bx_conn_count(), 0);
    uv_close((uv_handle_t *)&t, NULL);
    stop_server();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    make_files();
    BX_RUN(test_get);
    BX_RUN(test_alpn);
    BX_RUN(test_large);
    BX_RUN(test_reload);
    BX_RUN(test_plain_http_and_garbage);
    BX_RUN(test_stalled_handshake);
    BX_RUN(test_renegotiation);
    BX_RUN(test_no_close_notify);
    BX_RUN(test_refused_without_handshake);
    remove_files();
    return BX_REPORT();
}
