"""``quichsd-probe connect|serve --via PATH``: local QUIC stack, TLS in the daemon.

The probe's userspace QUIC socket stays in this process; the handshake runs in the daemon
behind ``PATH`` (socket-ops, docs/unix-protocol.md). Credentials and TLS policy are then
the daemon's (its config's truststore, certificate, key, ciphers, groups), so the probe
refuses the options that would otherwise pick them (--cafile, --cert, --key, --psk-*,
--groups; --ciphers for serve). ``connect --ciphers`` with one cipher still works: it is
the socket's cipher hint.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .. import uapi
from ..probe import (
    UsageError,
    emit,
    load_session,
    open_client_socket,
    parse_alpns,
    parse_ciphers,
    save_session,
)
from . import codec
from .client import ViaError, ViaRequest, handshake_via

_REFUSED = ("cafile", "cert", "key", "psk_identity", "psk_file", "groups", "require_client_cert")


def check_args(args: argparse.Namespace) -> None:
    given = [f"--{n.replace('_', '-')}" for n in _REFUSED if getattr(args, n, None)]
    if given:
        raise UsageError(
            f"--via: {', '.join(given)} not accepted; credentials and TLS policy come from "
            "the daemon's configuration"
        )


def line(role: str, res: codec.Result, peer_name: str | None, ms: float) -> dict[str, Any]:
    cipher = None
    if res.cipher is not None and res.cipher in set(uapi.Cipher):
        cipher = uapi.CIPHER_SUITE_NAME[uapi.Cipher(res.cipher)]
    return {
        "ok": res.status == 0,
        "role": role,
        "alpn": (res.alpn or b"").decode(errors="replace") or None,
        "cipher": cipher,
        "group": res.group,
        "resumed": res.resumed,
        "early_data": res.early_data,
        "peer_name": peer_name,
        "error": res.error,
        "status": res.status,
        "ms": round(ms, 1),
    }


async def _run(path: str, sock: Any, req: ViaRequest) -> tuple[codec.Result, float]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        res = await handshake_via(path, sock, req)
    except ViaError as e:
        res = codec.Result(e.status, error=f"daemon at {path}: {e.text}")
    return res, (loop.time() - t0) * 1000


async def connect(args: argparse.Namespace) -> int:

    check_args(args)
    alpns = parse_alpns(args.alpn)
    ciphers = parse_ciphers(args.ciphers)
    session, peer_tp = load_session(args.session_file)
    peer_name = args.sni or args.host
    sock = await open_client_socket(args, alpns, ciphers, session, peer_tp)
    req = ViaRequest(
        uapi.MsgType.CLIENTHELLO, peer_name=peer_name, timeout_ms=int(args.timeout * 1000)
    )
    try:
        res, ms = await _run(args.via, sock, req)
        ok = res.status == 0
        if ok and args.session_file and sock.session_data:
            save_session(args.session_file, sock.session_data, sock.peer_transport_params)
        if ok and args.early_data is not None and sock.can_send_early_data:
            sock.send_stream(args.early_data.encode(), end=True)
            await asyncio.sleep(0.05)
    finally:
        sock.close()
        await sock.wait_closed()
    emit(line("client", res, peer_name, ms))
    return 0 if ok else 1


async def serve(args: argparse.Namespace) -> int:
    from ..gnutls.creds import generate_ticket_key
    from ..userspace.server import UserspaceQuicServer

    check_args(args)
    if args.ciphers:
        raise UsageError("serve --via: --ciphers not accepted; the daemon's tls.ciphers apply")
    alpns = parse_alpns(args.alpn)
    server = await UserspaceQuicServer.listen(
        args.host,
        args.port,
        alpns=alpns,
        ticket_key=generate_ticket_key() if args.ticket else None,
    )
    req = ViaRequest(uapi.MsgType.SERVERHELLO, timeout_ms=int(args.timeout * 1000))
    host, port = server.address
    sys.stderr.write(f"quichsd-probe: listening on {host}:{port} (TLS via {args.via})\n")
    sys.stderr.flush()
    failures = 0
    try:
        for _ in range(args.count):
            sock = await server.accept()
            try:
                res, ms = await _run(args.via, sock, req)
                if res.status == 0:
                    await asyncio.sleep(0.2)  # let the peer see HANDSHAKE_DONE
            finally:
                sock.close()
            failures += res.status != 0
            emit(line("server", res, None, ms))
    finally:
        server.close()
        await server.wait_closed()
    return 0 if failures == 0 else 1
