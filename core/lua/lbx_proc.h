/*
 * lbx_proc.h - bayeux.core.spawn(): child processes on the loop
 * (lbx_proc.c), and bayeux.core.read_file / write_file in the loop's
 * thread pool.
 */
#ifndef LBX_PROC_H
#define LBX_PROC_H

#include <lua.h>

/* Registers spawn, read_file and write_file in the module table. */
void lbx_proc_open(lua_State *L);

/* The state is closing: every child still running gets SIGTERM and its
 * handles are closed, so that none outlives the loop unseen. */
void lbx_proc_close_all(void);

#endif
