/*
 * lbx_proc.c - child processes on the loop (uv_spawn) and whole-file reads
 * and writes in the loop's thread pool, so that a route may run a
 * converter or touch a file while the server keeps answering.
 *
 *   local p = core.spawn(file, { args... }, { K = "v" } | nil, cwd | nil,
 *                        function(event, a, b) end)
 *   events: "stdout", line / "stderr", line / "exit", code, signal
 *   p:kill([signum]) -> true | nil, err;  p:pid()
 *
 *   core.read_file(path, function(data, err) end)
 *   core.write_file(path, data, function(ok, err) end)
 *
 * A child is run directly (execvp: no shell), stdin from /dev/null, stdout
 * and stderr on pipes split into lines. "exit" comes once, after the last
 * line of both pipes, whichever of the three ends first. While it runs a
 * child holds its userdata and function (a process in use is not
 * collected), as the timers do.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/buf.h"
#include "base/list.h"
#include "lua/lbx_runtime.h"
#include "lua/lbx_proc.h"

#define PROC_MT "bayeux.process"
/* a line longer than this is handed over in pieces of this size */
#define MAX_LINE (1024 * 1024)

extern char **environ;

typedef struct lproc {
    uv_process_t proc;
    uv_pipe_t pipes[2];         /* stdout, stderr */
    bx_buf_t line[2];           /* a line not yet ended */
    struct lproc **box;
    bx_list_t link;             /* on `live` while its handles are open */
    int self_ref, fn_ref;
    int pipes_open;             /* not yet at end of file */
    int handles;                /* not yet closed */
    int exited, reported;
    int64_t code;
    int signal;
} lproc_t;

static bx_list_t live = BX_LIST_INIT(live);

/* What one event call passes to Lua. */
typedef struct {
    lproc_t *p;
    const char *event;
    const char *data;
    size_t len;
} pcall_t;

static int deliver(lua_State *L)
{
    pcall_t *c = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, c->p->fn_ref);
    lua_pushstring(L, c->event);
    if (c->data) {
        lua_pushlstring(L, c->data, c->len);
        lua_call(L, 2, 0);
    } else {
        lua_pushinteger(L, (lua_Integer)c->p->code);
        lua_pushinteger(L, c->p->signal);
        lua_call(L, 3, 0);
    }
    return 0;
}

static void event(lproc_t *p, const char *name, const char *data, size_t len)
{
    pcall_t c = { p, name, data, len };

    if (!lbx_closing)
        lbx_invoke(name, deliver, &c);
}

static void handle_closed(uv_handle_t *h)
{
    lproc_t *p = h->data;
    lua_State *L = lbx_state();

    if (--p->handles > 0)
        return;
    if (L && !lbx_closing) {
        luaL_unref(L, LUA_REGISTRYINDEX, p->fn_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, p->self_ref);
    }
    bx_buf_free(&p->line[0]);
    bx_buf_free(&p->line[1]);
    free(p);
}

/* Takes p off the live list and closes its handles; freed when they are. */
static void proc_close(lproc_t *p)
{
    if (p->box)
        *p->box = NULL;
    p->box = NULL;
    bx_list_remove(&p->link);
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&p->pipes[i]))
            uv_close((uv_handle_t *)&p->pipes[i], handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->proc))
        uv_close((uv_handle_t *)&p->proc, handle_closed);
}

/* Reports the exit once the child and both pipes are done. */
static void maybe_done(lproc_t *p)
{
    if (!p->exited || p->pipes_open || p->reported)
        return;
    p->reported = 1;
    event(p, "exit", NULL, 0);
    proc_close(p);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int signum)
{
    lproc_t *p = h->data;

    p->exited = 1;
    p->code = status;
    p->signal = signum;
    maybe_done(p);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = bx_malloc(suggested);
    buf->len = suggested;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    lproc_t *p = s->data;
    int i = s == (uv_stream_t *)&p->pipes[0] ? 0 : 1;
    const char *name = i == 0 ? "stdout" : "stderr";
    bx_buf_t *line = &p->line[i];

    if (n > 0) {
        const char *d = buf->base, *end = buf->base + n;
        while (d < end && !p->reported) {
            const char *nl = memchr(d, '\n', (size_t)(end - d));
            size_t take = nl ? (size_t)(nl - d) : (size_t)(end - d);
            if (line->len + take > MAX_LINE)
                take = MAX_LINE - line->len;
            bx_buf_append(line, d, take);
            d += take;
            if (nl && d == nl)
                d++;
            else if (line->len < MAX_LINE)
                break;          /* the line goes on in the next read */
            event(p, name, line->data ? line->data : "", line->len);
            bx_buf_reset(line);
        }
    } else if (n < 0) {
        /* end of file or a read error: what is left is the last line */
        if (line->len)
            event(p, name, line->data, line->len);
        bx_buf_reset(line);
        uv_read_stop(s);
        p->pipes_open--;
        maybe_done(p);
    }
    free(buf->base);
}

static int signal_number(lua_State *L, int idx)
{
    static const struct { const char *name; int sig; } names[] = {
        { "TERM", SIGTERM }, { "KILL", SIGKILL }, { "INT", SIGINT }, { "HUP", SIGHUP },
        { "QUIT", SIGQUIT }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { NULL, 0 }
    };
    if (lua_isnoneornil(L, idx))
        return SIGTERM;
    if (lua_type(L, idx) == LUA_TNUMBER)
        return (int)luaL_checkinteger(L, idx);
    const char *s = luaL_checkstring(L, idx);
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    for (int i = 0; names[i].name; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].sig;
    return luaL_argerror(L, idx, "unknown signal");
}

/* Builds a NULL-terminated array of strings from the table at idx (an
 * array, or with `env` the parent's environment then name=value pairs),
 * in memory owned by a userdata left on the stack. */
static char **string_array(lua_State *L, int idx, const char *first, int env)
{
    size_t n = 1 + (first ? 1 : 0), k = 0;
    if (env) {
        for (char **e = environ; *e; e++)
            n++;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            n++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, idx)) {
        n += lua_rawlen(L, idx);
    }
    char **v = lua_newuserdatauv(L, n * sizeof(char *), 1);
    /* the strings live in a table kept as the array's user value */
    lua_newtable(L);
    int keep = lua_gettop(L);
    if (first)
        v[k++] = (char *)first;
    if (env) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "spawn: env must map names to strings");
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
            v[k++] = (char *)lua_tostring(L, -1);
            lua_rawseti(L, keep, (lua_Integer)k);
            lua_pop(L, 1);
        }
        /* the parent's variables the table does not set */
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq)
                continue;
            lua_pushlstring(L, *e, (size_t)(eq - *e));
            int set = lua_rawget(L, idx) != LUA_TNIL;
            lua_pop(L, 1);
            if (!set)
                v[k++] = *e;
        }
    } else if (!lua_isnil(L, idx)) {
        size_t len = lua_rawlen(L, idx);
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "spawn: arguments must be strings");
            v[k++] = (char *)lua_tostring(L, -1);
            lua_rawseti(L, keep, (lua_Integer)k);       /* keeps the string alive */
        }
    }
    v[k] = NULL;
    lua_setiuservalue(L, -2, 1);
    return v;
}

static int p_kill(lua_State *L);
static int p_pid(lua_State *L);

/* Sets the process metatable on the value on top, making it on first use
 * (a server that never spawns has the registry it had before spawn
 * existed). */
static void set_proc_mt(lua_State *L)
{
    static const luaL_Reg meth[] = { { "kill", p_kill }, { "pid", p_pid }, { NULL, NULL } };
    if (luaL_newmetatable(L, PROC_MT)) {
        luaL_newlib(L, meth);
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
}

/* core.spawn(file, args, env, cwd, fn) -> process | nil, err */
static int l_spawn(lua_State *L)
{
    const char *file = luaL_checkstring(L, 1);
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    const char *cwd = luaL_optstring(L, 4, NULL);
    luaL_checktype(L, 5, LUA_TFUNCTION);

    char **args = string_array(L, 2, file, 0);
    char **env = lua_isnil(L, 3) ? NULL : string_array(L, 3, NULL, 1);

    lproc_t **box = lua_newuserdatauv(L, sizeof(lproc_t *), 0);
    *box = NULL;
    set_proc_mt(L);
    int ud = lua_gettop(L);
    lua_pushvalue(L, 5);
    int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, ud);
    int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* last thing that may raise */

    lproc_t *p = bx_calloc(1, sizeof(*p));
    bx_list_init(&p->link);
    p->fn_ref = fn_ref;
    p->self_ref = self_ref;
    for (int i = 0; i < 2; i++) {
        uv_pipe_init(lbx_loop(), &p->pipes[i], 0);
        p->pipes[i].data = p;
    }
    p->proc.data = p;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->pipes[0];
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->pipes[1];
    uv_process_options_t o;
    memset(&o, 0, sizeof(o));
    o.file = file;
    o.args = args;
    o.env = env;
    o.cwd = cwd;
    o.exit_cb = on_exit_cb;
    o.stdio = stdio;
    o.stdio_count = 3;
    int rc = uv_spawn(lbx_loop(), &p->proc, &o);
    p->handles = 3;
    if (rc < 0) {
        /* the process handle was initialised all the same: close all three */
        p->reported = 1;
        proc_close(p);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot run '%s': %s", file, uv_strerror(rc));
        return 2;
    }
    p->pipes_open = 2;
    for (int i = 0; i < 2; i++)
        uv_read_start((uv_stream_t *)&p->pipes[i], alloc_cb, on_read);
    p->box = box;
    *box = p;
    bx_list_push_head(&live, &p->link);
    lua_pushvalue(L, ud);
    return 1;
}

/* process:kill([signal]) -> true | nil, err; a signal name ("TERM", "KILL",
 * ...) or number, default TERM. */
static int p_kill(lua_State *L)
{
    lproc_t **box = luaL_checkudata(L, 1, PROC_MT);
    int sig = signal_number(L, 2);
    if (!*box || (*box)->exited) {
        lua_pushnil(L);
        lua_pushliteral(L, "the process has exited");
        return 2;
    }
    int rc = uv_process_kill(&(*box)->proc, sig);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, uv_strerror(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* process:pid() -> the child's process id (nil once it has been reported) */
static int p_pid(lua_State *L)
{
    lproc_t **box = luaL_checkudata(L, 1, PROC_MT);
    if (!*box)
        return 0;
    lua_pushinteger(L, (*box)->proc.pid);
    return 1;
}

void lbx_proc_close_all(void)
{
    while (!bx_list_empty(&live)) {
        lproc_t *p = BX_CONTAINER(bx_list_first(&live), lproc_t, link);
        if (!p->exited)
            uv_process_kill(&p->proc, SIGTERM);
        p->reported = 1;
        proc_close(p);
    }
}

/* ---- Files in the thread pool ---- */

typedef struct {
    uv_work_t work;
    int fn_ref;
    char *path;
    bx_buf_t data;              /* read: what was read; write: what to write */
    int write;
    int err;                    /* errno-style, 0 if fine */
} lfile_t;

static void file_work(uv_work_t *w)
{
    lfile_t *f = w->data;
    FILE *fp = fopen(f->path, f->write ? "wb" : "rb");

    if (!fp) {
        f->err = errno;
        return;
    }
    if (f->write) {
        if (f->data.len && fwrite(f->data.data, 1, f->data.len, fp) != f->data.len)
            f->err = errno ? errno : EIO;
    } else {
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
            bx_buf_append(&f->data, chunk, n);
        if (ferror(fp))
            f->err = errno ? errno : EIO;
    }
    if (fclose(fp) != 0 && !f->err)
        f->err = errno ? errno : EIO;
}

static int file_answer(lua_State *L)
{
    lfile_t *f = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, f->fn_ref);
    if (f->err) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", f->path, strerror(f->err));
    } else if (f->write) {
        lua_pushboolean(L, 1);
        lua_pushnil(L);
    } else {
        lua_pushlstring(L, f->data.data ? f->data.data : "", f->data.len);
        lua_pushnil(L);
    }
    lua_call(L, 2, 0);
    return 0;
}

static void file_done(uv_work_t *w, int status)
{
    lfile_t *f = w->data;
    lua_State *L = lbx_state();

    if (status == UV_ECANCELED && !f->err)
        f->err = ECANCELED;
    if (!lbx_closing) {
        lbx_invoke("file callback", file_answer, f);
        luaL_unref(L, LUA_REGISTRYINDEX, f->fn_ref);
    }
    free(f->path);
    bx_buf_free(&f->data);
    free(f);
}

static int file_start(lua_State *L, int write)
{
    size_t plen, dlen = 0;
    const char *path = luaL_checklstring(L, 1, &plen);
    const char *data = write ? luaL_checklstring(L, 2, &dlen) : NULL;
    int fn = write ? 3 : 2;
    luaL_argcheck(L, plen > 0 && !memchr(path, '\0', plen), 1, "not a file path");
    luaL_checktype(L, fn, LUA_TFUNCTION);
    lua_pushvalue(L, fn);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lfile_t *f = bx_calloc(1, sizeof(*f));
    f->fn_ref = ref;
    f->path = bx_strdup(path);
    f->write = write;
    if (write)
        bx_buf_append(&f->data, data, dlen);
    f->work.data = f;
    int rc = uv_queue_work(lbx_loop(), &f->work, file_work, file_done);
    if (rc < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        free(f->path);
        bx_buf_free(&f->data);
        free(f);
        return luaL_error(L, "cannot queue file work: %s", uv_strerror(rc));
    }
    return 0;
}

/* core.read_file(path, fn): fn(data) or fn(nil, err), later. */
static int l_read_file(lua_State *L)
{
    return file_start(L, 0);
}

/* core.write_file(path, data, fn): fn(true) or fn(nil, err), later. */
static int l_write_file(lua_State *L)
{
    return file_start(L, 1);
}

void lbx_proc_open(lua_State *L)
{
    lua_pushcfunction(L, l_spawn);
    lua_setfield(L, -2, "spawn");
    lua_pushcfunction(L, l_read_file);
    lua_setfield(L, -2, "read_file");
    lua_pushcfunction(L, l_write_file);
    lua_setfield(L, -2, "write_file");
}
