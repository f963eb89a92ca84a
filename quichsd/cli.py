"""``quichsd [-c PATH] [-s|--stderr] [--check] [--version]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from . import log as logsetup
from .config import Settings, load_config_lines
from .credcheck import load_checked
from .credentials import CredentialsError
from .errors import ConfigError

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
    p.add_argument("--version", action="version", version=f"quichsd {__version__}")
    return p


def _load(path: str, explicit: bool) -> tuple[Settings, dict[str, int]]:
    if not explicit and not os.path.exists(path):
        return Settings(), {}
    return load_config_lines(path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
