# SPDX-License-Identifier: GPL-2.0-or-later
"""The README's main job (scripts/demo.sh runs `python -m quichsd.demo`) stays true."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.peer


def test_demo_succeeds_end_to_end() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "quichsd.demo"], capture_output=True, text=True, timeout=300
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "every handshake succeeded" in out
    assert out.count('"ok": true') == 5, out[-4000:]
    assert "kernel handshake netlink family 'handshake' is not available" in out
