# SPDX-License-Identifier: GPL-2.0-or-later
"""Idle RSS of the real daemon (``quichsd -s -c etc/quichsd/config.yaml``) after start-up.

Falls back to the RSS of a process that imports the daemon's modules when the CLI is
missing or does not come up, and says so (``method``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .fixture import CONFIG, ROOT
from .mem import rss_kb

STAND_IN = (
    "import quichsd.driver, quichsd.netlink, quichsd.config, quichsd.credentials; "
    "from pathlib import Path; "
    "print([l.split()[1] for l in Path('/proc/self/status').read_text().splitlines() "
    "if l.startswith('VmRSS:')][0])"
)


def _cli() -> str | None:
    exe = Path(sys.executable).parent / "quichsd"
    if exe.exists() and (ROOT / "quichsd" / "cli.py").exists():
        return str(exe)
    return shutil.which("quichsd")


def measure(settle: float = 2.0, limit: float = 15.0) -> dict[str, Any]:
    exe = _cli()
    if exe is not None:
        p = subprocess.Popen(
            [exe, "-s", "-c", str(CONFIG)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stderr is not None
            end = time.monotonic() + limit
            line = ""
            while time.monotonic() < end and p.poll() is None:
                line = p.stderr.readline()
                if "running" in line:
                    break
            if p.poll() is None and "running" in line:
                time.sleep(settle)
                samples = []
                for _ in range(5):
                    samples.append(rss_kb(str(p.pid)))
                    time.sleep(0.2)
                return {
                    "method": f"{exe} -s -c {CONFIG} (pid {p.pid}), {settle:g} s after "
                    f"its 'running' log line: {line.strip()}",
                    "rss_kb": max(samples),
                }
        finally:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    out = subprocess.run(
        [sys.executable, "-c", STAND_IN], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return {
        "method": "STAND-IN: the daemon CLI did not come up; RSS of a process importing "
        "quichsd.driver/netlink/config/credentials",
        "rss_kb": int(out.stdout.strip()),
    }
