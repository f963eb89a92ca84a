#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The test command: set-up (idempotent), lint, strict typing, then every test tier
# (unit, engine, keyring, netlink, interop against real QUIC peers, real-kernel VM).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not vm".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./tests/kernel/setup.sh
echo "== ruff"
.venv/bin/ruff check quichsd tests bench docs/examples
.venv/bin/ruff format --check quichsd tests bench docs/examples
echo "== mypy --strict quichsd docs/examples"
.venv/bin/mypy --strict quichsd docs/examples
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
