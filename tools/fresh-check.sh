#!/bin/sh
# tools/fresh-check.sh - `make fresh-check`: prove the README's two commands on
# a machine that has none of the project's packages.
#
#   sh tools/fresh-check.sh
#
# As root:
#   1. A minimal Debian 12 root (debootstrap --variant=minbase), cached as a
#      tarball in $BX_FRESH_CACHE (default /var/cache/bayeux-fresh), so later
#      runs only unpack it.
#   2. Into a fresh copy of it, only what the CI machine image has besides:
#      gcc, make, git, ca-certificates (in the tarball), node and npm copied
#      from this machine, and this machine's trusted CA certificates (so npm
#      and apt work behind the same network as here).
#   3. A clone of this repository's HEAD (committed work only), then as root
#      inside it: `make test`, which must pass the first time and end with
#      "N passed, 0 failed"; then `make run`, whose pages must answer 200;
#      then, as a user who is not root, `make install` into ~/.luarocks and
#      `require "bayeux"` through it.
#   4. Every process inside is killed, everything mounted is unmounted and the
#      copy is removed, on every exit path.
#
# Environment: BX_FRESH_CACHE (tarball folder), BX_FRESH_MIRROR (Debian
# mirror, default http://deb.debian.org/debian), BX_FRESH_KEEP=1 (keep the
# root for a look after a failure), BX_FRESH_TIMEOUT (seconds for `make test`,
# default 3600), BX_FRESH_STEPS (default "test run install": which of the
# checks below to run, for a quicker look at one). The last line is "N passed, N failed" over the four checks;
# exit status 1 on any failure.
set -u

say() { printf 'fresh-check: %s\n' "$*"; }
die() { say "$*"; echo "0 passed, 1 failed"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot); run it as root"
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel 2>/dev/null) ||
    die "not inside a git checkout"

cache=${BX_FRESH_CACHE:-/var/cache/bayeux-fresh}
mirror=${BX_FRESH_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/bookworm-minbase.tar.gz
test_timeout=${BX_FRESH_TIMEOUT:-3600}
user=bxfresh

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node and npm are needed on this machine (they are copied into the root)"

# ---- 1. the cached base root ----

if [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null 2>&1 ||
            { apt-get update >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap; } ||
            die "cannot install debootstrap"
    fi
    mkdir -p "$cache" || die "cannot create $cache"
    base=$(mktemp -d "$cache/base.XXXXXX") || die "mktemp failed"
    say "debootstrap bookworm into $base (once; cached as $tarball)"
    if ! debootstrap --variant=minbase --include=gcc,make,git,ca-certificates,libc6-dev \
            bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 20 "$cache/debootstrap.log"
        rm -rf --one-file-system "$base"
        die "debootstrap failed (log: $cache/debootstrap.log)"
    fi
    # The same suites as the CI image: security updates included.
    cat >"$base/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$base/var/cache/apt/archives/"*.deb "$base/var/lib/apt/lists/"*
    chmod 755 "$base"   # mktemp made it 0700; it is /, which every user walks
    tar -C "$base" --numeric-owner -czf "$tarball.new" . && mv "$tarball.new" "$tarball" ||
        { rm -rf --one-file-system "$base"; die "cannot write $tarball"; }
    rm -rf --one-file-system "$base"
fi

# ---- 2. a fresh copy, and cleaning up after it on every exit ----

work=$(mktemp -d /var/tmp/bayeux-fresh.XXXXXX) || die "mktemp failed"
root=$work/root
mounted=""

# Processes whose root directory is inside the copy.
inside_pids() {
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        case $r in "$root"|"$root"/*) echo "${p#/proc/}" ;; esac
    done
}

cleanup() {
    trap - EXIT INT TERM
    pids=$(inside_pids)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null && sleep 2
    pids=$(inside_pids)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null && sleep 1
    for m in $mounted; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    # Never remove through a mount that is still there (/dev is bound in).
    if grep -q " $work/" /proc/mounts; then
        say "left $work in place: something is still mounted under it"
    elif [ "${BX_FRESH_KEEP:-0}" = 1 ] && [ "${failed:-1}" != 0 ]; then
        say "kept $work (BX_FRESH_KEEP=1)"
    else
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$root" && tar -C "$root" --numeric-owner -xzf "$tarball" || die "cannot unpack $tarball"
chmod 755 "$root"

# node and npm as the CI image has them: outside Debian's packages.
node_bin=$(readlink -f "$(command -v node)")
npm_cli=$(readlink -f "$(command -v npm)")             # .../node_modules/npm/bin/npm-cli.js
npm_dir=$(dirname "$(dirname "$npm_cli")")
cp "$node_bin" "$root/usr/bin/node" || die "cannot copy node"
mkdir -p "$root/usr/lib/node_modules"
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm" || die "cannot copy npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"

# This machine's trusted certificates, as extra ones of the root's own store.
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/bx-host.crt"
fi
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null
cp /etc/hosts "$root/etc/hosts" 2>/dev/null
# No service starts from a package's install script (no init in a chroot).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d"

mnt_() { # mnt_ TARGET MOUNT-ARGS... : mount, remembered innermost first
    target=$1; shift
    mount "$@" "$root$target" || die "mount $* $root$target failed"
    mounted="$root$target $mounted"
}
mnt_ /proc -t proc proc
mnt_ /sys -t sysfs sys
mnt_ /dev --bind /dev
mnt_ /dev/pts --bind /dev/pts
mnt_ /dev/shm -t tmpfs shm
mnt_ /tmp -t tmpfs tmp

in_root() { # in_root [--userspec=U:G] CMD : run a shell command inside, clean environment
    spec=""
    case $1 in --userspec=*) spec=$1; shift ;; esac
    home=/root
    [ -n "$spec" ] && home=/home/$user
    env -u TMPDIR -u LD_PRELOAD HOME="$home" LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot $spec "$root" /bin/sh -c "$1"
}

in_root 'update-ca-certificates >/dev/null 2>&1' || die "update-ca-certificates failed"
git clone -q "$top" "$root/root/bayeux" || die "git clone failed"
say "testing $(git -C "$top" rev-parse --short HEAD) in $root"

steps=${BX_FRESH_STEPS:-test run install}
step() { case " $steps " in *" $1 "*) return 0 ;; esac; return 1; }

passed=0
failed=0
ok() { say "ok - $*"; passed=$((passed + 1)); }
notok() { say "not ok - $*"; failed=$((failed + 1)); }

# ---- 3a. make test, the first time ----

if step test; then
log=$work/make-test.log
say "make test (inside; log $log)"
# In the background and waited for: a signal then ends this script (and
# its cleanup kills what runs inside) at once, not after `make test`.
{ in_root "cd /root/bayeux && timeout -k 10 $test_timeout make test" 2>&1; echo $? >"$work/rc"; } | tee "$log" &
wait $!
rc=$(cat "$work/rc")
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
if [ "$rc" = 0 ] && echo "$last" | grep -qE '^[0-9]+ passed, 0 failed$'; then
    ok "make test passed the first time: $last"
else
    notok "make test exited $rc; its last result line: ${last:-none}"
fi
fi

# ---- 3b. make run: its pages answer 200 ----

port_free() {
    node -e 'const s=require("net").createServer().once("error",()=>process.exit(1))
             .listen(8000,"127.0.0.1",()=>s.close(()=>process.exit(0)))'
}
status_of() { # status_of URL -> HTTP status, or 000
    node -e 'require("http").get(process.argv[1],r=>{console.log(r.statusCode);r.resume()})
             .on("error",()=>console.log("000"))' "$1"
}
if ! step run; then
    :
elif ! port_free; then
    notok "make run: port 8000 is busy on this machine; cannot check make run"
else
    say "make run (inside)"
    in_root "cd /root/bayeux && exec make run" >"$work/make-run.log" 2>&1 &
    up=""
    i=0
    while [ $i -lt 600 ]; do   # 600 x 0.5 s: installs and builds come first
        [ "$(status_of http://127.0.0.1:8000/)" = 200 ] && { up=yes; break; }
        kill -0 $! 2>/dev/null || break
        sleep 0.5
        i=$((i + 1))
    done
    if [ -z "$up" ]; then
        tail -n 20 "$work/make-run.log"
        notok "make run: http://127.0.0.1:8000/ never answered 200"
    else
        bad=""
        for path in / /faye/client.js /faye.js; do
            s=$(status_of "http://127.0.0.1:8000$path")
            [ "$s" = 200 ] || bad="$bad $path=$s"
        done
        if [ -z "$bad" ]; then ok "make run serves /, /faye/client.js, /faye.js (200)"
        else notok "make run: pages that did not answer 200:$bad"; fi
    fi
    for p in $(inside_pids); do kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
fi

# ---- 3c. make install as a user who is not root ----

if step install; then
in_root "id $user >/dev/null 2>&1 || useradd -m $user" || die "useradd failed"
git clone -q "$top" "$root/home/$user/bayeux" && chroot "$root" chown -R "$user:$user" "/home/$user/bayeux" ||
    die "clone for $user failed"
as_user() { in_root --userspec=$user:$user "$1" >>"$work/install.log" 2>&1; }
# The administrator's part: the packages a build needs (already there after
# `make test`), but not luarocks.
in_root 'cd /root/bayeux && sh tools/deps.sh run' >>"$work/install.log" 2>&1 ||
    die "tools/deps.sh run failed inside"
# Without luarocks (only `make test` has run): the exact line, nothing installed.
if in_root 'command -v luarocks' >/dev/null 2>&1; then
    say "luarocks is already inside: skipping the missing-package check"
elif as_user "cd ~/bayeux && make install"; then
    notok "make install as $user without luarocks did not fail"
elif grep -qE 'apt-get install -y( [^ ]+)* luarocks' "$work/install.log"; then
    ok "make install as $user without luarocks prints the apt-get line"
else
    tail -n 20 "$work/install.log"
    notok "make install as $user without luarocks: no apt-get line"
fi
in_root 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y luarocks' >>"$work/install.log" 2>&1 ||
    die "apt-get install luarocks failed"
if as_user "cd ~/bayeux && make install"; then
    ok "make install as $user (luarocks --local)"
    if as_user 'eval "$(luarocks --lua-version 5.4 path)" && cd / &&
            lua5.4 -e "local b = require \"bayeux\"; assert(b.server)" &&
            ~/.luarocks/bin/bayeux --version'; then
        ok "require \"bayeux\" and the bayeux command from $user's tree"
    else
        tail -n 20 "$work/install.log"
        notok "the installed module or command does not run for $user"
    fi
else
    tail -n 20 "$work/install.log"
    notok "make install as $user failed"
fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
