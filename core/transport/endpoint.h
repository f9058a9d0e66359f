/*
 * endpoint.h - the Bayeux endpoint at one mount: what every transport of it
 * shares (the hub below, the options of the transports, the client script).
 *
 * Made and freed by the router (router.h); the transports read it and reach
 * the Bayeux level through ep->hub. Keeping it apart from router.h lets
 * the router include the transports without the transports including it.
 */
#ifndef BX_ENDPOINT_H
#define BX_ENDPOINT_H

#include <stddef.h>
#include <uv.h>
#include "bayeux/hub.h"
#include "net/http.h"

/* The options of the transports (the server's options pick them). */
typedef struct {
    const char *mount;          /* matched without its trailing slash */
    double ping;                /* seconds between socket pings; 0 = off */
    size_t max_frame;           /* bytes of one incoming WebSocket message */
    size_t max_output;          /* bytes waiting for one socket or stream
                                   before it is dropped as a slow reader */
    const char *client_script;  /* file served as <mount>/client.js, or NULL
                                   for the built-in client */
    double idle_timeout;        /* seconds a WebSocket may stay silent before
                                   a ping, then as long again for an answer;
                                   also bounds an unfinished fragmented
                                   message; 0 = never */
    const char *const *allowed_origins; /* NULL-terminated; NULL = any
                                   origin (the router owns its copy) */
    int browser_cookie;         /* bind HTTP clients to a BAYEUX_BROWSER
                                   cookie (longpoll.c) */
    int deflate;                /* accept permessage-deflate (ws.c) */
} bx_endpoint_opts_t;

/* The cookie of the opt-in browser binding. */
#define BX_BROWSER_COOKIE "BAYEUX_BROWSER"

/* The browser id a request carries in its BAYEUX_BROWSER cookie, into
 * `out` (at most 64 characters of [0-9A-Za-z]; "" when there is none or it
 * is malformed). Defined in longpoll.c. */
void bx_endpoint_browser(const bx_http_req_t *req, char out[65]);

struct bx_script_s;

typedef struct bx_endpoint_s {
    uv_loop_t *loop;
    bx_hub_t *hub;              /* borrowed: outlives the endpoint */
    bx_endpoint_opts_t opts;    /* the strings owned */
    struct bx_script_s *script; /* owned: loaded when the endpoint is made */
    int closes;                 /* router.c: socket kinds still closing */
    void (*close_done)(void *ud);
    void *close_ud;
} bx_endpoint_t;

#endif
