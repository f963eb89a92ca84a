# SPDX-License-Identifier: GPL-2.0-or-later
"""What quichsd-probe's commands share: exit statuses, errors, argument parsing, the TLS
policy and credentials, result lines, session files and the probe's sockets.

Both :mod:`quichsd.probe` (the in-process endpoint) and :mod:`quichsd.unix.probe_via`
(the same endpoint with the daemon running the handshake) build on it, so neither imports
the other.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import uapi
from .errors import GnuTLSError, QuichsdError
from .request import HandshakeResult, TlsPolicy
from .tls.config import CIPHER_TOKEN, Role
from .uapi import Cipher

if TYPE_CHECKING:
    from .gnutls.creds import CertificateCredentials
    from .userspace.aioquic import UserspaceQuicSocket
    from .userspace.server import UserspaceQuicServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_PACKAGE, EXIT_NETWORK = 0, 1, 2, 3, 4
DESCRIPTION = (
    "A QUIC endpoint over UDP whose TLS 1.3 handshake runs through quichsd's driver and "
    "engine (or, with --via, the running daemon): gnutls-cli for QUIC."
)
#: --ciphers names -> suites
CIPHER_NAMES = {token: c for c, token in CIPHER_TOKEN.items()}


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
        c = CIPHER_NAMES.get(name.strip().upper())
        if c is None:
            raise UsageError(
                f"unknown cipher {name.strip()!r} (expected {', '.join(CIPHER_NAMES)})"
            )
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
    """The TLS policy ``quichsd`` applies when its config leaves ``tls:`` at the defaults."""
    from .service import default_policy

    return default_policy()


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
    from .gnutls.creds import CertificateCredentials

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
