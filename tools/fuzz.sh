#!/bin/sh
# tools/fuzz.sh - run every libFuzzer target in build/fuzz for a set time.
#
#   sh tools/fuzz.sh [SECONDS]     (default 60 per target; make test: 10)
#
# Each build/fuzz/fuzz_NAME starts from the seed corpus test/fuzz/corpus/NAME
# (read only: what it finds goes to a scratch directory) under ASan and
# UBSan. A target that crashes, leaks or trips a check fails; the input is
# kept as build/fuzz/crash-NAME-* (make it a regression test by adding it to
# the seed corpus once fixed). test/fuzz/NAME.options, if there, holds more
# libFuzzer flags for that target (one line). Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 2

secs=${1:-60}
passed=0
failed=0
set -- build/fuzz/fuzz_*
if [ ! -e "$1" ]; then
    echo "not ok - no build/fuzz/fuzz_* (make build-fuzz)"
    echo "0 passed, 1 failed"
    exit 1
fi
for bin in "$@"; do
    name=${bin#build/fuzz/fuzz_}
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/bx-fuzz.XXXXXX") || exit 2
    log=build/fuzz/$name.log
    extra=
    [ -f "test/fuzz/$name.options" ] && extra=$(sed -n '/^-/p' "test/fuzz/$name.options")
    # shellcheck disable=SC2086 # the options are words
    if "$bin" -max_total_time="$secs" -print_final_stats=1 $extra \
           -artifact_prefix="build/fuzz/crash-$name-" \
           "$scratch" "test/fuzz/corpus/$name" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "ok - fuzz_$name: ${runs:-?} inputs in ${secs}s, clean"
        passed=$((passed + 1))
    else
        echo "not ok - fuzz_$name: see $log"
        tail -n 30 "$log"
        failed=$((failed + 1))
    fi
    rm -rf "$scratch"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
