# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 13 item 8: without a loadable libgnutls, ``quichsd --version``, ``--help`` and
``--import-tlshd-config`` work, and every other command prints one line naming the
library and the package to install, exit status 3, no traceback; the same for
``quichsd-probe``, whose ``--via`` (the daemon runs the TLS) works too.

The library is really unloadable: the dynamic loader finds an empty file of its name
first (``LD_LIBRARY_PATH``), as it would a truncated install, and fails on it ("file too
short"). Unlike bind-mounting /dev/null over the library in a private mount namespace,
this also works in a chroot (scripts/chroot-test.sh), whose root is no mount point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quichsd import __version__
from quichsd.gnutls import _lib

QUICHSD = str(Path(sys.executable).parent / "quichsd")


def unloadable(folder: Path, soname: str) -> dict[str, str]:
    """An environment in which the loader finds an empty ``soname`` in ``folder`` first."""
    folder.mkdir(exist_ok=True)
    (folder / soname).write_bytes(b"")
    prior = os.environ.get("LD_LIBRARY_PATH")
    return {**os.environ, "LD_LIBRARY_PATH": f"{folder}:{prior}" if prior else str(folder)}


def without_gnutls(
    folder: Path, *args: str, prog: str = QUICHSD
) -> subprocess.CompletedProcess[str]:
    env = unloadable(folder / "no-gnutls", _lib.LIBRARY)
    return subprocess.run([prog, *args], capture_output=True, text=True, timeout=60, env=env)


def test_version_help_and_import_work_without_gnutls(tmp_path: Path) -> None:
    r = without_gnutls(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"quichsd {__version__}", r
    r = without_gnutls(tmp_path, "--help")
    assert r.returncode == 0 and "--import-tlshd-config" in r.stdout, r
    conf = tmp_path / "tlshd.conf"
    conf.write_text("[authenticate]\nkeyrings=quic\n")
    r = without_gnutls(tmp_path, "--import-tlshd-config", str(conf))
    assert r.returncode == 0 and "keyrings:\n- quic\n" in r.stdout, r


@pytest.mark.parametrize("args", [(), ("--check",), ("-s",)])
def test_other_commands_say_one_line_and_exit_3(args: tuple[str, ...], tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("log:\n  level: info\n")
    r = without_gnutls(tmp_path, *args, "-c", str(cfg))
    assert r.returncode == 3, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"quichsd: cannot load {_lib.LIBRARY}: "), lines
    assert lines[0].endswith(_lib.PACKAGE_HINT), lines


def test_without_libkeyutils_one_warning_with_the_reason(tmp_path: Path) -> None:
    """libkeyutils unloadable: the daemon still starts and says so once (not once per
    keyring, and not as ENOSYS), naming the package."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"unix_socket:\n  path: {tmp_path / 'q.sock'}\n")
    proc = subprocess.Popen(
        [QUICHSD, "-s", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=unloadable(tmp_path / "no-keyutils", "libkeyutils.so.1"),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if "running:" in line:
            break
    proc.terminate()
    proc.wait(20)
    warnings = [x for x in lines if "keyring" in x]
    assert len(warnings) == 1, lines
    assert "keyrings not linked: cannot load libkeyutils.so.1: " in warnings[0], warnings
    assert warnings[0].endswith("(install libkeyutils1)") and "ENOSYS" not in warnings[0]


PROBE = str(Path(sys.executable).parent / "quichsd-probe")


def test_probe_without_gnutls_help_version_and_via_work(tmp_path: Path) -> None:
    """quichsd-probe: --help and --version work; --via needs no local TLS, so it runs
    (here to a daemon socket that does not exist: its JSON line says so, exit 1)."""
    r = without_gnutls(tmp_path, "--help", prog=PROBE)
    assert r.returncode == 0 and "connect" in r.stdout and "serve" in r.stdout, r
    r = without_gnutls(tmp_path, "--version", prog=PROBE)
    assert r.returncode == 0, r
    assert r.stdout.strip() == f"quichsd-probe {__version__} (GnuTLS cannot be loaded)", r
    gone = tmp_path / "no.sock"
    r = without_gnutls(
        tmp_path, "connect", "127.0.0.1", "4433", "--alpn", "h3", "--via", str(gone), prog=PROBE
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    assert f'"error": "daemon at {gone}: ' in r.stdout, r


@pytest.mark.parametrize(
    "args",
    [
        ("connect", "127.0.0.1", "4433", "--alpn", "h3"),
        ("serve", "4433", "--alpn", "h3", "--cert", "c.pem", "--key", "k.pem"),
    ],
)
def test_probe_without_gnutls_says_one_line_and_exits_3(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    r = without_gnutls(tmp_path, *args, prog=PROBE)
    assert r.returncode == 3 and r.stdout == "", r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"quichsd-probe: cannot load {_lib.LIBRARY}: "), lines
    assert lines[0].endswith(_lib.PACKAGE_HINT), lines
