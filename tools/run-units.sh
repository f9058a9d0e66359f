#!/bin/sh
# tools/run-units.sh - run C unit test binaries and sum their results.
#
#   sh tools/run-units.sh build/test/test_a build/test/test_b ...
#
# Each binary's output (stdout and stderr) is passed through. Each must end
# with a line "<name>: N passed, N failed" (bx_test.h's BX_REPORT). A binary
# that prints no such line, or exits non-zero while reporting no failure
# (a crash, a sanitizer report, a leak found at exit), counts as 1 failed.
# A binary running longer than BX_UNIT_TIMEOUT seconds (default 120) is killed.
# The last line is the total: "N passed, N failed"; exit status 1 on any failure.
set -u

timeout_s=${BX_UNIT_TIMEOUT:-120}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bx-units.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
if [ $# -eq 0 ]; then
    echo "run-units: no unit test binaries given" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

for bin in "$@"; do
    name=$(basename "$bin")
    if [ ! -x "$bin" ]; then
        echo "not ok - $name: not an executable: $bin"
        failed=$((failed + 1))
        continue
    fi
    # Stream the output while keeping a copy; the exit status goes to a file
    # because a POSIX sh pipeline only reports the status of its last command.
    { timeout -k 5 "$timeout_s" "$bin" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/out"
    rc=$(cat "$tmp/rc" 2>/dev/null || echo 99)
    line=$(grep -E ': [0-9]+ passed, [0-9]+ failed$' "$tmp/out" | tail -n 1)
    if [ -z "$line" ]; then
        echo "not ok - $name: exited $rc without a 'N passed, N failed' line"
        failed=$((failed + 1))
        continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\2/')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "not ok - $name: timed out after ${timeout_s}s"
        else
            echo "not ok - $name: exited $rc after reporting no failure (crash, sanitizer or leak report above)"
        fi
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
