#!/bin/sh
# Install what a distribution ships besides the Python package: the systemd unit, the
# configuration file, the man pages and the documentation.
#
#   scripts/install.sh                        # into / (as root), PREFIX=/usr
#   DESTDIR=/tmp/stage scripts/install.sh     # staged, for a package build
#
# The Python package itself (the quichsd and quichsd-probe commands) is installed by the
# packaging tool (pybuild, pip): it must put them in $PREFIX/bin, where the unit runs them.
#
# Environment: DESTDIR (default: none), PREFIX (default /usr), SYSCONFDIR (default /etc),
# UNITDIR (default /lib/systemd/system). An existing $SYSCONFDIR/quichsd/config.yaml is
# kept, and the shipped one goes beside it as config.yaml.dist.
set -eu
cd "$(dirname "$0")/.."

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/lib/systemd/system}

log() { echo "install.sh: $*"; }

put() {  # put MODE SOURCE TARGET
    install -D -m "$1" "$2" "$DESTDIR$3"
    log "$3"
}

# the unit runs $PREFIX/bin/quichsd with $SYSCONFDIR/quichsd/config.yaml
unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed -e "s|^ExecStart=/usr/bin/quichsd -c /etc/quichsd/config.yaml\$|ExecStart=$PREFIX/bin/quichsd -c $SYSCONFDIR/quichsd/config.yaml|" \
    systemd/quichsd.service > "$unit"
grep -q "^ExecStart=$PREFIX/bin/quichsd -c $SYSCONFDIR/quichsd/config.yaml\$" "$unit" || {
    echo "install.sh: ERROR: systemd/quichsd.service has no ExecStart line to rewrite" >&2
    exit 1
}
put 0644 "$unit" "$UNITDIR/quichsd.service"

config=$SYSCONFDIR/quichsd/config.yaml
if [ -e "$DESTDIR$config" ]; then
    put 0644 etc/quichsd/config.yaml "$config.dist"
    log "kept the existing $config"
else
    put 0644 etc/quichsd/config.yaml "$config"
fi

for page in docs/man/*.[0-9]; do
    name=$(basename "$page")
    put 0644 "$page" "$PREFIX/share/man/man${name##*.}/$name"
done

for doc in README.md CHANGELOG.md docs/design.md docs/unix-protocol.md; do
    put 0644 "$doc" "$PREFIX/share/doc/quichsd/$(basename "$doc")"
done
