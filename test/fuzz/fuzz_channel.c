/*
 * fuzz_channel.c - libFuzzer target: the channel grammar (core/base/channel.c).
 *
 * The input is a channel name, or "pattern\nname" for the matcher. Every
 * function of channel.h sees it; what they say is checked against each
 * other, so a wrong answer aborts as surely as a bad read: a valid name
 * expands to candidates that each match it, a matching pattern is valid,
 * and the caps never accept what is longer than they allow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "base/channel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const char *name;
    size_t len;
    size_t calls;
} expand_t;

static void on_candidate(void *ud, const char *pattern, size_t len, uint32_t hash)
{
    expand_t *x = ud;

    (void)hash;
    if (strlen(pattern) != len || !bx_channel_parse(pattern, len) ||
        !bx_channel_matches(pattern, len, x->name, x->len))
        abort();
    x->calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    int kind = bx_channel_parse(s, size);

    (void)bx_channel_subscribable(s, size);
    if (bx_channel_within(s, size, 16, 4) && size > 16)
        abort();
    if (kind & BX_CHANNEL_NAME) {
        /* expand reads a NUL-terminated copy's worth: give it one */
        char *copy = malloc(size + 1);
        memcpy(copy, s, size);
        copy[size] = '\0';
        expand_t x = { copy, size, 0 };
        if (bx_channel_expand(copy, size, on_candidate, &x) != x.calls || x.calls == 0)
            abort();
        if (!bx_channel_matches(copy, size, copy, size))
            abort();
        free(copy);
    }
    if (nl) {
        size_t plen = (size_t)(nl - s), nlen = size - plen - 1;
        if ((bx_channel_parse(s, plen) & (BX_CHANNEL_NAME | BX_CHANNEL_PATTERN)) &&
            (bx_channel_parse(nl + 1, nlen) & BX_CHANNEL_NAME))
            (void)bx_channel_matches(s, plen, nl + 1, nlen);
    }
    return 0;
}
