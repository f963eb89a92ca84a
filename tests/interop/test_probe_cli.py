# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd-probe as a diagnostic tool: each way it can fail before or at the start of a
handshake gives one clear line on stderr (never a traceback), a JSON line where a
handshake was attempted, and the documented exit status (docs/man/quichsd-probe.1)."""

from __future__ import annotations

import argparse
import errno
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pki import make_pki

from quichsd import __version__, probe

PROBE = str(Path(sys.executable).parent / "quichsd-probe")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_pki().write(d)
    return d


def run(*args: str) -> tuple[int, str, str]:
    p = subprocess.run([PROBE, *args], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0] == lines[0].rstrip(), repr(lines[0])
    return lines[0]


def test_unknown_host_is_one_line_and_exit_4() -> None:
    rc, out, err = run("connect", "no-such-host.invalid", "443", "--alpn", "h3")
    assert rc == probe.EXIT_NETWORK == 4 and out == ""
    assert one_line(err).startswith("quichsd-probe: cannot resolve host 'no-such-host.invalid': ")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["connect", "127.0.0.1", "70000"], "port 70000 is out of range (1 to 65535)"),
        (["connect", "127.0.0.1", "0"], "port 0 is out of range (1 to 65535)"),
        (["connect", "127.0.0.1", "https"], "port 'https' is not a number"),
        (
            ["serve", "65536", "--cert", "c", "--key", "k"],
            "port 65536 is out of range (0 to 65535)",
        ),
    ],
)
def test_port_out_of_range_is_a_usage_error(args: list[str], text: str) -> None:
    rc, out, err = run(*args, "--alpn", "h3")
    assert rc == probe.EXIT_USAGE == 2 and out == ""
    line = one_line(err)
    assert f"argument PORT: {text}" in line and line.startswith("quichsd-probe ")


def test_address_in_use_is_one_line_and_exit_4(pki_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cert, key = str(pki_dir / "server.pem"), str(pki_dir / "server.key")
        rc, out, err = run("serve", str(port), "--alpn", "h3", "--cert", cert, "--key", key)
    assert rc == 4 and out == ""
    want = f"quichsd-probe: cannot listen on 127.0.0.1 port {port}: Address already in use"
    assert one_line(err) == want


@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("missing.pem", None, "No such file or directory"),
        ("a-directory", "dir", "Is a directory"),
        ("empty.pem", "", "no PEM certificate in it"),
        ("garbage.pem", "not a certificate\n", "no PEM certificate in it"),
    ],
)
def test_bad_ca_file_is_named(tmp_path: Path, name: str, make: str | None, why: str) -> None:
    path = tmp_path / name
    if make == "dir":
        path.mkdir()
    elif make is not None:
        path.write_text(make)
    rc, out, err = run("connect", "127.0.0.1", "9", "--alpn", "h3", "--cafile", str(path))
    assert rc == 2 and out == ""
    assert one_line(err) == f"quichsd-probe: --cafile {path}: {why}"


@pytest.mark.parametrize(
    ("groups", "text"),
    [
        ("X25519,FOO", "unknown group 'FOO' (expected X25519, X448, SECP256R1"),
        ("x25519,", None),  # case-insensitive, empty items ignored: valid
        ("X25519-KYBER768", "group 'X25519-KYBER768' is not available in the linked GnuTLS"),
    ],
)
def test_groups_are_validated_like_ciphers(pki_dir: Path, groups: str, text: str | None) -> None:
    from quichsd.gnutls.features import features

    if text is None or "KYBER" in groups and "X25519-KYBER768" in features().groups:
        # a valid list gets past validation: the handshake is attempted (nobody listens)
        rc, out, err = run("connect", "127.0.0.1", "9", "--alpn", "h3", "--groups", groups,
                           "--cafile", str(pki_dir / "ca.pem"), "--timeout", "1")  # fmt: skip
        assert rc == 1 and json.loads(out)["status"] != 0
        return
    rc, out, err = run("connect", "127.0.0.1", "9", "--alpn", "h3", "--groups", groups)
    assert rc == 2 and out == ""
    assert one_line(err).startswith(f"quichsd-probe: {text}")
    rc, _, err = run("connect", "127.0.0.1", "9", "--alpn", "h3", "--ciphers", "AES-128-FOO")
    assert rc == 2 and one_line(err).startswith("quichsd-probe: unknown cipher 'AES-128-FOO'")


def test_closed_udp_port_fails_at_once_with_econnrefused(pki_dir: Path) -> None:
    """Nothing listens: the ICMP port unreachable ends the handshake at once, with a JSON
    line (the ClientHello was sent), not after the 10 s deadline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    t0 = time.monotonic()
    rc, out, err = run("connect", "127.0.0.1", str(port), "--alpn", "h3",
                       "--cafile", str(pki_dir / "ca.pem"))  # fmt: skip
    took = time.monotonic() - t0
    assert rc == 1 and err == ""
    res = json.loads(out)
    assert res["ok"] is False and res["status"] == errno.ECONNREFUSED, res
    assert f"127.0.0.1 port {port} unreachable (ICMP)" in res["error"]
    assert res["ms"] < 1000 and took < 5, (res, took)


def test_version() -> None:
    rc, out, _ = run("--version")
    assert rc == 0 and out.startswith(f"quichsd-probe {__version__} (GnuTLS 3.")


def _all_actions() -> list[tuple[str, argparse.Action]]:
    p = probe.parser()
    out = [("", a) for a in p._actions]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += [(name, x) for x in sub._actions]
    return out


def test_every_argument_has_help() -> None:
    missing = [f"{cmd} {a.dest}" for cmd, a in _all_actions() if not a.help]
    assert not missing, missing


@pytest.mark.parametrize("abbrev", ["--early", "--session", "--verb", "--time"])
def test_no_option_abbreviations(abbrev: str) -> None:
    rc, out, err = run("connect", "127.0.0.1", "9", "--alpn", "h3", abbrev, "x")
    assert rc == 2 and out == ""
    assert f"unrecognized arguments: {abbrev}" in one_line(err)


def test_help_has_no_docstring_markup() -> None:
    for args in ([], ["connect"], ["serve"]):
        rc, out, _ = run(*args, "--help")
        assert rc == 0 and "``" not in out and ":func:" not in out, out
        assert out.startswith(f"usage: quichsd-probe {' '.join(args)}".rstrip())
    rc, out, _ = run("--help")
    assert probe.DESCRIPTION.split()[0] in out
