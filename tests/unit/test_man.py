# SPDX-License-Identifier: GPL-2.0-or-later
"""The man pages in docs/man: they render without warnings, and they cannot silently rot.

Every command-line option of ``quichsd`` and ``quichsd-probe connect|serve`` (read from the
argparse parsers), every config key of :class:`quichsd.config.Settings` (walked from the
dataclasses), its default and its integer range (checked against the validator), every
DONE status of :mod:`quichsd.errors`, every environment variable the package reads and
every field of the probe's JSON line must appear in the pages.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import re
import shutil
import subprocess
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from quichsd import __version__, cli, config, errors, probe
from quichsd.config import Settings
from quichsd.unix import codec, probe_via

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "docs" / "man"
DAEMON, PROBE, YAML5 = MAN / "quichsd.8", MAN / "quichsd-probe.1", MAN / "quichsd.yaml.5"
PAGES = (DAEMON, PROBE, YAML5)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not installed: add {package} to APT_PACKAGES in scripts/setup.sh"
    return path


def render(page: Path) -> str:
    """Plain ASCII text of ``page`` (no overstrike, no colour, not wrapped mid-word)."""
    groff = _tool("groff", "groff-base")
    out = subprocess.run(
        [groff, "-man", "-Tascii", "-P-cbou", "-rLL=200n", str(page)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def plain(roff: str) -> str:
    """roff source text with escapes reduced to the characters they print."""
    text = re.sub(r"\\f(\[[^\]]*\]|.)", "", roff)
    for esc, ch in (("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'), ("\\&", ""), ("\\e", "\\")):
        text = text.replace(esc, ch)
    return text


def paragraphs(page: Path) -> list[tuple[str, str]]:
    """``(tag, body)`` of each ``.TP`` paragraph, plain text, macro names dropped."""
    out: list[tuple[str, str]] = []
    for chunk in plain(page.read_text()).split("\n.TP\n")[1:]:
        lines = [re.sub(r"^\.(B|I|BR|IR|RB|RI|BI|TQ)\b ?", "", ln) for ln in chunk.splitlines()]
        lines = [" ".join(ln.replace('"', "").split()) for ln in lines]
        body = []
        for ln in lines[1:]:
            if ln.startswith((".SH", ".SS")):
                break
            body.append(ln)
        out.append((lines[0], " ".join(body)))
    return out


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_groff_renders_without_warnings(page: Path) -> None:
    groff = _tool("groff", "groff-base")
    res = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_renders_without_warnings(page: Path) -> None:
    man = _tool("man", "man-db")
    res = subprocess.run(
        [man, "--warnings", "-l", "-Tutf8", str(page)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LC_ALL": "C.UTF-8"},
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr
    text = re.sub(".\b", "", res.stdout)  # overstrike bold/underline
    assert "NAME" in text and "SEE ALSO" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_title_names_the_package_version(page: Path) -> None:
    th = next(ln for ln in page.read_text().splitlines() if ln.startswith(".TH "))
    assert f'"quichsd {__version__}"' in th


# --- command lines -----------------------------------------------------------------------


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("quichsd-probe has no subcommands")


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings]


PARSERS = {
    "quichsd": (cli.parser(), DAEMON),
    **{f"quichsd-probe {k}": (v, PROBE) for k, v in _subparsers(probe.parser()).items()},
}


def test_the_probe_has_exactly_connect_and_serve() -> None:
    assert set(_subparsers(probe.parser())) == {"connect", "serve"}


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_is_in_its_page(command: str) -> None:
    parser, page = PARSERS[command]
    text = render(page)
    missing = [opt for a in _options(parser) for opt in a.option_strings if not mentions(text, opt)]
    assert not missing, f"{page.name} does not mention {command} {missing}"


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_default_is_documented(command: str) -> None:
    """An option with a default names it in its own paragraph ("Default: X")."""
    parser, page = PARSERS[command]
    paras = paragraphs(page)
    for a in _options(parser):
        if a.default in (None, False, argparse.SUPPRESS) or a.dest == "help":
            continue
        long = next(o for o in a.option_strings if o.startswith("--"))
        if a.default is True:  # BooleanOptionalAction: --x / --no-x
            want = long
        elif isinstance(a.default, float):
            want = f"{a.default:g}"
        else:
            want = str(a.default)
        bodies = [b for tag, b in paras if mentions(tag, long)]
        assert bodies, f"{page.name}: no paragraph for {long}"
        assert any(re.search(rf"Default: {re.escape(want)}\b", b) for b in bodies), (
            f"{page.name}: {long} default {want!r} not stated"
        )
    if command == "quichsd":
        assert mentions(render(DAEMON), cli.DEFAULT_CONFIG)


def test_positionals_are_in_the_probe_synopsis() -> None:
    synopsis = render(PROBE).split("DESCRIPTION")[0]
    for name, sub in _subparsers(probe.parser()).items():
        for a in sub._actions:
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
                assert mentions(synopsis, a.dest.upper()), f"{name} {a.dest}"


def test_the_probe_json_fields_are_all_documented() -> None:
    """The OUTPUT section lists exactly the keys both probe paths print."""
    from quichsd.request import HandshakeResult
    from quichsd.tls.engine import Role

    direct = probe.result_line(Role.CLIENT, HandshakeResult(0), None)
    via = probe_via.line("client", codec.Result(0), None, 1.0)
    assert set(direct) == set(via)
    text = plain(PROBE.read_text())
    output = text.split(".SH OUTPUT")[1].split(".SH ")[0]
    tags = set(re.findall(r"^\.TP\n\.B (\w+)$", output, re.M))
    assert tags == set(direct)


# --- the daemon page: DONE statuses, environment -----------------------------------------


def _handshake_errors() -> list[type[errors.HandshakeError]]:
    seen, todo = [], [errors.HandshakeError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def test_every_done_status_is_in_the_status_table() -> None:
    section = render(DAEMON).split("\nDONE STATUS\n")[1].split("\nEXIT STATUS\n")[0]
    statuses = {c.status for c in _handshake_errors()}
    assert len(statuses) >= 9
    aliases = {n: [a for a in dir(errno) if getattr(errno, a) == n] for n in statuses}
    missing = sorted(
        errno.errorcode[n]
        for n, names in aliases.items()
        if not any(mentions(section, a) for a in names)
    )
    assert not missing, f"DONE STATUS lacks {missing}"


def test_every_environment_variable_read_is_documented() -> None:
    pattern = re.compile(r"""environ(?:\.get|\.pop)?\(\s*["']([A-Z_]+)["']""")
    read = {m for f in (ROOT / "quichsd").rglob("*.py") for m in pattern.findall(f.read_text())}
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"} <= read
    section = render(DAEMON).split("\nENVIRONMENT")[1].split("\nLOGGING")[0]
    for name in sorted(read | {"SSLKEYLOGFILE"}):
        assert mentions(section, name), f"ENVIRONMENT lacks {name}"


@pytest.mark.parametrize("signame", ["SIGHUP", "SIGTERM", "SIGINT"])
def test_signals_are_documented(signame: str) -> None:
    section = render(DAEMON).split("\nSIGNALS")[1].split("\nDONE STATUS")[0]
    assert mentions(section, signame)


# --- the config page ---------------------------------------------------------------------


def _is_section(tp: object) -> bool:
    """A config section is a dataclass built with no arguments (``section()`` calls cls());
    a value type such as ListenAddress has required fields and is a leaf."""
    return dataclasses.is_dataclass(tp) and all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(tp)
    )


def config_leaves(cls: type = Settings, prefix: str = "") -> dict[str, tuple[object, object]]:
    """dotted key -> (type, default) for every leaf of the Settings tree."""
    out: dict[str, tuple[object, object]] = {}
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if isinstance(tp, type) and _is_section(tp):
            out.update(config_leaves(tp, key + "."))
        else:
            out[key] = (tp, getattr(defaults, f.name))
    return out


LEAVES = config_leaves()


#: keys whose default the page writes in another notation than str()
SHOWN_AS: dict[str, Callable[[Any], str]] = {"unix_socket.mode": lambda mode: f"{mode:04o}"}


def yaml_default(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(yaml_default(v) for v in value) + "]"
    return str(value)


def config_entries() -> dict[str, tuple[str, str]]:
    """key -> (tag, body) of each documented key: tags look like ``key (type, default X)``."""
    out: dict[str, tuple[str, str]] = {}
    for tag, body in paragraphs(YAML5):
        m = re.match(r"([a-z0-9_.]+) \((.*?) ?\)$", tag)
        if m:
            assert m[1] not in out, f"{m[1]} documented twice"
            out[m[1]] = (m[2], body)
    return out


def test_the_walk_finds_the_known_tree() -> None:
    assert {"log.level", "client.x509.truststore", "metrics.listen", "keyrings"} <= set(LEAVES)
    assert len(LEAVES) == 36


def test_documented_keys_are_exactly_the_settings_keys() -> None:
    documented = set(config_entries())
    assert documented == set(LEAVES), (
        f"undocumented: {sorted(set(LEAVES) - documented)}; "
        f"documented but not in Settings: {sorted(documented - set(LEAVES))}"
    )


@pytest.mark.parametrize("key", sorted(LEAVES))
def test_each_key_states_its_default(key: str) -> None:
    tag, _ = config_entries()[key]
    value = LEAVES[key][1]
    want = SHOWN_AS[key](value) if key in SHOWN_AS else yaml_default(value)
    assert tag.endswith(f"default {want}"), f"{key}: tag {tag!r}, default is {want}"


@pytest.mark.parametrize(
    ("key", "choices"),
    [
        ("log.level", config.LOG_LEVELS),
        ("tls.ciphers", config.CIPHERS),
        ("tls.groups", config.GROUPS),
        ("tls.resumption_key_exchange", config.RESUMPTION_KEY_EXCHANGES),
        ("server.client_certificate", config.CLIENT_CERTIFICATE_POLICIES),
    ],
)
def test_each_choice_is_listed(key: str, choices: tuple[str, ...]) -> None:
    _, body = config_entries()[key]
    missing = [c for c in choices if not mentions(body, c)]
    assert not missing, f"{key} does not list {missing}"


def _nested(key: str, value: object) -> str:
    doc: object = value
    for part in reversed(key.split(".")):
        doc = {part: doc}
    return yaml.safe_dump(doc)


#: unix_socket.mode is an int written in octal, with its own checks (test_config.py)
INT_KEYS = sorted(
    k for k, (tp, _) in LEAVES.items() if tp in (int, tuple[int, ...]) and k not in SHOWN_AS
)


def test_integer_keys_are_found() -> None:
    assert "handshake.workers" in INT_KEYS and "unix_socket.allowed_gids" in INT_KEYS


@pytest.mark.parametrize("key", INT_KEYS)
def test_each_integer_range_matches_the_validator(key: str) -> None:
    tag, _ = config_entries()[key]
    m = re.search(r"integer (\d+) to (\d+)", tag)
    assert m, f"{key}: no range in {tag!r}"
    lo, hi = int(m[1]), int(m[2])
    is_list = LEAVES[key][0] is not int
    where = f"{key}[0]" if is_list else key
    for bad in (lo - 1, hi + 1):
        with pytest.raises(errors.ConfigError) as exc:
            config.parse_config(_nested(key, [bad] if is_list else bad), "c.yaml")
        want = f"c.yaml:{3 if is_list else 2}: {where}: {bad} is out of range "
        want += f"(expected {lo} to {hi})"
        assert any(e.startswith(want) for e in exc.value.errors), exc.value.errors


def test_path_line_errors_and_check_are_described() -> None:
    text = render(YAML5)
    for phrase in ("PATH:LINE: key: message", "quichsd --check", "reload refused"):
        assert phrase in text, phrase
    # the example output in the page is what the validator prints for the example input
    src = plain(YAML5.read_text()).split("For this file:")[1]
    blocks = re.findall(r"\.EX\n(.*?)\.EE", src, re.S)
    example, printed = blocks[0], blocks[1]
    with pytest.raises(errors.ConfigError) as exc:
        config.parse_config(example, "/etc/quichsd/config.yaml")
    unwrapped = re.sub(r"\n  ", " ", printed).strip().splitlines()
    assert unwrapped == exc.value.errors


def test_every_metric_and_label_value_is_in_the_metrics_section() -> None:
    """quichsd(8) METRICS names each metric the daemon exposes with its labels, and each
    status the handshake counter starts with."""
    from quichsd import metrics

    text = render(MAN / "quichsd.8")
    section = text.partition("\nMETRICS\n")[2].partition("\nFILES\n")[0]
    assert section, "no METRICS section in quichsd(8)"
    flat = " ".join(section.split())
    for m in metrics.REGISTRY.metrics():
        name = m.name + ("{" + ",".join(m.labelnames) + "}" if m.labelnames else "")
        assert name in flat, name
    for status in metrics.HANDSHAKE_STATUSES:
        assert re.search(rf"\b{status}\b", flat), status
    for reason in metrics.UNIX_REFUSALS:
        assert reason in flat, reason
    assert "process_open_fds" in flat and "process_cpu_seconds_total" in flat
