# SPDX-License-Identifier: GPL-2.0-or-later
"""The release scheme of docs/releasing.md holds: the version in the code, the top
CHANGELOG section and the man pages' headers agree, and every file says its licence."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import quichsd

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"^## (\d+\.\d+\.\d+) \((\d{4}-\d{2}-\d{2}|unreleased)\)$", re.M)


def test_top_changelog_section_is_the_code_version() -> None:
    sections = SECTION.findall((ROOT / "CHANGELOG.md").read_text())
    assert sections, "no '## X.Y.Z (date)' section in CHANGELOG.md"
    assert sections[0][0] == quichsd.__version__, sections[0]
    versions = [tuple(int(x) for x in v.split(".")) for v, _ in sections]
    assert versions == sorted(versions, reverse=True), "sections must be newest first"
    assert len(set(versions)) == len(versions), "a version has two sections"


def test_man_pages_carry_the_version_and_release_date() -> None:
    version, date = SECTION.findall((ROOT / "CHANGELOG.md").read_text())[0]
    for page in sorted((ROOT / "docs" / "man").glob("*.[0-9]")):
        th = next(x for x in page.read_text().splitlines() if x.startswith(".TH "))
        assert f'"quichsd {version}"' in th, (page.name, th)
        if date != "unreleased":
            assert f'"{date}"' in th, (page.name, th)


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / p for p in out.splitlines()]


def test_every_source_file_has_an_spdx_line() -> None:
    """Python, shell and unit files name their licence in their first lines (SPDX)."""
    files = tracked("*.py", "*.sh", "systemd/*", ".ci/run")
    assert len(files) > 100
    tag = "SPDX-License-Identifier: GPL-2.0-or-later"
    missing = [
        str(p.relative_to(ROOT))
        for p in files
        if tag not in "".join(p.read_text().splitlines(True)[:3])
    ]
    assert not missing, missing
