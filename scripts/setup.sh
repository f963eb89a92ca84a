#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine (run as root): system packages,
# then a virtualenv in .venv with quichsd installed (editable) and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libgnutls30 libgnutls28-dev gnutls-bin   # GnuTLS (QUIC API >= 3.7), certtool, headers for bench/floor.c
  ngtcp2-client ngtcp2-server              # real QUIC peers on GnuTLS: gtlsclient / gtlsserver
  libkeyutils1 keyutils                    # kernel keyrings (libkeyutils via ctypes; keyctl for tests)
  libsystemd-dev pkg-config gcc            # to build systemd-python (sd_notify, journal)
  systemd                                  # systemd-analyze (unit security check in the tests)
  groff-base man-db                        # groff/man: tests/unit/test_man.py renders the man pages
  python3-venv
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.quichsd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,systemd]'
  touch "$stamp"
fi
