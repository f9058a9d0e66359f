/*
 * fuzz_multipart.c - libFuzzer target: the streaming multipart/form-data
 * parser (core/base/multipart.c).
 *
 * The input's first byte picks a piece size; the rest is a body for the
 * boundary "B". It is parsed whole and in pieces of that size: the two
 * must report the same parts, data and end, so a delimiter that spans two
 * pieces is found (or not) as it is within one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int f_head(void *ud, const bx_multipart_head_t *h)
{
    bx_buf_t *log = ud;
    bx_buf_printf(log, "\001%s\002%s\002%s\003", h->name, h->filename ? h->filename : "",
                  h->content_type ? h->content_type : "");
    if (!*h->name)
        abort();                /* a part without a name is refused */
    return 0;
}

static int f_data(void *ud, const char *data, size_t len)
{
    if (len == 0)
        abort();                /* no empty pieces */
    bx_buf_append(ud, data, len);
    return 0;
}

static int f_end(void *ud)
{
    bx_buf_puts(ud, "\004");
    return 0;
}

static const bx_multipart_cbs_t cbs = { f_head, f_data, f_end };

static int run(const char *body, size_t len, size_t step, bx_buf_t *log)
{
    bx_multipart_t mp;
    int rc = 0;

    bx_multipart_init(&mp, "B", 1, &cbs, log);
    for (size_t i = 0; i < len && !rc; i += step)
        rc = bx_multipart_feed(&mp, body + i, i + step > len ? len - i : step);
    if (!rc)
        rc = bx_multipart_finish(&mp);
    bx_multipart_free(&mp);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bx_buf_t whole = BX_BUF_INIT, pieces = BX_BUF_INIT;
    char b[BX_MULTIPART_MAX_BOUNDARY + 1];

    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 16 + 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    int r1 = run(body, len, len ? len : 1, &whole);
    int r2 = run(body, len, step, &pieces);
    /* a refusal may come at another byte, so only a clean parse compares */
    if (r1 != r2 || (r1 == 0 && (whole.len != pieces.len || (whole.len &&
                                 memcmp(whole.data, pieces.data, whole.len) != 0))))
        abort();
    bx_buf_free(&whole);
    bx_buf_free(&pieces);
    /* the Content-Type reader on the same bytes */
    size_t n = bx_multipart_boundary(body, len, b);
    if (n > BX_MULTIPART_MAX_BOUNDARY || (n && strlen(b) != n))
        abort();
    return 0;
}
