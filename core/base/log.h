/*
 * log.h - the process's log: one line per event on stderr, plain or JSON.
 *
 * Every line has a timestamp (UTC, milliseconds), a level, a component
 * (which part speaks: "redis", "ws", "lua", "access"...), a message and
 * optional key=value fields:
 *
 *   plain: 2026-12-03T12:48:22.123Z warn redis: unreachable shard=a:6379/0 error="Connection refused"
 *   json:  {"ts":"2026-12-03T12:48:22.123Z","level":"warn","component":"redis","msg":"unreachable","shard":"a:6379/0","error":"Connection refused"}
 *
 * The level and the format are process-wide, set once at start (bayeux
 * serve --log-level/--log-format, Lua `log = {...}`). Nothing here
 * allocates: a line is built in a stack buffer (longer ones are cut) and
 * written with one write(2), so concurrent processes' lines do not mix and
 * an out-of-memory report can still be logged. Call sites on a hot path
 * test bx_log_enabled() first, so a disabled level costs one comparison.
 */
#ifndef BX_LOG_H
#define BX_LOG_H

#include <stddef.h>

typedef enum {
    BX_LOG_ERROR = 0,
    BX_LOG_WARN = 1,
    BX_LOG_INFO = 2,
    BX_LOG_DEBUG = 3
} bx_log_level_t;

/* The level in force (lines above it are dropped); default BX_LOG_INFO. */
extern int bx_log_level;

/* Whether a line at `level` would be written. */
#define bx_log_enabled(level) ((int)(level) <= bx_log_level)

/* Sets the level by name: "error", "warn", "info" or "debug". Returns 0, or
 * -1 (nothing changed) for any other name. */
int bx_log_set_level(const char *name);

/* Sets the format by name: "plain" (default) or "json". Returns 0 or -1. */
int bx_log_set_format(const char *name);

/* The names in force (static strings). */
const char *bx_log_level_name(int level);
const char *bx_log_format_name(void);

/* Parses a level name; returns the level or -1. */
int bx_log_parse_level(const char *name);

/* Writes one line at `level` from `component` (all borrowed). `fields`
 * holds `npairs` key/value pairs, 2 * npairs strings (keys at even
 * indexes; a pair with a NULL value is skipped). Does nothing when the
 * level is off. */
void bx_log_kv(int level, const char *component, const char *msg, const char *const *fields,
               size_t npairs);

/* printf-style message, no fields. */
void bx_logf(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The last warn and error lines written (plain text, newest first, at
 * most BX_LOG_RECENT): `i` from 0; NULL past the last. Borrowed, valid
 * until the next line is logged. For the monitor's "recent errors". */
#define BX_LOG_RECENT 10
const char *bx_log_recent(int i);

/* Where lines go (default 2, stderr); for tests. */
void bx_log_set_fd(int fd);

#endif
