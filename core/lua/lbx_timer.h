/*
 * lbx_timer.h - bayeux.core.timer() (lbx_timer.c).
 */
#ifndef LBX_TIMER_H
#define LBX_TIMER_H

#include <lua.h>

/* Registers timers in the module table. */
void lbx_timer_open(lua_State *L);

#endif
