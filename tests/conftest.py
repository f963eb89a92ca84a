# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared test set-up: make ``tests/`` importable (pki helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
