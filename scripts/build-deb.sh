#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the Debian package (binary only) from this tree:
#
#   scripts/build-deb.sh [OUTDIR]       # OUTDIR defaults to ./dist
#
# The tree keeps its Debian packaging in packaging/debian/. This script copies the tree
# (a git checkout: the tracked and untracked-but-not-ignored files; an unpacked sdist:
# everything) to a temporary folder with packaging/debian/ as debian/ at its top, and runs
# `dpkg-buildpackage -us -uc -b` there, with Debian's own python3 packages (pybuild), no
# pip, no virtualenv and no network. The build dependencies (debian/control's
# Build-Depends) are installed by scripts/setup.sh; dpkg-buildpackage refuses to start
# without them and names the missing ones.
#
# OUTDIR receives quichsd_VERSION_all.deb and the .buildinfo and .changes files; the last
# line printed is the path of the .deb.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() { echo "build-deb.sh: ERROR: $*" >&2; exit 1; }
[ -f packaging/debian/control ] || die "no packaging/debian/control in $root"
command -v dpkg-buildpackage >/dev/null ||
    die "dpkg-buildpackage not found: install dpkg-dev (scripts/setup.sh does)"

work=$(mktemp -d "${TMPDIR:-/tmp}/quichsd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/quichsd
mkdir "$src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # files deleted in the work tree but still in the index are skipped
    git -C "$root" ls-files -z --cached --others --exclude-standard |
        (cd "$root" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh) |
        tar -C "$root" -cf - --no-recursion -T - | tar -C "$src" -xf -
else
    tar -C "$root" -cf - --exclude=./.venv --exclude=./dist --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ . | tar -C "$src" -xf -
fi
cp -a "$src/packaging/debian" "$src/debian"

# the system's interpreter and tools only: nothing from a virtualenv or the caller's
# Python settings may leak into the build
(
    cd "$src" &&
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" LANG=C.UTF-8 \
        DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b
) >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    die "dpkg-buildpackage failed (the last 60 lines of its output are above)"
}
deb=$(ls "$work"/quichsd_*_all.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || die "dpkg-buildpackage made no quichsd_*_all.deb (log: see above)"
cp "$work"/quichsd_*_all.deb "$work"/quichsd_*.buildinfo "$work"/quichsd_*.changes "$out"/
cp "$work/build.log" "$out/quichsd-deb-build.log"
echo "$out/$(basename "$deb")"
