/*
 * multipart.h - a streaming multipart/form-data parser (RFC 7578, RFC 2046).
 *
 * The body is fed in pieces of any size, as it arrives; the parser holds
 * only a part's header block (at most BX_MULTIPART_MAX_HEAD bytes) and the
 * length of a delimiter match that spans two pieces, never a part's data.
 * Each part is reported as a head (its field name, file name and content
 * type), then its data in any number of pieces, then its end.
 */
#ifndef BX_MULTIPART_H
#define BX_MULTIPART_H

#include <stddef.h>
#include "base/buf.h"

/* Most bytes of one part's header block. */
#define BX_MULTIPART_MAX_HEAD 8192
/* Longest boundary RFC 2046 allows. */
#define BX_MULTIPART_MAX_BOUNDARY 70

/* feed's answer for a body that is not multipart/form-data. */
#define BX_MULTIPART_EBAD (-1)

typedef struct {
    const char *name;           /* the field name (never NULL) */
    const char *filename;       /* the file name without any folder, or NULL for
                                   a plain field */
    const char *content_type;   /* the part's Content-Type, or NULL */
} bx_multipart_head_t;

/* Each returns 0 to go on, or a nonzero value that feed returns at once
 * (the parser is then spent). Pointers are borrowed for the call. */
typedef struct {
    int (*on_head)(void *ud, const bx_multipart_head_t *head);
    int (*on_data)(void *ud, const char *data, size_t len);
    int (*on_end)(void *ud);
} bx_multipart_cbs_t;

typedef struct {
    bx_multipart_cbs_t cbs;
    void *ud;
    char delim[4 + BX_MULTIPART_MAX_BOUNDARY];  /* "\r\n--" boundary */
    size_t dlen;
    size_t match;               /* delimiter bytes matched so far */
    int state;
    int error;                  /* nonzero once spent: what feed returned */
    bx_buf_t head;              /* the header block being read */
} bx_multipart_t;

/* Reads the boundary parameter of a Content-Type value into `out` (at
 * least BX_MULTIPART_MAX_BOUNDARY + 1 bytes, NUL-terminated). Returns its
 * length, or 0 when the type is not multipart/form-data or the boundary
 * is missing, too long or holds a byte RFC 2046 does not allow. */
size_t bx_multipart_boundary(const char *ctype, size_t len, char *out);

/* Starts a parser for `boundary` (as bx_multipart_boundary returned it);
 * `cbs` is copied. */
void bx_multipart_init(bx_multipart_t *mp, const char *boundary, size_t blen,
                       const bx_multipart_cbs_t *cbs, void *ud);

/* Parses the next `len` bytes. Returns 0, BX_MULTIPART_EBAD for input that
 * is not a multipart body, or what a callback returned; after a nonzero
 * answer every later call returns it again. */
int bx_multipart_feed(bx_multipart_t *mp, const char *data, size_t len);

/* The body ended: 0 if its closing delimiter was seen, else
 * BX_MULTIPART_EBAD (a body cut short), or the error feed returned. */
int bx_multipart_finish(bx_multipart_t *mp);

/* Frees what the parser holds. */
void bx_multipart_free(bx_multipart_t *mp);

#endif
