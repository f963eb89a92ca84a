# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.ktls: the crypto_info structs byte for byte, and the set-up order."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from quichsd import ktls
from quichsd.ktls import KtlsError, TrafficState, install, pack_crypto_info
from quichsd.uapi import Cipher

KEY16 = bytes(range(0x10, 0x20))
KEY32 = bytes(range(0x20, 0x40))
IV12 = bytes(range(0xA0, 0xAC))


def test_aes_128_gcm_layout() -> None:
    raw = pack_crypto_info(TrafficState(Cipher.AES_GCM_128, KEY16, IV12, 0x0102030405060708))
    assert (
        raw
        == (
            b"\x04\x03"
            + b"\x33\x00"  # version 0x0304, cipher 51, little-endian u16s
            + IV12[4:]  # iv: the last 8 bytes of the write IV
            + KEY16
            + IV12[:4]  # salt: the first 4
            + b"\x01\x02\x03\x04\x05\x06\x07\x08"  # rec_seq, big-endian
        )
    )
    assert len(raw) == 40


def test_aes_256_gcm_layout() -> None:
    raw = pack_crypto_info(TrafficState(Cipher.AES_GCM_256, KEY32, IV12, 1))
    assert raw == b"\x04\x03\x34\x00" + IV12[4:] + KEY32 + IV12[:4] + b"\0" * 7 + b"\x01"
    assert len(raw) == 56


def test_aes_128_ccm_layout() -> None:
    raw = pack_crypto_info(TrafficState(Cipher.AES_CCM_128, KEY16, IV12, 0))
    assert raw == b"\x04\x03\x35\x00" + IV12[4:] + KEY16 + IV12[:4] + b"\0" * 8


def test_chacha20_poly1305_layout_has_the_whole_iv_and_no_salt() -> None:
    raw = pack_crypto_info(TrafficState(Cipher.CHACHA20_POLY1305, KEY32, IV12, 2**64 - 1))
    assert raw == b"\x04\x03\x36\x00" + IV12 + KEY32 + b"\xff" * 8
    assert len(raw) == 56


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (TrafficState(Cipher.AES_GCM_128, KEY32, IV12), "AES_GCM_128 key is 32 bytes, not 16"),
        (TrafficState(Cipher.AES_GCM_256, KEY32, IV12[:8]), "AES_GCM_256 IV is 8 bytes, not 12"),
        (TrafficState(Cipher.AES_GCM_128, KEY16, IV12, -1), "record sequence number -1 out of"),
        (TrafficState(Cipher.AES_GCM_128, KEY16, IV12, 2**64), "record sequence number"),
    ],
)
def test_bad_state_is_refused(state: TrafficState, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack_crypto_info(state)


def test_repr_holds_no_key() -> None:
    assert KEY16.hex() not in repr(TrafficState(Cipher.AES_GCM_128, KEY16, IV12))
    assert "key=" not in repr(TrafficState(Cipher.AES_GCM_128, KEY16, IV12))


class FakeSock:
    """Records setsockopt calls; ``fail`` = (level, opt) -> errno for the first match."""

    def __init__(self, fail: dict[tuple[int, int], int] | None = None) -> None:
        self.calls: list[tuple[int, int, bytes]] = []
        self.fail = fail or {}

    def setsockopt(self, level: int, opt: int, value: bytes) -> None:
        if (level, opt) in self.fail:
            err = self.fail[(level, opt)]
            raise OSError(err, errno.errorcode[err])
        self.calls.append((level, opt, value))


TX = TrafficState(Cipher.AES_GCM_128, KEY16, IV12, 0)
RX = TrafficState(Cipher.AES_GCM_128, bytes(16), bytes(12), 0)


def test_install_order_ulp_then_tx_then_rx() -> None:
    s = FakeSock()
    install(s, TX, RX)  # type: ignore[arg-type]
    assert s.calls == [
        (socket.IPPROTO_TCP, 31, b"tls"),
        (282, 1, pack_crypto_info(TX)),
        (282, 2, pack_crypto_info(RX)),
    ]


def test_install_passes_a_peer_record_limit_before_the_keys() -> None:
    s = FakeSock()
    install(s, TX, RX, 4096)  # type: ignore[arg-type]
    assert [c[:2] for c in s.calls] == [(6, 31), (282, 5), (282, 1), (282, 2)]
    assert s.calls[1][2] == struct.pack("=H", 4096)
    s = FakeSock()
    install(s, TX, RX, ktls.MAX_PLAINTEXT)  # type: ignore[arg-type]
    assert [c[:2] for c in s.calls] == [(6, 31), (282, 1), (282, 2)]


def test_no_ulp_is_named() -> None:
    s = FakeSock({(socket.IPPROTO_TCP, 31): errno.ENOENT})
    with pytest.raises(KtlsError) as ei:
        install(s, TX, RX)  # type: ignore[arg-type]
    assert str(ei.value) == "TCP_ULP tls: the kernel has no TLS ULP (CONFIG_TLS, module tls)"
    assert ei.value.errno == errno.ENOENT and not s.calls


def test_kernel_without_record_limit_fails_before_any_key() -> None:
    s = FakeSock({(282, 5): errno.ENOPROTOOPT})
    with pytest.raises(KtlsError, match="cannot limit kTLS records") as ei:
        install(s, TX, RX, 1000)  # type: ignore[arg-type]
    assert ei.value.step.startswith("TLS_TX_MAX_PAYLOAD_LEN 1000")
    assert s.calls == [(socket.IPPROTO_TCP, 31, b"tls")]


def test_rx_refused_names_the_step_after_tx() -> None:
    s = FakeSock({(282, 2): errno.EINVAL})
    with pytest.raises(KtlsError) as ei:
        install(s, TX, RX)  # type: ignore[arg-type]
    assert ei.value.step == "TLS_RX AES_GCM_128"
    assert "cipher not supported by its kTLS" in str(ei.value)
    assert len(s.calls) == 2


def test_bad_state_fails_before_any_call() -> None:
    s = FakeSock()
    with pytest.raises(ValueError):
        install(s, TX, TrafficState(Cipher.AES_GCM_256, KEY16, IV12))  # type: ignore[arg-type]
    assert not s.calls
