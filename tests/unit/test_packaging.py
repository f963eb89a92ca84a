# SPDX-License-Identifier: GPL-2.0-or-later
"""The package builds as a distribution builds it (issue 13 items 2-3).

The wheel and the sdist are built by the PEP 517 hooks of the *distribution's* setuptools
(``/usr/bin/python3`` with Debian's python3-setuptools: 66 on Debian 12, 78 on Debian 13),
with no build isolation and no network, from a copy of the tracked files, as pybuild does.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(wheel, sdist, setuptools version) built by the system python's setuptools."""
    if not SYSTEM_PYTHON.exists():
        pytest.fail("no /usr/bin/python3: scripts/setup.sh installs Debian's python3")
    src = tmp_path_factory.mktemp("src")
    for rel in tracked():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("dist")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(src), "LANG": "C.UTF-8"}

    def hook(call: str) -> str:
        # -I: the system interpreter alone (no user site, no PYTHON* variables, no venv);
        # one process per hook, as a PEP 517 frontend runs them
        code = f"import sys, setuptools.build_meta as b; print(b.{call}(sys.argv[1]))"
        r = subprocess.run(
            [str(SYSTEM_PYTHON), "-I", "-c", code, str(out)],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout.split()[-1]

    sdist = hook("build_sdist")
    wheel = hook("build_wheel")
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-I", "-c", "import setuptools; print(setuptools.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out / wheel, out / sdist, version


def test_wheel_builds_with_the_distributions_setuptools(built: tuple[Path, Path, str]) -> None:
    wheel, _, version = built
    # setuptools is Debian's, not one a build-isolation step downloaded
    assert (
        "/usr/lib/python3/dist-packages"
        in subprocess.run(
            [str(SYSTEM_PYTHON), "-I", "-c", "import setuptools; print(setuptools.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    ), version
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(meta_name))
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "quichsd/daemon.py" in names and "quichsd/py.typed" in names
    assert meta["Name"] == "quichsd"
    assert meta["License"] == "GPL-2.0-or-later" or meta["License-Expression"] == (
        "GPL-2.0-or-later"
    )
    assert "quichsd = quichsd.cli:main" in entry_points
    assert "quichsd-probe = quichsd.probe:main" in entry_points


def test_sdist_carries_every_tracked_file(built: tuple[Path, Path, str]) -> None:
    _, sdist, _ = built
    with tarfile.open(sdist) as t:
        top = t.getnames()[0].split("/")[0]
        names = {n[len(top) + 1 :] for n in t.getnames()}
    missing = sorted(set(tracked()) - names - {".gitignore", "bench/.gitignore"})
    assert not missing, f"not in the sdist: {missing}"
    for must in (
        "systemd/quichsd.service",
        "etc/quichsd/config.yaml",
        "docs/man/quichsd.8",
        "docs/man/quichsd.yaml.5",
        "CHANGELOG.md",
        "COPYING",
        "scripts/install.sh",
        "scripts/build-deb.sh",
        "packaging/debian/control",
        "packaging/debian/rules",
        "packaging/debian/source/format",
        "tests/conftest.py",
    ):
        assert must in names


def test_requires_states_the_true_minimum() -> None:
    """build-system.requires says >= 61, the first setuptools reading [project]; the build
    above proves the distribution's (>= 66) works. Python 3.11's tomllib reads it."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["build-system"]["requires"] == ["setuptools>=61"]
    assert sys.version_info >= (3, 11)
