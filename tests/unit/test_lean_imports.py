# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon imports only the part of pyroute2 it uses (quichsd.netlink.lean, issue 15):
not IPRoute, NDB, IPDB or the other netlink families pyroute2/__init__ pulls in."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

CODE = """
import json, sys
import quichsd.daemon
mods = sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2")
print(json.dumps(mods))
"""


def test_daemon_import_loads_no_pyroute2_extras() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    mods = json.loads(out)
    assert "pyroute2.netlink.generic" in mods
    for extra in ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.iproute", "pyroute2.nftables"):
        assert not any(m == extra or m.startswith(extra + ".") for m in mods), (extra, mods)
    assert len(mods) < 40, mods


# The daemon as the quichsd command runs it (cli.main), with the shipped config; it prints
# the modules it imported once SIGTERM has stopped it.
DAEMON = """
import json, sys
from quichsd import cli
rc = cli.main(["-s", "-c", sys.argv[1]])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""
SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "quichsd" / "config.yaml"


def run_daemon(tmp_path: Path, workers: int = 1) -> tuple[set[str], str]:
    """The modules the running daemon imported and its /proc/PID/maps while it ran."""
    text = SHIPPED.read_text()
    for old, new in (
        ("\n  workers: 1\n", f"\n  workers: {workers}\n"),
        ("\n  path: /run/quichsd/quichsd.sock\n", f"\n  path: {tmp_path / 'q.sock'}\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    p = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stderr is not None
        seen = []
        for line in p.stderr:
            seen.append(line)
            if " running: " in line:
                break
        assert p.poll() is None, seen
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    res = json.loads(out.strip().splitlines()[-1])
    assert res["rc"] == 0, err
    return set(res["modules"]), maps


def loaded(mods: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in mods)


def test_running_daemon_has_no_ssl(tmp_path: Path) -> None:
    """asyncio is imported without ssl (quichsd.lean_asyncio): no OpenSSL in the daemon."""
    mods, maps = run_daemon(tmp_path)
    assert "asyncio" in mods and "quichsd.daemon" in mods
    assert "ssl" not in mods and "_ssl" not in mods
    for lib in ("libssl.so", "libcrypto.so", "/_ssl."):
        assert lib not in maps, lib


def test_asyncio_without_ssl_leaves_ssl_importable() -> None:
    code = (
        "import sys\n"
        "from quichsd.lean_asyncio import import_asyncio_without_ssl\n"
        "import_asyncio_without_ssl()\n"
        "assert 'asyncio' in sys.modules and 'ssl' not in sys.modules\n"
        "import asyncio.sslproto, ssl\n"
        "assert asyncio.sslproto.ssl is None and ssl.OPENSSL_VERSION\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_running_daemon_imports_workers_and_metrics_only_when_configured(
    tmp_path: Path,
) -> None:
    """The shipped config (workers: 1, metrics disabled) loads neither the worker pool nor
    the metrics endpoint; with workers: 2 the pool is there."""
    mods, _maps = run_daemon(tmp_path)
    for name in ("quichsd.workers", "quichsd.metrics_http"):
        assert not loaded(mods, name), name
    two, _maps = run_daemon(tmp_path, workers=2)
    assert "quichsd.workers.pool" in two and "quichsd.workers.zygote" in two
