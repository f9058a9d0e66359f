/*
 * memory.h - the embedded engine: all state in this process (memory.c).
 * Made through the factory, bx_engine_new("memory", ...): nothing above
 * engine/ includes this header.
 */
#ifndef BX_ENGINE_MEMORY_H
#define BX_ENGINE_MEMORY_H

#include "engine/engine.h"

/* Creates the memory engine. `proxy` and `opts` are copied. */
bx_engine_t *bx_engine_memory_new(uv_loop_t *loop, const bx_proxy_t *proxy,
                                  const bx_engine_opts_t *opts);

#endif
