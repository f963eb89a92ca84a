"""Shared test set-up: make ``tests/`` importable (pki helpers) and count open fds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
