#!/bin/sh
# tools/check.sh - the sanitizer suite (`make check`, and the last suite of
# `make test`).
#
#   sh tools/check.sh build/san/test/test_*
#
# 1. Runs the given ASan + UBSan unit test binaries (tools/run-units.sh).
# 2. Runs the busted specs with every server they launch under ASan: the
#    specs start servers through $BAYEUX_CMD, which here preloads the ASan
#    runtime and the sanitized build/san/lua/bayeux/core.so into the stock
#    lua5.4. The server's stderr (sanitizer reports) goes to the spec's log;
#    the spec helper fails a test whose server exits non-zero, which ASan
#    (errors), UBSan (-fno-sanitize-recover) and LeakSanitizer (leaks found
#    when the server exits after SIGTERM) all cause.
#    Preloading core.so as well keeps it mapped after lua_close() dlcloses it,
#    so leak stacks name our functions instead of "<unknown module>".
# 3. Runs test/interop/*.test.js with the same $BAYEUX_CMD (BX_CHECK_INTEROP=0
#    skips this): real faye and CometD clients against the sanitized server,
#    and each file checks that the server exits 0 on SIGTERM.
#
# BX_CHECK_SPECS picks the spec files or directories (default: .busted's ROOT).
# The last line is the total "N passed, N failed"; exit status 1 on failure.
set -u
cd "$(dirname "$0")/.." || exit 2
root=$PWD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bx-check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tools/lsan.supp}
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

# ---- 1. unit tests under ASan + UBSan
echo "---- sanitized C unit tests"
if [ $# -gt 0 ]; then
    { sh tools/run-units.sh "$@" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/out"
    rc=$(cat "$tmp/rc")
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/out" | tail -n 1)
    if [ -n "$line" ]; then
        passed=$((passed + ${line%% passed*}))
        f=${line#*passed, }; f=${f%% failed}
        failed=$((failed + f))
        [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
    else
        echo "not ok - sanitized units: run-units.sh exited $rc without a total"
        failed=$((failed + 1))
    fi
else
    echo "not ok - sanitized units: no binaries given (build/san/test/test_*)"
    failed=$((failed + 1))
fi

# ---- 2. busted specs, servers under ASan
echo "---- busted specs, servers under ASan"
libasan=$(gcc -print-file-name=libasan.so)
san_so=$root/build/san/lua/bayeux/core.so
if [ ! -f "$libasan" ] || [ "$libasan" = libasan.so ]; then
    echo "not ok - specs under ASan: gcc has no libasan.so"
    failed=$((failed + 1))
elif [ ! -f "$san_so" ]; then
    echo "not ok - specs under ASan: $san_so not built (make check)"
    failed=$((failed + 1))
elif ! command -v busted >/dev/null 2>&1; then
    echo "not ok - specs under ASan: busted not installed"
    failed=$((failed + 1))
else
    BAYEUX_CMD="env LD_PRELOAD=$libasan:$san_so ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS LSAN_OPTIONS=$LSAN_OPTIONS BAYEUX_CPATH=$root/build/san/lua/?.so lua5.4 bin/bayeux"
    export BAYEUX_CMD
    echo "BAYEUX_CMD=$BAYEUX_CMD"
    # shellcheck disable=SC2086
    { timeout -k 10 "${BX_SUITE_TIMEOUT:-900}" busted -o TAP ${BX_CHECK_SPECS:-} 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/out"
    rc=$(cat "$tmp/rc")
    p=$(grep -E '^ok [0-9]+' "$tmp/out" | grep -vc '# SKIP')
    f=$(grep -cE '^not ok [0-9]+' "$tmp/out")
    if ! grep -qE '^1\.\.[0-9]+' "$tmp/out"; then
        echo "not ok - specs under ASan: busted ended without a TAP plan (exit $rc)"
        f=$((f + 1))
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - specs under ASan: busted exited $rc with no failing test"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))

    # ---- 3. interop tests (real faye and CometD clients), server under ASan. Each file
    # fails its last test when the server does not exit 0 on SIGTERM, which
    # catches leaks even where a spec does not check the exit code.
    if [ "${BX_CHECK_INTEROP:-1}" = 1 ] && [ -d test/node/node_modules ]; then
        for js in test/interop/*.test.js; do
            [ -e "$js" ] || continue
            echo "---- $js, server under ASan"
            { timeout -k 10 120 node "$js" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/out"
            rc=$(cat "$tmp/rc")
            line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/out" | tail -n 1)
            if [ -n "$line" ]; then
                passed=$((passed + ${line%% passed*}))
                f=${line#*passed, }; f=${f%% failed}
                [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
                failed=$((failed + f))
            else
                echo "not ok - $js under ASan: exited $rc without a result line"
                failed=$((failed + 1))
            fi
        done
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
