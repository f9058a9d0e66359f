/*
 * test_multipart.c - the streaming multipart/form-data parser
 * (base/multipart.c) and the upload that writes its files to disk
 * (net/upload.c).
 */
#include "bx_test.h"
#include "base/buf.h"
#include "base/multipart.h"
#include "net/upload.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the callbacks saw, as text: "H name|file|type" "D bytes" "E". */
typedef struct {
    bx_buf_t log;
    int refuse_data;
} seen_t;

static int s_head(void *ud, const bx_multipart_head_t *h)
{
    seen_t *s = ud;
    bx_buf_printf(&s->log, "[H %s|%s|%s]", h->name, h->filename ? h->filename : "-",
                  h->content_type ? h->content_type : "-");
    return 0;
}

static int s_data(void *ud, const char *data, size_t len)
{
    seen_t *s = ud;
    if (s->refuse_data)
        return 413;
    bx_buf_append(&s->log, data, len);
    return 0;
}

static int s_end(void *ud)
{
    seen_t *s = ud;
    bx_buf_puts(&s->log, "[E]");
    return 0;
}

static const bx_multipart_cbs_t cbs = { s_head, s_data, s_end };

static const char body[] =
    "preamble\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"title\"\r\n"
    "\r\n"
    "a\r\nb--XyZ not yet\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"C:\\\\dir\\\\p.png\"\r\n"
    "Content-Type: image/png\r\n"
    "\r\n"
    "\x89PNG\r\n\r\n--X\r\r\n-\r\n--Xy\r\n"
    "--XyZ--\r\n"
    "epilogue --XyZ junk";

static const char expect[] =
    "[H title|-|-]a\r\nb--XyZ not yet[E]"
    "[H file|p.png|image/png]\x89PNG\r\n\r\n--X\r\r\n-\r\n--Xy[E]";

/* Parses body in pieces of `step` bytes; returns the log. */
static char *parse_in_steps(size_t step, int *rc, int *fin)
{
    seen_t s = { BX_BUF_INIT, 0 };
    bx_multipart_t mp;
    size_t len = sizeof(body) - 1;

    bx_multipart_init(&mp, "XyZ", 3, &cbs, &s);
    *rc = 0;
    for (size_t i = 0; i < len && !*rc; i += step)
        *rc = bx_multipart_feed(&mp, body + i, i + step > len ? len - i : step);
    *fin = bx_multipart_finish(&mp);
    bx_multipart_free(&mp);
    bx_buf_append(&s.log, "", 1);
    return s.log.data;
}

static void test_parts_whatever_the_pieces(void)
{
    for (size_t step = 1; step <= sizeof(body); step++) {
        int rc, fin;
        char *log = parse_in_steps(step, &rc, &fin);
        if (strcmp(log, expect) != 0)
            fprintf(stderr, "  step %zu: %s\n", step, log);
        BX_CHECK_INT(rc, 0);
        BX_CHECK_INT(fin, 0);
        BX_CHECK_STR(log, expect);
        free(log);
    }
}

static void test_boundary(void)
{
    char b[BX_MULTIPART_MAX_BOUNDARY + 1];
    const char *t1 = "multipart/form-data; boundary=----WebKitFormBoundaryAbC";
    const char *t2 = "Multipart/Form-Data; charset=utf-8; boundary=\"a b:c\"";
    const char *t3 = "application/x-www-form-urlencoded";
    const char *t4 = "multipart/form-data; boundary=\"a\r\nb\"";
    const char *t5 = "multipart/form-data";

    BX_CHECK_INT(bx_multipart_boundary(t1, strlen(t1), b), 25);
    BX_CHECK_STR(b, "----WebKitFormBoundaryAbC");
    BX_CHECK_INT(bx_multipart_boundary(t2, strlen(t2), b), 5);
    BX_CHECK_STR(b, "a b:c");
    BX_CHECK_INT(bx_multipart_boundary(t3, strlen(t3), b), 0);
    BX_CHECK_INT(bx_multipart_boundary(t4, strlen(t4), b), 0);
    BX_CHECK_INT(bx_multipart_boundary(t5, strlen(t5), b), 0);
}

static void test_bad_bodies(void)
{
    static const char *const bad[] = {
        "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",     /* no disposition */
        "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--",  /* no name */
        "--XyZx\r\n",
        "--XyZ-x",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        seen_t s = { BX_BUF_INIT, 0 };
        bx_multipart_t mp;
        bx_multipart_init(&mp, "XyZ", 3, &cbs, &s);
        BX_CHECK_INT(bx_multipart_feed(&mp, bad[i], strlen(bad[i])), BX_MULTIPART_EBAD);
        BX_CHECK_INT(bx_multipart_feed(&mp, "x", 1), BX_MULTIPART_EBAD);
        bx_multipart_free(&mp);
        bx_buf_free(&s.log);
    }
    /* cut short: no closing delimiter */
    seen_t s = { BX_BUF_INIT, 0 };
    bx_multipart_t mp;
    const char *cut = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nxyz";
    bx_multipart_init(&mp, "XyZ", 3, &cbs, &s);
    BX_CHECK_INT(bx_multipart_feed(&mp, cut, strlen(cut)), 0);
    BX_CHECK_INT(bx_multipart_finish(&mp), BX_MULTIPART_EBAD);
    bx_multipart_free(&mp);
    /* a callback's refusal comes back as it is */
    s.refuse_data = 1;
    bx_multipart_init(&mp, "XyZ", 3, &cbs, &s);
    BX_CHECK_INT(bx_multipart_feed(&mp, cut, strlen(cut)), 413);
    BX_CHECK_INT(bx_multipart_finish(&mp), 413);
    bx_multipart_free(&mp);
    bx_buf_free(&s.log);
}

/* ---- The upload ---- */

typedef struct {
    int done, status, resumed;
    uint64_t progress;
} up_seen_t;

static void u_progress(void *ud, uint64_t bytes)
{
    up_seen_t *s = ud;
    s->progress = bytes;
}

static void u_resume(void *ud)
{
    up_seen_t *s = ud;
    s->resumed++;
}

static void u_done(void *ud, int status)
{
    up_seen_t *s = ud;
    s->done++;
    s->status = status;
}

static const bx_upload_cbs_t ucbs = { u_progress, u_resume, u_done };

/* A body with one field and one file of `size` bytes. */
static void make_body(bx_buf_t *b, size_t size)
{
    bx_buf_puts(b, "--B\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nv\r\n"
                   "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n");
    for (size_t i = 0; i < size; i++) {
        char c = (char)('a' + i % 26);
        bx_buf_append(b, &c, 1);
    }
    bx_buf_puts(b, "\r\n--B--\r\n");
}

static char dir[] = "/tmp/bx-test-upload.XXXXXX";

static int files_in_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static void test_upload_to_disk(void)
{
    uv_loop_t loop;
    up_seen_t s = { 0 };
    bx_buf_t b = BX_BUF_INIT;
    size_t size = 3 * BX_UPLOAD_AHEAD;  /* passes the pause threshold */
    bx_upload_opts_t o = { dir, 10 * 1024 * 1024, 1024 };
    int paused = 0;

    uv_loop_init(&loop);
    make_body(&b, size);
    bx_upload_t *up = bx_upload_new(&loop, "B", 1, &o, &ucbs, &s);
    for (size_t i = 0; i < b.len; i += 65536) {
        int rc = bx_upload_data(up, b.data + i, i + 65536 > b.len ? b.len - i : 65536);
        BX_CHECK(rc == 0 || rc == BX_UPLOAD_PAUSE);
        if (rc == BX_UPLOAD_PAUSE) {
            paused++;
            int before = s.resumed;
            while (s.resumed == before)
                uv_run(&loop, UV_RUN_ONCE);
        }
    }
    BX_CHECK(paused > 0);
    bx_upload_finish(up);
    BX_CHECK_INT(s.done, 0);                /* never inside the call */
    while (!s.done)
        uv_run(&loop, UV_RUN_ONCE);
    BX_CHECK_INT(s.status, 0);
    BX_CHECK_INT(s.progress, b.len);
    size_t nf;
    const bx_upload_field_t *fl = bx_upload_fields(up, &nf);
    BX_CHECK_INT(nf, 1);
    BX_CHECK_STR(fl[0].name, "n");
    BX_CHECK_STR(fl[0].value, "v");
    const bx_upload_file_t *f = bx_upload_file(up, 0);
    BX_CHECK(f && !bx_upload_file(up, 1));
    BX_CHECK_STR(f->filename, "x.bin");
    BX_CHECK_STR(f->content_type, "application/octet-stream");
    BX_CHECK_INT(f->size, size);
    struct stat st;
    BX_CHECK_INT(stat(f->path, &st), 0);
    BX_CHECK_INT(st.st_size, size);
    BX_CHECK_INT(files_in_dir(), 1);
    bx_upload_free(up, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(files_in_dir(), 0);
    bx_buf_free(&b);
    BX_LOOP_CLOSE(&loop);
}

static void test_upload_over_limit(void)
{
    uv_loop_t loop;
    up_seen_t s = { 0 };
    bx_buf_t b = BX_BUF_INIT;
    bx_upload_opts_t o = { dir, 100000, 1024 };
    int rc = 0;

    uv_loop_init(&loop);
    make_body(&b, 300000);
    bx_upload_t *up = bx_upload_new(&loop, "B", 1, &o, &ucbs, &s);
    for (size_t i = 0; i < b.len && (rc == 0 || rc == BX_UPLOAD_PAUSE); i += 16384) {
        rc = bx_upload_data(up, b.data + i, i + 16384 > b.len ? b.len - i : 16384);
        uv_run(&loop, UV_RUN_NOWAIT);       /* let some writes land */
    }
    BX_CHECK_INT(rc, 413);
    bx_upload_free(up, 1);                  /* the partial file goes */
    uv_run(&loop, UV_RUN_DEFAULT);
    BX_CHECK_INT(files_in_dir(), 0);
    BX_CHECK_INT(s.done, 0);
    bx_buf_free(&b);
    BX_LOOP_CLOSE(&loop);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    BX_RUN(test_parts_whatever_the_pieces);
    BX_RUN(test_boundary);
    BX_RUN(test_bad_bodies);
    BX_RUN(test_upload_to_disk);
    BX_RUN(test_upload_over_limit);
    rmdir(dir);
    return BX_REPORT();
}
