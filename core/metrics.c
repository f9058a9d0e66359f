/*
 * metrics.c - the Prometheus text exposition (see metrics.h). Every family
 * has its HELP and TYPE lines, counters end in _total, and a family's
 * samples follow its TYPE line, as `promtool check metrics` wants.
 */
#include <inttypes.h>
#include <string.h>
#include "base/metrics.h"
#include "metrics.h"
#include "net/conn.h"
#include "transport/sse.h"
#include "transport/ws.h"

static void family(bx_buf_t *o, const char *name, const char *type, const char *help)
{
    bx_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(bx_buf_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    family(o, name, type, help);
    bx_buf_printf(o, "%s %" PRIu64 "\n", name, v);
}

static void seconds(bx_buf_t *o, const char *name, const char *type, const char *help,
                    uint64_t ns)
{
    family(o, name, type, help);
    bx_buf_printf(o, "%s %.9f\n", name, (double)ns / 1e9);
}

static const char *const kinds[BX_MK_COUNT] = {
    "handshake", "connect", "subscribe", "unsubscribe", "disconnect", "publish"
};

void bx_metrics_render(bx_engine_t *e, bx_hub_t *h, bx_buf_t *o)
{
    const bx_metrics_t *m = &bx_metrics;
    bx_engine_stats_t st;
    size_t ws = bx_ws_count(), sse = bx_sse_count(), all = bx_conn_count();

    memset(&st, 0, sizeof(st));
    e->ops->stats(e, &st);

    family(o, "bayeux_connections", "gauge",
           "Open TCP connections by what they carry (http: requests, long-polling included).");
    bx_buf_printf(o, "bayeux_connections{transport=\"http\"} %zu\n",
                  all > ws + sse ? all - ws - sse : 0);
    bx_buf_printf(o, "bayeux_connections{transport=\"websocket\"} %zu\n", ws);
    bx_buf_printf(o, "bayeux_connections{transport=\"eventsource\"} %zu\n", sse);
    one(o, "bayeux_connections_accepted_total", "counter", "TCP connections accepted.",
        m->conns_accepted);
    family(o, "bayeux_sockets_opened_total", "counter",
           "WebSocket and EventSource streams opened.");
    bx_buf_printf(o, "bayeux_sockets_opened_total{transport=\"websocket\"} %" PRIu64 "\n",
                  m->ws_opened);
    bx_buf_printf(o, "bayeux_sockets_opened_total{transport=\"eventsource\"} %" PRIu64 "\n",
                  m->sse_opened);
    one(o, "bayeux_http_requests_total", "counter", "HTTP requests read.", m->http_requests);
    one(o, "bayeux_sessions", "gauge", "Bayeux clients (sessions) alive in the engine.",
        st.clients);
    one(o, "bayeux_sessions_connected", "gauge",
        "Sessions with a held connect or a socket on this process.", bx_hub_connected(h));
    one(o, "bayeux_subscriptions", "gauge", "Subscriptions (client, channel pairs).",
        st.subscriptions);
    one(o, "bayeux_channels", "gauge", "Channels and patterns with at least one subscriber.",
        st.channels);
    one(o, "bayeux_messages_received_total", "counter",
        "Bayeux messages received, meta messages included.", m->messages_received);
    one(o, "bayeux_messages_in_total", "counter", "Publishes accepted.", m->messages_in);
    one(o, "bayeux_messages_out_total", "counter",
        "Messages handed to connections (one per recipient).", m->messages_out);
    one(o, "bayeux_bytes_in_total", "counter", "Bytes read from TCP connections.", m->bytes_in);
    one(o, "bayeux_bytes_out_total", "counter", "Bytes written to TCP connections.",
        m->bytes_out);
    one(o, "bayeux_queue_dropped_total", "counter",
        "Messages dropped because a client's queue was full (queue_limit).", st.dropped);
    one(o, "bayeux_slow_readers_total", "counter",
        "Sockets closed because their reader fell max_output bytes behind.", m->slow_readers);
    one(o, "bayeux_handshakes_total", "counter", "Successful handshakes.", m->handshakes);

    family(o, "bayeux_errors_total", "counter",
           "Bayeux error replies by message kind and error code (0: any other code).");
    for (int k = 0; k < BX_MK_COUNT; k++)
        for (int c = 0; c < BX_METRIC_NCODES; c++)
            if (m->errors[k][c])
                bx_buf_printf(o, "bayeux_errors_total{kind=\"%s\",code=\"%d\"} %" PRIu64 "\n",
                              kinds[k], bx_metrics_slot_code(c), m->errors[k][c]);

    one(o, "bayeux_extension_calls_total", "counter",
        "Messages run through the Lua extension chain (incoming and outgoing).", m->ext_calls);
    seconds(o, "bayeux_extension_seconds_total", "counter",
            "Time the loop spent running extension chains.", m->ext_ns);
    one(o, "bayeux_extension_errors_total", "counter",
        "Extensions that raised, called back twice or missed extension_deadline.",
        m->ext_errors);

    family(o, "bayeux_event_loop_lag_seconds", "summary",
           "How late a 1 s timer fired: time the loop was busy elsewhere.");
    bx_buf_printf(o, "bayeux_event_loop_lag_seconds_sum %.9f\n", (double)m->lag_ns_sum / 1e9);
    bx_buf_printf(o, "bayeux_event_loop_lag_seconds_count %" PRIu64 "\n", m->lag_samples);
    seconds(o, "bayeux_event_loop_lag_last_seconds", "gauge", "The last lag measured.",
            m->lag_ns_last);
    seconds(o, "bayeux_event_loop_lag_max_seconds", "gauge", "The largest lag measured.",
            m->lag_ns_max);

    if (strcmp(e->ops->name, "memory") != 0) {
        family(o, "bayeux_redis_latency_seconds", "summary",
               "Round trip of Redis commands, from sending to the reply.");
        bx_buf_printf(o, "bayeux_redis_latency_seconds_sum %.9f\n",
                      (double)m->redis_ns_sum / 1e9);
        bx_buf_printf(o, "bayeux_redis_latency_seconds_count %" PRIu64 "\n",
                      m->redis_commands);
        one(o, "bayeux_redis_reconnects_total", "counter",
            "Redis connections made again after one was lost.", m->redis_reconnects);
        one(o, "bayeux_redis_shards_down", "gauge", "Redis servers unreachable now.",
            m->redis_down);
    }
}
