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


def test_staged_install_lays_out_unit_config_man_and_docs(tmp_path: Path) -> None:
    r = install(tmp_path, PREFIX="/usr/local", SYSCONFDIR="/etc")
    assert r.returncode == 0, r.stderr
    assert files(tmp_path) == {
        "/etc/quichsd/config.yaml": 0o644,
        "/lib/systemd/system/quichsd.service": 0o644,
        "/usr/local/share/doc/quichsd/CHANGELOG.md": 0o644,
        "/usr/local/share/doc/quichsd/README.md": 0o644,
        "/usr/local/share/doc/quichsd/design.md": 0o644,
        "/usr/local/share/doc/quichsd/unix-protocol.md": 0o644,
        "/usr/local/share/man/man1/quichsd-probe.1": 0o644,
        "/usr/local/share/man/man5/quichsd.yaml.5": 0o644,
        "/usr/local/share/man/man8/quichsd.8": 0o644,
    }
    unit = (tmp_path / "lib/systemd/system/quichsd.service").read_text()
    shipped = (REPO / "systemd/quichsd.service").read_text()
    # only the command line differs from the shipped unit
    assert unit == shipped.replace(
        "ExecStart=/usr/bin/quichsd -c /etc/quichsd/config.yaml",
        "ExecStart=/usr/local/bin/quichsd -c /etc/quichsd/config.yaml",
    )
    assert unit != shipped
    config = tmp_path / "etc/quichsd/config.yaml"
    assert config.read_bytes() == (REPO / "etc/quichsd/config.yaml").read_bytes()
    assert "/etc/quichsd/config.yaml" in r.stdout


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
    unit = (tmp_path / "lib/systemd/system/quichsd.service").read_text()
    assert "ExecStart=/usr/bin/quichsd -c /usr/local/etc/quichsd/config.yaml\n" in unit
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
