# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon needs pyroute2 and PyYAML only; aioquic and cryptography are the probe's
extra (issue 13 item 4). Run in a fresh interpreter in which those packages cannot be
imported (``sys.modules[name] = None`` makes every import of them fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = (
    "import sys\n"
    "for m in ('aioquic', 'cryptography', 'pylsqpack', 'certifi', 'service_identity'):\n"
    "    sys.modules[m] = None\n"
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_daemon_and_check_run_without_the_probe_extra() -> None:
    config = ROOT / "etc" / "quichsd" / "config.yaml"
    r = run_blocked(
        "import quichsd.daemon, quichsd.cli\n"
        f"sys.exit(quichsd.cli.main(['--check', '-c', {str(config)!r}]))\n"
    )
    assert r.returncode == 0, r.stderr


def test_probe_without_aioquic_says_what_to_install() -> None:
    r = run_blocked(
        "from quichsd.probe import main\n"
        "sys.exit(main(['connect', '127.0.0.1', '9', '--alpn', 'h3']))\n"
    )
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("quichsd-probe: needs the Python package 'aioquic'"), r.stderr
    assert "quichsd[probe]" in r.stderr and "Traceback" not in r.stderr
