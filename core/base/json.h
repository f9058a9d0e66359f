/*
 * json.h - jansson helpers used on the message path.
 */
#ifndef BX_JSON_H
#define BX_JSON_H

#include <jansson.h>
#include "base/buf.h"

/* The flags every serialization uses: compact, raw UTF-8, '/' unescaped,
 * keys in insertion order (what Faye's JSON.stringify produces). */
#define BX_JSON_DUMP_FLAGS (JSON_COMPACT)

/* Appends the compact JSON text of `j` (borrowed) to `b`. */
void bx_json_dump(const json_t *j, bx_buf_t *b);

/* Serializes `j` (borrowed) once into a new chunk (one reference). */
bx_chunk_t *bx_json_chunk(const json_t *j);

/* Parses `len` bytes of JSON text (any value, including null). Returns a new
 * reference or NULL on a syntax error. */
json_t *bx_json_parse(const char *text, size_t len);

/* The string value of `obj[key]` (borrowed) or NULL when absent or not a
 * string. */
const char *bx_json_str(const json_t *obj, const char *key);

/* Whether `v` is "truthy" in JavaScript's sense (Faye tests fields that
 * way): not null/false, not 0, not "". */
int bx_json_truthy(const json_t *v);

#endif
