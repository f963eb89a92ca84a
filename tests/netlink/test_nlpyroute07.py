# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon on the distribution's own Python packages (issue 13 item 4): Debian's
python3-pyroute2 is 0.7 (0.7.2 in Debian 12, 0.7.7 in Debian 13), which has no asyncio
API, so :mod:`quichsd.netlink.pyroute07` serves there. Run by ``/usr/bin/python3 -I``
(Debian's interpreter and packages only, no venv), against this machine's kernel."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def system_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    return subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def test_pyroute07_transport_on_debians_pyroute2() -> None:
    script = ROOT / "tests" / "netlink" / "compat07.py"
    r = system_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("pyroute2 0.7."), lines[0]
    assert len([x for x in lines if x.startswith("ok check_")]) == 6, r.stdout


def test_daemon_check_and_start_on_debians_packages(tmp_path: Path) -> None:
    config = ROOT / "etc" / "quichsd" / "config.yaml"
    r = system_python(
        f"from quichsd.cli import main; sys.exit(main(['--check', '-c', {str(config)!r}]))"
    )
    assert r.returncode == 0, r.stderr
    # the real daemon under Debian's python: this kernel has no handshake family, which
    # the 0.7 transport reports; the daemon keeps its unix service and stops on SIGTERM
    sock = tmp_path / "q.sock"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"unix_socket:\n  path: {sock}\n")
    prelude = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    code = prelude + f"from quichsd.cli import main; sys.exit(main(['-s', '-c', {str(cfg)!r}]))"
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-I", "-c", code], stderr=subprocess.PIPE, text=True, cwd="/"
    )
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if " running: " in line:
                break
        assert any(
            "kernel handshake netlink family 'handshake' is not available" in x for x in lines
        ), lines
        assert sock.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
