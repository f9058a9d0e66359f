/*
 * longpoll.c - Bayeux over HTTP requests (see longpoll.h). The router
 * (router.c) decides which requests come here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/sha.h>
#include "base/json.h"
#include "transport/longpoll.h"
#include "bayeux/protocol.h"
#include "transport/endpoint.h"
#include "engine/engine.h"

typedef struct {
    bx_endpoint_t *server;
    bx_http_req_t *req;
    bx_batch_t *batch;
    char *jsonp;                /* callback name, or NULL for JSON */
    char set_browser[65];       /* a new browser id for the Set-Cookie of
                                   this answer, or "" */
} poll_t;

static const char json_headers[] =
    "Content-Type: application/json; charset=utf-8\r\n"
    "Cache-Control: no-cache, no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n";

static const char jsonp_headers[] =
    "Content-Type: text/javascript; charset=utf-8\r\n"
    "Content-Disposition: attachment; filename=f.txt\r\n"
    "Cache-Control: no-cache, no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n";

/* ---- Helpers ---- */

int bx_longpoll_owns(const char *mount, const char *path, size_t len)
{
    size_t m = strlen(mount);
    if (len < m || memcmp(path, mount, m) != 0)
        return 0;
    if (len == m || path[m] == '/')
        return 1;
    /* "<mount>.ext" with a single extension (so /bayeux.x.y is the app's) */
    return path[m] == '.' && len > m + 1 && !memchr(path + m + 1, '.', len - m - 1);
}

static void bad_request(bx_http_req_t *req)
{
    bx_http_respond_text(req, 400, "text/plain; charset=utf-8", "Bad request", 0);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes application/x-www-form-urlencoded `s` ('+' is a space) into a
 * new NUL-terminated string; *outlen gets its length. */
static char *form_decode(const char *s, size_t n, size_t *outlen)
{
    char *out = bx_malloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[j++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
                   hexval(s[i + 2]) >= 0) {
            out[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    *outlen = j;
    return out;
}

/* Finds the first value of `key` in a form/query string; returns a new
 * decoded string or NULL. */
static char *form_get(const char *s, size_t n, const char *key, size_t *vlen)
{
    size_t klen = strlen(key), i = 0;
    while (i <= n) {
        const char *amp = memchr(s + i, '&', n - i);
        size_t end = amp ? (size_t)(amp - s) : n;
        const char *eq = memchr(s + i, '=', end - i);
        size_t kend = eq ? (size_t)(eq - s) : end;
        size_t dk;
        char *k = form_decode(s + i, kend - i, &dk);
        int match = dk == klen && memcmp(k, key, klen) == 0;
        free(k);
        if (match) {
            size_t vs = eq ? kend + 1 : end;
            return form_decode(s + vs, end - vs, vlen);
        }
        if (!amp)
            break;
        i = end + 1;
    }
    return NULL;
}

int bx_longpoll_valid_callback(const char *s, size_t n)
{
    /* identifier ( "." identifier )*, identifier = [A-Za-z_$][A-Za-z0-9_$]* */
    size_t i = 0;
    if (n == 0)
        return 0;
    for (;;) {
        unsigned char c = (unsigned char)s[i];
        if (!(c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
        for (i++; i < n; i++) {
            c = (unsigned char)s[i];
            if (!(c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9')))
                break;
        }
        if (i == n)
            return 1;
        if (s[i] != '.' || ++i == n)
            return 0;
    }
}

/* CORS headers for a request that carries Origin. */
static void cors_headers(bx_buf_t *h, const bx_http_req_t *req)
{
    const bx_str_t *origin = bx_http_header(req, "Origin");
    if (!origin)
        return;
    bx_buf_puts(h, "Access-Control-Allow-Credentials: true\r\n");
    bx_buf_puts(h, "Access-Control-Allow-Origin: ");
    bx_buf_append(h, origin->base, origin->len);
    bx_buf_puts(h, "\r\n");
}

/* ---- Replies ---- */

/* JavaScript strings cannot hold raw U+2028/U+2029: escape them for JSONP. */
static void escape_js_separators(bx_chunkv_t *body)
{
    for (size_t i = 0; i < body->n; i++) {
        bx_chunk_t *c = body->v[i];
        if (!memmem(c->data, c->len, "\xe2\x80\xa8", 3) &&
            !memmem(c->data, c->len, "\xe2\x80\xa9", 3))
            continue;
        bx_buf_t b = BX_BUF_INIT;
        for (size_t j = 0; j < c->len; j++) {
            if (j + 2 < c->len && (unsigned char)c->data[j] == 0xe2 &&
                (unsigned char)c->data[j + 1] == 0x80 &&
                ((unsigned char)c->data[j + 2] == 0xa8 ||
                 (unsigned char)c->data[j + 2] == 0xa9)) {
                bx_buf_puts(&b, (unsigned char)c->data[j + 2] == 0xa8 ? "\\u2028" : "\\u2029");
                j += 2;
            } else {
                bx_buf_append(&b, c->data + j, 1);
            }
        }
        /* a private copy: the shared chunk is never modified */
        body->v[i] = bx_chunk_from_buf(&b);
        bx_buf_free(&b);
        bx_chunk_unref(c);
    }
}

static void poll_free(poll_t *p)
{
    free(p->jsonp);
    free(p);
}

static void on_reply(void *ud, bx_chunkv_t *reply, size_t nmsgs)
{
    poll_t *p = ud;
    bx_buf_t h = BX_BUF_INIT;
    bx_chunkv_t body = BX_CHUNKV_INIT;

    if (p->jsonp) {
        bx_buf_t pre = BX_BUF_INIT;
        bx_buf_printf(&pre, "/**/%s(", p->jsonp);
        bx_chunkv_push_new(&body, bx_chunk_from_buf(&pre));
        bx_buf_free(&pre);
        escape_js_separators(reply);
        bx_chunkv_move(&body, reply);
        bx_chunkv_push_new(&body, bx_chunk_new(");", 2));
        bx_buf_puts(&h, jsonp_headers);
    } else {
        bx_chunkv_move(&body, reply);
        bx_buf_puts(&h, json_headers);
    }
    cors_headers(&h, p->req);
    if (p->set_browser[0])
        bx_buf_printf(&h, "Set-Cookie: " BX_BROWSER_COOKIE "=%s; Path=/; HttpOnly\r\n",
                      p->set_browser);
    bx_buf_append(&h, "", 1);
    p->req->data = NULL;
    bx_http_respond(p->req, 200, h.data, &body, 0);
    bx_buf_free(&h);
    bx_chunkv_free(&body);
    poll_free(p);
}

void bx_endpoint_browser(const bx_http_req_t *req, char out[65])
{
    size_t n = 0;
    const char *v = bx_http_cookie(req, BX_BROWSER_COOKIE, &n);

    out[0] = '\0';
    if (!v || n == 0 || n > 64)
        return;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'z') ||
              (v[i] >= 'A' && v[i] <= 'Z')))
            return;
    memcpy(out, v, n);
    out[n] = '\0';
}

/* Whether a message of `msgs` (an object or an array) is a handshake. */
static int has_handshake(const json_t *msgs)
{
    size_t i;
    json_t *m;

    if (json_is_object(msgs))
        return json_is_string(json_object_get(msgs, "channel")) &&
               strcmp(json_string_value(json_object_get(msgs, "channel")),
                      "/meta/handshake") == 0;
    json_array_foreach(msgs, i, m)
        if (json_is_object(m) && has_handshake(m))
            return 1;
    return 0;
}

static void process(bx_endpoint_t *s, bx_http_req_t *req, const char *text, size_t len,
                    const char *jsonp)
{
    json_t *msgs = bx_json_parse(text, len);
    if (!msgs || !(json_is_object(msgs) || json_is_array(msgs) || json_is_null(msgs))) {
        if (msgs)
            json_decref(msgs);
        bad_request(req);
        return;
    }
    poll_t *p = bx_calloc(1, sizeof(*p));
    char browser[65];
    p->server = s;
    p->req = req;
    p->jsonp = jsonp ? bx_strdup(jsonp) : NULL;
    req->data = p;
    if (s->opts.browser_cookie) {
        bx_endpoint_browser(req, browser);
        if (!browser[0] && has_handshake(msgs)) {
            /* the browser's first handshake: it gets an id, which its
             * clients are bound to (the cookie is sent with each later
             * request; the clientId alone no longer speaks for it) */
            char id[32];
            bx_engine_random_id(id);
            memcpy(browser, id, sizeof(id));
            memcpy(p->set_browser, id, sizeof(id));
        }
    }
    p->batch = bx_protocol_process_browser(s->hub, msgs, req, 0,
                                           s->opts.browser_cookie ? browser : NULL, on_reply, p);
    json_decref(msgs);
}

void bx_longpoll_abort(bx_endpoint_t *s, bx_http_req_t *req)
{
    poll_t *p = req->data;
    if (!p)
        return;
    req->data = NULL;
    bx_batch_cancel(p->batch);
    poll_free(p);
}

/* ---- Methods ---- */

static void preflight(bx_http_req_t *req)
{
    const bx_str_t *origin = bx_http_header(req, "Origin");
    const bx_str_t *referer = bx_http_header(req, "Referer");
    const bx_str_t *allow = origin ? origin : referer;
    bx_buf_t h = BX_BUF_INIT;

    bx_buf_puts(&h, "Access-Control-Allow-Credentials: true\r\n"
                    "Access-Control-Allow-Headers: Accept, Authorization, Content-Type, "
                    "Pragma, X-Requested-With\r\n"
                    "Access-Control-Allow-Methods: POST, GET\r\n"
                    "Access-Control-Allow-Origin: ");
    if (allow)
        bx_buf_append(&h, allow->base, allow->len);
    else
        bx_buf_puts(&h, "*");
    bx_buf_puts(&h, "\r\nAccess-Control-Max-Age: 86400\r\n");
    bx_buf_append(&h, "", 1);
    bx_http_respond(req, 200, h.data, NULL, 0);
    bx_buf_free(&h);
}

static void get(bx_endpoint_t *s, bx_http_req_t *req)
{
    size_t mlen, clen = 0;
    char *message = form_get(req->query.base, req->query.len, "message", &mlen);
    char *cb = form_get(req->query.base, req->query.len, "jsonp", &clen);

    /* an empty jsonp is falsy for Faye: the default name applies */
    if (!message || (cb && clen && !bx_longpoll_valid_callback(cb, clen)))
        bad_request(req);
    else
        process(s, req, message, mlen, cb && clen ? cb : "jsonpcallback");
    free(message);
    free(cb);
}

static void post(bx_endpoint_t *s, bx_http_req_t *req)
{
    const bx_str_t *ct = bx_http_header(req, "Content-Type");
    size_t n = 0;

    if (ct) {
        const char *semi = memchr(ct->base, ';', ct->len);
        n = semi ? (size_t)(semi - ct->base) : ct->len;
        while (n > 0 && (ct->base[n - 1] == ' ' || ct->base[n - 1] == '\t'))
            n--;
    }
    /* exact and case-sensitive, as in Faye (reference §7.2) */
    if (ct && n == 16 && memcmp(ct->base, "application/json", 16) == 0) {
        process(s, req, req->body.data ? req->body.data : "", req->body.len, NULL);
        return;
    }
    size_t mlen, clen;
    const char *body = req->body.data ? req->body.data : "";
    char *message = form_get(body, req->body.len, "message", &mlen);
    char *cb = form_get(body, req->body.len, "jsonp", &clen);
    if (!message || (cb && clen && !bx_longpoll_valid_callback(cb, clen)))
        bad_request(req);
    else
        process(s, req, message, mlen, NULL);
    free(message);
    free(cb);
}

/* ---- The client script ---- */
/*
 * <mount>/client.js, <mount>.js and <mount basename>.js (e.g. /faye/faye.js)
 * serve bayeux's own browser client (client/bayeux.js, embedded at build
 * time), or the file named by the client_script option, read once when the
 * endpoint is made (router.c), so each server has its own. Headers: ETag = the
 * bare SHA-1 hex of the body, as Faye sends it (If-None-Match matches it bare,
 * quoted or weak, alone or in a list); Last-Modified = build time (or the
 * file's mtime), with If-Modified-Since honoured when there is no
 * If-None-Match; Cache-Control: no-cache, so browsers revalidate (a cheap
 * 304) and never run a client older than the server they talk to.
 */
#include "transport/client_js.h"

struct bx_script_s {
    bx_chunk_t *body;
    char etag[41];
    char modified[BX_HTTP_DATE_SIZE];
    time_t mtime;
};

static bx_script_t *script_new(const char *data, size_t len, time_t mtime)
{
    bx_script_t *sc = bx_calloc(1, sizeof(*sc));
    unsigned char md[SHA_DIGEST_LENGTH];

    SHA1((const unsigned char *)data, len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(sc->etag + 2 * i, 3, "%02x", md[i]);
    sc->mtime = mtime;
    bx_http_date_format(mtime, sc->modified);
    sc->body = bx_chunk_new(data, len);
    return sc;
}

bx_script_t *bx_longpoll_script_load(const char *path, char *err, size_t errlen)
{
    struct stat st;
    bx_buf_t b = BX_BUF_INIT;
    bx_script_t *sc;
    int fd;

    if (!path)
        return script_new((const char *)bx_client_js, bx_client_js_len,
                          (time_t)bx_client_js_time);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot read client_script '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > BX_SCRIPT_MAX) {
        snprintf(err, errlen, "client_script '%s' is %s", path,
                 S_ISREG(st.st_mode) ? "larger than 16 MiB" : "not a regular file");
        close(fd);
        return NULL;
    }
    for (;;) {
        char tmp[65536];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read client_script '%s': %s", path, strerror(errno));
            close(fd);
            bx_buf_free(&b);
            return NULL;
        }
        if (r == 0 || b.len + (size_t)r > BX_SCRIPT_MAX)
            break;              /* a file that grows is cut at the cap */
        bx_buf_append(&b, tmp, (size_t)r);
    }
    close(fd);
    sc = script_new(b.data ? b.data : "", b.len, st.st_mtime);
    bx_buf_free(&b);
    return sc;
}

void bx_longpoll_script_free(bx_script_t *sc)
{
    if (!sc)
        return;
    bx_chunk_unref(sc->body);
    free(sc);
}

/* Does an If-None-Match value (a list of "tag", W/"tag", bare tags or *)
 * name `etag`? */
static int etag_listed(const bx_str_t *v, const char *etag)
{
    const char *p = v->base, *end = v->base + v->len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *q = p;
        while (q < end && *q != ',')
            q++;
        const char *a = p, *b = q;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b - a >= 2 && a[0] == 'W' && a[1] == '/')
            a += 2;
        if (b - a >= 2 && a[0] == '"' && b[-1] == '"')
            a++, b--;
        if ((b - a == 1 && *a == '*') || (b - a == 40 && memcmp(a, etag, 40) == 0))
            return 1;
        p = q;
    }
    return 0;
}

static int not_modified_since(const bx_str_t *v, time_t mtime)
{
    time_t t;
    return bx_http_date_parse(v->base, v->len, &t) == 0 && t >= mtime;
}

static void client_script(bx_endpoint_t *s, bx_http_req_t *req, const char *name, size_t nlen)
{
    const char *mount = (&s->opts)->mount;
    const char *base = strrchr(mount, '/');
    size_t blen;

    base = base ? base + 1 : mount;
    blen = strlen(base);
    int ours = (nlen == 9 && memcmp(name, "client.js", 9) == 0) ||
               (blen > 0 && nlen == blen + 3 && memcmp(name, base, blen) == 0 &&
                memcmp(name + blen, ".js", 3) == 0);
    const bx_script_t *sc = ours ? s->script : NULL;
    if (!sc) {
        bx_http_respond(req, 404, "", NULL, 0);
        return;
    }
    bx_buf_t h = BX_BUF_INIT;
    bx_buf_printf(&h, "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n",
                  sc->etag, sc->modified);
    const bx_str_t *inm = bx_http_header(req, "If-None-Match");
    const bx_str_t *ims = bx_http_header(req, "If-Modified-Since");
    if (inm ? etag_listed(inm, sc->etag) : (ims && not_modified_since(ims, sc->mtime))) {
        bx_buf_append(&h, "", 1);
        bx_http_respond(req, 304, h.data, NULL, 0);
    } else {
        bx_chunkv_t body = BX_CHUNKV_INIT;
        bx_buf_puts(&h, "Content-Type: text/javascript; charset=utf-8\r\n");
        bx_buf_append(&h, "", 1);
        bx_chunkv_push(&body, sc->body);
        bx_http_respond(req, 200, h.data, &body, 0);
        bx_chunkv_free(&body);
    }
    bx_buf_free(&h);
}

/* ---- Entry ---- */

/* The name after the last '/' of the path, in *name / *nlen. */
static void last_name(const bx_http_req_t *req, const char **name, size_t *nlen)
{
    const char *last = req->path.base, *end = req->path.base + req->path.len;
    for (const char *p = req->path.base; p < end; p++)
        if (*p == '/')
            last = p + 1;
    *name = last;
    *nlen = (size_t)(end - last);
}

static int is_script(const char *name, size_t nlen)
{
    return (nlen > 3 && memcmp(name + nlen - 3, ".js", 3) == 0) ||
           (nlen > 4 && memcmp(name + nlen - 4, ".map", 4) == 0);
}

static int is_preflight(const bx_http_req_t *req)
{
    const bx_str_t *acrm = bx_http_header(req, "Access-Control-Request-Method");
    return strcmp(req->method, "OPTIONS") == 0 ||
           (acrm && acrm->len == 4 && memcmp(acrm->base, "POST", 4) == 0);
}

int bx_longpoll_is_script(const bx_http_req_t *req)
{
    const char *name;
    size_t nlen;
    last_name(req, &name, &nlen);
    return is_script(name, nlen);
}

int bx_longpoll_claims(const bx_http_req_t *req)
{
    const char *name;
    size_t nlen;
    last_name(req, &name, &nlen);
    return is_script(name, nlen) || is_preflight(req);
}

void bx_longpoll_handle(bx_endpoint_t *s, bx_http_req_t *req)
{
    const char *name;
    size_t nlen;

    last_name(req, &name, &nlen);
    if (is_script(name, nlen))
        client_script(s, req, name, nlen);
    else if (is_preflight(req))
        preflight(req);
    else if (strcmp(req->method, "GET") == 0 && !req->upgrade)
        get(s, req);
    else if (strcmp(req->method, "POST") == 0)
        post(s, req);
    else
        bad_request(req);
}
