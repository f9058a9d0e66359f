/*
 * test_httpdate.c - the HTTP layer's small helpers: IMF-fixdate format and
 * parse (one helper for Date, Last-Modified and If-Modified-Since, whatever
 * the C locale) and the header token-list check.
 */
#include <locale.h>
#include <stdlib.h>
#include "bx_test.h"
#include "net/http.h"

static void test_date_known(void)
{
    char out[BX_HTTP_DATE_SIZE];
    time_t t;

    bx_http_date_format(784111777, out);
    BX_CHECK_STR(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    bx_http_date_format(0, out);
    BX_CHECK_STR(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    bx_http_date_format(951782400, out);        /* a leap day */
    BX_CHECK_STR(out, "Tue, 29 Feb 2000 00:00:00 GMT");
    BX_CHECK_INT(strlen(out), BX_HTTP_DATE_SIZE - 1);

    BX_CHECK_INT(bx_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t), 0);
    BX_CHECK_INT(t, 784111777);
    BX_CHECK_INT(bx_http_date_parse("Tue, 29 Feb 2000 00:00:00 GMT", 29, &t), 0);
    BX_CHECK_INT(t, 951782400);
    BX_CHECK_INT(bx_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", 29, &t), 0);
    BX_CHECK_INT(t, 0);
}

/* Every day over a few centuries formats as gmtime says and parses back. */
static void test_date_round_trip(void)
{
    static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    char out[BX_HTTP_DATE_SIZE], want[64];

    for (time_t t = -2208988800LL; t < 4102444800LL; t += 86400 + 3671) {
        struct tm tm;
        time_t back;
        gmtime_r(&t, &tm);
        snprintf(want, sizeof(want), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        bx_http_date_format(t, out);
        BX_CHECK_STR(out, want);
        BX_CHECK_INT(bx_http_date_parse(out, strlen(out), &back), 0);
        BX_CHECK_INT(back, t);
    }
}

static void test_date_rejects(void)
{
    static const char *bad[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT",       /* RFC 850 */
        "Sun Nov  6 08:49:37 1994",             /* asctime */
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMTX",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Son, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 19x4 08:49:37 GMT",
        "",
    };
    time_t t = 12345;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        BX_CHECK_INT(bx_http_date_parse(bad[i], strlen(bad[i]), &t), -1);
    BX_CHECK_INT(t, 12345);
    /* the length given counts, not a NUL */
    BX_CHECK_INT(bx_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT!", 29, &t), 0);
}

/* A program may set LC_TIME; strftime's %a/%b would follow it. */
static void test_date_locale(void)
{
    char out[BX_HTTP_DATE_SIZE];
    time_t t;

    /* any locale at all: only C may be installed, then this checks little */
    setlocale(LC_ALL, "");
    bx_http_date_format(781433377, out);
    BX_CHECK_STR(out, "Thu, 06 Oct 1994 08:49:37 GMT");
    BX_CHECK_INT(bx_http_date_parse(out, strlen(out), &t), 0);
    BX_CHECK_INT(t, 781433377);
    setlocale(LC_ALL, "C");
}

static bx_http_header_t hdrs[4];
static bx_http_req_t req;

static void set_header(size_t i, const char *name, const char *value)
{
    hdrs[i].name = (bx_str_t){ name, strlen(name) };
    hdrs[i].value = (bx_str_t){ value, strlen(value) };
}

static void test_header_has(void)
{
    req.headers = hdrs;
    req.nheaders = 3;
    set_header(0, "Accept", "text/event-streaming");
    set_header(1, "connection", "keep-alive,  Upgrade ");
    set_header(2, "ACCEPT", "text/html , text/plain");

    /* a longer token that starts with the one looked for is another token */
    BX_CHECK_INT(bx_http_header_has(&req, "Accept", "text/event-stream"), 0);
    BX_CHECK_INT(bx_http_header_has(&req, "Connection", "upgrade"), 1);
    BX_CHECK_INT(bx_http_header_has(&req, "Connection", "keep-alive"), 1);
    BX_CHECK_INT(bx_http_header_has(&req, "Connection", "close"), 0);
    /* every occurrence of the header counts */
    BX_CHECK_INT(bx_http_header_has(&req, "accept", "text/plain"), 1);
    BX_CHECK_INT(bx_http_header_has(&req, "Upgrade", "websocket"), 0);

    set_header(0, "Accept", "text/html,text/event-stream");
    BX_CHECK_INT(bx_http_header_has(&req, "Accept", "text/event-stream"), 1);
    set_header(0, "Accept", "xtext/event-stream");
    BX_CHECK_INT(bx_http_header_has(&req, "Accept", "text/event-stream"), 0);
    set_header(0, "Accept", "");
    BX_CHECK_INT(bx_http_header_has(&req, "Accept", "text/event-stream"), 0);
}

int main(void)
{
    BX_RUN(test_date_known);
    BX_RUN(test_date_round_trip);
    BX_RUN(test_date_rejects);
    BX_RUN(test_date_locale);
    BX_RUN(test_header_has);
    return BX_REPORT();
}
