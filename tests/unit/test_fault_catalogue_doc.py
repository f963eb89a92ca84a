# SPDX-License-Identifier: GPL-2.0-or-later
"""docs/fault-catalogue.md cannot rot: every row has a status of the documented form, and
every ``tested:`` entry names a test function that exists in that file under tests/."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fault-catalogue.md"
KINDS = ("tested", "not applicable", "not yet")
TEST_REF = re.compile(r"^(tests/[\w/]+\.py)::(test_\w+)$")


def rows() -> list[tuple[int, str, str]]:
    """(line number, case, status) of every table row below a heading (not the header)."""
    out = []
    lines = DOC.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.startswith("|") or line.startswith("|-"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"{DOC.name}:{i}: expected 3 cells, got {len(cells)}"
        if i < len(lines) and lines[i].startswith("|-"):
            continue  # a header row (the separator follows it)
        out.append((i, cells[0], cells[2]))
    return out


def entries(status: str) -> list[tuple[str, str]]:
    """``kind: text`` entries of a status cell (separated by ``; ``)."""
    out = []
    for part in status.split("; "):
        kind, sep, text = part.partition(": ")
        assert sep and kind in KINDS and text.strip(), f"bad status entry {part!r}"
        out.append((kind, text.strip()))
    return out


@cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(), path)
    return frozenset(
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    )


def test_every_row_has_a_well_formed_status() -> None:
    found = rows()
    assert len(found) >= 80, f"only {len(found)} rows: was the table cut?"
    for line, case, status in found:
        assert case, f"{DOC.name}:{line}: empty case"
        assert entries(status), f"{DOC.name}:{line}: no status"


def test_every_tested_entry_names_an_existing_test() -> None:
    refs = 0
    for line, _case, status in rows():
        for kind, text in entries(status):
            if kind != "tested":
                continue
            for ref in text.split(", "):
                m = TEST_REF.match(ref)
                assert m, f"{DOC.name}:{line}: {ref!r} is not tests/FILE.py::test_NAME"
                path, name = m.groups()
                assert (ROOT / path).is_file(), f"{DOC.name}:{line}: no file {path}"
                assert name in defined_tests(path), f"{DOC.name}:{line}: no {name} in {path}"
                refs += 1
    assert refs >= 100


def test_the_checks_catch_a_missing_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above fail on a row naming a test that does not exist, or a bad status."""
    bad = DOC.read_text().replace(
        "test_eagain_race_sends_no_done", "test_eagain_race_sends_no_done_gone", 1
    )
    doc = tmp_path / "fault-catalogue.md"
    doc.write_text(bad)
    monkeypatch.setattr(f"{__name__}.DOC", doc)
    with pytest.raises(AssertionError, match="no test_eagain_race_sends_no_done_gone in"):
        test_every_tested_entry_names_an_existing_test()
    doc.write_text(DOC.read_text().replace("| not applicable: a deployment", "| maybe: a", 1))
    with pytest.raises(AssertionError, match="bad status entry 'maybe: a"):
        test_every_row_has_a_well_formed_status()


def test_the_doc_points_only_inside_the_repository() -> None:
    text = DOC.read_text()
    assert "../" not in text and "/work/" not in text
    for path in re.findall(r"`((?:docs|tests|quichsd)/[\w./-]+)`", text):
        assert (ROOT / path).exists(), path
