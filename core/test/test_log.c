/*
 * test_log.c - the log's lines (base/log.h): the level filter, the plain
 * and JSON forms with their escaping, a cut line that still parses, and
 * the ring of recent warn/error lines.
 */
#include "bx_test.h"
#include "base/log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Logs through `fn` into a temporary file and returns its text (static). */
static const char *capture(void (*fn)(void))
{
    static char text[32768];
    FILE *f = tmpfile();
    size_t n;

    bx_log_set_fd(fileno(f));
    fn();
    bx_log_set_fd(2);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void lines_levels(void)
{
    bx_logf(BX_LOG_DEBUG, "t", "hidden %d", 1);
    bx_logf(BX_LOG_INFO, "t", "shown %d", 2);
    bx_logf(BX_LOG_ERROR, "t", "shown %d", 3);
}

static void test_levels(void)
{
    BX_CHECK_INT(bx_log_set_level("info"), 0);
    BX_CHECK_INT(bx_log_set_level("loud"), -1);
    BX_CHECK_INT(bx_log_level, BX_LOG_INFO);
    BX_CHECK_INT(bx_log_set_format("plain"), 0);
    const char *t = capture(lines_levels);
    BX_CHECK(strstr(t, "hidden") == NULL);
    BX_CHECK(strstr(t, " info t: shown 2\n") != NULL);
    BX_CHECK(strstr(t, " error t: shown 3\n") != NULL);
    /* a timestamp first: 2026-12-03T12:48:22.123Z */
    BX_CHECK(strlen(t) > 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
}

static void lines_fields(void)
{
    const char *kv[] = { "a", "one", "b", "two words", "c", NULL, "d", "q\"uote\n" };
    bx_log_kv(BX_LOG_WARN, "comp", "msg \"x\"\ttab", kv, 4);
}

static void test_plain_fields(void)
{
    bx_log_set_format("plain");
    const char *t = capture(lines_fields);
    BX_CHECK(strstr(t, " warn comp: msg \"x\"\ttab a=one b=\"two words\" d=\"q\\\"uote\\n\"\n")
             != NULL);
    BX_CHECK(strstr(t, " c=") == NULL);      /* a NULL value is left out */
}

static void test_json_fields(void)
{
    json_error_t err;

    bx_log_set_format("json");
    const char *t = capture(lines_fields);
    bx_log_set_format("plain");
    BX_CHECK(strchr(t, '\n') == t + strlen(t) - 1);     /* one line */
    json_t *v = json_loads(t, 0, &err);
    BX_CHECK(v != NULL);
    if (!v)
        return;
    BX_CHECK_STR(json_string_value(json_object_get(v, "level")), "warn");
    BX_CHECK_STR(json_string_value(json_object_get(v, "component")), "comp");
    BX_CHECK_STR(json_string_value(json_object_get(v, "msg")), "msg \"x\"\ttab");
    BX_CHECK_STR(json_string_value(json_object_get(v, "b")), "two words");
    BX_CHECK_STR(json_string_value(json_object_get(v, "d")), "q\"uote\n");
    BX_CHECK(json_object_get(v, "c") == NULL);
    BX_CHECK(json_is_string(json_object_get(v, "ts")));
    json_decref(v);
}

static void lines_long(void)
{
    static char big[20000];
    memset(big, '"', sizeof(big) - 1);      /* doubles when escaped */
    const char *kv[] = { "big", big };
    bx_log_kv(BX_LOG_ERROR, "comp", "long", kv, 1);
}

static void test_json_cut_still_parses(void)
{
    json_error_t err;

    bx_log_set_format("json");
    const char *t = capture(lines_long);
    bx_log_set_format("plain");
    json_t *v = json_loads(t, 0, &err);
    BX_CHECK(v != NULL);
    if (v)
        BX_CHECK_STR(json_string_value(json_object_get(v, "msg")), "(line too long to log)");
    json_decref(v);
}

static void lines_recent(void)
{
    for (int i = 0; i < 15; i++)
        bx_logf(BX_LOG_WARN, "r", "warning %d", i);
    bx_logf(BX_LOG_INFO, "r", "not kept");
}

static void test_recent(void)
{
    capture(lines_recent);
    BX_CHECK_STR(bx_log_recent(0), "warn r: warning 14");
    BX_CHECK_STR(bx_log_recent(BX_LOG_RECENT - 1), "warn r: warning 5");
    BX_CHECK(bx_log_recent(BX_LOG_RECENT) == NULL);
}

int main(void)
{
    (void)bx_test_close_walk;   /* harness helper for async tests; none here */
    BX_RUN(test_levels);
    BX_RUN(test_plain_fields);
    BX_RUN(test_json_fields);
    BX_RUN(test_json_cut_still_parses);
    BX_RUN(test_recent);
    return BX_REPORT();
}
