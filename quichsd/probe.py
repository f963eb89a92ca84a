"""``quichsd-probe connect|serve``: a real QUIC endpoint over UDP whose TLS runs through quichsd.

Like ``gnutls-cli`` for QUIC. The QUIC stack is the userspace one (aioquic behind the kernel
socket contract, :mod:`quichsd.userspace`); the handshake is quichsd's driver and engine,
in-process. Each finished handshake prints one JSON line::

    {"ok": true, "role": "client", "alpn": "h3", "cipher": "TLS_AES_128_GCM_SHA256",
     "group": "X25519", "resumed": false, "early_data": false, "peer_name": "server.test",
     "error": null, "status": 0, "ms": 12.3}

Exit status: 0 only if every handshake succeeded; 1 otherwise; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import uapi
from .driver import HandshakeRequest, HandshakeResult, TlsPolicy, run_handshake
from .errors import GnuTLSError, QuichsdError
from .gnutls.creds import AntiReplay, CertificateCredentials, generate_ticket_key
from .tls.engine import CIPHER_TOKEN, Auth, Role
from .uapi import CertRequest, Cipher

if TYPE_CHECKING:
    from .userspace.aioquic import UserspaceQuicSocket

_CIPHERS = {token: c for c, token in CIPHER_TOKEN.items()}


class UsageError(QuichsdError):
    pass


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


def parse_ciphers(text: str | None) -> tuple[Cipher, ...]:
    if not text:
        return ()
    out = []
    for name in text.split(","):
        c = _CIPHERS.get(name.strip().upper())
        if c is None:
            raise UsageError(f"unknown cipher {name!r} (expected {', '.join(_CIPHERS)})")
        out.append(c)
    return tuple(out)


def parse_groups(text: str | None) -> tuple[str, ...]:
    return tuple(g.strip().upper() for g in text.split(",") if g.strip()) if text else ()


def parse_alpns(text: str) -> tuple[bytes, ...]:
    alpns = tuple(a.strip().encode() for a in text.split(",") if a.strip())
    if not alpns:
        raise UsageError("--alpn needs at least one protocol")
    return alpns


def certificate_credentials(
    cafile: str | None, cert: str | None, key: str | None
) -> CertificateCredentials:
    cc = CertificateCredentials()
    try:
        if cert or key:
            if not (cert and key):
                raise UsageError("--cert and --key go together")
            cc.set_key_pair(_read(cert), _read(key))
        cc.set_trust(_read(cafile) if cafile else None)
    except GnuTLSError as e:
        cc.close()
        raise UsageError(str(e)) from None
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
        "error": res.error.reason if res.error else None,
        "status": res.status,
        "ms": round(res.elapsed * 1000, 1),
    }


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


# -- session file: session data + the server's transport parameters (for 0-RTT) ----------
def load_session(path: str | None) -> tuple[bytes | None, bytes | None]:
    if not path or not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            d = json.load(f)
        return base64.b64decode(d["session"]), base64.b64decode(d["transport_params"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path}: not a quichsd-probe session file ({e})") from None


def save_session(path: str, session: bytes, tp: bytes | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "session": base64.b64encode(session).decode(),
                "transport_params": base64.b64encode(tp or b"").decode(),
            },
            f,
        )


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


async def connect(args: argparse.Namespace) -> int:

    alpns = parse_alpns(args.alpn)
    ciphers = parse_ciphers(args.ciphers)
    session, peer_tp = load_session(args.session_file)
    req = HandshakeRequest(
        role=Role.CLIENT,
        peer_name=args.sni or args.host,
        timeout=args.timeout,
        policy=TlsPolicy(ciphers=ciphers, groups=parse_groups(args.groups)),
    )
    if args.psk_identity or args.psk_file:
        if not (args.psk_identity and args.psk_file):
            raise UsageError("--psk-identity and --psk-file go together")
        key = _read(args.psk_file).strip()
        try:
            key = bytes.fromhex(key.decode())
        except ValueError:
            pass
        req = replace(req, auth=Auth.PSK, psk_identity=args.psk_identity, psk_key=key)
    else:
        req = replace(req, x509=certificate_credentials(args.cafile, args.cert, args.key))
    sock = await open_client_socket(args, alpns, ciphers, session, peer_tp)
    try:
        res = await run_handshake(sock, req)
        if res.ok and args.session_file and sock.session_data:
            save_session(args.session_file, sock.session_data, sock.peer_transport_params)
        if res.ok and args.early_data is not None and sock.can_send_early_data:
            sock.send_stream(args.early_data.encode(), end=True)
            await asyncio.sleep(0.05)
    finally:
        sock.close()
        await sock.wait_closed()
        if req.x509 is not None:
            req.x509.close()
    emit(result_line(Role.CLIENT, res, req.peer_name))
    return 0 if res.ok else 1


async def serve(args: argparse.Namespace) -> int:
    from .userspace.server import UserspaceQuicServer

    alpns = parse_alpns(args.alpn)
    if not (args.cert and args.key):
        raise UsageError("serve needs --cert and --key (or --via PATH: the daemon's)")
    cc = certificate_credentials(args.cafile, args.cert, args.key)
    psk: dict[str, bytes] = {}
    if args.psk_file:
        text = _read(args.psk_file).decode(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            ident, _, hexkey = line.partition(":")
            if ident and hexkey:
                try:
                    psk[ident.strip()] = bytes.fromhex(hexkey.strip())
                except ValueError:
                    raise UsageError(
                        f"{args.psk_file}:{n}: key of {ident.strip()!r} is not hex"
                    ) from None
    ticket_key = generate_ticket_key() if args.ticket else None
    server = await UserspaceQuicServer.listen(
        args.host,
        args.port,
        alpns=alpns,
        ticket_key=ticket_key,
        certificate_request=int(CertRequest.REQUIRE if args.require_client_cert else 0),
    )
    anti_replay = AntiReplay()
    req = HandshakeRequest(
        role=Role.SERVER,
        x509=cc,
        timeout=args.timeout,
        policy=TlsPolicy(
            ciphers=parse_ciphers(args.ciphers),
            groups=parse_groups(args.groups),
            session_tickets=args.ticket,
        ),
        anti_replay=anti_replay,
        psk_lookup=psk.get if psk else None,
        auth=Auth.PSK if psk else Auth.X509,
    )
    host, port = server.address
    sys.stderr.write(f"quichsd-probe: listening on {host}:{port}\n")
    sys.stderr.flush()
    failures = 0
    try:
        for _ in range(args.count):
            sock = await server.accept()
            try:
                res = await run_handshake(sock, req)
                if res.ok:
                    await asyncio.sleep(0.2)  # let the peer see HANDSHAKE_DONE
            finally:
                sock.close()
            failures += not res.ok
            emit(result_line(Role.SERVER, res, None))
    finally:
        server.close()
        await server.wait_closed()
        cc.close()
        anti_replay.close()
    return 0 if failures == 0 else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quichsd-probe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("connect", help="handshake with a QUIC server")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--alpn", required=True, help="comma-separated ALPN list")
    c.add_argument("--sni", help="server name to send and verify (default: HOST)")
    c.add_argument("--cafile", help="PEM trust anchors (default: system trust store)")
    c.add_argument("--cert", help="client certificate chain (PEM)")
    c.add_argument("--key", help="client private key (PEM)")
    c.add_argument("--psk-identity")
    c.add_argument("--psk-file", help="file holding the PSK (hex or raw)")
    c.add_argument("--session-file", help="resume from / save session data to this file")
    c.add_argument("--early-data", metavar="TEXT", help="send TEXT as 0-RTT when resuming")
    c.add_argument("--timeout", type=float, default=10.0)
    s = sub.add_parser("serve", help="accept QUIC handshakes")
    s.add_argument("port", type=int)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--cert", help="server certificate chain (PEM); required without --via")
    s.add_argument("--key", help="server private key (PEM); required without --via")
    s.add_argument("--alpn", required=True)
    s.add_argument("--require-client-cert", action="store_true")
    s.add_argument("--cafile", help="PEM trust anchors for client certificates")
    s.add_argument("--psk-file", help="lines IDENTITY:HEXKEY; PSK handshakes instead of x509")
    s.add_argument("--count", type=int, default=1, help="handshakes to serve, then exit")
    s.add_argument("--ticket", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--timeout", type=float, default=10.0)
    for sp in (c, s):
        sp.add_argument("--ciphers", help="comma-separated: " + ", ".join(_CIPHERS))
        sp.add_argument("--groups", help="comma-separated GnuTLS group names, e.g. X25519")
        sp.add_argument(
            "--via", metavar="PATH", help="TLS in the daemon behind this unix socket (its creds)"
        )
    return p


#: what the probe's userspace QUIC stack needs beyond the daemon (the ``probe`` extra)
OPTIONAL_MODULES = ("aioquic", "cryptography", "pylsqpack", "certifi", "service_identity")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.via:
            from .unix import probe_via

            via = probe_via.connect(args) if args.cmd == "connect" else probe_via.serve(args)
            return asyncio.run(via)
        return asyncio.run(connect(args) if args.cmd == "connect" else serve(args))
    except UsageError as e:
        sys.stderr.write(f"quichsd-probe: {e}\n")
        return 2
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] not in OPTIONAL_MODULES:
            raise
        sys.stderr.write(
            f"quichsd-probe: needs the Python package {e.name.split('.')[0]!r} (the userspace "
            "QUIC stack): pip install 'quichsd[probe]' (on Debian 13: apt install "
            "python3-aioquic)\n"
        )
        return 3
    except KeyboardInterrupt:
        return 1
