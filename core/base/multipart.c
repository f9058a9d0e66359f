/*
 * multipart.c - a streaming multipart/form-data parser (see multipart.h).
 *
 * The delimiter is "\r\n--" boundary; the body is read as if a CRLF came
 * before its first byte, so the first delimiter (which has none) is found
 * the same way as the others. A boundary holds no CR (bx_multipart_boundary
 * refuses one), so a CR can only start a delimiter: when a partial match
 * fails, its bytes are plain data and the match starts again at most at
 * the byte that failed. The matched bytes are the delimiter's own, so a
 * match spanning two pieces needs no copy of the first piece.
 */
#include "base/multipart.h"

#include <string.h>
#include <strings.h>

enum { PREAMBLE, AFTER, AFTER_DASH, AFTER_CR, HEADERS, BODY, DONE };

/* RFC 2046 bchars, the blank excepted at the end */
static int is_bchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("'()+_,-./:=? ", c));
}

size_t bx_multipart_boundary(const char *ctype, size_t len, char *out)
{
    static const char type[] = "multipart/form-data";
    size_t i = sizeof(type) - 1;

    if (len < i || strncasecmp(ctype, type, i) != 0)
        return 0;
    while (i < len) {
        /* ; name=value, value a token or a quoted string */
        while (i < len && (ctype[i] == ' ' || ctype[i] == '\t'))
            i++;
        if (i >= len || ctype[i] != ';')
            return 0;
        i++;
        while (i < len && (ctype[i] == ' ' || ctype[i] == '\t'))
            i++;
        size_t name = i;
        while (i < len && ctype[i] != '=' && ctype[i] != ';')
            i++;
        if (i >= len || ctype[i] != '=')
            return 0;
        size_t name_len = i - name;
        i++;
        size_t n = 0;
        int quoted = i < len && ctype[i] == '"';
        char val[BX_MULTIPART_MAX_BOUNDARY + 1];
        int too_long = 0;
        if (quoted) {
            i++;
            while (i < len && ctype[i] != '"') {
                if (ctype[i] == '\\' && i + 1 < len)
                    i++;
                if (n < BX_MULTIPART_MAX_BOUNDARY)
                    val[n++] = ctype[i];
                else
                    too_long = 1;
                i++;
            }
            if (i >= len)
                return 0;
            i++;
        } else {
            while (i < len && ctype[i] != ';' && ctype[i] != ' ' && ctype[i] != '\t') {
                if (n < BX_MULTIPART_MAX_BOUNDARY)
                    val[n++] = ctype[i];
                else
                    too_long = 1;
                i++;
            }
        }
        if (name_len == 8 && strncasecmp(ctype + name, "boundary", 8) == 0) {
            if (too_long || n == 0 || val[n - 1] == ' ')
                return 0;
            for (size_t k = 0; k < n; k++)
                if (!is_bchar((unsigned char)val[k]))
                    return 0;
            memcpy(out, val, n);
            out[n] = '\0';
            return n;
        }
    }
    return 0;
}

void bx_multipart_init(bx_multipart_t *mp, const char *boundary, size_t blen,
                       const bx_multipart_cbs_t *cbs, void *ud)
{
    memset(mp, 0, sizeof(*mp));
    mp->cbs = *cbs;
    mp->ud = ud;
    if (blen > BX_MULTIPART_MAX_BOUNDARY)
        blen = BX_MULTIPART_MAX_BOUNDARY;
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, blen);
    mp->dlen = 4 + blen;
    mp->match = 2;              /* the CRLF before the body's first byte */
    mp->state = PREAMBLE;
}

void bx_multipart_free(bx_multipart_t *mp)
{
    bx_buf_free(&mp->head);
}

/* Looks for the delimiter in data; what comes before it is the part's data
 * (passed to on_data when `emit`). Returns the bytes consumed: all of them,
 * or up to the delimiter's last byte (*found set). A negative or positive
 * value in *rc is a callback's refusal. */
static size_t scan(bx_multipart_t *mp, const char *data, size_t len, int emit, int *found,
                   int *rc)
{
    size_t i = 0, run = 0;     /* data[run..] is not yet emitted */

    *found = 0;
    *rc = 0;
    while (i < len) {
        if (mp->match == 0) {
            const char *cr = memchr(data + i, '\r', len - i);
            if (!cr) {
                i = len;
                break;
            }
            i = (size_t)(cr - data);
            /* the data before a possible delimiter is data whatever follows */
            if (emit && i > run && (*rc = mp->cbs.on_data(mp->ud, data + run, i - run)) != 0)
                return i;
            run = i;
            mp->match = 1;
            i++;
            continue;
        }
        if (data[i] == mp->delim[mp->match]) {
            mp->match++;
            i++;
            if (mp->match == mp->dlen) {
                mp->match = 0;
                *found = 1;
                return i;
            }
            continue;
        }
        /* a false start: the bytes matched so far were data */
        if (emit && (*rc = mp->cbs.on_data(mp->ud, mp->delim, mp->match)) != 0)
            return i;
        mp->match = 0;
        run = i;
    }
    if (emit && mp->match == 0 && len > run)
        *rc = mp->cbs.on_data(mp->ud, data + run, len - run);
    return len;
}

/* Copies a parameter value (token or quoted string) at s[*i..] into out. */
static void param_value(const char *s, size_t len, size_t *i, bx_buf_t *out)
{
    size_t k = *i;

    bx_buf_reset(out);
    if (k < len && s[k] == '"') {
        k++;
        while (k < len && s[k] != '"') {
            /* browsers send a Windows path's backslashes as they are: only
             * one before a quote or a backslash escapes it */
            if (s[k] == '\\' && k + 1 < len && (s[k + 1] == '"' || s[k + 1] == '\\'))
                k++;
            bx_buf_append(out, s + k, 1);
            k++;
        }
        if (k < len)
            k++;
    } else {
        while (k < len && s[k] != ';' && s[k] != ' ' && s[k] != '\t') {
            bx_buf_append(out, s + k, 1);
            k++;
        }
    }
    bx_buf_append(out, "", 1);
    *i = k;
}

/* Reads Content-Disposition's form-data, name and filename. */
static int disposition(const char *v, size_t len, bx_buf_t *name, bx_buf_t *file, int *has_file)
{
    size_t i = 9;

    if (len < 9 || strncasecmp(v, "form-data", 9) != 0)
        return -1;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
            i++;
        size_t p = i;
        while (i < len && v[i] != '=' && v[i] != ';')
            i++;
        if (i >= len || v[i] != '=')
            continue;
        size_t plen = i - p;
        while (plen && (v[p + plen - 1] == ' ' || v[p + plen - 1] == '\t'))
            plen--;
        i++;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (plen == 4 && strncasecmp(v + p, "name", 4) == 0) {
            param_value(v, len, &i, name);
        } else if (plen == 8 && strncasecmp(v + p, "filename", 8) == 0) {
            param_value(v, len, &i, file);
            *has_file = 1;
        } else {
            bx_buf_t skip = BX_BUF_INIT;
            param_value(v, len, &i, &skip);
            bx_buf_free(&skip);
        }
    }
    return name->len > 1 ? 0 : -1;     /* more than its NUL */
}

/* The header block is complete (mp->head, ending in an empty line): reports
 * the part's head. */
static int part_head(bx_multipart_t *mp)
{
    const char *h = mp->head.data;
    size_t len = mp->head.len, i = 0;
    bx_buf_t name = BX_BUF_INIT, file = BX_BUF_INIT, ctype = BX_BUF_INIT;
    int has_file = 0, seen = 0, rc = 0;

    if (memchr(h, '\0', len))
        return BX_MULTIPART_EBAD;
    while (i + 2 <= len) {
        const char *eol = memmem(h + i, len - i, "\r\n", 2);
        size_t e = (size_t)(eol - h);           /* the block ends in CRLF */
        const char *line = h + i;
        size_t ll = e - i;
        const char *colon = memchr(line, ':', ll);
        i = e + 2;
        if (!ll)
            break;
        if (!colon) {
            rc = BX_MULTIPART_EBAD;
            goto out;
        }
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vl = ll - nl - 1;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (nl == 19 && strncasecmp(line, "content-disposition", 19) == 0) {
            bx_buf_reset(&name);
            bx_buf_reset(&file);
            has_file = 0;
            if (disposition(v, vl, &name, &file, &has_file) != 0) {
                rc = BX_MULTIPART_EBAD;
                goto out;
            }
            seen = 1;
        } else if (nl == 12 && strncasecmp(line, "content-type", 12) == 0) {
            bx_buf_reset(&ctype);
            bx_buf_append(&ctype, v, vl);
            bx_buf_append(&ctype, "", 1);
        }
    }
    if (!seen) {
        rc = BX_MULTIPART_EBAD;
        goto out;
    }
    const char *fname = NULL;
    if (has_file) {
        /* a browser may send a whole path: only its last segment is a name */
        fname = file.data;
        for (const char *p = file.data; *p; p++)
            if (*p == '/' || *p == '\\')
                fname = p + 1;
    }
    bx_multipart_head_t head = { name.data, fname, ctype.len ? ctype.data : NULL };
    rc = mp->cbs.on_head(mp->ud, &head);
out:
    bx_buf_free(&name);
    bx_buf_free(&file);
    bx_buf_free(&ctype);
    return rc;
}

int bx_multipart_feed(bx_multipart_t *mp, const char *data, size_t len)
{
    size_t i = 0;
    int found, rc = 0;

    if (mp->error)
        return mp->error;
    while (i < len && !rc) {
        char c = data[i];
        switch (mp->state) {
        case PREAMBLE:
        case BODY:
            i += scan(mp, data + i, len - i, mp->state == BODY, &found, &rc);
            if (rc || !found)
                break;
            if (mp->state == BODY && (rc = mp->cbs.on_end(mp->ud)) != 0)
                break;
            mp->state = AFTER;
            break;
        case AFTER:
            i++;
            if (c == '-')
                mp->state = AFTER_DASH;
            else if (c == '\r')
                mp->state = AFTER_CR;
            else if (c != ' ' && c != '\t')
                rc = BX_MULTIPART_EBAD;
            break;
        case AFTER_DASH:
            i++;
            if (c == '-')
                mp->state = DONE;
            else
                rc = BX_MULTIPART_EBAD;
            break;
        case AFTER_CR:
            i++;
            if (c != '\n') {
                rc = BX_MULTIPART_EBAD;
                break;
            }
            bx_buf_reset(&mp->head);
            mp->state = HEADERS;
            break;
        case HEADERS: {
            /* up to the next LF at most: the block's end is a CRLF CRLF */
            const char *lf = memchr(data + i, '\n', len - i);
            size_t n = lf ? (size_t)(lf - (data + i)) + 1 : len - i;
            if (mp->head.len + n > BX_MULTIPART_MAX_HEAD) {
                rc = BX_MULTIPART_EBAD;
                break;
            }
            bx_buf_append(&mp->head, data + i, n);
            i += n;
            const char *h = mp->head.data;
            size_t hl = mp->head.len;
            if ((hl == 2 && memcmp(h, "\r\n", 2) == 0) ||
                (hl >= 4 && memcmp(h + hl - 4, "\r\n\r\n", 4) == 0)) {
                rc = part_head(mp);
                bx_buf_reset(&mp->head);
                mp->match = 0;
                mp->state = BODY;
            }
            break;
        }
        default:                /* DONE: the epilogue is ignored */
            i = len;
            break;
        }
    }
    if (rc)
        mp->error = rc;
    return rc;
}

int bx_multipart_finish(bx_multipart_t *mp)
{
    if (mp->error)
        return mp->error;
    return mp->state == DONE ? 0 : BX_MULTIPART_EBAD;
}
