#!/bin/sh
# tools/deps.sh - make sure the Debian packages one purpose needs are
# installed. Fast (one dpkg-query) when everything is already there.
#
#   sh tools/deps.sh PURPOSE
#
# PURPOSE is one of
#   build    compile the module (compiler, pkg-config, -dev packages, lua5.4
#            for the smoke load after linking)
#   run      build + what the server needs at run time (lpeg), and
#            ImageMagick for examples/jobs
#   test     run + the test tools (busted, cjson, socket, luacheck, Chromium,
#            node and npm)
#   bench    run + node and npm (the load generator and Faye's server)
#   lint     luacheck
#   install  build + run + luarocks; never installs anything, only checks
#            (a non-root user with these packages can `make install`)
#
# As root, what is missing is installed with apt-get; otherwise the exact
# apt-get line is printed and the exit status is 1.
set -u

purpose=${1:-test}

BUILD="gcc make pkg-config liblua5.4-dev libuv1-dev libjansson-dev
libhttp-parser-dev libwslay-dev libssl-dev libhiredis-dev zlib1g-dev lua5.4"
RUN="lua5.4 lua-lpeg"
TEST="lua-busted lua-cjson lua-socket lua-check chromium clang libclang-rt-14-dev redis-server openssl curl
prometheus"
# examples/jobs converts pictures with ImageMagick (and its browser test)
EXAMPLES="imagemagick"

node=no
install=yes
case $purpose in
build)   pkgs=$BUILD ;;
run)     pkgs="$BUILD $RUN $EXAMPLES" ;;
test)    pkgs="$BUILD $RUN $TEST $EXAMPLES"; node=yes ;;
bench)   pkgs="$BUILD $RUN"; node=yes ;;
lint)    pkgs="lua-check" ;;
install) pkgs="$BUILD $RUN luarocks"; install=no ;;
*)       echo "usage: sh tools/deps.sh build|run|test|bench|lint|install" >&2; exit 2 ;;
esac

# Installed packages among ours, one name per line ("ii" = installed).
# shellcheck disable=SC2086
have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $pkgs 2>/dev/null |
       awk '$1 == "ii" { print $2 }')

missing=""
for p in $pkgs; do
    case " $missing " in *" $p "*) continue ;; esac
    case "
$have
" in
        *"
$p
"*) ;;
        *) missing="$missing $p" ;;
    esac
done

# node and npm may come from outside Debian (the CI image has them in
# /usr/bin from another source); only ask for Debian's when there are none.
if [ $node = yes ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

[ -z "$missing" ] && exit 0

echo "deps ($purpose): missing:$missing" >&2
if [ "$(id -u)" = 0 ] && [ $install = yes ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || exit 1
    # shellcheck disable=SC2086
    apt-get install -y $missing || exit 1
else
    echo "deps: install them, then try again:" >&2
    if [ "$(id -u)" = 0 ]; then
        echo "apt-get install -y$missing" >&2
    else
        echo "sudo apt-get install -y$missing" >&2
    fi
    exit 1
fi
