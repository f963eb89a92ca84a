# SPDX-License-Identifier: GPL-2.0-or-later
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


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # found by test_every_trap_at_every_key: !!int may tag any text, which was handed
        # to yaml.safe_load (a ParserError / ComposerError escaped parse_config)
        ("!!int '[1'", "'[1' is not a decimal integer; write a plain decimal number"),
        ('!!int "*x"', "'*x' is not a decimal integer; write a plain decimal number"),
        ("!!int 'a: b'", "'a: b' is not a decimal integer; write a plain decimal number"),
        # YAML 1.1 integer syntax without digits: int("", 2) raised ValueError
        ("0b_", "'0b_' is not a decimal integer; write a plain decimal number"),
        ("-0x_", "'-0x_' is not a decimal integer; write a plain decimal number"),
        # what YAML 1.1 reads is still shown when it is an integer
        (
            "0x1f",
            "'0x1f' is not a decimal integer (YAML 1.1 reads it as 31); write a plain "
            "decimal number",
        ),
    ],
)
def test_int_tagged_text_is_a_config_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"handshake:\n  workers: {value}\n", P)
    assert info.value.errors == [f"{P}:2: handshake.workers: {message}"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[", 1),  # found by test_arbitrary_text: was line 2 of a one-line text
        ("log: {", 1),
        ("[\n", 2),  # the empty line after the break exists
        ("a: 1\u2028b: [", 2),  # YAML counts U+2028 as a line break
    ],
)
def test_syntax_error_at_end_of_text_names_a_line_of_it(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, P)
    (error,) = info.value.errors
    assert error.startswith(f"{P}:{line}: YAML syntax error: "), error
