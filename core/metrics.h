/*
 * metrics.h - the Prometheus text exposition (format 0.0.4) of the
 * process's counters (base/metrics.h) and of one server's parts.
 */
#ifndef BX_METRICS_EXPO_H
#define BX_METRICS_EXPO_H

#include "base/buf.h"
#include "bayeux/hub.h"
#include "engine/engine.h"

/* Appends the exposition to `out`: the process's counters, and the
 * gauges of `e` and `h` (both borrowed). */
void bx_metrics_render(bx_engine_t *e, bx_hub_t *h, bx_buf_t *out);

#endif
