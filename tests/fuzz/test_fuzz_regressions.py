"""Failing examples the property tests in this directory found, kept as plain tests."""

from __future__ import annotations

import pytest

from quichsd.config import parse_config
from quichsd.errors import ConfigError

P = "/etc/quichsd/config.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # found by test_random_mappings: yaml.safe_dump({"\r": None})
        ('{"\\r": null}\n', f"{P}:1: '\\r': unknown key"),
        ('tls:\n  "a\\nb": 1\n', f"{P}:2: tls.'a\\nb': unknown key"),
        ('log:\n  "\\u2028": 1\n', f"{P}:2: log.'\\u2028': unknown key"),
        # a non-scalar key is described, not dumped as PyYAML node reprs
        ("? [a, b]\n: 1\n", f"{P}:1: <a list>: unknown key"),
    ],
    ids=["cr", "newline", "line-separator", "list-key"],
)
def test_unknown_key_error_is_one_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, P)
    (line,) = info.value.errors
    assert line.startswith(expected + " (expected one of "), line
    assert "\n" not in line and "\r" not in line and line.isprintable()
