# SPDX-License-Identifier: GPL-2.0-or-later
"""``quichsd-probe connect|serve``: a real QUIC endpoint over UDP whose TLS runs through quichsd.

Like ``gnutls-cli`` for QUIC. The QUIC stack is the userspace one (aioquic behind the kernel
socket contract, :mod:`quichsd.userspace`); the handshake is quichsd's driver and engine,
in-process, with the daemon's default TLS policy (:func:`daemon_policy`). Each finished
handshake prints one JSON line::

    {"ok": true, "role": "client", "alpn": "h3", "cipher": "TLS_AES_128_GCM_SHA256",
     "group": "X25519", "resumed": false, "early_data": false, "peer_name": "server.test",
     "error": null, "status": 0, "ms": 12.3}

Exit status (:data:`EXIT_OK` ...): 0 only if every handshake succeeded; 1 otherwise (a JSON
line says why); 2 for usage errors; 3 if the probe's Python packages are missing; 4 if no
handshake could be attempted (unknown host, address in use...). Errors are one line on
standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import LibraryUnavailable
from .probe_common import (
    CIPHER_NAMES,
    DESCRIPTION,
    EXIT_FAILED,
    EXIT_MISSING_PACKAGE,
    EXIT_NETWORK,
    EXIT_USAGE,
    NetworkError,
    UsageError,
    _read,
    certificate_credentials,
    listen,
    load_session,
    open_client_socket,
    parse_alpns,
    parse_ciphers,
    probe_policy,
    result_line,
)
from .request import HandshakeRequest
from .tls.config import Auth, Role
from .uapi import CertRequest

if TYPE_CHECKING:
    from .probe_trace import TraceSocket


def client_request(args: argparse.Namespace) -> HandshakeRequest:
    req = HandshakeRequest(
        role=Role.CLIENT,
        peer_name=args.sni or args.host,
        timeout=args.timeout,
        policy=probe_policy(args),
    )
    if args.psk_identity or args.psk_file:
        if not (args.psk_identity and args.psk_file):
            raise UsageError("--psk-identity and --psk-file go together")
        key = _read(args.psk_file, "--psk-file").strip()
        try:
            key = bytes.fromhex(key.decode())
        except ValueError:
            pass
        if not key:
            raise UsageError(f"--psk-file {args.psk_file}: empty")
        return replace(req, auth=Auth.PSK, psk_identity=args.psk_identity, psk_key=key)
    return replace(req, x509=certificate_credentials(args.cafile, args.cert, args.key))


async def connect(args: argparse.Namespace) -> int:
    from .driver import run_handshake
    from .probe_flow import client_run

    alpns = parse_alpns(args.alpn)
    ciphers = parse_ciphers(args.ciphers)
    session, peer_tp = load_session(args.session_file)
    req = client_request(args)
    try:
        sock = await open_client_socket(args, alpns, ciphers, session, peer_tp)

        async def handshake(tsock: TraceSocket) -> dict[str, Any]:
            return result_line(Role.CLIENT, await run_handshake(tsock, req), req.peer_name)

        return await client_run(args, sock, handshake)
    finally:
        if req.x509 is not None:
            req.x509.close()


def _psk_table(path: str) -> dict[str, bytes]:
    psk: dict[str, bytes] = {}
    text = _read(path, "--psk-file").decode(errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        ident, _, hexkey = line.partition(":")
        if ident and hexkey:
            try:
                psk[ident.strip()] = bytes.fromhex(hexkey.strip())
            except ValueError:
                raise UsageError(
                    f"--psk-file {path}:{n}: key of {ident.strip()!r} is not hex"
                ) from None
    if not psk:
        raise UsageError(f"--psk-file {path}: no IDENTITY:HEXKEY line")
    return psk


async def serve(args: argparse.Namespace) -> int:
    from .driver import run_handshake
    from .gnutls.creds import AntiReplay, generate_ticket_key
    from .probe_flow import serve_run

    alpns = parse_alpns(args.alpn)
    if not (args.cert and args.key):
        raise UsageError("serve needs --cert and --key (or --via PATH: the daemon's)")
    policy = replace(probe_policy(args), session_tickets=args.ticket)
    psk = _psk_table(args.psk_file) if args.psk_file else {}
    cc = certificate_credentials(args.cafile, args.cert, args.key)
    anti_replay = AntiReplay()
    try:
        server = await listen(
            args,
            alpns,
            ticket_key=generate_ticket_key() if args.ticket else None,
            certificate_request=int(CertRequest.REQUIRE if args.require_client_cert else 0),
        )
        req = HandshakeRequest(
            role=Role.SERVER,
            x509=cc,
            timeout=args.timeout,
            policy=policy,
            anti_replay=anti_replay,
            psk_lookup=psk.get if psk else None,
            auth=Auth.PSK if psk else Auth.X509,
        )

        async def handshake(tsock: TraceSocket) -> dict[str, Any]:
            return result_line(Role.SERVER, await run_handshake(tsock, req), None)

        try:
            return await serve_run(args, server, handshake)
        finally:
            server.close()
            await server.wait_closed()
    finally:
        cc.close()
        anti_replay.close()


# -- the command line ------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations, whose errors are one line (no usage dump)."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("allow_abbrev", False)
        super().__init__(**kw)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(lo: int) -> Any:
    def check(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
        if not lo <= n <= 65535:
            raise argparse.ArgumentTypeError(f"port {n} is out of range ({lo} to 65535)")
        return n

    return check


def _positive(kind: type) -> Any:
    def check(text: str) -> Any:
        try:
            n = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not n > 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return n

    return check


def _version() -> str:
    try:
        from .gnutls.features import features
    except LibraryUnavailable:
        return f"quichsd-probe {__version__} (GnuTLS cannot be loaded)"
    return f"quichsd-probe {__version__} (GnuTLS {features().version})"


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="quichsd-probe", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=_version(), help="print the version")
    sub = p.add_subparsers(
        dest="cmd",
        required=True,
        metavar="{connect,serve}",
        parser_class=_Parser,
        help="connect to a server, or serve clients",
    )
    c = sub.add_parser(
        "connect",
        help="handshake with a QUIC server",
        description="Handshake once with the QUIC server at HOST PORT.",
    )
    c.add_argument("host", metavar="HOST", help="the server's name or IP address")
    c.add_argument("port", metavar="PORT", type=_port(1), help="the server's UDP port")
    c.add_argument("--alpn", required=True, metavar="LIST", help="comma-separated ALPN list")
    c.add_argument("--sni", metavar="NAME", help="server name to send and verify (default: HOST)")
    c.add_argument(
        "--cafile", metavar="FILE", help="PEM trust anchors (default: system trust store)"
    )
    c.add_argument("--cert", metavar="FILE", help="client certificate chain (PEM)")
    c.add_argument("--key", metavar="FILE", help="client private key (PEM)")
    c.add_argument("--psk-identity", metavar="ID", help="external PSK identity (with --psk-file)")
    c.add_argument("--psk-file", metavar="FILE", help="file holding the PSK (hex or raw)")
    c.add_argument(
        "--session-file", metavar="FILE", help="resume from / save session data to this file"
    )
    c.add_argument(
        "--early-data", metavar="TEXT", help="send TEXT on a stream, as 0-RTT when resuming"
    )
    s = sub.add_parser(
        "serve",
        help="accept QUIC handshakes",
        description="Accept --count QUIC handshakes on UDP PORT.",
    )
    s.add_argument(
        "port", metavar="PORT", type=_port(0), help="UDP port to listen on (0: any free one)"
    )
    s.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="address to listen on")
    s.add_argument(
        "--cert", metavar="FILE", help="server certificate chain (PEM); required without --via"
    )
    s.add_argument("--key", metavar="FILE", help="server private key (PEM); required without --via")
    s.add_argument("--alpn", required=True, metavar="LIST", help="comma-separated ALPN list")
    s.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse clients without a valid certificate",
    )
    s.add_argument("--cafile", metavar="FILE", help="PEM trust anchors for client certificates")
    s.add_argument(
        "--psk-file", metavar="FILE", help="lines IDENTITY:HEXKEY; PSK handshakes instead of x509"
    )
    s.add_argument(
        "--count",
        type=_positive(int),
        default=1,
        metavar="N",
        help="handshakes to serve, then exit",
    )
    s.add_argument(
        "--ticket",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="issue session tickets",
    )
    for sp in (c, s):
        sp.add_argument(
            "--timeout",
            type=_positive(float),
            default=10.0,
            metavar="SECONDS",
            help="deadline of each handshake",
        )
        sp.add_argument(
            "--ciphers", metavar="LIST", help="comma-separated: " + ", ".join(CIPHER_NAMES)
        )
        sp.add_argument(
            "--groups", metavar="LIST", help="comma-separated key-exchange groups, e.g. X25519"
        )
        sp.add_argument(
            "--via", metavar="PATH", help="TLS in the daemon behind this unix socket (its creds)"
        )
        sp.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="report certificates, negotiation, transport parameters and timing on stderr",
        )
    return p  # fmt: skip


#: what the probe's userspace QUIC stack needs beyond the daemon (the ``probe`` extra)
OPTIONAL_MODULES = ("aioquic", "cryptography", "pylsqpack", "certifi", "service_identity")


def _fail(text: str, status: int) -> int:
    sys.stderr.write(f"quichsd-probe: {text}\n")
    return status


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.via:
            from .unix import probe_via

            via = probe_via.connect(args) if args.cmd == "connect" else probe_via.serve(args)
            return asyncio.run(via)
        return asyncio.run(connect(args) if args.cmd == "connect" else serve(args))
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except NetworkError as e:
        return _fail(str(e), EXIT_NETWORK)
    except LibraryUnavailable as e:
        return _fail(str(e), EXIT_MISSING_PACKAGE)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in OPTIONAL_MODULES:
            raise
        return _fail(
            f"needs the Python package {e.name.split('.')[0]!r} (the userspace QUIC stack): "
            "pip install 'quichsd[probe]' (on Debian 13: apt install python3-aioquic)",
            EXIT_MISSING_PACKAGE,
        )
    except KeyboardInterrupt:
        return EXIT_FAILED
