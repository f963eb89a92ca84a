# SPDX-License-Identifier: GPL-2.0-or-later
"""The TCP path (quichsd.tcpdriver) against GnuTLS's own gnutls-serv / gnutls-cli on
127.0.0.1, and what it would hand to kTLS.

This host's kernel has no kTLS (``TCP_ULP "tls"`` gives ENOENT), so the hand-over is
recorded (tests/tlsrecord.py) and then *used*: the test seals and opens application
records with exactly the crypto_info bytes quichsd produced, and the real peer must
accept them and answer under them. The VM tier (tests/kernel) installs them for real.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path

import pytest
from tcp_peers import GnutlsCli, GnutlsServ, accept_one, free_tcp_port
from tlsrecord import Recorder, parse, read_record

from quichsd import ktls
from quichsd.request import HandshakeRequest, TlsPolicy
from quichsd.tcpdriver import run_tcp_handshake
from quichsd.tls.config import Auth, Role
from quichsd.uapi import Cipher

# gnutls-serv's PSK file is "identity:hexkey", so no colon (real NQNs have them: the VM uses those)
NVME_ID = "NVMe1R01 nqn.2014-08.org.example.host-1 nqn.2014-08.org.example.sub"


def psk_client(key: bytes, identity: str = NVME_ID, **kw: object) -> HandshakeRequest:
    return HandshakeRequest(
        role=Role.CLIENT, auth=Auth.PSK, psk_identity=identity, psk_key=key, timeout=5, **kw
    )  # type: ignore[arg-type]


def read_app_record(sock: socket.socket, rx: object) -> bytes:
    """The next application-data record, skipping post-handshake messages (a GnuTLS
    server sends a NewSessionTicket even to a client that wants none)."""
    from tlsrecord import RecordLayer

    assert isinstance(rx, RecordLayer)
    while True:
        ctype, data = rx.open(read_record(sock))
        if ctype == 23:
            return data
        assert ctype == 22, f"unexpected record type {ctype}"


@pytest.mark.parametrize(
    ("key_len", "cipher"),
    [(32, Cipher.AES_GCM_128), (32, Cipher.CHACHA20_POLY1305), (32, Cipher.AES_CCM_128)],
)
async def test_psk_client_against_gnutls_serv_then_records_under_the_handed_over_keys(
    tmp_path: Path, key_len: int, cipher: Cipher
) -> None:
    key = os.urandom(key_len)
    serv = GnutlsServ(tmp_path, psks={NVME_ID: key})
    rec = Recorder()
    try:
        with serv.connect() as sock:
            policy = TlsPolicy(ciphers=(cipher,))
            res = await run_tcp_handshake(sock, psk_client(key, policy=policy), rec)
            assert res.ok, res.error
            assert res.info is not None and res.info.cipher is cipher
            tx_raw, rx_raw, max_send = rec.calls[0]
            assert max_send == 0  # gnutls-serv sets no record_size_limit below 16384
            for raw in (tx_raw, rx_raw):
                info = parse(raw)
                assert (info.version, info.cipher) == (0x0304, int(cipher))
                assert info.seq == 0  # fresh application keys on both sides
            tx, rx = rec.layers()
            sock.setblocking(True)
            for line in (b"first record\n", b"second record\n"):
                sock.sendall(tx.seal(line))
                assert read_app_record(sock, rx) == line
    finally:
        out = serv.stop()
    assert f"Connected as '{NVME_ID}'" in out
    assert "received cmd: second record" in out


async def test_psk_server_against_gnutls_cli_then_records_both_ways(tmp_path: Path) -> None:
    key = os.urandom(32)
    looked_up: list[str] = []

    def lookup(identity: str) -> bytes | None:
        looked_up.append(identity)
        return key if identity == "client-7" else None

    req = HandshakeRequest(role=Role.SERVER, auth=Auth.PSK, psk_lookup=lookup, timeout=5)
    rec = Recorder()
    port = free_tcp_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        cli = GnutlsCli(port, "--pskusername", "client-7", "--pskkey", key.hex())
        with await accept_one(listener) as conn:
            res = await run_tcp_handshake(conn, req, rec)
            assert res.ok, res.error
            assert res.info is not None and res.info.psk_identity == "client-7"
            tx, rx = rec.layers()
            conn.setblocking(True)
            cli.send_line("from gnutls-cli")
            ctype, data = rx.open(read_record(conn))  # a server sends no ticket: this is it
            assert (ctype, data) == (23, b"from gnutls-cli\n")
            conn.sendall(tx.seal(b"from quichsd via kTLS keys\n"))
            await asyncio.sleep(0.3)
        out = cli.finish()
    assert looked_up == ["client-7"]
    assert "from quichsd via kTLS keys" in out, out


async def test_unknown_psk_identity_is_ekeyrejected_and_the_client_gets_alert_115(
    tmp_path: Path,
) -> None:
    req = HandshakeRequest(role=Role.SERVER, auth=Auth.PSK, psk_lookup=lambda i: None, timeout=5)
    rec = Recorder()
    port = free_tcp_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        cli = GnutlsCli(port, "--pskusername", "stranger", "--pskkey", os.urandom(32).hex())
        with await accept_one(listener) as conn:
            res = await run_tcp_handshake(conn, req, rec)
        out = cli.finish()
    assert res.status == errno.EKEYREJECTED
    assert res.error is not None and res.error.reason == "unknown PSK identity 'stranger'"
    assert not rec.calls  # nothing handed over
    assert "Received alert [115]" in out, out


async def test_psk_client_whose_key_the_server_lacks_is_eacces(tmp_path: Path) -> None:
    serv = GnutlsServ(tmp_path, psks={"someone-else": os.urandom(32)})
    rec = Recorder()
    try:
        with serv.connect() as sock:
            res = await run_tcp_handshake(sock, psk_client(os.urandom(32)), rec)
    finally:
        serv.stop()
    # gnutls-serv hides which identities it has: an unknown one fails the binder check
    assert res.status == errno.EACCES, res.error
    assert res.error is not None
    assert res.error.reason == "peer sent TLS alert 47 (illegal_parameter)"
    assert not rec.calls


async def test_silent_peer_is_etimedout_with_the_phase(tmp_path: Path) -> None:
    port = free_tcp_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            _conn, _ = listener.accept()  # accepts and never answers
            with _conn:
                req = psk_client(os.urandom(32))
                req = HandshakeRequest(**{**req.__dict__, "timeout": 0.5})
                res = await run_tcp_handshake(sock, req, Recorder())
    assert res.status == errno.ETIMEDOUT
    assert res.error is not None
    assert res.error.reason == "deadline of 0.5 s passed while waiting for ServerHello"


async def test_peer_closing_during_the_handshake_is_econnreset() -> None:
    port = free_tcp_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            conn, _ = listener.accept()
            conn.close()
            res = await run_tcp_handshake(sock, psk_client(os.urandom(32)), Recorder())
    assert res.status == errno.ECONNRESET, res.error


def host_has_ktls() -> bool:
    with socket.create_server(("127.0.0.1", 0)) as ls:
        with socket.create_connection(ls.getsockname()) as c:
            try:
                c.setsockopt(socket.IPPROTO_TCP, ktls.TCP_ULP, b"tls")
            except OSError:
                return False
    return True


async def test_real_ktls_install_on_this_host(tmp_path: Path) -> None:
    """With the real installer: a kernel without kTLS (this host) gives EIO naming the
    ULP, and the peer gets an internal_error alert instead of a silent hang; a kernel
    with kTLS carries the echo through the kernel."""
    key = os.urandom(32)
    serv = GnutlsServ(tmp_path, psks={NVME_ID: key})
    try:
        with serv.connect() as sock:
            res = await run_tcp_handshake(sock, psk_client(key))
            if host_has_ktls():
                assert res.ok, res.error
                sock.setblocking(True)
                sock.sendall(b"through the kernel\n")
                assert sock.recv(100) == b"through the kernel\n"
            else:
                assert res.status == errno.EIO
                assert res.error is not None
                assert res.error.reason == (
                    "kTLS set-up failed at TCP_ULP tls: the kernel has no TLS ULP "
                    "(CONFIG_TLS, module tls)"
                )
                await asyncio.sleep(0.3)
    finally:
        out = serv.stop()
    if not host_has_ktls():
        assert "Error: A TLS fatal alert has been received." in out, out


@pytest.mark.parametrize(
    ("key_len", "cipher"), [(48, Cipher.AES_GCM_256), (32, Cipher.AES_GCM_128)]
)
async def test_psk_hash_follows_the_key_both_sides(key_len: int, cipher: Cipher) -> None:
    """A 48-byte (NVMe1R02) PSK is a SHA-384 one: the client offers AES-256-GCM only and
    binds SHA-384; the server learns the key from the offered identity before GnuTLS
    checks the binder and switches to SHA-384. gnutls-serv 3.7.9 cannot do SHA-384 PSKs
    at all ("No supported cipher suites"), so both ends are quichsd here; the VM tier
    runs it between the kernel's NVMe host and target."""
    key = os.urandom(key_len)
    ident = f"NVMe1R0{1 if key_len == 32 else 2} host sub"
    looked_up: list[str] = []

    def lookup(i: str) -> bytes | None:
        looked_up.append(i)
        return key if i == ident else None

    with socket.create_server(("127.0.0.1", 0)) as ls:
        c = socket.create_connection(ls.getsockname())
        srv, _ = ls.accept()
        with c, srv:
            rc, rs = Recorder(), Recorder()
            server = HandshakeRequest(role=Role.SERVER, auth=Auth.PSK, psk_lookup=lookup, timeout=5)
            a, b = await asyncio.gather(
                run_tcp_handshake(c, psk_client(key, ident), rc),
                run_tcp_handshake(srv, server, rs),
            )
    assert a.ok and b.ok, (a.error, b.error)
    assert a.info is not None and b.info is not None
    assert a.info.cipher is cipher and b.info.cipher is cipher
    assert looked_up == [ident]  # once, though both the hook and GnuTLS's callback need it
    (ctx, crx, _), (stx, srx, _) = rc.calls[0], rs.calls[0]
    assert ctx == srx and crx == stx  # what one side sends with, the other receives with
    assert parse(ctx).cipher == int(cipher)


async def test_sha384_psk_with_no_sha384_suite_configured_is_a_clear_local_error() -> None:
    req = psk_client(os.urandom(48), policy=TlsPolicy(ciphers=(Cipher.AES_GCM_128,)))
    with (
        socket.create_server(("127.0.0.1", 0)) as ls,
        socket.create_connection(ls.getsockname()) as c,
    ):
        res = await run_tcp_handshake(c, req, Recorder())
    assert res.status == errno.EIO
    assert res.error is not None
    assert res.error.reason == (
        "a 48-byte PSK needs a SHA-384 suite; the configured ciphers (AES-128-GCM) have none"
    )


async def test_peer_record_size_limit_is_passed_to_ktls(tmp_path: Path) -> None:
    """RFC 8449: gnutls-serv limits records to 512 bytes; the hand-over carries the
    plaintext limit for TLS_TX_MAX_PAYLOAD_LEN, and records of that size are accepted."""
    key = os.urandom(32)
    serv = GnutlsServ(tmp_path, psks={NVME_ID: key}, extra=("--recordsize=512",))
    rec = Recorder()
    try:
        with serv.connect() as sock:
            res = await run_tcp_handshake(sock, psk_client(key), rec)
            assert res.ok, res.error
            max_send = rec.calls[0][2]
            # --recordsize is plaintext: GnuTLS advertises 513, which counts the type byte
            assert max_send == 512
            tx, rx = rec.layers()
            sock.setblocking(True)
            line = b"x" * (max_send - 1) + b"\n"
            sock.sendall(tx.seal(line))
            assert read_app_record(sock, rx) == line
            sock.sendall(tx.seal(b"y" * (max_send + 1)))  # one byte over: the peer refuses
            ctype, alert = rx.open(read_record(sock))
            assert (ctype, alert) == (21, b"\x02\x16")  # fatal record_overflow (22)
    finally:
        serv.stop()
