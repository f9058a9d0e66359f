/*
 * channel.c - channel grammar and wildcard expansion (see channel.h).
 */
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/channel.h"
#include "base/dict.h"

static int segchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '-': case '_': case '!': case '~': case '(': case ')': case '$': case '@':
        return 1;
    }
    return 0;
}

int bx_channel_parse(const char *s, size_t n)
{
    size_t i = 0, first_len = 0, segs = 0;
    int kind = 0;

    if (n < 2 || s[0] != '/')
        return 0;
    while (i < n) {
        if (s[i] != '/')
            return 0;
        size_t start = ++i;
        while (i < n && segchar((unsigned char)s[i]))
            i++;
        size_t len = i - start;
        if (len == 0) {
            /* a wildcard segment, allowed only at the very end */
            if (i < n && s[i] == '*') {
                if (i + 1 == n)
                    kind = BX_CHANNEL_PATTERN;
                else if (i + 2 == n && s[i + 1] == '*')
                    kind = BX_CHANNEL_PATTERN;
                else
                    return 0;
                break;
            }
            return 0;           /* empty segment: "//", trailing "/" */
        }
        if (segs++ == 0)
            first_len = len;
        if (i < n && s[i] != '/')
            return 0;           /* a character outside the segment set */
    }
    if (!kind)
        kind = BX_CHANNEL_NAME;
    if (segs > 0 && first_len == 4 && memcmp(s + 1, "meta", 4) == 0 && (n == 5 || s[5] == '/'))
        kind |= BX_CHANNEL_META;
    if (segs > 0 && first_len == 7 && memcmp(s + 1, "service", 7) == 0 &&
        (n == 8 || s[8] == '/'))
        kind |= BX_CHANNEL_SERVICE;
    return kind;
}

int bx_channel_subscribable(const char *s, size_t n)
{
    int k = bx_channel_parse(s, n);
    return k && !(k & (BX_CHANNEL_META | BX_CHANNEL_SERVICE));
}

size_t bx_channel_expand(const char *s, size_t n, bx_channel_expand_cb fn, void *ud)
{
    char stackbuf[256];
    char *tmp = n + 4 <= sizeof(stackbuf) ? stackbuf : bx_malloc(n + 4);
    bx_siphash_t st, cand, star;
    size_t calls = 0, last = 0, done = 0;

    /* One pass: `st` has absorbed s[0, done) and tmp holds the same bytes,
     * so each prefix costs only its new bytes plus a short suffix, never
     * a copy or a hash of the whole prefix (which made a deep name cost
     * O(depth^2)). */
    bx_dict_hash_start(&st);
    star = st;
    for (size_t i = 1; i < n; i++) {
        if (s[i] != '/')
            continue;
        /* every '/' that starts a segment after the first marks a proper
         * prefix: prefix + "/**" */
        bx_siphash_update(&st, s + done, i - done);
        memcpy(tmp + done, s + done, i - done);
        done = last = i;
        star = st;
        cand = st;
        bx_siphash_update(&cand, "/**", 3);
        memcpy(tmp + i, "/**", 4);
        fn(ud, tmp, i + 3, bx_dict_hash_end(&cand)), calls++;
    }
    /* parent + "/*"; for a one-segment name the parent is the root */
    cand = star;
    bx_siphash_update(&cand, "/*", 2);
    memcpy(tmp + last, "/*", 3);
    fn(ud, tmp, last + 2, bx_dict_hash_end(&cand)), calls++;
    /* the name itself */
    bx_siphash_update(&st, s + done, n - done);
    memcpy(tmp + done, s + done, n - done);
    tmp[n] = '\0';
    fn(ud, tmp, n, bx_dict_hash_end(&st)), calls++;
    fn(ud, "/**", 3, bx_dict_hash("/**", 3)), calls++;
    if (tmp != stackbuf)
        free(tmp);
    return calls;
}

int bx_channel_within(const char *s, size_t n, size_t max_len, size_t max_depth)
{
    size_t depth = 0;
    const char *p = s, *end = s + n;

    if (n > max_len)
        return 0;
    while ((p = memchr(p, '/', (size_t)(end - p))) != NULL) {
        if (++depth > max_depth)
            return 0;
        p++;
    }
    return 1;
}

int bx_channel_matches(const char *p, size_t plen, const char *name, size_t nlen)
{
    if (plen >= 3 && memcmp(p + plen - 3, "/**", 3) == 0) {
        size_t pre = plen - 3;  /* "/**" matches one or more trailing segments */
        return nlen > pre + 1 && memcmp(p, name, pre) == 0 && name[pre] == '/';
    }
    if (plen >= 2 && memcmp(p + plen - 2, "/*", 2) == 0) {
        size_t pre = plen - 2;
        if (!(nlen > pre + 1 && memcmp(p, name, pre) == 0 && name[pre] == '/'))
            return 0;
        return memchr(name + pre + 1, '/', nlen - pre - 1) == NULL;
    }
    return plen == nlen && memcmp(p, name, nlen) == 0;
}
