/*
 * wsdeflate.c - permessage-deflate: negotiation and codec (wsdeflate.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include "base/later.h"
#include "net/wsdeflate.h"

bx_wsdeflate_stats_t bx_wsdeflate_stats;

/* zlib's speed/size middle: a shared payload is compressed once for all
 * its recipients, so the level costs little per socket. */
#define LEVEL 6

/* ---- Negotiation ---- */

typedef struct {
    const char *p, *end;
} cur_t;

static void skip_ws(cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int is_tchar(char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A token at the cursor into [*s, *s + *n); 0 when there is none. */
static int token(cur_t *c, const char **s, size_t *n)
{
    const char *b = c->p;

    while (c->p < c->end && is_tchar(*c->p))
        c->p++;
    *s = b;
    *n = (size_t)(c->p - b);
    return *n > 0;
}

/* A parameter value, token or quoted-string, unquoted into `v` (cut at
 * `cap` - 1 bytes: longer values are invalid for every parameter we
 * know). Returns 0 when malformed. */
static int value(cur_t *c, char *v, size_t cap)
{
    size_t k = 0;
    int too_long = 0;

    if (c->p < c->end && *c->p == '"') {
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\' && ++c->p == c->end)
                return 0;
            if (k + 1 < cap)
                v[k++] = *c->p;
            else
                too_long = 1;
            c->p++;
        }
        if (c->p == c->end)
            return 0;
        c->p++;
    } else {
        const char *s;
        if (!token(c, &s, &k))
            return 0;
        if (k >= cap)
            too_long = 1, k = 0;
        else
            memcpy(v, s, k);
    }
    v[too_long ? 0 : k] = '\0';     /* too long: empty, never valid */
    return 1;
}

/* Window bits "8".."15" (no sign, no leading zero); 0 otherwise. */
static unsigned window_bits(const char *v)
{
    if (strcmp(v, "8") == 0 || strcmp(v, "9") == 0)
        return (unsigned)(v[0] - '0');
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
        return 10u + (unsigned)(v[1] - '0');
    return 0;
}

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

/* One offer's parameter: folds it into *seen and *bits; 0 when the offer
 * cannot be accepted (unknown, repeated, or a bad value). */
static int offer_param(const char *name, size_t n, int has_value, const char *v,
                       unsigned *seen, unsigned *bits)
{
    unsigned flag;

#define IS(lit) (n == sizeof(lit) - 1 && strncasecmp(name, lit, n) == 0)
    if (IS("server_no_context_takeover"))
        flag = P_SNCT;
    else if (IS("client_no_context_takeover"))
        flag = P_CNCT;
    else if (IS("server_max_window_bits"))
        flag = P_SMWB;
    else if (IS("client_max_window_bits"))
        flag = P_CMWB;
    else
        return 0;
#undef IS
    if (*seen & flag)
        return 0;
    *seen |= flag;
    switch (flag) {
    case P_SNCT:
    case P_CNCT:
        return !has_value;
    case P_SMWB:
        /* zlib's raw deflate has no 256-byte window: an offer that
         * insists on 8 is declined */
        *bits = has_value ? window_bits(v) : 0;
        return *bits >= 9;
    default:
        /* our inflater's window is 15 bits, enough for any client's */
        return !has_value || window_bits(v) != 0;
    }
}

int bx_wsdeflate_negotiate(const char *offers, size_t len, bx_buf_t *answer)
{
    cur_t c = { offers, offers + len };

    while (c.p < c.end) {
        const char *name;
        size_t n;
        unsigned seen = 0, bits = 15;
        int ok = 1;

        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;          /* an empty list element */
            continue;
        }
        if (c.p == c.end)
            break;
        if (!token(&c, &name, &n))
            return 0;       /* malformed: no offer is trusted */
        int ours = n == 18 && strncasecmp(name, "permessage-deflate", 18) == 0;
        for (;;) {
            const char *pn;
            size_t pl;
            char v[16];
            int has_value = 0;
            skip_ws(&c);
            if (c.p == c.end || *c.p != ';')
                break;
            c.p++;
            skip_ws(&c);
            if (!token(&c, &pn, &pl))
                return 0;
            skip_ws(&c);
            v[0] = '\0';
            if (c.p < c.end && *c.p == '=') {
                c.p++;
                skip_ws(&c);
                if (!value(&c, v, sizeof(v)))
                    return 0;
                has_value = 1;
            }
            if (ours && ok && !offer_param(pn, pl, has_value, v, &seen, &bits))
                ok = 0;
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p != ',')
            return 0;
        if (ours && ok) {
            bx_buf_puts(answer, "permessage-deflate; server_no_context_takeover; "
                                "client_no_context_takeover");
            if (seen & P_SMWB)
                bx_buf_printf(answer, "; server_max_window_bits=%u", bits);
            return (int)bits;
        }
    }
    return 0;
}

int bx_wsdeflate_accept(const char *answer, size_t len)
{
    cur_t c = { answer, answer + len };
    const char *name;
    size_t n;
    unsigned seen = 0, bits = 15;

    skip_ws(&c);
    if (!token(&c, &name, &n) || n != 18 || strncasecmp(name, "permessage-deflate", 18) != 0)
        return -1;
    for (;;) {
        const char *pn;
        size_t pl;
        char v[16];
        unsigned flag, b = 0;
        skip_ws(&c);
        if (c.p == c.end)
            break;
        if (*c.p != ';')
            return -1;      /* a second extension: we offered one */
        c.p++;
        skip_ws(&c);
        if (!token(&c, &pn, &pl))
            return -1;
        skip_ws(&c);
        v[0] = '\0';
        int has_value = 0;
        if (c.p < c.end && *c.p == '=') {
            c.p++;
            skip_ws(&c);
            if (!value(&c, v, sizeof(v)))
                return -1;
            has_value = 1;
            b = window_bits(v);
        }
#define IS(lit) (pl == sizeof(lit) - 1 && strncasecmp(pn, lit, pl) == 0)
        if (IS("server_no_context_takeover") && !has_value)
            flag = P_SNCT;
        else if (IS("client_no_context_takeover") && !has_value)
            flag = P_CNCT;
        else if (IS("server_max_window_bits") && b)
            flag = P_SMWB;
        else if (IS("client_max_window_bits") && b >= 9)
            flag = P_CMWB, bits = b;    /* zlib makes no 8-bit window */
        else
            return -1;
#undef IS
        if (seen & flag)
            return -1;
        seen |= flag;
    }
    /* we asked for no context takeover from the server: without it every
     * socket would keep an inflater between messages */
    return (seen & P_SNCT) ? (int)bits : -1;
}

/* ---- Deflate, shared within a turn ---- */

#define CACHE_N 32              /* distinct payloads remembered per turn */

/* A payload compressed in this turn. It is found again by the identity of
 * its chunks (a delivery with the static brackets around it: a pointer
 * comparison), or else by its bytes (several deliveries joined into a
 * chunk of each socket's own, identical for every member of a room):
 * same length, then memcmp, which stops at the first difference (frames
 * of different messages differ early: channel, id) and costs far less
 * than a checksum of the whole payload would. */
typedef struct {
    unsigned bits;
    size_t len;
    bx_chunkv_t key;            /* the payload's chunks, a reference each */
    bx_chunk_t *z;              /* a reference, or NULL: goes uncompressed */
    int tried;                  /* compressed (z NULL: it would not shrink) */
} entry_t;

static entry_t cache[CACHE_N];
static size_t cache_used, cache_next;
static bx_later_t cache_flush;
static int cache_flush_ready;
/* by window bits, then small or not. A small payload's deflater has a
 * small hash table (memLevel 4: a reset clears 4 KB, not 64 KB) and fixed
 * Huffman codes: building dynamic trees costs ~50k instructions a block,
 * more than compressing a short message; for JSON the fixed codes lose a
 * few percent of the size. */
static z_stream *deflaters[16][2];
#define SMALL_MAX 2048

static void entry_clear(entry_t *e)
{
    bx_chunkv_free(&e->key);
    bx_chunk_unref(e->z);
    memset(e, 0, sizeof(*e));
}

/* The turn is over: the payloads of its frames are written, and a later
 * chunk may reuse an address, so the cache lets them go. */
static void flush_cache(void *ud)
{
    (void)ud;
    for (size_t i = 0; i < cache_used; i++)
        entry_clear(&cache[i]);
    cache_used = cache_next = 0;
}

/* Whether two payloads of the same length hold the same bytes, however
 * they are cut into chunks. */
static int same_bytes(const bx_chunkv_t *a, const bx_chunkv_t *b)
{
    size_t i = 0, j = 0, ai = 0, bj = 0;

    while (i < a->n && j < b->n) {
        size_t k = a->v[i]->len - ai, l = b->v[j]->len - bj;
        if (l < k)
            k = l;
        if (k && memcmp(a->v[i]->data + ai, b->v[j]->data + bj, k) != 0)
            return 0;
        ai += k;
        bj += k;
        if (ai == a->v[i]->len)
            i++, ai = 0;
        if (bj == b->v[j]->len)
            j++, bj = 0;
    }
    return 1;
}

static entry_t *lookup(unsigned bits, const bx_chunkv_t *pl, size_t len)
{
    for (size_t i = 0; i < cache_used; i++) {
        entry_t *e = &cache[i];
        if (e->bits == bits && e->key.n == pl->n &&
            memcmp(e->key.v, pl->v, pl->n * sizeof(bx_chunk_t *)) == 0)
            return e;
    }
    for (size_t i = 0; i < cache_used; i++) {
        entry_t *e = &cache[i];
        if (e->bits == bits && e->len == len && same_bytes(&e->key, pl))
            return e;
    }
    return NULL;
}

static z_stream *deflater(unsigned bits, size_t len)
{
    int small = len <= SMALL_MAX;

    if (!deflaters[bits][small]) {
        z_stream *z = bx_calloc(1, sizeof(*z));
        if (deflateInit2(z, LEVEL, Z_DEFLATED, -(int)bits, small ? 4 : 8,
                         small ? Z_FIXED : Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return NULL;
        }
        deflaters[bits][small] = z;
    }
    return deflaters[bits][small];
}

/* Compresses `pl`: a new chunk, or NULL when it would not shrink. */
static bx_chunk_t *compress_payload(unsigned bits, const bx_chunkv_t *pl, size_t len)
{
    z_stream *z = deflater(bits, len);
    bx_chunk_t *out;
    int r = Z_OK;

    if (!z)
        return NULL;
    bx_wsdeflate_stats.deflates++;
    deflateReset(z);
    /* room for the payload's own size and the 4-byte tail: anything
     * longer is not worth sending compressed */
    out = bx_chunk_alloc(len + 4);
    z->next_out = (Bytef *)out->data;
    z->avail_out = (uInt)(len + 4);
    for (size_t i = 0; i < pl->n && r == Z_OK; i++) {
        z->next_in = (Bytef *)pl->v[i]->data;
        z->avail_in = (uInt)pl->v[i]->len;
        r = deflate(z, i + 1 == pl->n ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        if (z->avail_in != 0)
            r = Z_BUF_ERROR;
    }
    size_t zlen = len + 4 - z->avail_out;
    if (r != Z_OK || z->avail_out == 0 || zlen < 4 || zlen - 4 >= len) {
        bx_chunk_unref(out);
        return NULL;
    }
    out->len = zlen - 4;        /* RFC 7692 7.2.1: drop 00 00 ff ff */
    return out;
}

bx_chunk_t *bx_wsdeflate_deflate(uv_loop_t *loop, unsigned bits, const bx_chunkv_t *payload)
{
    size_t len = bx_chunkv_bytes(payload);
    entry_t *e;

    if (len < BX_WSDEFLATE_MIN || bits < 9 || bits > 15)
        return NULL;
    e = lookup(bits, payload, len);
    if (e) {
        if (!e->tried) {
            /* a short payload seen a second time: a fan-out, worth it */
            e->tried = 1;
            e->z = compress_payload(bits, payload, len);
        } else if (e->z) {
            bx_wsdeflate_stats.shared++;
        }
        return e->z ? bx_chunk_ref(e->z) : NULL;
    }
    if (!cache_flush_ready) {
        bx_later_init(&cache_flush, flush_cache, NULL);
        cache_flush_ready = 1;
    }
    e = &cache[cache_next];
    entry_clear(e);
    cache_next = (cache_next + 1) % CACHE_N;
    if (cache_used < CACHE_N)
        cache_used++;
    e->bits = bits;
    e->len = len;
    for (size_t i = 0; i < payload->n; i++)
        bx_chunkv_push(&e->key, payload->v[i]);
    if (len >= BX_WSDEFLATE_EAGER) {
        e->tried = 1;
        e->z = compress_payload(bits, payload, len);
    }
    bx_later_queue(loop, &cache_flush);
    return e->z ? bx_chunk_ref(e->z) : NULL;
}

/* ---- Inflate ---- */

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing past U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return 0;
        if (n - i <= k)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf)
                return 0;
        i += k + 1;
    }
    return 1;
}

static z_stream inflater;
static int inflater_ready;

unsigned bx_wsdeflate_inflate(const uint8_t *in, size_t len, size_t limit, int text,
                              bx_buf_t *out)
{
    static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
    const uint8_t *part[2] = { in, tail };
    size_t plen[2] = { len, sizeof(tail) };

    bx_buf_reset(out);
    if (!inflater_ready) {
        if (inflateInit2(&inflater, -15) != Z_OK)
            return 1011;
        inflater_ready = 1;
    } else {
        inflateReset(&inflater);
    }
    for (int i = 0; i < 2; i++) {
        inflater.next_in = (Bytef *)part[i];
        inflater.avail_in = (uInt)plen[i];
        for (;;) {
            /* never more room than one byte past the limit: a bomb
             * stops there */
            size_t room = limit - out->len + 1;
            if (room > 16384)
                room = 16384;
            inflater.next_out = (Bytef *)bx_buf_reserve(out, room);
            inflater.avail_out = (uInt)room;
            int r = inflate(&inflater, Z_SYNC_FLUSH);
            size_t made = room - inflater.avail_out;
            out->len += made;
            bx_wsdeflate_stats.inflated += made;
            if (out->len > limit)
                return 1009;
            if (r == Z_STREAM_END)
                goto done;  /* a final block: the tail is not needed */
            if (r == Z_BUF_ERROR && made == 0)
                break;      /* input used up */
            if (r != Z_OK && r != Z_BUF_ERROR)
                return 1007;
            if (inflater.avail_in == 0 && inflater.avail_out > 0)
                break;
        }
    }
done:
    if (text && !utf8_valid((const uint8_t *)out->data, out->len))
        return 1007;
    return 0;
}
