/*
 * metrics.c - the process's counters (see metrics.h).
 */
#include "base/metrics.h"

bx_metrics_t bx_metrics;

static const int codes[BX_METRIC_NCODES - 1] = BX_METRIC_CODES;

int bx_metrics_code_slot(int code)
{
    for (int i = 0; i < BX_METRIC_NCODES - 1; i++)
        if (codes[i] == code)
            return i;
    return BX_METRIC_NCODES - 1;
}

int bx_metrics_slot_code(int slot)
{
    return slot >= 0 && slot < BX_METRIC_NCODES - 1 ? codes[slot] : 0;
}
