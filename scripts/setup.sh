#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Idempotent set-up on a fresh Debian 12 (bookworm) or Debian 13 (trixie) machine, run
# as root: system packages, then a virtualenv in .venv with quichsd installed (editable)
# and its test tools. Package names that differ between releases (Debian 13's t64
# libraries) are resolved against what apt offers, not assumed from the release.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/debian.sh
. ./scripts/debian.sh

# each entry: one package, or alternatives "a|b" (the first that apt offers is taken)
APT_PACKAGES=(
  "libgnutls30t64|libgnutls30" libgnutls28-dev gnutls-bin  # GnuTLS (QUIC API >= 3.7), certtool, headers
  ngtcp2-client ngtcp2-server              # real QUIC peers on GnuTLS: gtlsclient / gtlsserver
  libkeyutils1 keyutils                    # kernel keyrings (libkeyutils via ctypes; keyctl for tests)
  softhsm2 p11-kit                         # a real PKCS#11 token for private_key: pkcs11: URLs (tests)
  libsystemd-dev pkg-config gcc            # to build systemd-python (sd_notify, journal)
  systemd                                  # systemd-analyze (unit check), systemd-socket-activate (LISTEN_FDS test)
  groff-base man-db                        # groff/man: tests/unit/test_man.py renders the man pages
  python3-venv
  python3-setuptools python3-wheel         # the distribution's own build (tests/unit/test_packaging.py)
  python3-pyroute2 python3-yaml            # the daemon on Debian's own packages (tests/netlink/test_nlpyroute07.py)
  python3-prometheus-client                # its metrics on Debian's prometheus_client (tests/daemon/test_metrics.py)
  python3-systemd                          # the .deb's daemon run by Debian's python3 (tests/unit/test_debian_package.py)
  # the .deb's build dependencies (packaging/debian/control; scripts/build-deb.sh)
  dpkg-dev build-essential debhelper dh-python python3-all pybuild-plugin-pyproject
)
PY=${PYTHON:-python3}
# the interpreter's own headers (systemd-python compiles); a pyenv build has them
if ! "$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  APT_PACKAGES+=(python3-dev)
fi
debian_install "${APT_PACKAGES[@]}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.quichsd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,systemd,probe]'
  touch "$stamp"
fi
