#!/bin/sh
# make bench: our figures beside Node faye's, measured in the same run, each
# benchmark in its own file (see its header for what it measures and the
# environment variables that scale it), then one summary table.
#
#   sh bench/run.sh                     (make bench)
#   SUBS=500 MSGS=200 sh bench/run.sh   (variables reach every benchmark)
set -e
cd "$(dirname "$0")/.."
ulimit -n 20000 2>/dev/null || true
BENCH_SUMMARY=$(mktemp)
export BENCH_SUMMARY
trap 'rm -f "$BENCH_SUMMARY"' EXIT
for b in fanout ws_fanout ws_latency ext_overhead ws_memory; do
    echo
    node "bench/$b.js"
done
node bench/summary.js "$BENCH_SUMMARY"
