#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Idempotent installer for the real-kernel VM test tier (tests/kernel/).
#
# Installs, on a Debian 12 or 13 machine run as root:
#   - apt: qemu-system-x86 kmod keyutils busybox-static udev file (no recommends;
#     virtme-ng runs file(1) on the kernel image)
#   - apt: nfs-kernel-server nfs-common (the guest's nfsd and NFS client userspace),
#     installed with a policy-rc.d that starts no service on the host
#   - a venv with virtme-ng (pinned) under $QUICHSD_VM_CACHE/venv
#   - the release's own linux-image-6.12.*+debN-amd64 (N = the major release read from
#     /etc/debian_version; the newest apt offers),
#     unpacked with dpkg-deb -x under $QUICHSD_VM_CACHE/kroot (not installed)
#   - modules.dep for that tree (depmod -b)
# Work already done is detected and skipped; a second run takes < 1 s.
#
# Environment:
#   QUICHSD_VM_CACHE   cache folder (default /var/cache/quichsd-vm)
#   QUICHSD_VM_KERNEL  exact package name to use instead of the newest
#                      linux-image-6.12.*+debN-amd64
# On success the last line printed is "kernel: <path to vmlinuz>".
set -eu

CACHE=${QUICHSD_VM_CACHE:-/var/cache/quichsd-vm}
VIRTME_NG_VERSION=1.42
export DEBIAN_FRONTEND=noninteractive

log() { echo "setup.sh: $*" >&2; }
die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, /dev/nvme-fabrics in the guest)"
mkdir -p "$CACHE"
# one installer at a time (several test runs may start together)
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.setup.lock"
    flock 9
fi

# ---- 1. apt packages -------------------------------------------------------
# the packages among "$@" that dpkg does not list as installed, space-separated
not_installed() {
    out=""
    for p in "$@"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [ "$st" = "install ok installed" ] || out="$out $p"
    done
    echo "$out"
}
APT_PKGS="qemu-system-x86 kmod keyutils busybox-static udev file"
# shellcheck disable=SC2086
missing=$(not_installed $APT_PKGS)
APT_UPDATED=""
apt_update() {
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
}
if [ -n "$missing" ]; then
    apt_update
    log "installing:$missing"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >&2 || die "apt-get install failed"
fi

# ---- 1b. NFS userspace (the nfs_tls scenario) -----------------------------------
# rpc.nfsd, exportfs, rpc.mountd (nfs-kernel-server) and mount.nfs (nfs-common): the
# guest runs them from the host's root fs.  Installing them must not start or enable
# anything on the host: a policy-rc.d that exits 101 (deny every action) is in place
# for the install, and the host's own policy-rc.d (Docker images ship one) is put back.
NFS_PKGS="nfs-kernel-server nfs-common"
# shellcheck disable=SC2086
nfs_missing=$(not_installed $NFS_PKGS)
if [ -n "$nfs_missing" ]; then
    apt_update
    POLICY=/usr/sbin/policy-rc.d
    SAVED=""
    if [ -e "$POLICY" ]; then
        SAVED=$CACHE/policy-rc.d.host
        cp -p "$POLICY" "$SAVED"
    fi
    restore_policy() {
        if [ -n "$SAVED" ]; then mv -f "$SAVED" "$POLICY"; else rm -f "$POLICY"; fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# tests/kernel/setup.sh: start no service while installing\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    log "installing (services not started: policy-rc.d exits 101):$nfs_missing"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $nfs_missing >&2 || die "apt-get install failed"
    restore_policy
    trap - EXIT
    # Debian's packages enable their units at install (a symlink, nothing runs): undo
    # that, so that a later boot of this host does not start an NFS server either
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable nfs-server.service rpcbind.service rpcbind.socket \
            nfs-client.target >/dev/null 2>&1 || true
    fi
fi

# ---- 2. virtme-ng venv -----------------------------------------------------
VENV=$CACHE/venv
if ! "$VENV/bin/vng" --version >/dev/null 2>&1; then
    PY=/usr/bin/python3
    [ -x "$PY" ] || PY=$(command -v python3) || die "no python3"
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_update
        apt-get install -y -q --no-install-recommends python3-venv >&2 || die "python3-venv"
    fi
    log "creating venv $VENV with virtme-ng==$VIRTME_NG_VERSION"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "virtme-ng==$VIRTME_NG_VERSION" >&2 \
        || die "pip install virtme-ng failed"
fi
# 9p cache=loose: the guest only reads the host root fs, and caching it
# cuts venv start-up ~3x and imports ~30% under TCG (docs/kernel-vm.md §2).
MKI=$(ls "$VENV"/lib/python3*/site-packages/virtme/mkinitramfs.py 2>/dev/null | head -n1 || true)
if [ -n "$MKI" ] && ! grep -q 'cache=loose' "$MKI"; then
    if grep -q 'msize=524288 /dev/root' "$MKI"; then
        sed -i 's/msize=524288 \/dev\/root/msize=524288,cache=loose \/dev\/root/' "$MKI"
        log "patched 9p root mount to cache=loose in $MKI"
    else
        log "warning: could not apply 9p cache=loose tweak (virtme layout changed)"
    fi
fi

# ---- 3. kernel ----------------------------------------------------------------
# the release: Debian's kernel packages carry it as +debN (6.12 is in 12's security
# suite and is 13's own kernel)
DEB_MAJOR=$(cut -d. -f1 /etc/debian_version 2>/dev/null || true)
case $DEB_MAJOR in ''|*[!0-9]*) die "cannot read the Debian release from /etc/debian_version";; esac
pick_kernel() {
    apt-cache pkgnames linux-image-6.12. 2>/dev/null \
        | grep -E "^linux-image-6\\.12\\.[0-9]+\\+deb${DEB_MAJOR}-amd64\$" | sort -V | tail -n1
}
KPKG=${QUICHSD_VM_KERNEL:-}
if [ -z "$KPKG" ]; then
    KPKG=$(pick_kernel || true)
    if [ -z "$KPKG" ]; then
        apt_update
        KPKG=$(pick_kernel || true)
    fi
fi
[ -n "$KPKG" ] || die "apt offers no linux-image-6.12.*+deb${DEB_MAJOR}-amd64 (are the release's updates and security suites enabled?)"
KVER=${KPKG#linux-image-}
KROOT=$CACHE/kroot
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
STAMP=$KROOT/.unpacked-$KVER
if [ ! -f "$STAMP" ]; then
    DEBS=$CACHE/debs
    mkdir -p "$DEBS"
    if ! ls "$DEBS/${KPKG}_"*.deb >/dev/null 2>&1; then
        log "downloading $KPKG"
        # -o APT::Sandbox::User=root: the cache folder is root's, not _apt's
        dl() { (cd "$DEBS" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2); }
        dl || { apt_update; dl || die "apt-get download $KPKG failed"; }
    fi
    log "unpacking $KPKG into $KROOT"
    mkdir -p "$KROOT"
    for d in "$DEBS/${KPKG}_"*.deb; do dpkg-deb -x "$d" "$KROOT"; done
    [ -f "$VMLINUZ" ] || die "no $VMLINUZ after unpacking"
    # Debian 13's packages put the modules under /usr/lib/modules (merged /usr); depmod -b
    # and virtme look in <root>/lib/modules
    if [ -d "$KROOT/usr/lib/modules/$KVER" ] && [ ! -e "$KROOT/lib/modules/$KVER" ]; then
        mkdir -p "$KROOT/lib/modules"
        ln -s "../../usr/lib/modules/$KVER" "$KROOT/lib/modules/$KVER"
    fi
    depmod -b "$KROOT" "$KVER" || die "depmod failed"
    touch "$STAMP"
fi
[ -f "$KROOT/lib/modules/$KVER/modules.dep" ] || depmod -b "$KROOT" "$KVER"
echo "$KVER" > "$CACHE/kernel-version"
echo "kernel: $VMLINUZ"
