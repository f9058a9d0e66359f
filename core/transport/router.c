/*
 * router.c - the mount's decisions (see router.h).
 */
#include <stdlib.h>
#include <string.h>
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
    return ep;
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
            bx_ws_handle(ep, req);
            return;
        }
        if (strcmp(req->method, "GET") == 0 &&
            bx_http_header_has(req, "Accept", "text/event-stream")) {
            bx_sse_handle(ep, req);
            return;
        }
    }
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
    bx_longpoll_script_free(ep->script);
    free(ep);
}
