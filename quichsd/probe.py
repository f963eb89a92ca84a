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
import base64
import json
import os
import socket
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__, uapi
from .driver import HandshakeRequest, HandshakeResult, TlsPolicy, run_handshake
from .errors import GnuTLSError, QuichsdError
from .gnutls.creds import AntiReplay, CertificateCredentials, generate_ticket_key
from .tls.engine import CIPHER_TOKEN, Auth, Role
from .uapi import CertRequest, Cipher

if TYPE_CHECKING:
    from .probe_trace import TraceSocket
    from .userspace.aioquic import UserspaceQuicSocket
    from .userspace.server import UserspaceQuicServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_PACKAGE, EXIT_NETWORK = 0, 1, 2, 3, 4
DESCRIPTION = (
    "A QUIC endpoint over UDP whose TLS 1.3 handshake runs through quichsd's driver and "
    "engine (or, with --via, the running daemon): gnutls-cli for QUIC."
)
_CIPHERS = {token: c for c, token in CIPHER_TOKEN.items()}


class UsageError(QuichsdError):
    """Bad command line or input file: exit status 2."""


class NetworkError(QuichsdError):
    """No handshake could be attempted (name resolution, bind): exit status 4."""


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{option} {path}: {e.strerror}") from None


def parse_ciphers(text: str | None) -> tuple[Cipher, ...]:
    if not text:
        return ()
    out = []
    for name in text.split(","):
        c = _CIPHERS.get(name.strip().upper())
        if c is None:
            raise UsageError(f"unknown cipher {name.strip()!r} (expected {', '.join(_CIPHERS)})")
        out.append(c)
    return tuple(out)


def parse_groups(text: str | None) -> tuple[str, ...]:
    """``--groups``: checked against the groups quichsd knows and the linked GnuTLS offers."""
    if not text:
        return ()
    from .config import GROUPS, PQ_GROUPS
    from .gnutls.features import features

    have = features().groups
    out = []
    for raw in text.split(","):
        name = raw.strip().upper()
        if not name:
            continue
        if name not in GROUPS:
            raise UsageError(f"unknown group {raw.strip()!r} (expected {', '.join(GROUPS)})")
        if name not in have:
            why = (
                "it needs a GnuTLS built with ML-KEM (leancrypto or liboqs)"
                if name in PQ_GROUPS
                else "this GnuTLS build does not offer it"
            )
            raise UsageError(f"group {name!r} is not available in the linked GnuTLS: {why}")
        out.append(name)
    return tuple(out)


def parse_alpns(text: str) -> tuple[bytes, ...]:
    alpns = tuple(a.strip().encode() for a in text.split(",") if a.strip())
    if not alpns:
        raise UsageError("--alpn needs at least one protocol")
    return alpns


def daemon_policy() -> TlsPolicy:
    """The TLS policy ``quichsd`` applies when its config leaves ``tls:`` at the defaults:
    the same ciphers and groups (X25519 first; hybrid post-quantum groups before it where
    the linked GnuTLS has them), resumption key exchange and early-data choice."""
    from .config import parse_config
    from .gnutls.features import features
    from .service import tls_policy

    return tls_policy(parse_config("", "(defaults)", available_groups=features().groups))


def probe_policy(args: argparse.Namespace) -> TlsPolicy:
    """:func:`daemon_policy`, narrowed by ``--ciphers`` / ``--groups``."""
    pol = daemon_policy()
    return replace(
        pol,
        ciphers=parse_ciphers(args.ciphers) or pol.ciphers,
        groups=parse_groups(args.groups) or pol.groups,
    )


def certificate_credentials(
    cafile: str | None, cert: str | None, key: str | None
) -> CertificateCredentials:
    cc = CertificateCredentials()
    try:
        if cert or key:
            if not (cert and key):
                raise UsageError("--cert and --key go together")
            chain, pkey = _read(cert, "--cert"), _read(key, "--key")
            try:
                cc.set_key_pair(chain, pkey)
            except GnuTLSError as e:
                raise UsageError(f"--cert {cert} / --key {key}: {e.message}") from None
        try:
            cc.set_trust(_read(cafile, "--cafile") if cafile else None)
        except GnuTLSError as e:
            where = f"--cafile {cafile}" if cafile else "the system trust store"
            if cafile and e.code == 0:
                raise UsageError(f"{where}: no PEM certificate in it") from None
            raise UsageError(f"{where}: {e.message}") from None
    except BaseException:
        cc.close()
        raise
    return cc


def result_line(role: Role, res: HandshakeResult, peer_name: str | None) -> dict[str, Any]:
    info = res.info
    return {
        "ok": res.ok,
        "role": role.value,
        "alpn": (res.alpn or b"").decode(errors="replace") or None,
        "cipher": uapi.CIPHER_SUITE_NAME[info.cipher] if info else None,
        "group": info.group if info else None,
        "resumed": bool(info and info.resumed),
        "early_data": bool(info and info.early_data_accepted),
        "peer_name": peer_name,
        "error": res.error.reason.strip() if res.error else None,
        "status": res.status,
        "ms": round(res.elapsed * 1000, 1),
    }


# -- session file: session data + the server's transport parameters (for 0-RTT) ----------
def load_session(path: str | None) -> tuple[bytes | None, bytes | None]:
    if not path or not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            d = json.load(f)
        return base64.b64decode(d["session"]), base64.b64decode(d["transport_params"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--session-file {path}: not a quichsd-probe session file ({e})") from None


async def open_client_socket(
    args: argparse.Namespace,
    alpns: tuple[bytes, ...],
    ciphers: tuple[Cipher, ...],
    session: bytes | None,
    peer_tp: bytes | None,
) -> UserspaceQuicSocket:
    """The probe's client QUIC socket (userspace stack over UDP), configured as a kernel
    consumer would configure its socket: ALPN, cipher hint, stored session, ticket wait."""
    from .userspace.aioquic import UserspaceQuicSocket

    try:
        return await UserspaceQuicSocket.connect(
            args.host,
            args.port,
            alpns=alpns,
            server_name=args.sni,
            session_ticket=session,
            peer_transport_params=peer_tp,
            cipher=ciphers[0] if len(ciphers) == 1 else 0,
            receive_session_ticket=2 if args.session_file else 0,
        )
    except socket.gaierror as e:
        raise NetworkError(f"cannot resolve host {args.host!r}: {e.strerror}") from None
    except OSError as e:
        raise NetworkError(f"cannot reach {args.host} port {args.port}: {e.strerror}") from None


async def listen(
    args: argparse.Namespace, alpns: tuple[bytes, ...], **kw: Any
) -> UserspaceQuicServer:
    from .userspace.server import UserspaceQuicServer

    try:
        return await UserspaceQuicServer.listen(args.host, args.port, alpns=alpns, **kw)
    except socket.gaierror as e:
        raise NetworkError(f"cannot resolve address {args.host!r}: {e.strerror}") from None
    except OSError as e:
        raise NetworkError(f"cannot listen on {args.host} port {args.port}: {e.strerror}") from None


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
    from .gnutls.features import features

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
        sp.add_argument("--ciphers", metavar="LIST", help="comma-separated: " + ", ".join(_CIPHERS))
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
