/*
 * lbx_fs.h - realpath and stat for the static file server (lbx_fs.c).
 */
#ifndef LBX_FS_H
#define LBX_FS_H

#include <lua.h>

/* Registers realpath and stat in the module table. */
void lbx_fs_open(lua_State *L);

#endif
