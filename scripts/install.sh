#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Install what a distribution ships besides the Python package: the systemd unit, the
# configuration file, the man pages and the documentation; and put the daemon's command
# in SBINDIR, as tlshd's is.
#
#   scripts/install.sh                        # into / (as root), PREFIX=/usr
#   DESTDIR=/tmp/stage scripts/install.sh     # staged, for a package build
#
# The Python package (the quichsd and quichsd-probe commands) is installed first by the
# packaging tool (pybuild, pip) into $BINDIR. This script then moves quichsd from $BINDIR
# to $SBINDIR (where the unit runs it) when the two differ; quichsd-probe stays in $BINDIR.
#
# Environment (defaults in brackets):
#   DESTDIR     staging root for a package build []
#   PREFIX      [/usr]
#   BINDIR      where the packaging tool put the commands [$PREFIX/bin]
#   SBINDIR     the daemon's command, run by the unit [$PREFIX/sbin]
#   SYSCONFDIR  [/etc]
#   UNITDIR     [/usr/lib/systemd/system]
#   MANDIR      [$PREFIX/share/man; /usr/local/share/man when PREFIX is a virtualenv]
#   DOCDIR      [$PREFIX/share/doc/quichsd; /usr/local/share/doc/quichsd for a virtualenv]
# An existing $SYSCONFDIR/quichsd/config.yaml is kept, and the shipped one goes beside it
# as config.yaml.dist.
set -eu
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
BINDIR=${BINDIR:-$PREFIX/bin}
SBINDIR=${SBINDIR:-$PREFIX/sbin}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
# a virtualenv's prefix is no place for man pages: man(1) does not look there
if [ -f "$DESTDIR$PREFIX/pyvenv.cfg" ]; then
    share=/usr/local/share
else
    share=$PREFIX/share
fi
MANDIR=${MANDIR:-$share/man}
DOCDIR=${DOCDIR:-$share/doc/quichsd}

log() { echo "install.sh: $*"; }
die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

put() {  # put MODE SOURCE TARGET
    install -D -m "$1" "$2" "$DESTDIR$3"
    log "$3"
}

# the daemon's command: $BINDIR/quichsd (from the packaging tool) -> $SBINDIR/quichsd
if [ "$BINDIR" != "$SBINDIR" ]; then
    if [ -e "$DESTDIR$BINDIR/quichsd" ]; then
        mkdir -p "$DESTDIR$SBINDIR"
        mv -f "$DESTDIR$BINDIR/quichsd" "$DESTDIR$SBINDIR/quichsd"
        log "$SBINDIR/quichsd (moved from $BINDIR)"
    elif [ ! -e "$DESTDIR$SBINDIR/quichsd" ]; then
        log "warning: no $BINDIR/quichsd to move to $SBINDIR: install the Python package" \
            "first (pybuild, pip); the unit runs $SBINDIR/quichsd"
    fi
fi

# the unit runs $SBINDIR/quichsd with $SYSCONFDIR/quichsd/config.yaml
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
exec_line="ExecStart=$SBINDIR/quichsd -c $SYSCONFDIR/quichsd/config.yaml"
sed -e "s|^ExecStart=/usr/sbin/quichsd -c /etc/quichsd/config.yaml\$|$exec_line|" \
    systemd/quichsd.service > "$unit"
grep -qx "$exec_line" "$unit" || die "systemd/quichsd.service has no ExecStart line to rewrite"
put 0644 "$unit" "$UNITDIR/quichsd.service"
put 0644 systemd/quichsd.socket "$UNITDIR/quichsd.socket"

config=$SYSCONFDIR/quichsd/config.yaml
if [ -e "$DESTDIR$config" ]; then
    put 0644 etc/quichsd/config.yaml "$config.dist"
    log "kept the existing $config"
else
    put 0644 etc/quichsd/config.yaml "$config"
fi

for page in docs/man/*.[0-9]; do
    name=$(basename "$page")
    put 0644 "$page" "$MANDIR/man${name##*.}/$name"
done

for doc in README.md CHANGELOG.md COPYING docs/*.md; do
    put 0644 "$doc" "$DOCDIR/$(basename "$doc")"
done
