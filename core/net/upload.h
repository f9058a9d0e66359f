/*
 * upload.h - a multipart/form-data body written to disk as it arrives.
 *
 * The body's pieces are parsed at once (base/multipart.h); each file part
 * goes to a new file in the upload folder, written with uv_fs_* in the
 * loop's thread pool, one operation at a time in arrival order, so the
 * loop never waits for the disk. Plain fields are kept in memory. When the
 * bytes waiting for the disk pass BX_UPLOAD_AHEAD, bx_upload_data answers
 * BX_UPLOAD_PAUSE and the resume callback runs once they are written.
 */
#ifndef BX_UPLOAD_H
#define BX_UPLOAD_H

#include <stdint.h>
#include <uv.h>

typedef struct bx_upload_s bx_upload_t;

#define BX_UPLOAD_PAUSE 1
#define BX_UPLOAD_AHEAD (1024 * 1024)
/* Most parts (files and fields) of one body; 413 beyond. */
#define BX_UPLOAD_MAX_PARTS 1000

typedef struct {
    const char *dir;            /* the folder of the files; copied */
    uint64_t max_size;          /* most bytes of the whole body; 413 beyond */
    size_t max_fields;          /* most bytes of the plain fields' values
                                   together; 413 beyond */
} bx_upload_opts_t;

typedef struct {
    char *field;                /* the form field's name */
    char *filename;             /* as the client gave it, folders removed */
    char *content_type;         /* the part's type, or NULL */
    char *path;                 /* where it is on disk: dir/bx-upload-<hex> */
    uint64_t size;
} bx_upload_file_t;

typedef struct {
    char *name;
    char *value;                /* NUL-terminated, may hold NULs: use len */
    size_t len;
} bx_upload_field_t;

typedef struct {
    /* body bytes received and written so far (the data of every file part
     * up to there is on disk); from the thread pool's answers, never inside
     * a bx_upload_* call */
    void (*progress)(void *ud, uint64_t bytes);
    /* the bytes waiting for the disk are below BX_UPLOAD_AHEAD again after
     * bx_upload_data answered BX_UPLOAD_PAUSE */
    void (*resume)(void *ud);
    /* after bx_upload_finish: every file is complete and closed (status 0),
     * or the upload failed (400 a body that is not multipart or was cut
     * short, 413 over a limit, 500 the disk failed). Once. */
    void (*done)(void *ud, int status);
} bx_upload_cbs_t;

/* A new upload for a body with this boundary (bx_multipart_boundary).
 * `opts` and `cbs` are copied. */
bx_upload_t *bx_upload_new(uv_loop_t *loop, const char *boundary, size_t blen,
                           const bx_upload_opts_t *opts, const bx_upload_cbs_t *cbs, void *ud);

/* The next `len` bytes of the body. Returns 0, BX_UPLOAD_PAUSE (go on
 * after the resume callback), or an HTTP status (400, 413, 500): the
 * upload failed; free it. */
int bx_upload_data(bx_upload_t *up, const char *data, size_t len);

/* The body ended: done() follows on a later turn, once every write has
 * landed. */
void bx_upload_finish(bx_upload_t *up);

/* The i-th file (NULL past the last) and the fields, in the order of the
 * body (borrowed; valid until bx_upload_free). */
const bx_upload_file_t *bx_upload_file(const bx_upload_t *up, size_t i);
const bx_upload_field_t *bx_upload_fields(const bx_upload_t *up, size_t *n);

/* Body bytes received so far. */
uint64_t bx_upload_received(const bx_upload_t *up);

/* Ends the upload: no callback runs any more. With `remove`, every file it
 * made is deleted (a file moved away meanwhile is left alone, its old path
 * is gone). Operations in flight finish first; the memory goes after them. */
void bx_upload_free(bx_upload_t *up, int remove);

#endif
