"""``quichsd [-c PATH] [-s|--stderr] [--check] [--version]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from . import log as logsetup
from .config import Settings, load_config
from .credentials import CredentialsError, load_credentials
from .errors import ConfigError
from .gnutls.features import features

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


def _load(path: str, explicit: bool) -> Settings:
    if not explicit and not os.path.exists(path):
        return Settings()
    return load_config(path, available_groups=features().groups)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = args.config or DEFAULT_CONFIG
    try:
        settings = _load(path, args.config is not None)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)  # noqa: T201 - the --check contract is stderr lines
        return 1
    if args.check:
        try:
            load_credentials(settings).wipe()
        except CredentialsError as e:
            for line in e.errors:
                print(line, file=sys.stderr)  # noqa: T201
            return 1
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

    return serve(path, settings, stderr=args.stderr)
