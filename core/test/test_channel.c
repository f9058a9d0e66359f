/*
 * test_channel.c - channel grammar, subscribability, wildcard expansion and
 * matching (reference/bayeux-faye.md §5.1, §5.3).
 */
#include "bx_test.h"
#include "base/channel.h"
#include "base/dict.h"

#include <stdlib.h>

static int parse(const char *s)
{
    return bx_channel_parse(s, strlen(s));
}

static int subscribable(const char *s)
{
    return bx_channel_subscribable(s, strlen(s));
}

static int matches(const char *p, const char *n)
{
    return bx_channel_matches(p, strlen(p), n, strlen(n));
}

static void test_valid_names(void)
{
    static const char *const names[] = {
        "/a", "/foo", "/foo/bar", "/a/b/c/d/e", "/Foo/BAR",
        "/0", "/x-y_z!~()$@", "/-/_/!/~/(/)/$/@", "/chat/room1",
        "/metadata", "/meta_x", "/services", "/servicex/y", "/Meta/x", NULL
    };
    for (int i = 0; names[i]; i++) {
        bx_test_cur = names[i];
        BX_CHECK_INT(parse(names[i]), BX_CHANNEL_NAME);
        BX_CHECK(subscribable(names[i]));
    }
    bx_test_cur = "test_valid_names";
}

static void test_valid_patterns(void)
{
    static const char *const pats[] = {
        "/*", "/**", "/a/*", "/a/**", "/a/b/*", "/a/b/**", "/x-y/$@/*", NULL
    };
    for (int i = 0; pats[i]; i++) {
        bx_test_cur = pats[i];
        BX_CHECK_INT(parse(pats[i]), BX_CHANNEL_PATTERN);
        BX_CHECK(subscribable(pats[i]));     /* /* and /** by anyone (§5.1) */
    }
    bx_test_cur = "test_valid_patterns";
}

static void test_meta_service(void)
{
    BX_CHECK_INT(parse("/meta"), BX_CHANNEL_NAME | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/meta/x"), BX_CHANNEL_NAME | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/meta/handshake"), BX_CHANNEL_NAME | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/meta/subscribe/x"), BX_CHANNEL_NAME | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/meta/*"), BX_CHANNEL_PATTERN | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/meta/**"), BX_CHANNEL_PATTERN | BX_CHANNEL_META);
    BX_CHECK_INT(parse("/service"), BX_CHANNEL_NAME | BX_CHANNEL_SERVICE);
    BX_CHECK_INT(parse("/service/x"), BX_CHANNEL_NAME | BX_CHANNEL_SERVICE);
    BX_CHECK_INT(parse("/service/x/*"), BX_CHANNEL_PATTERN | BX_CHANNEL_SERVICE);
    BX_CHECK_INT(parse("/service/**"), BX_CHANNEL_PATTERN | BX_CHANNEL_SERVICE);
    /* case-sensitive, whole first segment */
    BX_CHECK_INT(parse("/Meta"), BX_CHANNEL_NAME);
    BX_CHECK_INT(parse("/metax/y"), BX_CHANNEL_NAME);
    BX_CHECK_INT(parse("/a/meta"), BX_CHANNEL_NAME);
    BX_CHECK_INT(parse("/a/service/x"), BX_CHANNEL_NAME);

    BX_CHECK(!subscribable("/meta"));
    BX_CHECK(!subscribable("/meta/x"));
    BX_CHECK(!subscribable("/meta/**"));
    BX_CHECK(!subscribable("/service"));
    BX_CHECK(!subscribable("/service/x"));
    BX_CHECK(!subscribable("/service/x/*"));
    BX_CHECK(subscribable("/metax"));
    BX_CHECK(subscribable("/a/meta"));
}

static void test_invalid(void)
{
    static const char *const bad[] = {
        "", "/", "foo", "foo/bar", "/foo/", "//", "/a//b", "//a",
        "/a/*/b", "/a/***", "/a*", "/*a", "/a/*b", "/a/b*", "/**/a", "/*/*",
        "/a b", "/a.b", "/a+b", "/a:b", "/a?b", "/a#b", "/a%20", "/a\\b",
        "/caf\xc3\xa9", "/\xc3\xa9", "/a/\xff", "/a\tb", "/a\nb", "*", "**",
        "/a/", "/a/**/", "/a/*/", " /a", "/a ", "/meta/", "/service/x/*/y",
        NULL
    };
    for (int i = 0; bad[i]; i++) {
        bx_test_cur = bad[i];
        BX_CHECK_INT(parse(bad[i]), 0);
        BX_CHECK(!subscribable(bad[i]));
    }
    bx_test_cur = "test_invalid";
    /* embedded NUL: the length is what counts */
    BX_CHECK_INT(bx_channel_parse("/a\0b", 4), 0);
    BX_CHECK_INT(bx_channel_parse("/ab", 2), BX_CHANNEL_NAME);
    BX_CHECK_INT(bx_channel_parse("/a/**", 4), BX_CHANNEL_PATTERN);     /* "/a/*" */
    BX_CHECK_INT(bx_channel_parse("/meta/x", 5), BX_CHANNEL_NAME | BX_CHANNEL_META);
    BX_CHECK_INT(bx_channel_parse("/service", 4), BX_CHANNEL_NAME);     /* "/ser" */
    BX_CHECK_INT(bx_channel_parse(NULL, 0), 0);
}

/* ---- Expansion ---- */

typedef struct {
    char *items[128];
    size_t n;
} set_t;

static void collect(void *ud, const char *p, size_t len, uint32_t hash)
{
    set_t *s = ud;
    /* the callback's string is NUL-terminated and `len` long, and comes
     * with the dict's hash of it */
    if (s->n < 128 && strlen(p) == len && hash == bx_dict_hash(p, len))
        s->items[s->n++] = strdup(p);
    else if (s->n < 128)
        s->items[s->n++] = strdup("<bad length>");
}

static void set_free(set_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    s->n = 0;
}

static int set_has(const set_t *s, const char *p)
{
    int k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += strcmp(s->items[i], p) == 0;
    return k;
}

/* Expands `name` and requires exactly the set `want` (each once). */
static int expands_to(const char *name, const char *const *want)
{
    set_t s = { { 0 }, 0 };
    size_t nwant = 0, calls = bx_channel_expand(name, strlen(name), collect, &s);
    int ok = 1;

    while (want[nwant])
        nwant++;
    if (calls != nwant || s.n != nwant)
        ok = 0;
    for (size_t i = 0; ok && i < nwant; i++)
        if (set_has(&s, want[i]) != 1)
            ok = 0;
    if (!ok) {
        fprintf(stderr, "  expand(%s) gave %zu:", name, calls);
        for (size_t i = 0; i < s.n; i++)
            fprintf(stderr, " %s", s.items[i]);
        fprintf(stderr, "\n");
    }
    /* every candidate matches the name, as the matcher sees it */
    for (size_t i = 0; ok && i < s.n; i++)
        if (!matches(s.items[i], name))
            ok = 0;
    set_free(&s);
    return ok;
}

static void test_expand(void)
{
    static const char *const one[] = { "/a", "/**", "/*", NULL };
    static const char *const two[] = { "/a/b", "/**", "/a/*", "/a/**", NULL };
    static const char *const three[] = {
        "/a/b/c", "/**", "/a/b/*", "/a/**", "/a/b/**", NULL
    };
    static const char *const four[] = {
        "/w/x/y/z", "/**", "/w/x/y/*", "/w/**", "/w/x/**", "/w/x/y/**", NULL
    };
    static const char *const svc[] = {
        "/service/x", "/**", "/service/*", "/service/**", NULL
    };
    BX_CHECK(expands_to("/a", one));
    BX_CHECK(expands_to("/a/b", two));
    BX_CHECK(expands_to("/a/b/c", three));
    BX_CHECK(expands_to("/w/x/y/z", four));
    BX_CHECK(expands_to("/service/x", svc));    /* /** reaches service (§5.4) */
}

static void test_expand_long(void)
{
    /* longer than the stack buffer: the heap path */
    char name[1200];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(name + n, sizeof(name) - n, "/seg%03d", i);
    BX_CHECK_INT(parse(name), BX_CHANNEL_NAME);

    set_t s = { { 0 }, 0 };
    size_t calls = bx_channel_expand(name, n, collect, &s);
    BX_CHECK_INT(calls, 1 + 1 + 99 + 1);        /* name, /**, 99 prefixes, parent/* */
    BX_CHECK_INT(s.n, calls);
    for (size_t i = 0; i < s.n; i++)
        BX_CHECK(strcmp(s.items[i], "<bad length>") != 0);
    BX_CHECK_INT(set_has(&s, name), 1);
    BX_CHECK_INT(set_has(&s, "/**"), 1);
    BX_CHECK_INT(set_has(&s, "/seg000/**"), 1);
    set_free(&s);
}

/* Checks each candidate of a deep name by its shape alone (O(1) a call),
 * so the check itself does not walk the name again. */
typedef struct {
    const char *name;
    size_t n, calls, prefixes, bad;
    int parent, self, all;
} deep_t;

static void check_deep(void *ud, const char *p, size_t len, uint32_t hash)
{
    deep_t *d = ud;
    d->calls++;
    if (len == d->n && p[len] == '\0' && memcmp(p + len - 2, "/a", 2) == 0)
        d->self++;
    else if (len == 3 && memcmp(p, "/**", 4) == 0)
        d->all++;
    else if (len == d->n && memcmp(p + len - 2, "/*", 3) == 0)
        d->parent++;                    /* "/a/.../a" minus one segment, + "/*" */
    else if (len % 2 == 1 && len >= 5 && memcmp(p + len - 3, "/**", 4) == 0 &&
             p[len - 5] == '/' && p[len - 4] == 'a')
        d->prefixes++;
    else
        d->bad++;
    (void)hash;
}

static void test_expand_deep(void)
{
    /* "/a" x 100000: one candidate per segment, built without copying
     * every prefix; spot-check the hashes of a few */
    size_t depth = 100000, n = 2 * depth;
    char *name = malloc(n + 1);
    for (size_t i = 0; i < depth; i++)
        memcpy(name + 2 * i, "/a", 2);
    name[n] = '\0';
    deep_t d = { name, n, 0, 0, 0, 0, 0, 0 };
    size_t calls = bx_channel_expand(name, n, check_deep, &d);
    BX_CHECK_INT(calls, depth + 2);         /* depth - 1 prefixes, parent, self, /** */
    BX_CHECK_INT(d.calls, calls);
    BX_CHECK_INT(d.self, 1);
    BX_CHECK_INT(d.all, 1);
    BX_CHECK_INT(d.parent, 1);
    BX_CHECK_INT(d.prefixes, depth - 1);
    BX_CHECK_INT(d.bad, 0);
    free(name);
}

static void test_within(void)
{
    BX_CHECK(bx_channel_within("/a/b/c", 6, 6, 3));
    BX_CHECK(!bx_channel_within("/a/b/c", 6, 5, 3));       /* one byte too long */
    BX_CHECK(!bx_channel_within("/a/b/c", 6, 6, 2));       /* one segment too deep */
    BX_CHECK(bx_channel_within("/a/**", 5, 5, 2));         /* the wildcard counts */
    BX_CHECK(!bx_channel_within("/a/**", 5, 5, 1));
    BX_CHECK(bx_channel_within("", 0, 0, 0));
    /* only the length is looked at past the cap */
    BX_CHECK(!bx_channel_within("/a/b", 1000000, 4, 2));
}

static void test_matches(void)
{
    /* exact */
    BX_CHECK(matches("/a/b", "/a/b"));
    BX_CHECK(!matches("/a/b", "/a/bc"));
    BX_CHECK(!matches("/a/b", "/a"));
    BX_CHECK(!matches("/a/b", "/a/b/c"));
    /* one segment */
    BX_CHECK(matches("/*", "/a"));
    BX_CHECK(!matches("/*", "/a/b"));
    BX_CHECK(matches("/a/*", "/a/b"));
    BX_CHECK(!matches("/a/*", "/a"));
    BX_CHECK(!matches("/a/*", "/a/b/c"));
    BX_CHECK(!matches("/a/*", "/ab/c"));
    BX_CHECK(!matches("/a/*", "/b/a"));
    /* one or more segments */
    BX_CHECK(matches("/**", "/a"));
    BX_CHECK(matches("/**", "/a/b/c"));
    BX_CHECK(matches("/a/**", "/a/b"));
    BX_CHECK(matches("/a/**", "/a/b/c"));
    BX_CHECK(!matches("/a/**", "/a"));
    BX_CHECK(!matches("/a/**", "/ab/c"));
    BX_CHECK(!matches("/a/b/**", "/a/c/d"));
    BX_CHECK(matches("/**", "/service/x"));
    BX_CHECK(matches("/meta/**", "/meta/connect"));
    BX_CHECK(!matches("/*", "/"));
    BX_CHECK(!matches("/**", "/"));
}

int main(void)
{
    (void)bx_test_close_walk;   /* harness helper for async tests; none here */
    BX_RUN(test_valid_names);
    BX_RUN(test_valid_patterns);
    BX_RUN(test_meta_service);
    BX_RUN(test_invalid);
    BX_RUN(test_expand);
    BX_RUN(test_expand_long);
    BX_RUN(test_expand_deep);
    BX_RUN(test_within);
    BX_RUN(test_matches);
    return BX_REPORT();
}
