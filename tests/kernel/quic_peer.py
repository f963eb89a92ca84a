"""Userspace IPPROTO_QUIC peer for the ``kernel_quic_sample`` scenario (guest only).

Plays the other side of lxin/quic's ``quic_sample_test.ko``: a kernel QUIC socket in
this process whose TLS handshake is run in-process by quichsd's own driver
(``quichsd.driver.run_handshake``), then the sample's stream exchange:

* ``server``: listen with ALPN ``sample``, accept, handshake as server with the
  ``server.test`` certificate, read the client's message, answer
  ``hello quic client!`` on a new server stream with FIN;
* ``client``: connect with ALPN ``sample``, handshake as client verifying
  ``server.test`` against the test CA, send ``hello quic server!`` on a new
  unidirectional stream with FIN, read the server's answer.

Prints ``handshake completed``, ``recv '<text>'`` and ``send '<text>'`` lines.
Needs the lxin/quic module loaded (IPPROTO_QUIC = 261); only run when
QUICHSD_QUIC_MODULES is set.  Not exercised in CI (no QUIC module there).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
from pathlib import Path

from quichsd import uapi
from quichsd.driver import HandshakeRequest, run_handshake
from quichsd.gnutls.creds import CertificateCredentials
from quichsd.tls.engine import Auth, Role

IPPROTO_QUIC = uapi.IPPROTO_QUIC
SOL_QUIC = uapi.SOL_QUIC
QUIC_SOCKOPT_ALPN = uapi.QUIC_SOCKOPT_ALPN
QUIC_STREAM_INFO = uapi.QUIC_STREAM_INFO
MSG_STREAM_NEW = 0x400  # MSG_SYN
MSG_STREAM_FIN = 0x200  # MSG_FIN
STREAM_SERVER_MASK = 0x01
STREAM_UNI_MASK = 0x02
STREAM_INFO = struct.Struct("=qI4x")  # struct quic_stream_info (16 bytes)


def send_stream(sock: socket.socket, data: bytes, sid: int, flags: int) -> None:
    cmsg = [(SOL_QUIC, QUIC_STREAM_INFO, STREAM_INFO.pack(sid, flags))]
    sock.sendmsg([data], cmsg, flags)


def recv_stream(sock: socket.socket) -> tuple[bytes, int]:
    data, anc, _flags, _addr = sock.recvmsg(1024, socket.CMSG_SPACE(STREAM_INFO.size))
    sid = -1
    for level, typ, payload in anc:
        if level == SOL_QUIC and typ == QUIC_STREAM_INFO and len(payload) >= 8:
            sid = struct.unpack_from("=q", payload)[0]
    return data, sid


async def handshake(sock: socket.socket, req: HandshakeRequest) -> None:
    sock.setblocking(False)
    res = await run_handshake(sock, req)
    if not res.ok:
        raise SystemExit(f"handshake failed: status {res.status}: {res.error}")
    print(f"handshake completed in {res.elapsed:.2f}s alpn={res.alpn!r}", flush=True)
    sock.setblocking(True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pki", type=Path, required=True, help="folder with ca.pem, server.pem/.key")
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()
    cc = CertificateCredentials()
    cc.set_trust((a.pki / "ca.pem").read_bytes())
    if a.role == "server":
        cc.set_key_pair((a.pki / "server.pem").read_bytes(), (a.pki / "server.key").read_bytes())
        lsk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, IPPROTO_QUIC)
        lsk.bind(("127.0.0.1", a.port))
        lsk.setsockopt(SOL_QUIC, QUIC_SOCKOPT_ALPN, b"sample")
        lsk.listen(1)
        print(f"listening on 127.0.0.1:{a.port}", flush=True)
        lsk.settimeout(a.timeout * 2)
        sock, _ = lsk.accept()
        req = HandshakeRequest(role=Role.SERVER, auth=Auth.X509, x509=cc, timeout=a.timeout)
        asyncio.run(handshake(sock, req))
        sock.settimeout(a.timeout)
        data, sid = recv_stream(sock)
        print(f"recv {data.decode(errors='replace')!r} on stream {sid}", flush=True)
        msg = b"hello quic client!"
        send_stream(sock, msg, STREAM_SERVER_MASK, MSG_STREAM_NEW | MSG_STREAM_FIN)
        print(f"send {msg.decode()!r} on stream {STREAM_SERVER_MASK}", flush=True)
        try:  # wait for the kernel client to close
            recv_stream(sock)
        except OSError:
            pass
        sock.close()
        lsk.close()
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, IPPROTO_QUIC)
        sock.setsockopt(SOL_QUIC, QUIC_SOCKOPT_ALPN, b"sample")
        sock.connect(("127.0.0.1", a.port))
        req = HandshakeRequest(
            role=Role.CLIENT, auth=Auth.X509, peer_name="server.test", x509=cc, timeout=a.timeout
        )
        asyncio.run(handshake(sock, req))
        sock.settimeout(a.timeout)
        msg = b"hello quic server!"
        send_stream(sock, msg, STREAM_UNI_MASK, MSG_STREAM_NEW | MSG_STREAM_FIN)
        print(f"send {msg.decode()!r} on stream {STREAM_UNI_MASK}", flush=True)
        data, sid = recv_stream(sock)
        print(f"recv {data.decode(errors='replace')!r} on stream {sid}", flush=True)
        sock.close()
    cc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
