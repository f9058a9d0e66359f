/*
 * json.c - jansson helpers (see json.h).
 */
#include <string.h>
#include "base/json.h"

static int dump_cb(const char *buf, size_t size, void *data)
{
    bx_buf_append(data, buf, size);
    return 0;
}

void bx_json_dump(const json_t *j, bx_buf_t *b)
{
    json_dump_callback(j, dump_cb, b, BX_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
}

bx_chunk_t *bx_json_chunk(const json_t *j)
{
    /* one scratch buffer reused by every serialization: the message path
     * runs on one thread, and the chunk copies the bytes out of it */
    static bx_buf_t scratch = BX_BUF_INIT;
    bx_buf_reset(&scratch);
    bx_json_dump(j, &scratch);
    bx_chunk_t *c = bx_chunk_new(scratch.data, scratch.len);
    if (scratch.cap > 65536)
        bx_buf_free(&scratch);  /* don't pin a huge buffer after a big message */
    return c;
}

json_t *bx_json_parse(const char *text, size_t len)
{
    json_error_t err;
    return json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
}

const char *bx_json_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int bx_json_truthy(const json_t *v)
{
    if (!v)
        return 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: case JSON_ARRAY: case JSON_TRUE:
        return 1;
    case JSON_STRING:
        return json_string_length(v) > 0;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0.0;
    default:
        return 0;
    }
}
