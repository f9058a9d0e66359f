/*
 * upload.c - a multipart/form-data body written to disk as it arrives
 * (see upload.h).
 *
 * The disk work is a queue of operations (open, write, close, unlink, and
 * a no-op that reports the end) run one at a time: one uv_fs_t in flight,
 * so a file's writes land in order and an upload costs the thread pool at
 * most one worker. A file's data that arrives while a write is in flight
 * is appended to the next queued write of the same file, so the writes
 * grow with the disk's delay instead of multiplying.
 *
 * bx_upload_free() drops what is queued, then queues the closes (and the
 * unlinks) the files still need behind the operation in flight; the memory
 * goes when the queue is empty.
 */
#include "net/upload.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/multipart.h"

enum { OP_OPEN, OP_WRITE, OP_CLOSE, OP_UNLINK, OP_DONE };

typedef struct op {
    struct op *next;
    int type;
    size_t file;
    bx_buf_t data;              /* OP_WRITE */
    uint64_t upto;              /* OP_WRITE: body bytes received when queued */
} op_t;

typedef struct {
    bx_upload_file_t pub;
    uv_file fd;                 /* -1 unless open */
    unsigned made : 1;          /* created on disk (open succeeded) */
    unsigned opening : 1;       /* its open is in flight */
} ufile_t;

struct bx_upload_s {
    uv_loop_t *loop;
    bx_upload_opts_t opts;
    bx_upload_cbs_t cbs;
    void *ud;
    bx_multipart_t mp;
    ufile_t *files;
    size_t nfiles, capfiles;
    bx_upload_field_t *fields;
    size_t nfields, capfields;
    size_t field_bytes;
    int cur;                    /* 0 no part, 1 a field, 2 a file */
    uint64_t received;
    uint64_t reported;          /* the last progress given */
    size_t queued;              /* bytes in queued writes, in flight included */
    op_t *qhead, *qtail;
    op_t *busy;                 /* in flight */
    uv_fs_t fs;
    uv_work_t work;
    int status;                 /* 0, or what failed the upload */
    unsigned paused : 1;        /* data answered PAUSE: resume() is owed */
    unsigned finishing : 1;     /* finish() was called: done() is owed */
    unsigned freed : 1;
    unsigned remove : 1;
    unsigned in_cb : 1;         /* a callback runs: free() leaves run() to us */
};

static void run(bx_upload_t *up);

static op_t *push(bx_upload_t *up, int type, size_t file)
{
    op_t *o = bx_calloc(1, sizeof(*o));

    o->type = type;
    o->file = file;
    if (up->qtail)
        up->qtail->next = o;
    else
        up->qhead = o;
    up->qtail = o;
    return o;
}

static void op_free(bx_upload_t *up, op_t *o)
{
    if (o->type == OP_WRITE)
        up->queued -= o->data.len;
    bx_buf_free(&o->data);
    free(o);
}

static void drop_queue(bx_upload_t *up)
{
    while (up->qhead) {
        op_t *o = up->qhead;
        up->qhead = o->next;
        op_free(up, o);
    }
    up->qtail = NULL;
}

static void upload_destroy(bx_upload_t *up)
{
    for (size_t i = 0; i < up->nfiles; i++) {
        free(up->files[i].pub.field);
        free(up->files[i].pub.filename);
        free(up->files[i].pub.content_type);
        free(up->files[i].pub.path);
    }
    for (size_t i = 0; i < up->nfields; i++) {
        free(up->fields[i].name);
        free(up->fields[i].value);
    }
    free(up->files);
    free(up->fields);
    free((char *)up->opts.dir);
    bx_multipart_free(&up->mp);
    free(up);
}

/* A freed upload with nothing in flight: queues what its files still need
 * (closes, unlinks) once, then runs down. */
static void cleanup(bx_upload_t *up)
{
    drop_queue(up);
    for (size_t i = 0; i < up->nfiles; i++) {
        if (up->files[i].fd >= 0)
            push(up, OP_CLOSE, i);
        if (up->remove && up->files[i].made)
            push(up, OP_UNLINK, i);
        up->files[i].made = 0;
        up->files[i].fd = -1;
    }
}

/* The upload failed: nothing more goes to disk but the closes. */
static void set_failed(bx_upload_t *up, int status)
{
    if (up->status)
        return;
    up->status = status;
    /* the writes would be in vain; closes and the report stay */
    op_t **pp = &up->qhead;
    up->qtail = NULL;
    while (*pp) {
        op_t *o = *pp;
        if (o->type == OP_WRITE || o->type == OP_OPEN) {
            *pp = o->next;
            op_free(up, o);
        } else {
            up->qtail = o;
            pp = &o->next;
        }
    }
}

static void fs_cb(uv_fs_t *fs);
static void work_noop(uv_work_t *w)
{
    (void)w;
}
static void work_cb(uv_work_t *w, int status);

/* Starts the next operation unless one is in flight. */
static void run(bx_upload_t *up)
{
    while (!up->busy && up->qhead) {
        op_t *o = up->qhead;
        ufile_t *f = o->type == OP_DONE ? NULL : &up->files[o->file];
        int rc = 0;

        up->qhead = o->next;
        if (!up->qhead)
            up->qtail = NULL;
        up->busy = o;
        up->fs.data = up;
        switch (o->type) {
        case OP_OPEN:
            f->opening = 1;
            rc = uv_fs_open(up->loop, &up->fs, f->pub.path,
                            O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600, fs_cb);
            break;
        case OP_WRITE: {
            if (f->fd < 0) {            /* its open failed */
                up->busy = NULL;
                op_free(up, o);
                continue;
            }
            uv_buf_t b = uv_buf_init(o->data.data, (unsigned)o->data.len);
            rc = uv_fs_write(up->loop, &up->fs, f->fd, &b, 1, -1, fs_cb);
            break;
        }
        case OP_CLOSE:
            if (f->fd < 0) {
                up->busy = NULL;
                op_free(up, o);
                continue;
            }
            rc = uv_fs_close(up->loop, &up->fs, f->fd, fs_cb);
            f->fd = -1;
            break;
        case OP_UNLINK:
            rc = uv_fs_unlink(up->loop, &up->fs, f->pub.path, fs_cb);
            break;
        default:
            up->work.data = up;
            rc = uv_queue_work(up->loop, &up->work, work_noop, work_cb);
            break;
        }
        if (rc < 0) {
            /* not started: as if it failed at once, on this turn's terms */
            up->busy = NULL;
            if (o->type == OP_OPEN)
                f->opening = 0;
            op_free(up, o);
            set_failed(up, 500);
        }
    }
    if (!up->busy && !up->qhead && up->freed)
        upload_destroy(up);
}

/* Reports the progress a write made (upto > 0), and a resume that is due:
 * the disk caught up, or the upload failed (the reader must read on to
 * hear so from bx_upload_data). */
static void after_op(bx_upload_t *up, uint64_t upto)
{
    if (up->freed)
        return;
    up->in_cb = 1;
    if (upto > up->reported) {
        up->reported = upto;
        if (up->cbs.progress)
            up->cbs.progress(up->ud, upto);
    }
    if (!up->freed && up->paused && (up->status || up->queued < BX_UPLOAD_AHEAD)) {
        up->paused = 0;
        if (up->cbs.resume)
            up->cbs.resume(up->ud);
    }
    up->in_cb = 0;
}

static void fs_cb(uv_fs_t *fs)
{
    bx_upload_t *up = fs->data;
    op_t *o = up->busy;
    ufile_t *f = &up->files[o->file];
    ssize_t result = fs->result;
    uint64_t upto = 0;
    int wrote = 0;

    uv_fs_req_cleanup(fs);
    up->busy = NULL;
    switch (o->type) {
    case OP_OPEN:
        f->opening = 0;
        if (result >= 0) {
            f->fd = (uv_file)result;
            f->made = 1;
            if (up->freed) {
                /* freed while it opened, so cleanup() did not see it */
                push(up, OP_CLOSE, o->file);
                if (up->remove)
                    push(up, OP_UNLINK, o->file);
            }
        } else {
            set_failed(up, 500);
        }
        break;
    case OP_WRITE:
        if (result < 0 || (size_t)result != o->data.len) {
            /* a short write to a regular file means the disk is full */
            set_failed(up, 500);
        } else {
            upto = o->upto;
            wrote = 1;
        }
        break;
    default:
        break;
    }
    op_free(up, o);
    after_op(up, wrote ? upto : 0);
    run(up);
}

static void work_cb(uv_work_t *w, int status)
{
    bx_upload_t *up = w->data;
    op_t *o = up->busy;

    (void)status;
    up->busy = NULL;
    op_free(up, o);
    if (!up->freed && up->finishing) {
        up->finishing = 0;
        up->in_cb = 1;
        if (!up->status && up->received > up->reported && up->cbs.progress) {
            up->reported = up->received;
            up->cbs.progress(up->ud, up->received);
        }
        if (!up->freed && up->cbs.done)
            up->cbs.done(up->ud, up->status);
        up->in_cb = 0;
    }
    run(up);
}

/* ---- The parser's callbacks ---- */

static int on_head(void *ud, const bx_multipart_head_t *h)
{
    bx_upload_t *up = ud;
    size_t nparts = up->nfiles + up->nfields;

    if (nparts >= BX_UPLOAD_MAX_PARTS)
        return 413;
    if (h->filename) {
        unsigned char rnd[8];
        char hex[17];
        if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0)
            return 500;
        for (int i = 0; i < 8; i++)
            snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
        if (up->nfiles == up->capfiles) {
            up->capfiles = up->capfiles ? up->capfiles * 2 : 4;
            up->files = bx_realloc(up->files, up->capfiles * sizeof(*up->files));
        }
        ufile_t *f = &up->files[up->nfiles];
        memset(f, 0, sizeof(*f));
        f->fd = -1;
        f->pub.field = bx_strdup(h->name);
        f->pub.filename = bx_strdup(h->filename);
        f->pub.content_type = h->content_type ? bx_strdup(h->content_type) : NULL;
        bx_buf_t p = BX_BUF_INIT;
        bx_buf_printf(&p, "%s/bx-upload-%s", up->opts.dir, hex);
        f->pub.path = p.data;
        up->nfiles++;
        push(up, OP_OPEN, up->nfiles - 1);
        up->cur = 2;
    } else {
        if (up->nfields == up->capfields) {
            up->capfields = up->capfields ? up->capfields * 2 : 8;
            up->fields = bx_realloc(up->fields, up->capfields * sizeof(*up->fields));
        }
        bx_upload_field_t *fl = &up->fields[up->nfields++];
        fl->name = bx_strdup(h->name);
        fl->value = NULL;
        fl->len = 0;
        up->cur = 1;
    }
    return 0;
}

static int on_data(void *ud, const char *data, size_t len)
{
    bx_upload_t *up = ud;

    if (up->cur == 1) {
        bx_upload_field_t *fl = &up->fields[up->nfields - 1];
        up->field_bytes += len;
        if (up->field_bytes > up->opts.max_fields)
            return 413;
        fl->value = bx_realloc(fl->value, fl->len + len + 1);
        memcpy(fl->value + fl->len, data, len);
        fl->len += len;
        fl->value[fl->len] = '\0';
    } else if (up->cur == 2) {
        size_t i = up->nfiles - 1;
        op_t *o = up->qtail;
        up->files[i].pub.size += len;
        if (!o || o->type != OP_WRITE || o->file != i)
            o = push(up, OP_WRITE, i);
        bx_buf_append(&o->data, data, len);
        o->upto = up->received;
        up->queued += len;
    }
    return 0;
}

static int on_end(void *ud)
{
    bx_upload_t *up = ud;

    if (up->cur == 1 && !up->fields[up->nfields - 1].value) {
        up->fields[up->nfields - 1].value = bx_strdup("");
    } else if (up->cur == 2) {
        push(up, OP_CLOSE, up->nfiles - 1);
    }
    up->cur = 0;
    return 0;
}

/* ---- Public API ---- */

bx_upload_t *bx_upload_new(uv_loop_t *loop, const char *boundary, size_t blen,
                           const bx_upload_opts_t *opts, const bx_upload_cbs_t *cbs, void *ud)
{
    static const bx_multipart_cbs_t mcbs = { on_head, on_data, on_end };
    bx_upload_t *up = bx_calloc(1, sizeof(*up));

    up->loop = loop;
    up->opts = *opts;
    up->opts.dir = NULL;
    up->cbs = *cbs;
    up->ud = ud;
    bx_multipart_init(&up->mp, boundary, blen, &mcbs, up);
    /* the folder goes into every path: a copy without trailing slashes */
    bx_buf_t d = BX_BUF_INIT;
    bx_buf_puts(&d, opts->dir && *opts->dir ? opts->dir : ".");
    while (d.len > 1 && d.data[d.len - 1] == '/')
        d.len--;
    bx_buf_append(&d, "", 1);
    up->opts.dir = d.data;
    return up;
}

int bx_upload_data(bx_upload_t *up, const char *data, size_t len)
{
    if (up->status)
        return up->status;
    if (up->received + len > up->opts.max_size) {
        set_failed(up, 413);
        return 413;
    }
    up->received += len;
    int rc = bx_multipart_feed(&up->mp, data, len);
    if (rc) {
        set_failed(up, rc == BX_MULTIPART_EBAD ? 400 : rc);
        return up->status;
    }
    run(up);
    if (up->status)
        return up->status;
    if (up->queued >= BX_UPLOAD_AHEAD) {
        up->paused = 1;
        return BX_UPLOAD_PAUSE;
    }
    return 0;
}

void bx_upload_finish(bx_upload_t *up)
{
    if (!up->status && bx_multipart_finish(&up->mp) != 0)
        set_failed(up, 400);
    up->finishing = 1;
    push(up, OP_DONE, 0);
    run(up);
}

const bx_upload_file_t *bx_upload_file(const bx_upload_t *up, size_t i)
{
    return i < up->nfiles ? &up->files[i].pub : NULL;
}

const bx_upload_field_t *bx_upload_fields(const bx_upload_t *up, size_t *n)
{
    *n = up->nfields;
    return up->fields;
}

uint64_t bx_upload_received(const bx_upload_t *up)
{
    return up->received;
}

void bx_upload_free(bx_upload_t *up, int remove)
{
    if (up->freed)
        return;
    up->freed = 1;
    up->remove = remove ? 1 : 0;
    cleanup(up);
    if (!up->in_cb)
        run(up);
}
