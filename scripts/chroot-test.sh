#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Run the README's test command inside a Debian root file system of another release
# (default: trixie, Debian 13), made with debootstrap from the host's own Debian mirror.
#
#   scripts/chroot-test.sh [SUITE] [-- ARGS FOR scripts/test.sh]
#   scripts/chroot-test.sh trixie -- -m "not vm"
#
# As root. The root file system is kept in $QUICHSD_CHROOT (default
# /var/tmp/quichsd-chroot-SUITE) and reused; the checkout's committed tree (git
# archive HEAD, plus uncommitted changes to tracked files) is copied into it afresh each
# run, at /work/quichsd, and scripts/test.sh runs there with /proc, /sys and /dev bound
# from the host. The VM tier needs the host's kernel features only, so `-m "not vm"`
# is the usual argument; tests/kernel/setup.sh still runs, and picks the suite's own
# 6.12 kernel package.
#
# Environment:
#   QUICHSD_CHROOT   where the root file system lives
#   QUICHSD_MIRROR   Debian mirror URI (default: the first Debian URI in the host's apt
#                    sources); the security archive is read the same way
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD

SUITE=trixie
if [ $# -gt 0 ] && [ "$1" != "--" ]; then SUITE=$1; shift; fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift

die() { echo "chroot-test.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mounts)"
case $SUITE in *[!a-z]*|"") die "suite must be a Debian code name, got '$SUITE'";; esac

ROOT=${QUICHSD_CHROOT:-/var/tmp/quichsd-chroot-$SUITE}

# URIs of the host's apt sources (deb822 and one-line formats alike)
host_uri() {  # $1: "debian" or "debian-security"
    local pat=$1
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
          /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
      | grep -oE '(https?|file)://[^ ]+' | sed 's:/*$::' \
      | grep -E "/${pat}\$" | head -n1 || true
}
MIRROR=${QUICHSD_MIRROR:-$(host_uri debian)}
SECURITY=$(host_uri debian-security || true)
[ -n "$MIRROR" ] || die "no Debian mirror in the host's apt sources; set QUICHSD_MIRROR"

if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
fi

if [ ! -f "$ROOT/.quichsd-debootstrap-done" ]; then
    echo "chroot-test.sh: debootstrap $SUITE into $ROOT"
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --variant=minbase \
        --include=ca-certificates,python3,python3-venv,python3-dev,git,procps,iproute2,kmod,gnupg \
        "$SUITE" "$ROOT" "$MIRROR"
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        [ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
    } > "$ROOT/etc/apt/sources.list"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    touch "$ROOT/.quichsd-debootstrap-done"
fi
echo "chroot-test.sh: $(cat "$ROOT/etc/debian_version") in $ROOT"

# the checkout, afresh: the committed tree plus tracked changes (not .venv or caches)
DEST=$ROOT/work/quichsd
keep_venv=""
if [ -d "$DEST/.venv" ]; then mv "$DEST/.venv" "$ROOT/work/.venv-keep"; keep_venv=1; fi
rm -rf "$DEST"
mkdir -p "$DEST"
git -C "$SRC" ls-files -z | (cd "$SRC" && xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$DEST"
(cd "$DEST" && git init -q && git add -A && git -c user.name=ci -c user.email=ci@localhost \
    commit -q -m "chroot copy of $(git -C "$SRC" rev-parse --short HEAD)")
[ -n "$keep_venv" ] && mv "$ROOT/work/.venv-keep" "$DEST/.venv"

# the host's network set-up for package registries: its local CAs and pip settings
if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || true
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
passenv=()
while IFS='=' read -r name _; do
    case $name in
        PIP_*|SSL_CERT_*|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE) passenv+=("$name=${!name}");;
    esac
done < <(env)

mounts=()
cleanup() {
    local i
    for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # $1 host path, $2 chroot path
    mkdir -p "$ROOT$2"
    mount --rbind "$1" "$ROOT$2"
    mount --make-rslave "$ROOT$2"
    mounts+=("$ROOT$2")
}
# the chroot's / a mount point of its own, as a machine's root is: tests that make a
# private mount namespace (unshare --propagation private) need one
mount --bind "$ROOT" "$ROOT"; mounts+=("$ROOT")
mount --make-private "$ROOT"
bind /proc /proc
bind /sys /sys
bind /dev /dev
mkdir -p "$ROOT/run" "$ROOT/tmp"
mount -t tmpfs tmpfs "$ROOT/run"; mounts+=("$ROOT/run")
mkdir -p "$ROOT/var/cache/quichsd-vm"

# a clean environment: the chroot's own PATH and python, not the host's pyenv; the
# host's registry settings (CA bundle, pip) pass through
env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" "${passenv[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    chroot "$ROOT" /bin/bash -c 'cd /work/quichsd && exec ./scripts/test.sh "$@"' test.sh "$@"
