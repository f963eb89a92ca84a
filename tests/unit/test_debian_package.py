# SPDX-License-Identifier: GPL-2.0-or-later
"""The Debian package (issue 13 item 7): ``scripts/build-deb.sh`` builds it from
``packaging/debian/`` with Debian's own python3 packages and no network (the build runs
in a network namespace of its own, with no interface but a down loopback); its contents,
control fields and maintainer scripts are read with ``dpkg-deb``; then it is unpacked
into a throw-away root (``dpkg -x``, the host's dpkg database untouched) and its
``/usr/sbin/quichsd`` run by the system's ``/usr/bin/python3 -I`` on Debian's
python3-yaml and python3-pyroute2. The VM tier installs it for real (``dpkg -i``,
tests/kernel/guest.py ``deb_package_nvme_tls``)."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from quichsd_proc import QuichsdProcess

import quichsd

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
DIST = "usr/lib/python3/dist-packages"


def in_own_netns() -> list[str]:
    """``unshare --net`` where this process may make a network namespace (root)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net"]
    return []


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run(
        [*in_own_netns(), "sh", str(ROOT / "scripts" / "build-deb.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    path = Path(r.stdout.splitlines()[-1])
    assert path.parent == out and path.is_file(), r.stdout
    return path


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=60)
    return root


def dpkg_deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def contents(deb: Path) -> dict[str, str]:
    """path -> mode string (``-rwxr-xr-x``; ``l...`` for links) from ``dpkg-deb -c``."""
    out: dict[str, str] = {}
    for line in dpkg_deb("-c", str(deb)).splitlines():
        f = line.split()
        out[f[5].removeprefix(".").split(" -> ")[0]] = f[0]
    return out


def test_files_at_their_paths(deb: Path) -> None:
    files = contents(deb)
    for path, mode in {
        "/usr/sbin/quichsd": "-rwxr-xr-x",
        "/usr/bin/quichsd-probe": "-rwxr-xr-x",
        "/usr/lib/systemd/system/quichsd.service": "-rw-r--r--",
        "/usr/lib/systemd/system/quichsd.socket": "-rw-r--r--",
        "/etc/quichsd/config.yaml": "-rw-r--r--",
        "/usr/share/man/man8/quichsd.8.gz": "-rw-r--r--",
        "/usr/share/man/man5/quichsd.yaml.5.gz": "-rw-r--r--",
        "/usr/share/man/man1/quichsd-probe.1.gz": "-rw-r--r--",
        "/usr/share/doc/quichsd/copyright": "-rw-r--r--",
        "/usr/share/doc/quichsd/changelog.gz": "-rw-r--r--",
        f"/{DIST}/quichsd/daemon.py": "-rw-r--r--",
        f"/{DIST}/quichsd/py.typed": "-rw-r--r--",
        f"/{DIST}/quichsd-{quichsd.__version__}.dist-info/METADATA": "-rw-r--r--",
    }.items():
        assert files.get(path) == mode, (path, files.get(path))
    # the daemon is only in sbin (the unit runs /usr/sbin/quichsd)
    assert "/usr/bin/quichsd" not in files
    junk = [
        p
        for p in files
        if "__pycache__" in p
        or p.endswith((".pyc", ".pyo"))
        or re.search(r"site-packages|\.venv|pyvenv|/usr/local|\.egg-info|/pip/|/tests/", p)
        or (p.startswith("/lib/") and p != "/lib/")
    ]
    assert not junk, junk
    # every module of the source tree, and nothing else, under dist-packages
    shipped = {p for p in files if p.startswith(f"/{DIST}/quichsd/") and p.endswith(".py")}
    source = {f"/{DIST}/{p.relative_to(ROOT)}" for p in (ROOT / "quichsd").rglob("*.py")}
    assert shipped == source, shipped ^ source


def test_shipped_files_are_the_trees(unpacked: Path) -> None:
    for packaged, tree in (
        ("usr/lib/systemd/system/quichsd.service", "systemd/quichsd.service"),
        ("usr/lib/systemd/system/quichsd.socket", "systemd/quichsd.socket"),
        ("etc/quichsd/config.yaml", "etc/quichsd/config.yaml"),
    ):
        assert (unpacked / packaged).read_bytes() == (ROOT / tree).read_bytes(), packaged
    for page in (ROOT / "docs" / "man").glob("*.[0-9]"):
        gz = unpacked / f"usr/share/man/man{page.suffix[1:]}/{page.name}.gz"
        assert gzip.decompress(gz.read_bytes()) == page.read_bytes(), page.name
    # the upstream changelog, and CHANGELOG.md.gz pointing at it
    doc = unpacked / "usr/share/doc/quichsd"
    assert (
        gzip.decompress((doc / "changelog.gz").read_bytes()) == (ROOT / "CHANGELOG.md").read_bytes()
    )
    assert (doc / "CHANGELOG.md.gz").resolve() == (doc / "changelog.gz").resolve()
    copyright_ = (doc / "copyright").read_text()
    assert copyright_.startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    )
    assert "License: GPL-2.0-or-later\n" in copyright_
    assert "/usr/share/common-licenses/GPL-2" in copyright_
    assert "version 2 of the License, or\n (at your option) any later version." in copyright_
    assert "(at your option) any later version." in (ROOT / "COPYING").read_text()
    shebang = (unpacked / "usr/sbin/quichsd").read_text().splitlines()[0]
    # Debian 13's pybuild writes "#! /usr/bin/python3" (the kernel takes both)
    assert shebang.replace("#! ", "#!", 1) == "#!/usr/bin/python3", shebang


def test_control_fields_and_version(deb: Path) -> None:
    fields = dict(
        line.split(": ", 1)
        for line in dpkg_deb("-f", str(deb), "Package", "Version", "Architecture").splitlines()
    )
    assert fields == {"Package": "quichsd", "Version": quichsd.__version__, "Architecture": "all"}
    # the same version in debian/changelog, the code, pyproject (dynamic from the code)
    # and the top CHANGELOG section (tests/unit/test_release.py checks the last two)
    top = (ROOT / "packaging/debian/changelog").read_text().splitlines()[0]
    assert top.startswith(f"quichsd ({quichsd.__version__}) "), top
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"\n## {quichsd.__version__} (" in changelog
    assert deb.name == f"quichsd_{quichsd.__version__}_all.deb"

    def relations(field: str) -> list[str]:
        return [x.strip() for x in dpkg_deb("-f", str(deb), field).split(",")]

    depends = relations("Depends")
    assert "python3-pyroute2 (>= 0.7.2)" in depends, depends
    assert "python3-yaml (>= 6.0)" in depends, depends
    assert "libkeyutils1" in depends, depends
    # Debian 13's t64 name first, Debian 12's as the alternative; 3.7.2: the QUIC API
    assert "libgnutls30t64 | libgnutls30 (>= 3.7.2)" in depends, depends
    assert any(re.fullmatch(r"python3:any \(>= 3\.11~?\)", x) for x in depends), depends
    # the metrics endpoint's library and systemd-python are optional for the daemon
    assert not [x for x in depends if "prometheus" in x or "systemd" in x], depends
    recommends = relations("Recommends")
    assert "python3-systemd" in recommends
    assert "python3-prometheus-client (>= 0.16)" in recommends
    assert "python3-aioquic (>= 1.2)" in relations("Suggests")
    assert "pip" not in dpkg_deb("-f", str(deb), "Depends", "Recommends", "Suggests")


def test_config_is_a_conffile(deb: Path) -> None:
    assert dpkg_deb("-I", str(deb), "conffiles").split() == ["/etc/quichsd/config.yaml"]


def test_maintainer_scripts_enable_but_do_not_start(deb: Path) -> None:
    """What packaging/debian/rules and quichsd.prerm promise (docs/releasing.md)."""
    postinst = dpkg_deb("-I", str(deb), "postinst")
    prerm = dpkg_deb("-I", str(deb), "prerm")
    for unit in ("quichsd.service", "quichsd.socket"):
        assert f"deb-systemd-helper enable '{unit}'" in postinst
    assert "deb-systemd-invoke start" not in postinst
    assert re.search(r"deb-systemd-invoke try-restart .*quichsd\.service", postinst)
    assert "py3compile -p quichsd" in postinst
    assert re.search(
        r'if \[ "\$1" = remove \].*-d /run/systemd/system.*\n'
        r"\s*deb-systemd-invoke stop 'quichsd.socket' 'quichsd.service'",
        prerm,
    ), prerm
    # no maintainer script stops the service before an upgrade (it is try-restarted)
    assert "preinst" not in dpkg_deb("-I", str(deb))


def system_python_run(root: Path, script: str, *args: str) -> list[str]:
    """argv running the unpacked ``script`` under the system interpreter, isolated (-I: no
    venv, no user site, no PYTHON* variables), with the unpacked dist-packages first."""
    code = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(root / DIST)!r})\n"
        f"sys.argv = [{str(root / script)!r}, *sys.argv[1:]]\n"
        f"runpy.run_path({str(root / script)!r}, run_name='__main__')\n"
    )
    return [SYSTEM_PYTHON, "-I", "-c", code, *args]


def test_unpacked_package_runs_on_debians_python(unpacked: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/", env=env)

    where = run(
        *system_python_run(unpacked, "usr/sbin/quichsd"),
        "--version",
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == f"quichsd {quichsd.__version__}"
    # the modules come from the package and from Debian's python3-* packages
    probe = run(
        SYSTEM_PYTHON,
        "-I",
        "-c",
        f"import sys; sys.path.insert(0, {str(unpacked / DIST)!r})\n"
        "import quichsd.cli, quichsd.netlink.transports, yaml, pyroute2\n"
        "print(quichsd.__file__, yaml.__file__, pyroute2.__file__, sys.prefix)",
    )
    assert probe.returncode == 0, probe.stderr
    ours, yaml_, pyroute2_, prefix = probe.stdout.split()
    assert ours == str(unpacked / DIST / "quichsd/__init__.py")
    assert yaml_.startswith("/usr/lib/python3/dist-packages/yaml/"), yaml_
    assert pyroute2_.startswith("/usr/lib/python3/dist-packages/pyroute2/"), pyroute2_
    assert prefix == "/usr"

    config = unpacked / "etc/quichsd/config.yaml"
    check = run(*system_python_run(unpacked, "usr/sbin/quichsd"), "--check", "-c", str(config))
    assert check.returncode == 0, check.stdout + check.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("log:\n  level: loud\n")
    check = run(*system_python_run(unpacked, "usr/sbin/quichsd"), "--check", "-c", str(bad))
    assert check.returncode != 0 and f"{bad}:2:" in check.stdout + check.stderr, (
        check.stdout + check.stderr
    )


def test_unpacked_daemon_serves_on_debians_pyroute2(unpacked: Path, tmp_path: Path) -> None:
    """The packaged /usr/sbin/quichsd serves under the system python: Debian's pyroute2
    (0.7 on Debian 12 and 13: quichsd/netlink/pyroute07.py) joins the handshake family
    or reports that this kernel has none, the unix service runs, SIGTERM ends it with
    status 0."""
    daemon = QuichsdProcess(tmp_path, "", command=system_python_run(unpacked, "usr/sbin/quichsd"))
    try:
        log = daemon.wait_log(" running: ", timeout=60)
        assert "'handshake' is not available" in log or "serving kernel handshake" in log, log
        assert f"quichsd {quichsd.__version__} (GnuTLS " in log, log
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
