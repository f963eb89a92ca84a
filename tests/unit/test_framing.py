# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.tls.framing.scan_messages scans a peer's handshake bytes in place (issue 15)
and decides as the copy-and-delete scan it replaced: the same completed types, the same
unfinished tail kept, the same refusal with the offending header left in the buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quichsd.errors import PeerRejected
from quichsd.tls.framing import ALLOWED_RX_TYPES, MAX_HANDSHAKE_BYTES, scan_messages
from quichsd.uapi import CryptoLevel


def _reference(buf: bytearray, data: bytes) -> list[int]:
    """The scan as first written: append, then delete each complete message."""
    buf += data
    done: list[int] = []
    while len(buf) >= 4:
        htype, length = buf[0], int.from_bytes(buf[1:4], "big")
        if htype not in ALLOWED_RX_TYPES:
            raise PeerRejected(f"type {htype}")
        if length > MAX_HANDSHAKE_BYTES:
            raise PeerRejected(f"length {length}")
        if len(buf) < 4 + length:
            break
        done.append(htype)
        del buf[: 4 + length]
    return done


def _message(htype: int, body: bytes, claim: int | None = None) -> bytes:
    return bytes([htype]) + (len(body) if claim is None else claim).to_bytes(3, "big") + body


_MSGS = st.builds(
    _message,
    st.sampled_from([1, 2, 4, 8, 11, 13, 15, 20, 20, 24, 5]),
    st.binary(max_size=12),
    st.one_of(st.none(), st.none(), st.sampled_from([MAX_HANDSHAKE_BYTES + 1, 0xFFFFFF, 3])),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_MSGS, max_size=5), st.lists(st.integers(0, 60), max_size=4))
def test_scan_agrees_with_the_copying_scan(msgs: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(msgs)
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    ours, ref = bytearray(), bytearray()
    for chunk in chunks:
        try:
            want: list[int] | None = _reference(ref, chunk)
        except PeerRejected:
            want = None
        try:
            got: list[int] | None = scan_messages(ours, CryptoLevel.HANDSHAKE, chunk)
        except PeerRejected:
            got = None
        assert got == want and ours == ref
        if want is None:
            break


def test_refusal_keeps_the_offending_header() -> None:
    buf = bytearray()
    data = _message(20, b"f" * 32) + _message(24, b"k")  # Finished, then a KeyUpdate
    with pytest.raises(PeerRejected, match="unexpected handshake message type 24"):
        scan_messages(buf, CryptoLevel.APP, data)
    assert bytes(buf) == _message(24, b"k")
