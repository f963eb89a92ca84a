#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The whole benchmark: builds bench/floor.c, writes bench/out/results.json, prints a table.
# Usage: bench/run.sh [--quick] [--profile]
set -e
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench "$@"
