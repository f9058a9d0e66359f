#!/bin/sh
# tools/layers.sh - keep the levels of core/ one-way streets
# (docs/ARCHITECTURE.md, "Levels").
#
#   sh tools/layers.sh          check core/, then the checker itself
#   sh tools/layers.sh DIR      check the tree DIR only (laid out like core/)
#
# The levels, lowest first:
#
#   base < net < engine < bayeux < transport < server (DIR/server.[ch]) < lua
#
# Rules, each file a test (core/test/ is not checked: tests may reach any
# level):
#   - a file includes ("...", written relative to DIR) only files of its own
#     level or below; anything higher must reach it through a function
#     pointer it is given;
#   - every quoted include names a file that exists under DIR;
#   - only lua/ includes the Lua headers (lua.h, lauxlib.h, lualib.h);
#   - no file sits outside the levels.
# And one more test: no include cycle between files (x.c and x.h count as
# one file), found with tsort(1).
#
# Prints "ok - ..." / "not ok - ..." lines and ends with "N passed, N failed";
# the exit status is 1 on any failure.
set -u
cd "$(dirname "$0")/.." || exit 2

# level PATH (relative to the tree): prints the level number, or nothing.
level() {
    case $1 in
    base/*) echo 1 ;;
    net/*) echo 2 ;;
    engine/*) echo 3 ;;
    bayeux/*) echo 4 ;;
    transport/*) echo 5 ;;
    */*/*) ;;
    lua/*) echo 7 ;;
    */*) ;;
    *) echo 6 ;;
    esac
}

# check DIR : runs the rules over DIR; sets $passed and $failed.
check() {
    dir=$1
    passed=0
    failed=0
    edges=$(mktemp "${TMPDIR:-/tmp}/bx-layers.XXXXXX") || exit 2
    files=$(cd "$dir" && find . -path ./test -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print |
            sed 's|^\./||' | sort)
    for f in $files; do
        own=$(level "$f")
        why=""
        if [ -z "$own" ]; then
            why="outside the levels"
        else
            for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$dir/$f"); do
                to=$(level "$inc")
                if [ ! -f "$dir/$inc" ] || [ -z "$to" ]; then
                    why="$why; includes \"$inc\", not a file of the levels (write it relative to core/)"
                elif [ "$to" -gt "$own" ]; then
                    why="$why; includes \"$inc\", a level above its own"
                fi
                # an edge between modules: x.c -> x.h is the module itself
                a=${f%.[ch]}
                b=${inc%.[ch]}
                [ "$a" = "$b" ] || echo "$a $b" >>"$edges"
            done
            if [ "$own" -ne 7 ] &&
               grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(lua|lauxlib|lualib)\.h>' "$dir/$f"; then
                why="$why; includes the Lua headers outside lua/"
            fi
        fi
        if [ -z "$why" ]; then
            passed=$((passed + 1))
            [ -n "${quiet:-}" ] || echo "ok - $f"
        else
            failed=$((failed + 1))
            echo "not ok - $f: ${why#; }"
        fi
    done
    if loops=$(tsort "$edges" 2>&1 >/dev/null) && [ -z "$loops" ]; then
        passed=$((passed + 1))
        [ -n "${quiet:-}" ] || echo "ok - no include cycle"
    else
        failed=$((failed + 1))
        echo "not ok - include cycle:"
        echo "$loops" | sed -e 's|^tsort: /[^:]*: |tsort: |' -e 's/^tsort: /#   /'
    fi
    rm -f "$edges"
}

if [ $# -ge 1 ]; then
    check "$1"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

check core
total_passed=$passed
total_failed=$failed

# The checker itself: a clean tree passes, each broken rule fails it.
self=$(mktemp -d "${TMPDIR:-/tmp}/bx-layers-self.XXXXXX") || exit 2
trap 'rm -rf "$self"' EXIT
# selftest NAME WANT(pass|fail) : checks $self/t quietly
selftest() {
    out=$(quiet=1 check "$self/t"; echo "$failed")
    got=$(echo "$out" | tail -n 1)
    if { [ "$2" = pass ] && [ "$got" -eq 0 ]; } || { [ "$2" = fail ] && [ "$got" -gt 0 ]; }; then
        total_passed=$((total_passed + 1))
        echo "ok - checker: $1"
    else
        total_failed=$((total_failed + 1))
        echo "not ok - checker: $1 (wanted it to $2)"
        echo "$out" | sed 's/^/#   /'
    fi
}
tree() {
    rm -rf "$self/t"
    mkdir -p "$self/t/base" "$self/t/net" "$self/t/bayeux" "$self/t/lua"
    printf '#include <stddef.h>\n' >"$self/t/base/buf.h"
    printf '#include "base/buf.h"\n' >"$self/t/base/buf.c"
    printf '#include "base/buf.h"\n' >"$self/t/net/conn.h"
    printf '#include "net/conn.h"\n#include "base/buf.h"\n' >"$self/t/bayeux/hub.c"
    printf '#include <lua.h>\n#include "bayeux/hub.c"\n' >"$self/t/lua/m.c"
}
tree
selftest "a tree that keeps the rules passes" pass
tree
printf '#include "net/conn.h"\n' >>"$self/t/base/buf.c"
selftest "base including net fails" fail
tree
printf '#include "base/buf.h"\n' >"$self/t/base/list.h"
printf '#include "base/list.h"\n' >>"$self/t/base/buf.h"
printf '#include "base/buf.h"\n' >"$self/t/base/list.h"
printf '#include "base/list.h"\n' >"$self/t/base/buf.c"
selftest "an include cycle in one level fails" fail
tree
printf '#include <lua.h>\n' >>"$self/t/bayeux/hub.c"
selftest "lua.h outside lua/ fails" fail
tree
printf '#include "conn.h"\n' >>"$self/t/net/conn.h"
selftest "an include not written relative to core/ fails" fail
tree
mkdir -p "$self/t/misc"
printf '\n' >"$self/t/misc/x.c"
selftest "a file outside the levels fails" fail

echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
