/*
 * router.c - the mount's decisions (see router.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "transport/longpoll.h"
#include "transport/router.h"
#include "transport/sse.h"
#include "transport/ws.h"

bx_endpoint_t *bx_router_new(uv_loop_t *loop, bx_hub_t *hub, const bx_endpoint_opts_t *opts,
                             char *err, size_t errlen)
{
    bx_script_t *script = bx_longpoll_script_load(opts->client_script, err, errlen);
    if (!script)
        return NULL;
    bx_endpoint_t *ep = bx_calloc(1, sizeof(*ep));
    char *mount = bx_strdup(opts->mount ? opts->mount : "/bayeux");
    size_t mlen = strlen(mount);

    /* the mount is matched without its trailing slash (reference §7.1) */
    while (mlen > 1 && mount[mlen - 1] == '/')
        mount[--mlen] = '\0';
    ep->loop = loop;
    ep->hub = hub;
    ep->opts = *opts;
    ep->opts.mount = mount;
    ep->opts.client_script = opts->client_script ? bx_strdup(opts->client_script) : NULL;
    ep->script = script;
    if (opts->allowed_origins) {
        size_t n = 0;
        while (opts->allowed_origins[n])
            n++;
        char **list = bx_calloc(n + 1, sizeof(*list));
        for (size_t i = 0; i < n; i++)
            list[i] = bx_strdup(opts->allowed_origins[i]);
        ep->opts.allowed_origins = (const char *const *)list;
    }
    return ep;
}

/* Whether `origin` (`len` bytes: "scheme://host[:port]") may use the
 * endpoint: it is listed, or it is the server itself (the page of the
 * application that serves the endpoint, as the Host header names it). */
static int origin_listed(const bx_endpoint_t *ep, const bx_http_req_t *req, const char *origin,
                         size_t len)
{
    const bx_str_t *host = bx_http_header(req, "Host");

    for (const char *const *o = ep->opts.allowed_origins; *o; o++)
        if (strlen(*o) == len && strncasecmp(*o, origin, len) == 0)
            return 1;
    if (host && host->len) {
        const char *sep = memchr(origin, ':', len);
        size_t skip = sep && len - (size_t)(sep - origin) > 3 && sep[1] == '/' && sep[2] == '/'
                    ? (size_t)(sep - origin) + 3 : 0;
        if (skip && len - skip == host->len &&
            strncasecmp(origin + skip, host->base, host->len) == 0)
            return 1;
    }
    return 0;
}

/* The origin part of a Referer URL ("https://a.example:8443/page" ->
 * "https://a.example:8443"): its length. */
static size_t referer_origin(const bx_str_t *ref)
{
    const char *sep = memchr(ref->base, ':', ref->len);
    if (!sep || (size_t)(sep - ref->base) + 3 > ref->len || sep[1] != '/' || sep[2] != '/')
        return 0;
    const char *host = sep + 3, *end = ref->base + ref->len;
    const char *slash = memchr(host, '/', (size_t)(end - host));
    return (size_t)((slash ? slash : end) - ref->base);
}

/* With allowed_origins set: whether `req` comes from an allowed origin. A
 * request naming its Origin is judged by it; one with none is a same-origin
 * or non-browser one, except callback-polling (JSONP), which a page of any
 * site can include as a script without an Origin: it needs a Referer from
 * an allowed origin. */
static int origin_allowed(const bx_endpoint_t *ep, const bx_http_req_t *req, int jsonp)
{
    const bx_str_t *origin = bx_http_header(req, "Origin");

    if (!ep->opts.allowed_origins)
        return 1;
    if (origin)
        return origin_listed(ep, req, origin->base, origin->len);
    if (!jsonp)
        return 1;
    const bx_str_t *ref = bx_http_header(req, "Referer");
    size_t n = ref ? referer_origin(ref) : 0;
    return n > 0 && origin_listed(ep, req, ref->base, n);
}

static void refuse_origin(bx_http_req_t *req)
{
    /* no CORS headers: the browser keeps the answer from the page */
    bx_http_respond_text(req, 403, "text/plain; charset=utf-8", "Origin not allowed\n", 0);
}

int bx_router_owns(const bx_endpoint_t *ep, const char *path, size_t len)
{
    return bx_longpoll_owns(ep->opts.mount, path, len);
}

void bx_router_handle(bx_endpoint_t *ep, bx_http_req_t *req)
{
    /* the script and CORS preflights first, whatever else the request
     * asks for; then the sockets; the rest is plain HTTP */
    if (!bx_longpoll_claims(req)) {
        if (bx_ws_is_upgrade(req)) {
            if (!origin_allowed(ep, req, 0))
                refuse_origin(req);
            else
                bx_ws_handle(ep, req);
            return;
        }
        if (strcmp(req->method, "GET") == 0 &&
            bx_http_header_has(req, "Accept", "text/event-stream")) {
            if (!origin_allowed(ep, req, 0))
                refuse_origin(req);
            else
                bx_sse_handle(ep, req);
            return;
        }
    }
    /* the client script may be loaded from anywhere; a preflight names
     * its Origin; a GET that is neither is callback-polling */
    if (!bx_longpoll_is_script(req) &&
        !origin_allowed(ep, req, !bx_longpoll_claims(req) && strcmp(req->method, "GET") == 0))
        refuse_origin(req);
    else
        bx_longpoll_handle(ep, req);
}

void bx_router_abort(bx_endpoint_t *ep, bx_http_req_t *req)
{
    /* sockets are no longer requests: only a long-poll can be aborted */
    bx_longpoll_abort(ep, req);
}

/* One of the socket kinds is closed; the last reports. */
static void kind_closed(void *ud)
{
    bx_endpoint_t *ep = ud;
    if (--ep->closes == 0)
        ep->close_done(ep->close_ud);
}

int bx_router_close(bx_endpoint_t *ep, void (*done)(void *ud), void *ud)
{
    /* WebSocket and EventSource connections are no longer the HTTP layer's:
     * close them (their sinks unbound) and wait for them */
    ep->close_done = done;
    ep->close_ud = ud;
    ep->closes = bx_ws_server_close(ep, kind_closed, ep);
    ep->closes += bx_sse_server_close(ep, kind_closed, ep);
    return ep->closes > 0;
}

void bx_router_free(bx_endpoint_t *ep)
{
    if (!ep)
        return;
    free((char *)ep->opts.mount);
    free((char *)ep->opts.client_script);
    if (ep->opts.allowed_origins) {
        for (const char *const *o = ep->opts.allowed_origins; *o; o++)
            free((char *)*o);
        free((void *)ep->opts.allowed_origins);
    }
    bx_longpoll_script_free(ep->script);
    free(ep);
}
