#!/bin/sh
# tools/deps.sh - make sure the Debian packages the build and the tests need
# are installed. Fast (one dpkg-query) when everything is already there.
#
#   sh tools/deps.sh        as root: apt-get installs what is missing
#                           otherwise: prints the sudo line and exits 1
set -u

PKGS="lua5.4 liblua5.4-dev lua-lpeg lua-lpeg-dev libuv1-dev libjansson-dev
luarocks lua-busted libhiredis-dev redis-server libwslay-dev
libhttp-parser-dev libssl-dev pkg-config lua-cjson lua-socket lua-check
make gcc chromium"

# Installed packages among ours, one name per line ("ii" = installed).
# shellcheck disable=SC2086
have=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null |
       awk '$1 == "ii" { print $2 }')

missing=""
for p in $PKGS; do
    case "
$have
" in
        *"
$p
"*) ;;
        *) missing="$missing $p" ;;
    esac
done

# node and npm are preinstalled outside apt on the build machines; only fall
# back to Debian's packages when there is no node at all.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

[ -z "$missing" ] && exit 0

echo "deps: missing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    apt-get update || exit 1
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing || exit 1
else
    echo "deps: run this, then try again:" >&2
    echo "sudo apt-get install -y$missing" >&2
    exit 1
fi
