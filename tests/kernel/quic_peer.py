# SPDX-License-Identifier: GPL-2.0-or-later
"""Userspace IPPROTO_QUIC peer for the kernel QUIC scenarios (guest only).

Plays the other side of lxin/quic's ``quic_sample_test.ko``: a kernel QUIC socket in
this process whose TLS handshake is run in-process through quichsd's public API
(``quichsd.client_handshake`` / ``quichsd.server_handshake``, docs/api.md: the API on a
kernel QUIC fd), then the sample's stream exchange:

* ``server``: listen with the ALPN, accept, handshake as server (the ``server.test``
  certificate, or external PSK looked up in ``--psk`` entries), read the client's
  message, answer on a new server stream with FIN, wait for the client to close;
* ``client``: connect with the ALPN, handshake as client (verifying ``server.test``
  against the test CA, or with the first ``--psk`` entry), send ``hello quic server!``
  on a new unidirectional stream with FIN, read the server's answer.

``--rounds 2`` is the sample's session-resumption variant (``alpn=ticket``): the server
accepts a second connection and answers ``hello quic client! welcome back!``; the client
asks for a session ticket on the first connection (``quic_config.receive_session_ticket``,
so the handshake waits for the NewSessionTicket and returns ``Handshake.session``) and
resumes with it on the second (``QUIC_SOCKOPT_SESSION_TICKET`` set before the handshake).

Prints ``handshake completed ... resumed=<bool>``, ``recv '<text>'`` and ``send '<text>'``
lines.  Needs the lxin/quic module loaded (IPPROTO_QUIC = 261); only run when
QUICHSD_QUIC_MODULES is set.  Not exercised in CI (no QUIC module there).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
from pathlib import Path

from quichsd import Handshake, HandshakeFailed, client_handshake, server_handshake, uapi

IPPROTO_QUIC = uapi.IPPROTO_QUIC
SOL_QUIC = uapi.SOL_QUIC
MSG_STREAM_NEW = 0x400  # MSG_SYN
MSG_STREAM_FIN = 0x200  # MSG_FIN
STREAM_SERVER_MASK = 0x01
STREAM_UNI_MASK = 0x02
STREAM_INFO = struct.Struct("=qI4x")  # struct quic_stream_info (16 bytes)
SERVER_REPLIES = (b"hello quic client!", b"hello quic client! welcome back!")
CLIENT_MESSAGES = (b"hello quic server!", b"hello quic server, I'm back!")


def say(text: str) -> None:
    print(text, flush=True)


def send_stream(sock: socket.socket, data: bytes, sid: int, flags: int) -> None:
    cmsg = [(SOL_QUIC, uapi.QUIC_STREAM_INFO, STREAM_INFO.pack(sid, flags))]
    sock.sendmsg([data], cmsg, flags)


def recv_stream(sock: socket.socket) -> tuple[bytes, int]:
    data, anc, _flags, _addr = sock.recvmsg(1024, socket.CMSG_SPACE(STREAM_INFO.size))
    sid = -1
    for level, typ, payload in anc:
        if level == SOL_QUIC and typ == uapi.QUIC_STREAM_INFO and len(payload) >= 8:
            sid = struct.unpack_from("=q", payload)[0]
    return data, sid


def handshake(sock: socket.socket, a: argparse.Namespace, role: str) -> Handshake:
    """The handshake through the public API, as a program holding a QUIC socket runs it."""
    psks = psk_entries(a.psk)
    pki = a.pki
    if role == "server":
        coro = server_handshake(
            sock,
            cert=str(pki / "server.pem"),
            key=str(pki / "server.key"),
            psk=dict(psks) or None,
            timeout=a.timeout,
        )
    elif psks:
        coro = client_handshake(sock, psk=psks[0], timeout=a.timeout)
    else:
        coro = client_handshake(
            sock, server_name="server.test", cafile=str(pki / "ca.pem"), timeout=a.timeout
        )
    sock.setblocking(False)
    try:
        hs = asyncio.run(coro)
    except HandshakeFailed as e:
        raise SystemExit(
            f"handshake failed: status {e.status} ({e.errno_name}): {e.reason}"
        ) from None
    say(
        f"handshake completed in {hs.duration_ms / 1000:.2f}s alpn={hs.alpn!r} "
        f"resumed={hs.resumed} cipher={hs.cipher} group={hs.group}"
    )
    sock.setblocking(True)
    return hs


def psk_entries(items: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for item in items:
        ident, _, hexkey = item.partition(":")
        out.append((ident, bytes.fromhex(hexkey)))
    return out


def wait_close(sock: socket.socket, seconds: float) -> None:
    """Wait until the peer closes (or ``seconds`` pass): our close must not cut its read."""
    sock.settimeout(seconds)
    try:
        while True:
            data, _ = recv_stream(sock)
            if not data:
                return
    except OSError:
        return


def serve(a: argparse.Namespace) -> None:
    lsk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, IPPROTO_QUIC)
    lsk.bind(("127.0.0.1", a.port))
    lsk.setsockopt(SOL_QUIC, uapi.QUIC_SOCKOPT_ALPN, a.alpn.encode())
    lsk.listen(1)
    say(f"listening on 127.0.0.1:{a.port}")
    lsk.settimeout(a.timeout * 2)
    for rnd in range(a.rounds):
        sock, _ = lsk.accept()
        handshake(sock, a, "server")
        sock.settimeout(a.timeout)
        data, sid = recv_stream(sock)
        say(f"recv '{data.decode(errors='replace')}' on stream {sid}")
        msg = SERVER_REPLIES[rnd]
        send_stream(sock, msg, STREAM_SERVER_MASK, MSG_STREAM_NEW | MSG_STREAM_FIN)
        say(f"send '{msg.decode()}' on stream {STREAM_SERVER_MASK}")
        # a client about to reconnect closes at once; do not make its next try wait
        wait_close(sock, 1.0 if rnd + 1 < a.rounds else a.timeout)
        sock.close()
    lsk.close()


def connect(a: argparse.Namespace) -> None:
    session: bytes | None = None
    for rnd in range(a.rounds):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, IPPROTO_QUIC)
        sock.setsockopt(SOL_QUIC, uapi.QUIC_SOCKOPT_ALPN, a.alpn.encode())
        if rnd + 1 < a.rounds:  # ask the driver to wait for a ticket (1 s)
            cfg = uapi.pack_config(uapi.QuicConfig(receive_session_ticket=1))
            sock.setsockopt(SOL_QUIC, uapi.QUIC_SOCKOPT_CONFIG, cfg)
        sock.connect(("127.0.0.1", a.port))
        if session:
            sock.setsockopt(SOL_QUIC, uapi.QUIC_SOCKOPT_SESSION_TICKET, session)
        hs = handshake(sock, a, "client")
        if rnd + 1 < a.rounds:
            if not hs.session:
                raise SystemExit("no session data after the first handshake (no ticket?)")
            session = hs.session
            say(f"session data of {len(session)} bytes saved for resumption")
        sock.settimeout(a.timeout)
        msg = CLIENT_MESSAGES[rnd]
        send_stream(sock, msg, STREAM_UNI_MASK, MSG_STREAM_NEW | MSG_STREAM_FIN)
        say(f"send '{msg.decode()}' on stream {STREAM_UNI_MASK}")
        data, sid = recv_stream(sock)
        say(f"recv '{data.decode(errors='replace')}' on stream {sid}")
        sock.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pki", type=Path, required=True, help="folder with ca.pem, server.pem/.key")
    ap.add_argument("--alpn", default="sample")
    ap.add_argument(
        "--psk", action="append", default=[], help="IDENTITY:HEXKEY (client: the first)"
    )
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()
    if a.role == "server":
        serve(a)
    else:
        connect(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
