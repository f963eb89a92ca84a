# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the configuration parser (quichsd/config.py).

``parse_config`` on any text returns :class:`Settings` or raises :class:`ConfigError` whose
every error is one line ``PATH:LINE: message`` with LINE inside the text; it never raises
anything else. Inputs: arbitrary text, YAML-looking text assembled from schema keys and
YAML 1.1 traps, and random mappings dumped with PyYAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from quichsd.config import Settings, load_config, parse_config
from quichsd.errors import ConfigError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
P = "/etc/quichsd/config.yaml"
#: YAML 1.1 line breaks (PyYAML numbers lines by these, not only by LF)
YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
LINE = re.compile(re.escape(P) + r":(\d+): \S[^\n]*")

SCHEMA: dict[str, list[str]] = {
    "log": ["level", "gnutls_level", "handshake_completion"],
    "keyrings": [],
    "handshake": ["default_timeout_ms", "max_timeout_ms", "max_in_flight", "workers"],
    "tls": ["ciphers", "groups", "resumption_key_exchange", "session_tickets", "early_data"],
    "client": ["x509", "verify_server_unauthenticated"],
    "server": ["x509", "client_certificate"],
    "unix_socket": ["enabled", "path", "allowed_uids", "allowed_gids"],
    "metrics": ["enabled", "listen"],
}
X509 = ["truststore", "crl", "certificate", "private_key"]

#: scalars that trip YAML 1.1 and the validators
TRAPS = [
    "yes", "no", "on", "off", "y", "true", "false", "True", "~", "null", "", "0", "-1",
    "1_000", "1__0", "0_", "017", "0o17", "0x1f", "0b101", "1:30", "190:20:30", "1e3",
    ".inf", ".nan", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!int [1", "!!int abc",
    "!!int", "!!int ''", "!!int 1", "!!int '[1'", '!!int "*x"', "!!int 'a: b'", "0b_", "-0x_",
    "0x", "+0b", "!!int 0o", "!!int 1_", "!!bool maybe", "!!str 5", "!!float x", "!!binary aGk=",
    "!!timestamp x", "!!null x", "!!set {a}", "!!omap [a: 1]", "!!python/object:os.system x",
    "!custom x", "!<tag:example.com,2000:x> y", "'yes'", '"1"', '"\\u0000"', "[]", "{}",
    "[1, 2]", "{a: 1}", "[X25519, X25519]", "[AES-128-GCM]", "/abs/path", "rel/path",
    "127.0.0.1:9470", "[::1]:9470", "[127.0.0.1]:1", "::1:80", "1.2.3.4:0", "1.2.3.4:99999",
    "999999999999999999999999", "-0", "+5", "&a 1", "*a", "*undefined", "? complex", "|\n  x",
    ">\n  folded", "'multi\n  line'", "\"a\\nb\"", "- x", "a: b: c", "\t", "%YAML 1.1",
    "---", "...", "@", "`", "{", "[", "]", "\x00", "\ufeff", "\x85", "\u2028",
]  # fmt: skip

#: mostly True: the schema's own names, so values reach the validators
ODDS = st.integers(0, 9).map(bool)
SCALAR_TEXT = st.one_of(
    st.sampled_from(TRAPS),
    st.sampled_from(TRAPS),
    st.text(max_size=12),
    st.integers().map(str),
)


@st.composite
def yaml_like(draw: st.DrawFn) -> str:
    """Lines of ``key: value`` in the file's layout, with traps as values and keys."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        section = draw(st.sampled_from([*SCHEMA, "bogus", "<<"]) if draw(ODDS) else st.text())
        keys = SCHEMA.get(section, []) or ["x"]
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"{section}: {draw(SCALAR_TEXT)}")
            continue
        lines.append(f"{section}:")
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from([*keys, "x509", "unknown"]) if draw(ODDS) else st.text())
            indent = draw(st.sampled_from(["  ", "  ", "    ", " ", "\t"]))
            if key == "x509" and draw(st.booleans()):
                lines.append(f"{indent}x509:")
                for k in draw(st.lists(st.sampled_from(X509), max_size=3)):
                    lines.append(f"{indent}  {k}: {draw(SCALAR_TEXT)}")
            elif draw(st.integers(0, 4)) == 0:
                lines.append(f"{indent}{key}:")
                for item in draw(st.lists(SCALAR_TEXT, max_size=3)):
                    lines.append(f"{indent}  - {item}")
            else:
                lines.append(f"{indent}{key}: {draw(SCALAR_TEXT)}")
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(SCALAR_TEXT))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))


LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.sampled_from(TRAPS),
    st.binary(max_size=6),
)
KEYS = st.one_of(
    st.sampled_from([*SCHEMA, *sum(SCHEMA.values(), []), *X509]),
    st.text(max_size=8),
    st.integers(),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)


@st.composite
def schema_mappings(draw: st.DrawFn) -> dict[Any, Any]:
    """A mapping shaped like the config, with random keys mixed in and random values."""
    out: dict[Any, Any] = {}
    for section in draw(st.lists(st.sampled_from(list(SCHEMA)), max_size=4, unique=True)):
        keys = SCHEMA[section]
        if not keys or draw(st.integers(0, 4)) == 0:
            out[section] = draw(VALUES)
            continue
        out[section] = {
            k: draw(VALUES) for k in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        }
        out[section].update(draw(st.dictionaries(KEYS, VALUES, max_size=2)))
    out.update(draw(st.dictionaries(KEYS, VALUES, max_size=2)))
    return out


def note(what: str) -> None:
    if currently_in_test_context():  # the exhaustive test runs outside hypothesis
        event(what)


def check(text: str) -> Settings | ConfigError:
    try:
        result = parse_config(text, P)
    except ConfigError as exc:
        assert exc.errors, "ConfigError without errors"
        n_lines = len(YAML_LINE_BREAK.split(text))
        for line in exc.errors:
            m = LINE.fullmatch(line)
            assert m is not None, f"not PATH:LINE: message: {line!r}"
            assert 1 <= int(m[1]) <= n_lines, f"line {m[1]} outside the text: {line!r}"
        assert str(exc).split("\n") == exc.errors
        note(f"ConfigError ({min(len(exc.errors), 3)}+ errors)")
        return exc
    assert isinstance(result, Settings)
    note("Settings")
    return result


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(yaml_like())
def test_yaml_like_text(text: str) -> None:
    check(text)


@FUZZ
@given(schema_mappings(), st.sampled_from([None, False, True]))
def test_random_mappings(mapping: dict[Any, Any], flow: bool | None) -> None:
    text = yaml.safe_dump(mapping, default_flow_style=flow, allow_unicode=True)
    check(text)


@FUZZ
@given(st.binary(max_size=120))
def test_load_config_arbitrary_file(data: bytes) -> None:
    """The file path: bytes that are not UTF-8 are a ``PATH:LINE:`` error too."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_bytes(data)
        try:
            load_config(str(path))
        except ConfigError as exc:
            for line in exc.errors:
                pattern = re.escape(str(path)) + r"(:\d+)?: \S[^\n]*"
                assert re.fullmatch(pattern, line), line


KEY_PATHS = [(s, k) for s, keys in SCHEMA.items() for k in keys] + [
    (f"{role}:\n  x509", k) for role in ("client", "server") for k in X509
]


@FUZZ
@given(st.sampled_from(KEY_PATHS), SCALAR_TEXT, st.booleans())
def test_any_scalar_at_each_key(where: tuple[str, str], value: str, as_item: bool) -> None:
    """Every key of the schema given a trap, as its value or as a list item."""
    section, key = where
    indent = "    " if "x509" in section else "  "
    if as_item:
        text = f"{section}:\n{indent}{key}:\n{indent}  - {value}\n"
    else:
        text = f"{section}:\n{indent}{key}: {value}\n"
    check(text)


@pytest.mark.parametrize("where", KEY_PATHS, ids=lambda w: w[0].split(":")[0] + "." + w[1])
def test_every_trap_at_every_key(where: tuple[str, str]) -> None:
    """Exhaustive companion of the property above: each trap at this key, both ways."""
    section, key = where
    indent = "    " if "x509" in section else "  "
    for value in TRAPS:
        check(f"{section}:\n{indent}{key}: {value}\n")
        check(f"{section}:\n{indent}{key}:\n{indent}  - {value}\n")
