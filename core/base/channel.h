/*
 * channel.h - the Bayeux channel grammar and wildcard expansion.
 *
 * A name is "/seg(/seg)*"; a pattern is "(/seg)*" followed by "/*" or "/**".
 * Segment characters: ASCII letters, digits and - _ ! ~ ( ) $ @
 * (reference/bayeux-faye.md §5.1). Pure functions, no allocation except
 * where stated.
 */
#ifndef BX_CHANNEL_H
#define BX_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

/* Kind bits returned by bx_channel_parse. */
#define BX_CHANNEL_NAME     1   /* a valid plain name */
#define BX_CHANNEL_PATTERN  2   /* a valid pattern (ends in "/*" or "/**") */
#define BX_CHANNEL_META     4   /* valid, first segment "meta" */
#define BX_CHANNEL_SERVICE  8   /* valid, first segment "service" */

/* Classifies `s` (length `n`): 0 when invalid, else NAME or PATTERN, or'ed
 * with META / SERVICE. */
int bx_channel_parse(const char *s, size_t n);

/* Valid and neither meta nor service: what remote clients may subscribe to. */
int bx_channel_subscribable(const char *s, size_t n);

/* Called by bx_channel_expand with each candidate pattern (borrowed, valid
 * only during the call, NUL-terminated) and its bx_dict_hash. */
typedef void (*bx_channel_expand_cb)(void *ud, const char *pattern, size_t len,
                                     uint32_t hash);

/* Calls `fn` for every subscription that matches the plain name `s`: the
 * name itself, "/**", the name's parent + "/*", and each proper prefix +
 * "/**". For "/a/b": "/a/b", "/**", "/a/*", "/a/**" (in no set order).
 * Returns the number of calls. `s` must be a valid name. The work is
 * linear in n plus the number of calls: prefixes are hashed and built
 * incrementally. */
size_t bx_channel_expand(const char *s, size_t n, bx_channel_expand_cb fn, void *ud);

/* Whether `s` (length n) has at most `max_len` bytes and at most
 * `max_depth` segments (a trailing wildcard counts as one). Looks at no
 * more than max_len bytes. */
int bx_channel_within(const char *s, size_t n, size_t max_len, size_t max_depth);

/* Whether the subscription `pattern` (name or pattern) matches the plain
 * name `name`. */
int bx_channel_matches(const char *pattern, size_t plen, const char *name, size_t nlen);

#endif
