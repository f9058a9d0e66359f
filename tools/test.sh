#!/bin/sh
# tools/test.sh - the `make test` driver: runs every suite, sums the results.
#
#   1. C unit tests        sh tools/run-units.sh build/test/test_*
#   2. busted specs        busted -o TAP            (.busted selects Lua 5.4)
#   3. interop tests       node test/interop/*.test.js, one process per file
#                          (the npm faye client, the CometD JavaScript client)
#   4. browser tests       node test/browser/*.test.js (headless Chromium)
#   5. bench-quick         node bench/run.js --quick (make bench-quick: every
#                          benchmark scenario, seconds long, against bayeux,
#                          Faye and bench/ceiling; checks that each ran and its
#                          completeness checks held, no timing thresholds)
#   6. sanitizers          sh tools/check.sh build/san/test/test_*
#   7. layers              sh tools/layers.sh (the include check of core/)
#   8. fuzz                sh tools/fuzz.sh 10 (each libFuzzer target of
#                          test/fuzz for 10 s from its seed corpus)
#   9. soak                node bench/soak.js --quick (make soak for one
#                          minute with 400 clients over every transport:
#                          exact counts of lost and duplicated messages)
#
# Each suite's output stays visible under a header. A suite that crashes,
# times out or prints no result line counts as 1 failed. The last line is the
# total "N passed, N failed"; the exit status is 1 on any failure.
#
# Environment: BX_SUITES (default "units specs interop browser bench-quick
# check layers fuzz soak") picks suites; BX_SUITE_TIMEOUT (default 900) bounds each
# suite in seconds.
set -u
cd "$(dirname "$0")/.." || exit 2

suites=${BX_SUITES:-units specs interop browser bench-quick check layers fuzz soak}
suite_timeout=${BX_SUITE_TIMEOUT:-900}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bx-test.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

total_passed=0
total_failed=0
summary=""

header() {
    echo
    echo "==== $1 ===="
}

# record NAME PASSED FAILED NOTE
record() {
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    summary="$summary$(printf '  %-16s %4d passed, %4d failed%s' "$1" "$2" "$3" "${4:+  ($4)}")
"
}

# run CMD... : stream the output, keep a copy in $tmp/out, status in $rc.
run() {
    { timeout -k 10 "$suite_timeout" "$@" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/out"
    rc=$(cat "$tmp/rc" 2>/dev/null || echo 99)
}

# counted NAME : the suite printed "N passed, N failed" as its result line
# (the last such line counts); a missing line or a non-zero exit status with
# no failure reported counts as 1 failed.
counted() {
    line=$(grep -E '(^|[^0-9])[0-9]+ passed, [0-9]+ failed$' "$tmp/out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "not ok - $1: exited $rc without a 'N passed, N failed' line"
        record "$1" 0 1 "no result line, exit $rc"
        return
    fi
    p=$(echo "$line" | sed -E 's/.*(^|[^0-9])([0-9]+) passed, ([0-9]+) failed$/\2/')
    f=$(echo "$line" | sed -E 's/.*(^|[^0-9])([0-9]+) passed, ([0-9]+) failed$/\3/')
    note=""
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $1: exited $rc after reporting no failure"
        f=1
        note="exit $rc"
    fi
    record "$1" "$p" "$f" "$note"
}

# tap NAME : count busted's TAP lines ("ok N", "not ok N"; SKIPs count as
# neither). A crash (non-zero exit with no "not ok", or no "1..N" plan line)
# counts as 1 failed.
tap() {
    p=$(grep -E '^ok [0-9]+' "$tmp/out" | grep -vc '# SKIP')
    f=$(grep -cE '^not ok [0-9]+' "$tmp/out")
    note=""
    if ! grep -qE '^1\.\.[0-9]+' "$tmp/out"; then
        echo "not ok - $1: busted ended without a TAP plan (exit $rc)"
        f=$((f + 1))
        note="no TAP plan, exit $rc"
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $1: busted exited $rc with no failing test"
        f=1
        note="exit $rc"
    fi
    record "$1" "$p" "$f" "$note"
}

# missing NAME WHAT : a suite with nothing to run is an error, not a pass.
missing() {
    echo "not ok - $1: $2"
    record "$1" 0 1 "$2"
}

for suite in $suites; do
    case $suite in
    units)
        header "C unit tests (build/test)"
        set -- build/test/test_*
        if [ -e "$1" ]; then
            run sh tools/run-units.sh "$@"
            counted units
        else
            missing units "no build/test/test_* (run make first)"
        fi
        ;;
    specs)
        header "busted specs"
        if command -v busted >/dev/null 2>&1; then
            run busted -o TAP
            tap specs
        else
            missing specs "busted not installed (sh tools/deps.sh)"
        fi
        ;;
    interop)
        header "interop (node)"
        set -- test/interop/*.test.js
        if [ ! -e "$1" ]; then
            missing interop "no test/interop/*.test.js"
        elif [ ! -d test/node/node_modules ]; then
            missing interop "test/node/node_modules missing (sh tools/npm-deps.sh)"
        else
            for js in "$@"; do
                echo "---- $js"
                run node "$js"
                counted "$(basename "$js" .test.js)"
            done
        fi
        ;;
    browser)
        header "browser (headless Chromium)"
        set -- test/browser/*.test.js
        if [ ! -e "$1" ]; then
            missing browser "no test/browser/*.test.js"
        elif [ ! -d test/node/node_modules/playwright-core ]; then
            missing browser "playwright-core missing (sh tools/npm-deps.sh)"
        else
            for js in "$@"; do
                echo "---- $js"
                run node "$js"
                counted "browser-$(basename "$js" .test.js)"
            done
        fi
        ;;
    bench-quick)
        header "bench-quick (bench/run.js --quick)"
        if [ ! -x build/bench/bxload ] || [ ! -x build/bench/ceiling ]; then
            missing bench-quick "no build/bench/bxload, build/bench/ceiling (make build-bench)"
        elif [ ! -d test/node/node_modules/faye ]; then
            missing bench-quick "test/node/node_modules/faye missing (sh tools/npm-deps.sh)"
        else
            run node bench/run.js --quick
            counted bench-quick
        fi
        ;;
    check)
        header "sanitizers (ASan + UBSan)"
        set -- build/san/test/test_*
        if [ -e "$1" ]; then
            run sh tools/check.sh "$@"
            counted check
        else
            missing check "no build/san/test/test_* (make check builds them)"
        fi
        ;;
    layers)
        header "layers (include check of core/)"
        run sh tools/layers.sh
        counted layers
        ;;
    fuzz)
        header "fuzz (libFuzzer, 10 s per target)"
        run sh tools/fuzz.sh 10
        counted fuzz
        ;;
    soak)
        header "soak (bench/soak.js --quick: one minute, every transport)"
        if [ ! -x build/bench/bxload ]; then
            missing soak "no build/bench/bxload (make build-bench)"
        else
            run node bench/soak.js --quick
            counted soak
        fi
        ;;
    *)
        missing "$suite" "unknown suite"
        ;;
    esac
done

echo
echo "==== summary ===="
printf '%s' "$summary"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
