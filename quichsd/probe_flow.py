# SPDX-License-Identifier: GPL-2.0-or-later
"""One probe connection from handshake to close, the same with or without ``--via``.

The handshake itself is passed in (quichsd's driver in-process, or the daemon over its
unix socket) as a coroutine function of the socket that returns the JSON result line.
Around it this module: traces the socket (:mod:`quichsd.probe_trace`, for ``-v``),
sends ``connect --early-data TEXT`` as 0-RTT as soon as the 0-RTT keys are installed
(before the handshake completes) and again in 1-RTT if the server rejected it, stores the
session for ``--session-file``, reports a server's early data only if the client's 0-RTT
packets actually arrived, prints the JSON line and the ``-v`` report.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .probe_report import report
from .probe_trace import TraceSocket
from .uapi import CryptoLevel

if TYPE_CHECKING:
    from .userspace.aioquic import UserspaceQuicSocket
    from .userspace.server import UserspaceQuicServer

Handshake = Callable[[TraceSocket], Awaitable[dict[str, Any]]]
#: how long a client waits for the peer to acknowledge its --early-data text
DELIVERY_WAIT = 2.0


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


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


def _verbose(lines: list[str]) -> None:
    sys.stderr.write("".join(f"{ln}\n" for ln in lines))
    sys.stderr.flush()


async def _send_early(
    sock: UserspaceQuicSocket, hs: asyncio.Future[Any], text: bytes
) -> int | None:
    """Send ``text`` in 0-RTT once the 0-RTT keys are in, if that happens before the
    handshake completes; the stream id, or None if 0-RTT was not possible."""
    ready = asyncio.ensure_future(sock.wait_send_ready())
    try:
        await asyncio.wait({hs, ready}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if hs.done() or sock.established or not sock.quic.can_send(CryptoLevel.EARLY):
        return None
    return sock.send_stream(text, end=True)


async def client_run(
    args: argparse.Namespace, sock: UserspaceQuicSocket, handshake: Handshake
) -> int:
    """Handshake as a client on ``sock``, early data and session file included; the exit
    status. ``sock`` is closed on every path."""
    tsock = TraceSocket(sock, client=True)
    text = args.early_data.encode() if args.early_data is not None else None
    sent = None
    try:
        hs = asyncio.ensure_future(handshake(tsock))
        stream = await _send_early(sock, hs, text) if text is not None else None
        if stream is not None:
            sent = "in 0-RTT"
        line = await hs
        if line["ok"] and args.session_file and sock.session_data:
            save_session(args.session_file, sock.session_data, sock.peer_transport_params)
        if line["ok"] and text is not None:
            if stream is not None and not line["early_data"]:
                sock.resend_rejected_early_data()
                sent = "in 0-RTT, rejected by the server, sent again in 1-RTT"
            elif stream is None:
                stream = sock.send_stream(text, end=True)
                sent = "in 1-RTT (0-RTT was not possible)"
            if not await sock.wait_delivered(stream, min(DELIVERY_WAIT, args.timeout)):
                sent = f"{sent}, not acknowledged by the server"
    finally:
        sock.close()
        await sock.wait_closed()
    emit(line)
    if args.verbose:
        _verbose(report(tsock.trace, line, early_data_sent=sent))
    return 0 if line["ok"] else 1


async def serve_run(
    args: argparse.Namespace, server: UserspaceQuicServer, handshake: Handshake
) -> int:
    """Accept ``args.count`` handshakes on ``server``, one after the other; the exit status."""
    host, port = server.address
    via = f" (TLS via {args.via})" if args.via else ""
    sys.stderr.write(f"quichsd-probe: listening on {host}:{port}{via}\n")
    sys.stderr.flush()
    failures = 0
    for _ in range(args.count):
        sock = await server.accept()
        tsock = TraceSocket(sock, client=False)
        try:
            line = await handshake(tsock)
            # early data is reported when the server accepted it AND 0-RTT packets came:
            # a client may offer early data (the TLS extension) and send none
            line["early_data"] = bool(line["early_data"] and sock.zero_rtt_received)
            if line["ok"]:
                await asyncio.sleep(0.2)  # let the peer see HANDSHAKE_DONE
        finally:
            sock.close()
        failures += not line["ok"]
        emit(line)
        if args.verbose:
            _verbose(report(tsock.trace, line, zero_rtt_packets=sock.zero_rtt_received))
    return 0 if failures == 0 else 1
