/*
 * longpoll.h - Bayeux over plain HTTP requests: long-polling (JSON or form
 * POST), cross-origin long-polling (CORS), callback-polling (JSONP), and the
 * client script, exactly as Faye's node adapter answers them
 * (reference/bayeux-faye.md §7).
 */
#ifndef BX_LONGPOLL_H
#define BX_LONGPOLL_H

#include <stddef.h>
#include "net/http.h"

struct bx_endpoint_s;

/* Whether `path` belongs to the Bayeux endpoint at `mount`: the mount
 * itself, anything below it, or the mount with an extension (".js"). */
int bx_longpoll_owns(const char *mount, const char *path, size_t len);

/* Whether longpoll answers `req` before any other transport looks at it:
 * the client script, a CORS preflight (router.c). */
int bx_longpoll_claims(const bx_http_req_t *req);

/* Whether `req` asks for the client script (any page may load it). */
int bx_longpoll_is_script(const bx_http_req_t *req);

/* Handles a request the router gives it: the client script, a preflight,
 * callback-polling (GET), long-polling (POST); anything else is a 400. */
void bx_longpoll_handle(struct bx_endpoint_s *s, bx_http_req_t *req);

/* The connection of an unanswered request under the mount closed. */
void bx_longpoll_abort(struct bx_endpoint_s *s, bx_http_req_t *req);

/* The client script served at <mount>/client.js, loaded once per endpoint
 * (ep->script). */
typedef struct bx_script_s bx_script_t;

/* Largest client_script file accepted (it is kept in memory). */
#define BX_SCRIPT_MAX (16 * 1024 * 1024)

/* Loads the client script: the file at `path`, read now, or bayeux's
 * built-in client when `path` is NULL. Returns a new script, or NULL with a
 * message in `err` (`errlen` bytes) when the file cannot be read, is not a
 * regular file, or is larger than BX_SCRIPT_MAX. */
bx_script_t *bx_longpoll_script_load(const char *path, char *err, size_t errlen);

/* Frees a script (NULL is ok). */
void bx_longpoll_script_free(bx_script_t *sc);

/* Whether `name` is an acceptable JSONP callback ("a.b$._c", not "42"). */
int bx_longpoll_valid_callback(const char *name, size_t len);

#endif
