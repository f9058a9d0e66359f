/*
 * log.c - one line per event, plain or JSON (see log.h).
 */
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

int bx_log_level = BX_LOG_INFO;
static int log_json;
static int log_fd = 2;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* the last warn/error lines, a ring: recent[(recent_next - 1 - i) % N] */
static char recent[BX_LOG_RECENT][256];
static unsigned recent_next, recent_n;

const char *bx_log_recent(int i)
{
    if (i < 0 || (unsigned)i >= recent_n)
        return NULL;
    return recent[(recent_next + BX_LOG_RECENT - 1 - (unsigned)i) % BX_LOG_RECENT];
}



int bx_log_parse_level(const char *name)
{
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int bx_log_set_level(const char *name)
{
    int l = bx_log_parse_level(name);
    if (l < 0)
        return -1;
    bx_log_level = l;
    return 0;
}

int bx_log_set_format(const char *name)
{
    if (name && strcmp(name, "plain") == 0)
        log_json = 0;
    else if (name && strcmp(name, "json") == 0)
        log_json = 1;
    else
        return -1;
    return 0;
}

const char *bx_log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "?";
}

const char *bx_log_format_name(void)
{
    return log_json ? "json" : "plain";
}

void bx_log_set_fd(int fd)
{
    log_fd = fd;
}

/* A line under construction: appends stop at the end, keeping room for
 * the newline, so an over-long line is cut, never overflowed. */
typedef struct {
    char *p;
    size_t len, cap;
} line_t;

static void put(line_t *l, const char *s, size_t n)
{
    if (n > l->cap - 1 - l->len)
        n = l->cap - 1 - l->len;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void puts_(line_t *l, const char *s)
{
    put(l, s, strlen(s));
}

/* A JSON string's body: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8 included) as they are. */
static void put_json(line_t *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[6] = { '\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 15] };
        if (*c == '"' || *c == '\\') {
            char two[2] = { '\\', (char)*c };
            put(l, two, 2);
        } else if (*c == '\n') {
            put(l, "\\n", 2);
        } else if (*c == '\t') {
            put(l, "\\t", 2);
        } else if (*c < 0x20 || *c == 0x7f) {
            put(l, esc, 6);
        } else {
            put(l, (const char *)c, 1);
        }
    }
}

/* A plain field value: bare when it is one word, else quoted like JSON so
 * a reader can split the line on spaces. */
static void put_plain_value(line_t *l, const char *v)
{
    int bare = *v != '\0';
    for (const char *c = v; *c && bare; c++)
        if (*c == ' ' || *c == '"' || *c == '=' || (unsigned char)*c < 0x21)
            bare = 0;
    if (bare) {
        puts_(l, v);
        return;
    }
    put(l, "\"", 1);
    put_json(l, v);
    put(l, "\"", 1);
}

static void put_time(line_t *l)
{
    struct timeval tv;
    struct tm tm;
    char ts[80];         /* room for any int the compiler imagines */

    gettimeofday(&tv, NULL);
    time_t secs = tv.tv_sec;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(tv.tv_usec / 1000));
    puts_(l, ts);
}

static void keep_recent(int level, const char *component, const char *msg)
{
    line_t l = { recent[recent_next], 0, sizeof(recent[0]) };

    if (level > BX_LOG_WARN)
        return;
    puts_(&l, level_names[level]);
    put(&l, " ", 1);
    puts_(&l, component);
    puts_(&l, ": ");
    puts_(&l, msg);
    l.p[l.len] = '\0';
    recent_next = (recent_next + 1) % BX_LOG_RECENT;
    if (recent_n < BX_LOG_RECENT)
        recent_n++;
}

void bx_log_kv(int level, const char *component, const char *msg, const char *const *fields,
               size_t npairs)
{
    char buf[LINE_MAX_BYTES];
    line_t l = { buf, 0, sizeof(buf) };

    if (!bx_log_enabled(level))
        return;
    if (!component)
        component = "bayeux";
    if (!msg)
        msg = "";
    keep_recent(level, component, msg);
    if (log_json) {
        puts_(&l, "{\"ts\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, bx_log_level_name(level));
        puts_(&l, "\",\"component\":\"");
        put_json(&l, component);
        puts_(&l, "\",\"msg\":\"");
        put_json(&l, msg);
        put(&l, "\"", 1);
        for (size_t i = 0; i < npairs; i++) {
            if (!fields[2 * i + 1])
                continue;
            puts_(&l, ",\"");
            put_json(&l, fields[2 * i]);
            puts_(&l, "\":\"");
            put_json(&l, fields[2 * i + 1]);
            put(&l, "\"", 1);
        }
        puts_(&l, "}");
        /* a line cut short would not parse: say so in one that does */
        if (l.len >= l.cap - 1) {
            l.len = 0;
            puts_(&l, "{\"ts\":\"");
            put_time(&l);
            puts_(&l, "\",\"level\":\"");
            puts_(&l, bx_log_level_name(level));
            puts_(&l, "\",\"component\":\"");
            put_json(&l, component);
            puts_(&l, "\",\"msg\":\"(line too long to log)\"}");
        }
    } else {
        put_time(&l);
        put(&l, " ", 1);
        puts_(&l, bx_log_level_name(level));
        put(&l, " ", 1);
        puts_(&l, component);
        puts_(&l, ": ");
        puts_(&l, msg);
        for (size_t i = 0; i < npairs; i++) {
            if (!fields[2 * i + 1])
                continue;
            put(&l, " ", 1);
            puts_(&l, fields[2 * i]);
            put(&l, "=", 1);
            put_plain_value(&l, fields[2 * i + 1]);
        }
    }
    buf[l.len++] = '\n';
    for (size_t off = 0; off < l.len;) {
        ssize_t n = write(log_fd, buf + off, l.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

void bx_logf(int level, const char *component, const char *fmt, ...)
{
    char msg[LINE_MAX_BYTES / 2];
    va_list ap;

    if (!bx_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bx_log_kv(level, component, msg, NULL, 0);
}
