# SPDX-License-Identifier: GPL-2.0-or-later
"""scripts/install.sh, staged into a DESTDIR as a package build would run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def install(destdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(REPO / "scripts" / "install.sh")],
        env={**os.environ, "DESTDIR": str(destdir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def files(root: Path) -> dict[str, int]:
    return {
        "/" + str(p.relative_to(root)): p.stat().st_mode & 0o7777
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


DOCS = sorted(
    ["README.md", "CHANGELOG.md", "COPYING"] + [p.name for p in (REPO / "docs").glob("*.md")]
)


def console_script(path: Path) -> None:
    """What pip or pybuild leaves in BINDIR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/python3\nfrom quichsd.cli import main\nmain()\n")
    path.chmod(0o755)


def test_staged_install_lays_out_unit_config_man_and_docs(tmp_path: Path) -> None:
    console_script(tmp_path / "usr/local/bin/quichsd")
    console_script(tmp_path / "usr/local/bin/quichsd-probe")
    r = install(tmp_path, PREFIX="/usr/local", SYSCONFDIR="/etc")
    assert r.returncode == 0, r.stderr
    assert files(tmp_path) == {
        "/etc/quichsd/config.yaml": 0o644,
        "/usr/lib/systemd/system/quichsd.service": 0o644,
        "/usr/lib/systemd/system/quichsd.socket": 0o644,
        # the daemon in sbin, as tlshd; the probe stays where the packaging tool put it
        "/usr/local/sbin/quichsd": 0o755,
        "/usr/local/bin/quichsd-probe": 0o755,
        **{f"/usr/local/share/doc/quichsd/{d}": 0o644 for d in DOCS},
        "/usr/local/share/man/man1/quichsd-probe.1": 0o644,
        "/usr/local/share/man/man5/quichsd.yaml.5": 0o644,
        "/usr/local/share/man/man8/quichsd.8": 0o644,
    }
    unit = (tmp_path / "usr/lib/systemd/system/quichsd.service").read_text()
    shipped = (REPO / "systemd/quichsd.service").read_text()
    # only the command line differs from the shipped unit
    assert unit == shipped.replace(
        "ExecStart=/usr/sbin/quichsd -c /etc/quichsd/config.yaml",
        "ExecStart=/usr/local/sbin/quichsd -c /etc/quichsd/config.yaml",
    )
    assert unit != shipped
    assert "Documentation=man:quichsd(8) man:quichsd.yaml(5)\n" in unit
    config = tmp_path / "etc/quichsd/config.yaml"
    assert config.read_bytes() == (REPO / "etc/quichsd/config.yaml").read_bytes()
    assert "/etc/quichsd/config.yaml" in r.stdout


def test_knobs_bindir_sbindir_mandir_unitdir(tmp_path: Path) -> None:
    console_script(tmp_path / "opt/q/bin/quichsd")
    r = install(
        tmp_path,
        PREFIX="/opt/q",
        SBINDIR="/opt/q/libexec",
        MANDIR="/opt/man",
        UNITDIR="/etc/systemd/system",
        DOCDIR="/opt/doc",
    )
    assert r.returncode == 0, r.stderr
    got = files(tmp_path)
    assert "/opt/q/libexec/quichsd" in got and "/opt/q/bin/quichsd" not in got
    assert "/opt/man/man8/quichsd.8" in got and "/opt/doc/README.md" in got
    unit = (tmp_path / "etc/systemd/system/quichsd.service").read_text()
    assert "ExecStart=/opt/q/libexec/quichsd -c /etc/quichsd/config.yaml\n" in unit


def test_virtualenv_prefix_keeps_man_pages_out_of_the_venv(tmp_path: Path) -> None:
    venv = tmp_path / "srv/venv"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    console_script(venv / "bin/quichsd")
    r = install(tmp_path, PREFIX="/srv/venv")
    assert r.returncode == 0, r.stderr
    got = files(tmp_path)
    assert "/usr/local/share/man/man8/quichsd.8" in got
    assert not [p for p in got if p.startswith("/srv/venv/share")]
    assert "/srv/venv/sbin/quichsd" in got


def test_missing_console_script_is_reported(tmp_path: Path) -> None:
    r = install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning: no /usr/bin/quichsd to move to /usr/sbin" in r.stdout


def test_reinstall_keeps_the_admins_config(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    config = tmp_path / "etc/quichsd/config.yaml"
    config.write_text("log:\n  level: debug\n")
    r = install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert config.read_text() == "log:\n  level: debug\n"
    dist = tmp_path / "etc/quichsd/config.yaml.dist"
    assert dist.read_bytes() == (REPO / "etc/quichsd/config.yaml").read_bytes()
    assert "kept the existing /etc/quichsd/config.yaml" in r.stdout


def test_other_sysconfdir_reaches_the_unit(tmp_path: Path) -> None:
    r = install(tmp_path, SYSCONFDIR="/usr/local/etc")
    assert r.returncode == 0, r.stderr
    unit = (tmp_path / "usr/lib/systemd/system/quichsd.service").read_text()
    assert "ExecStart=/usr/sbin/quichsd -c /usr/local/etc/quichsd/config.yaml\n" in unit
    assert (tmp_path / "usr/local/etc/quichsd/config.yaml").is_file()


def test_installed_man_pages_render(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    page = tmp_path / "usr/share/man/man8/quichsd.8"
    r = subprocess.run(
        ["man", "-l", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"},
    )
    assert r.returncode == 0, r.stderr
    assert "REMOTE_AUTH" in r.stdout and "quichsd" in r.stdout
