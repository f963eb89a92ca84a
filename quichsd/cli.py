# SPDX-License-Identifier: GPL-2.0-or-later
"""``quichsd [-c PATH] [-s|--stderr] [--check] [--version] [--import-tlshd-config [FILE]]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from . import log as logsetup
from .config import MAX_CONFIG_BYTES, Settings, load_config_lines
from .errors import ConfigError, LibraryUnavailable
from .lean_asyncio import import_asyncio_without_ssl
from .tlshd_import import TLSHD_CONFIG_PATHS, KeyFileError, convert

#: exit status when a library quichsd needs (GnuTLS) cannot be loaded: quichsd(8)
EXIT_NO_LIBRARY = 3

DEFAULT_CONFIG = "/etc/quichsd/config.yaml"
log = logging.getLogger("quichsd")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quichsd",
        description="TLS 1.3 handshake agent for in-kernel QUIC (netlink family 'handshake').",
    )
    p.add_argument(
        "-c", "--config", metavar="PATH", help=f"configuration file (default {DEFAULT_CONFIG})"
    )
    p.add_argument(
        "-s", "--stderr", action="store_true", help="log to stderr instead of the journal"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration and the files it names, then exit",
    )
    p.add_argument(
        "--import-tlshd-config",
        nargs="?",
        const="",
        metavar="FILE",
        help="print a tlshd configuration (default: the one tlshd would read, "
        f"{' or '.join(TLSHD_CONFIG_PATHS)}) as quichsd YAML on stdout, and what has no "
        "equivalent on stderr, then exit",
    )
    p.add_argument("--version", action="version", version=f"quichsd {__version__}")
    return p


def import_tlshd(path: str) -> int:
    """``--import-tlshd-config``: 0 converted, 1 unreadable or invalid input."""
    if not path:
        found = [p for p in TLSHD_CONFIG_PATHS if os.path.exists(p)]
        if not found:
            where = " or ".join(TLSHD_CONFIG_PATHS)
            sys.stderr.write(f"quichsd: no tlshd configuration at {where}\n")
            return 1
        path = found[0]
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
        result = convert(text, path)
    except OSError as e:
        sys.stderr.write(f"quichsd: {path}: cannot read: {e.strerror}\n")
        return 1
    except UnicodeDecodeError:
        sys.stderr.write(f"quichsd: {path}: not valid UTF-8\n")
        return 1
    except KeyFileError as e:
        sys.stderr.write(f"quichsd: {e}\n")
        return 1
    sys.stdout.write(result.yaml_text)
    sys.stderr.write("".join(f"{line}\n" for line in result.notes))
    tags = os.path.join(
        "/etc/tlshd" if path == TLSHD_CONFIG_PATHS[0] else os.path.dirname(path), "tags.d"
    )
    if os.path.isdir(tags) and os.listdir(tags):
        sys.stderr.write(f"{tags}: tlshd session tags have no equivalent; not converted\n")
    return 0


def _load(path: str, explicit: bool) -> tuple[Settings, dict[str, int]]:
    if not explicit and not os.path.exists(path):
        return Settings(), {}
    from .gnutls.features import features  # needs GnuTLS: LibraryUnavailable

    return load_config_lines(path, available_groups=features().groups)


def main(argv: list[str] | None = None) -> int:
    """``--help``, ``--version`` and ``--import-tlshd-config`` need no TLS library; the
    rest prints one line and exits 3 when GnuTLS cannot be loaded."""
    args = parser().parse_args(argv)
    if args.import_tlshd_config is not None:
        return import_tlshd(args.import_tlshd_config)
    try:
        return _run(args)
    except LibraryUnavailable as e:
        sys.stderr.write(f"quichsd: {e}\n")
        return EXIT_NO_LIBRARY


def _run(args: argparse.Namespace) -> int:
    import_asyncio_without_ssl()  # before anything imports asyncio: see quichsd.lean_asyncio
    from .credcheck import load_checked
    from .credentials import CredentialsError

    path = args.config or DEFAULT_CONFIG
    try:
        settings, lines = _load(path, args.config is not None)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)  # noqa: T201 - the --check contract is stderr lines
        return 1
    if args.check:
        if args.config is None and not os.path.exists(path):
            # nothing to validate: saying "fine" would hide a missing or misplaced file
            print(  # noqa: T201
                f"{path}: not found: nothing was validated (the daemon would run with the "
                "built-in defaults; name a file with -c)",
                file=sys.stderr,
            )
            return 1
        try:
            creds, warnings = load_checked(settings, path, lines)
        except CredentialsError as e:
            for line in e.errors:
                print(line, file=sys.stderr)  # noqa: T201
            return 1
        creds.wipe()
        for line in warnings:
            print(line, file=sys.stderr)  # noqa: T201
        return 0
    logsetup.setup(
        settings.log.level,
        stderr=args.stderr,
        gnutls_level=settings.log.gnutls_level,
        handshake_completion=settings.log.handshake_completion,
    )
    if args.config is None and not os.path.exists(path):
        log.log(logsetup.NOTICE, "%s not found; running with the built-in defaults", path)
    from .daemon import serve

    return serve(path, settings, stderr=args.stderr, lines=lines)
