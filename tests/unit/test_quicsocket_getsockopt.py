# SPDX-License-Identifier: GPL-2.0-or-later
"""getsockopt_bytes: buffers above CPython's 1024-byte getsockopt limit (SESSION_TICKET)."""

from __future__ import annotations

import errno
import socket

import pytest

from quichsd.quicsocket import PY_GETSOCKOPT_MAX, getsockopt_bytes


def test_cpython_refuses_large_buflen() -> None:
    # the reason getsockopt_bytes exists: the kernel's ticket option needs 4096
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError):
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, PY_GETSOCKOPT_MAX + 1)


def test_large_buflen_on_a_kernel_socket_matches_small_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        small = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512)
        big = getsockopt_bytes(s, socket.IPPROTO_TCP, socket.TCP_INFO, 4096)
    # the kernel reports the real option length, not the buffer size
    assert 0 < len(big) < 4096
    assert big[:8] == small[:8]  # tcpi_state etc. of an unconnected socket


def test_small_buflen_uses_the_socket_method() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        want = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4)
        assert getsockopt_bytes(s, socket.SOL_SOCKET, socket.SO_RCVBUF, 4) == want


def test_errno_of_a_refused_large_read() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError) as ei:
        getsockopt_bytes(s, 288, 12, 4096)  # SOL_QUIC on a UDP socket
    assert ei.value.errno in (errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EINVAL)


class _Fake:
    """A non-kernel QuicSocket (userspace stack): asked directly whatever the size."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
        self.asked.append((level, optname, buflen))
        return b"t" * 100


def test_non_kernel_socket_is_asked_directly() -> None:
    f = _Fake()
    assert getsockopt_bytes(f, 288, 12, 4096) == b"t" * 100  # type: ignore[arg-type]
    assert f.asked == [(288, 12, 4096)]
