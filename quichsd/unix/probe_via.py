# SPDX-License-Identifier: GPL-2.0-or-later
"""``quichsd-probe connect|serve --via PATH``: local QUIC stack, TLS in the daemon.

The probe's userspace QUIC socket stays in this process; the handshake runs in the daemon
behind ``PATH`` (socket-ops, docs/unix-protocol.md). Credentials and TLS policy are then
the daemon's (its config's truststore, certificate, key, ciphers, groups), so the probe
refuses the options that would otherwise pick them (--cafile, --cert, --key, --psk-*,
--groups; --ciphers for serve). ``connect --ciphers`` with one cipher still works: it is
the socket's cipher hint. Early data, the session file and ``-v`` work as without
``--via`` (:mod:`quichsd.probe_flow`).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .. import uapi
from ..probe_common import (
    UsageError,
    listen,
    load_session,
    open_client_socket,
    parse_alpns,
    parse_ciphers,
)
from ..probe_flow import client_run, serve_run
from ..probe_trace import TraceSocket
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
        "error": res.error.strip() if res.error else None,
        "status": res.status,
        "ms": round(ms, 1),
    }


async def _run(path: str, sock: TraceSocket, req: ViaRequest) -> tuple[codec.Result, float]:
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

    async def handshake(tsock: TraceSocket) -> dict[str, Any]:
        res, ms = await _run(args.via, tsock, req)
        return line("client", res, peer_name, ms)

    return await client_run(args, sock, handshake)


async def serve(args: argparse.Namespace) -> int:
    from ..gnutls.creds import generate_ticket_key

    check_args(args)
    if args.ciphers:
        raise UsageError("serve --via: --ciphers not accepted; the daemon's tls.ciphers apply")
    alpns = parse_alpns(args.alpn)
    server = await listen(args, alpns, ticket_key=generate_ticket_key() if args.ticket else None)
    req = ViaRequest(uapi.MsgType.SERVERHELLO, timeout_ms=int(args.timeout * 1000))

    async def handshake(tsock: TraceSocket) -> dict[str, Any]:
        res, ms = await _run(args.via, tsock, req)
        return line("server", res, None, ms)

    try:
        return await serve_run(args, server, handshake)
    finally:
        server.close()
        await server.wait_closed()
