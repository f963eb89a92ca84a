# SPDX-License-Identifier: GPL-2.0-or-later
"""Driver behaviour at the socket contract, over the in-memory socket pair.

The TLS on both ends is GnuTLS through our engine; what is under test here is what the
driver does with the socket: the bytes it sets, the statuses it returns, the fds it
leaves. Interop with independent QUIC stacks is in tests/interop.
"""

from __future__ import annotations

import asyncio
import errno
import os

import pytest
from pki import make_pki

from quichsd import uapi
from quichsd.driver import HandshakeRequest, run_handshake
from quichsd.gnutls.creds import AntiReplay, CertificateCredentials, generate_ticket_key
from quichsd.tls.engine import Role
from quichsd.userspace.memory import MemorySettings, memory_pair

PKI = make_pki()


def creds() -> tuple[CertificateCredentials, CertificateCredentials]:
    server = CertificateCredentials()
    server.set_key_pair(PKI.server.cert_pem, PKI.server.key_pem)
    client = CertificateCredentials()
    client.set_trust(PKI.ca.cert_pem)
    return client, server


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_full_and_resumed_handshake_set_matching_secrets() -> None:
    cc, sc = creds()
    key, ar = generate_ticket_key(), AntiReplay()
    ticket = b""
    for round_ in range(2):
        c, s = memory_pair(
            MemorySettings(
                alpns=(b"smb",),
                ticket=ticket,
                config=uapi.QuicConfig(receive_session_ticket=2),
                transport_params=b"c-tp",
            ),
            MemorySettings(alpns=(b"h3", b"smb"), ticket=key, transport_params=b"s-tp"),
        )
        cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=5)
        sr = HandshakeRequest(Role.SERVER, x509=sc, anti_replay=ar, timeout=5)
        a, b = await asyncio.gather(run_handshake(c, cr), run_handshake(s, sr))
        assert (a.status, b.status) == (0, 0), (a.error, b.error)
        levels = {k[0] for k in c.secrets}
        expected = {uapi.CryptoLevel.HANDSHAKE, uapi.CryptoLevel.APP}
        if round_:
            expected.add(uapi.CryptoLevel.EARLY)
        assert levels == expected
        for (level, send), sec in c.secrets.items():
            assert s.secrets[(level, not send)].secret == sec.secret
        assert c.peer_tp == b"s-tp" and s.peer_tp == b"c-tp"
        assert s.selected_alpn == b"smb"
        assert a.info is not None and a.info.resumed is bool(round_)
        assert a.info.early_data_accepted is bool(round_)
        assert c.stored_ticket, "session data must be handed back with setsockopt"
        ticket = c.stored_ticket
        c.close()
        s.close()


async def test_alpn_mismatch_sets_connection_close_0x178() -> None:
    cc, sc = creds()
    c, s = memory_pair(MemorySettings(alpns=(b"h3",)), MemorySettings(alpns=(b"smb",)))
    cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=2)
    sr = HandshakeRequest(Role.SERVER, x509=sc, timeout=2)
    a, b = await asyncio.gather(run_handshake(c, cr), run_handshake(s, sr))
    assert b.status == errno.EACCES
    assert s.close_info is not None and s.close_info.errcode == 0x178
    assert s.close_info.phrase == b"TLS alert 120: no_application_protocol"
    # the client learns it from the peer's close, not from a timeout
    s.close()
    assert a.status in (errno.EACCES, errno.ETIMEDOUT)
    c.close()


async def test_untrusted_server_is_eacces_with_alert_48() -> None:
    _, sc = creds()
    rogue_trust = CertificateCredentials()
    rogue_trust.set_trust(PKI.rogue_ca.cert_pem)
    c, s = memory_pair(MemorySettings(alpns=(b"h3",)), MemorySettings(alpns=(b"h3",)))
    cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=rogue_trust, timeout=2)
    sr = HandshakeRequest(Role.SERVER, x509=sc, timeout=1)
    a, b = await asyncio.gather(run_handshake(c, cr), run_handshake(s, sr))
    assert a.status == errno.EACCES
    assert a.error is not None and "issuer" in a.error.reason.lower()
    assert c.close_info is not None and c.close_info.errcode == 0x100 + 48
    assert b.status == errno.ETIMEDOUT  # the memory peer delivers no close: deadline
    c.close()
    s.close()


async def test_silent_peer_times_out_and_leaves_no_fd() -> None:
    cc, _ = creds()
    before = fds()
    c, s = memory_pair(MemorySettings(alpns=(b"h3",)), MemorySettings())
    cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=0.3)
    r = await run_handshake(c, cr)
    assert r.status == errno.ETIMEDOUT
    assert r.error is not None and "waiting for ServerHello" in r.error.reason
    c.close()
    s.close()
    assert fds() == before


@pytest.mark.parametrize(
    ("hint", "status"), [(50, errno.EINVAL), (55, errno.EINVAL), (0x7FFFFFFF, errno.EINVAL)]
)
async def test_bad_cipher_hint_is_einval(hint: int, status: int) -> None:
    cc, _ = creds()
    c, s = memory_pair(
        MemorySettings(alpns=(b"h3",), config=uapi.QuicConfig(payload_cipher_type=hint)),
        MemorySettings(),
    )
    r = await run_handshake(c, HandshakeRequest(Role.CLIENT, x509=cc, timeout=1))
    assert r.status == status
    c.close()
    s.close()


async def test_cipher_hint_is_honoured() -> None:
    cc, sc = creds()
    c, s = memory_pair(
        MemorySettings(alpns=(b"h3",), config=uapi.QuicConfig(payload_cipher_type=53)),
        MemorySettings(alpns=(b"h3",)),
    )
    cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=3)
    sr = HandshakeRequest(Role.SERVER, x509=sc, timeout=3)
    a, b = await asyncio.gather(run_handshake(c, cr), run_handshake(s, sr))
    assert (a.status, b.status) == (0, 0)
    assert {sec.cipher for sec in c.secrets.values()} == {uapi.Cipher.AES_CCM_128}
    c.close()
    s.close()


async def test_bad_alpn_setting_is_einval() -> None:
    cc, _ = creds()
    c, s = memory_pair(MemorySettings(alpns=(b"h3", b"")), MemorySettings())
    r = await run_handshake(c, HandshakeRequest(Role.CLIENT, x509=cc, timeout=1))
    assert r.status == errno.EINVAL
    assert r.error is not None and "empty entry" in r.error.reason
    c.close()
    s.close()


async def test_data_without_cmsg_is_ebadmsg() -> None:
    _, sc = creds()
    c, s = memory_pair(MemorySettings(), MemorySettings(alpns=(b"h3",)))

    def no_cmsg(
        bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, None]:
        return b"\x01\x00\x00\x00", [], 0, None

    s.recvmsg = no_cmsg  # type: ignore[method-assign]
    s.inject(uapi.CryptoLevel.INITIAL, b"x")
    r = await run_handshake(s, HandshakeRequest(Role.SERVER, x509=sc, timeout=1))
    assert r.status == errno.EBADMSG
    assert s.close_info is not None and s.close_info.errcode == 0x0A
    c.close()
    s.close()


async def test_garbage_client_hello_is_eacces_with_alert() -> None:
    _, sc = creds()
    c, s = memory_pair(MemorySettings(), MemorySettings(alpns=(b"h3",)))
    s.inject(uapi.CryptoLevel.INITIAL, b"\x01\x00\x00\x05hello")
    r = await run_handshake(s, HandshakeRequest(Role.SERVER, x509=sc, timeout=1))
    assert r.status == errno.EACCES
    assert s.close_info is not None and s.close_info.errcode >= 0x100
    c.close()
    s.close()


async def test_peer_close_is_reported_at_once_not_at_the_deadline() -> None:
    cc, _ = creds()
    c, s = memory_pair(MemorySettings(alpns=(b"h3",)), MemorySettings())
    s.setsockopt(
        uapi.SOL_QUIC,
        uapi.QUIC_SOCKOPT_CONNECTION_CLOSE,
        uapi.pack_connection_close(uapi.ConnectionClose(0x100 + 115, 0, b"unknown psk")),
    )
    s.close()
    req = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=5)
    r = await run_handshake(c, req)
    assert r.status == errno.EKEYREJECTED
    assert r.elapsed < 2
    c.close()


async def test_refused_key_install_names_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CRYPTO_SECRET setsockopt the socket refuses fails the handshake with that errno
    and names the key (level, direction); the driver packs the secret for the kernel as
    uapi.pack_crypto_secret does."""
    cc, sc = creds()
    c, s = memory_pair(MemorySettings(alpns=(b"h3",)), MemorySettings(alpns=(b"h3",)))
    real = s.setsockopt

    def refuse_keys(level: int, optname: int, value: bytes, /) -> None:
        if optname == uapi.QUIC_SOCKOPT_CRYPTO_SECRET:
            secret = uapi.unpack_crypto_secret(bytes(value))
            assert bytes(value) == uapi.pack_crypto_secret(secret)
            raise OSError(errno.EPERM, "keys refused")
        real(level, optname, value)

    monkeypatch.setattr(s, "setsockopt", refuse_keys)
    cr = HandshakeRequest(Role.CLIENT, peer_name="server.test", x509=cc, timeout=1)
    sr = HandshakeRequest(Role.SERVER, x509=sc, timeout=1)
    a, b = await asyncio.gather(run_handshake(c, cr), run_handshake(s, sr))
    assert b.status == errno.EPERM
    assert b.error is not None
    assert str(b.error) == "setsockopt(CRYPTO_SECRET HANDSHAKE tx) failed: keys refused"
    c.close()
    s.close()
