/*
 * fuzz_form.c - libFuzzer target: form and JSONP decoding
 * (core/transport/longpoll.c: the query string of callback-polling, form
 * bodies with message= and jsonp=, percent and '+' decoding, callback
 * names, the JSONP wrapping and its U+2028/U+2029 escapes; and router.c's
 * origin checks, which decide whether JSONP is answered at all).
 *
 * Each input is one request to a whole server (fuzz_net.h) with
 * allowed_origins set and cookie binding on. The first byte picks:
 *   bits 0-1  0: GET <mount>?<rest> (callback-polling)
 *             1: POST <rest> as application/x-www-form-urlencoded
 *             2: POST <rest> as application/json
 *             3: POST <rest> as text/plain (Faye's form fallback)
 *   bit 2     a Referer from the allowed origin (else JSONP is refused)
 *   bit 3     an Origin header: the rest's first line (up to '\n'), which
 *             is then not part of the query or body
 *   bit 4     a BAYEUX_BROWSER cookie
 *   bit 5     the "@@" client is bound to that cookie's browser id
 * "@@" in the rest becomes a live clientId. The request itself is always
 * well formed (fuzz_http covers malformed ones): the bytes are only made
 * safe for where they go (no CR, LF, NUL or blank in the request target).
 */
#include <stdio.h>
#include "fuzz_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void setup_opts(bx_server_opts_t *o)
{
    static const char *const origins[] = { "https://a.example", NULL };
    o->allowed_origins = origins;
    o->browser_cookie = 1;
}

/* Appends `n` bytes of `s`, dropping what would break the request line or
 * a header line. */
static void append_safe(bx_buf_t *b, const char *s, size_t n, int in_target)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r' || c == '\n' || c == '\0' || (in_target && (c == ' ' || c == '\t')) ||
            (unsigned char)c < 0x20 || c == 0x7f)
            continue;
        bx_buf_append(b, &c, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static const char *const types[] = {
        NULL, "application/x-www-form-urlencoded", "application/json", "text/plain"
    };
    bx_buf_t rest = BX_BUF_INIT, req = BX_BUF_INIT;

    if (!ready) {
        fuzz_setup(setup_opts);
        ready = 1;
    }
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    fuzz_subst(data + 1, size - 1, mode & 32 ? "b1" : NULL, &rest);
    const char *p = rest.data ? rest.data : "";
    size_t n = rest.len;
    const char *origin = NULL;
    size_t olen = 0;
    if (mode & 8) {
        const char *nl = memchr(p, '\n', n);
        origin = p;
        olen = nl ? (size_t)(nl - p) : n;
        p += nl ? olen + 1 : olen;
        n -= nl ? olen + 1 : olen;
    }
    int kind = mode & 3;
    if (kind == 0) {
        bx_buf_puts(&req, "GET /bayeux?");
        append_safe(&req, p, n, 1);
        bx_buf_puts(&req, " HTTP/1.1\r\n");
    } else {
        bx_buf_puts(&req, "POST /bayeux HTTP/1.1\r\n");
        bx_buf_printf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n", types[kind], n);
    }
    bx_buf_puts(&req, "Host: 127.0.0.1\r\n");
    if (mode & 4)
        bx_buf_puts(&req, "Referer: https://a.example/page.html\r\n");
    if (origin) {
        bx_buf_puts(&req, "Origin: ");
        append_safe(&req, origin, olen, 0);
        bx_buf_puts(&req, "\r\n");
    }
    if (mode & 16)
        bx_buf_puts(&req, "Cookie: BAYEUX_BROWSER=b1\r\n");
    bx_buf_puts(&req, "Connection: close\r\n\r\n");
    if (kind != 0)
        bx_buf_append(&req, p, n);
    fuzz_exchange(req.data, req.len);
    bx_buf_free(&rest);
    bx_buf_free(&req);
    return 0;
}
