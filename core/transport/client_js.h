/*
 * client_js.h - the browser client (client/bayeux.js), embedded at build
 * time by tools/embed.sh into build/gen/client_js.c. Served by longpoll.c
 * as <mount>/client.js unless the client_script option names a file.
 */
#ifndef BX_CLIENT_JS_H
#define BX_CLIENT_JS_H

#include <stddef.h>

extern const unsigned char bx_client_js[];   /* NUL-terminated, NUL not counted */
extern const size_t bx_client_js_len;
extern const long long bx_client_js_time;    /* build time, Unix seconds */

#endif
