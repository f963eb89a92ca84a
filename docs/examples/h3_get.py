#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""GET a page over HTTP/3 after a quichsd handshake (docs/api.md).

    python3 docs/examples/h3_get.py HOST PORT [--server-name NAME] [--cafile CA.pem]
                                              [--path /] [--daemon SOCKET]

The QUIC connection is a userspace one (quichsd's socket on aioquic, with the kernel's
socket operations), so it runs on a kernel without QUIC. The TLS 1.3 handshake is
``quichsd.client_handshake`` in this process, or with ``--daemon`` the running daemon's
(``quichsd.daemon_handshake``: its trust store and policy). Then one HTTP/3 request on
the connection (aioquic's H3 layer). Prints one JSON line: what the handshake negotiated
and the response's status and body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived

import quichsd
from quichsd.userspace.aioquic import UserspaceQuicSocket


async def get(sock: UserspaceQuicSocket, authority: str, path: str) -> tuple[int, bytes]:
    """One HTTP/3 GET on an established connection: (status, body)."""
    h3 = H3Connection(sock.quic)
    stream = sock.quic.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode())]
    h3.send_headers(stream, [*headers, (b":path", path.encode())], end_stream=True)
    sock.transmit()
    status, body = 0, bytearray()
    while True:
        for event in h3.handle_event(await sock.next_event(timeout=10)):
            if not isinstance(event, HeadersReceived | DataReceived) or event.stream_id != stream:
                continue
            if isinstance(event, HeadersReceived):
                status = int(dict(event.headers)[b":status"])
            else:
                body += event.data
            if event.stream_ended:
                return status, bytes(body)
        sock.transmit()


async def main(args: argparse.Namespace) -> int:
    name = args.server_name or args.host
    sock = await UserspaceQuicSocket.connect(args.host, args.port, alpns=["h3"], server_name=name)
    try:
        if args.daemon:
            hs = await quichsd.daemon_handshake(sock, server_name=name, daemon=args.daemon)
        else:
            hs = await quichsd.client_handshake(sock, server_name=name, cafile=args.cafile)
        status, body = await get(sock, f"{name}:{args.port}", args.path)
    except quichsd.HandshakeFailed as e:
        fail = {"ok": False, "status": e.status, "error": e.errno_name, "reason": e.reason}
        sys.stdout.write(json.dumps(fail) + "\n")
        return 1
    finally:
        sock.close()
        await sock.wait_closed()
    out = {
        "ok": True,
        "role": hs.role,
        "cipher": hs.cipher,
        "group": hs.group,
        "alpn": hs.alpn,
        "resumed": hs.resumed,
        "http_status": status,
        "body": body.decode(errors="replace"),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--server-name", help="name to send (SNI) and verify; default HOST")
    p.add_argument("--cafile", help="trust anchors (PEM); default the system trust store")
    p.add_argument("--path", default="/", help="the page to GET")
    p.add_argument("--daemon", help="the daemon's unix socket: let the daemon run the TLS")
    sys.exit(asyncio.run(main(p.parse_args())))
