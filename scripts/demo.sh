#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The main job, demonstrated where the kernel lacks QUIC: set-up (idempotent), then
# quichsd's handshake path against real, independent QUIC peers over UDP on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m quichsd.demo "$@"
