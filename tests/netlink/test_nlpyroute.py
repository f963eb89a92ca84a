# SPDX-License-Identifier: GPL-2.0-or-later
"""The pyroute2 transport against this machine's real kernel.

The kernel here has no ``handshake`` family, so the transport is pointed at ``nlctrl``
(generic netlink's own control family, id 0x10, group ``notify``), which every kernel
has: this exercises the same framing, sequence routing, error mapping and socket
replacement the handshake family uses. Request bytes are built by hand.
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct

import pytest

from quichsd.netlink.codec import iter_attrs, parse_message
from quichsd.netlink.pyroute import PyrouteTransport
from quichsd.netlink.transport import HandshakeFamilyUnavailable

GENL_ID_CTRL = 0x10
CTRL_CMD_NEWFAMILY, CTRL_CMD_GETFAMILY = 1, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2


def getfamily(name: str) -> bytes:
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), CTRL_ATTR_FAMILY_NAME) + raw + b"\0" * (-len(raw) % 4)
    return struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_request_reply_is_returned_raw() -> None:
    base = fd_count()
    t = PyrouteTransport(family="nlctrl", group="notify")
    await t.open()
    try:
        assert t.family_id == GENL_ID_CTRL
        replies = await t.request(getfamily("nlctrl"), 0x01)
        assert len(replies) == 1
        m = parse_message(replies[0])
        assert (m.nl_type, m.cmd, m.pid) == (GENL_ID_CTRL, CTRL_CMD_NEWFAMILY, m.pid)
        assert m.seq != 0
        attrs = dict(iter_attrs(m.attrs))
        assert attrs[CTRL_ATTR_FAMILY_ID] == struct.pack("=H", GENL_ID_CTRL)
        assert attrs[CTRL_ATTR_FAMILY_NAME] == b"nlctrl\0"
        # concurrent requests are answered on their own sequence numbers
        many = await asyncio.gather(*(t.request(getfamily("nlctrl"), 0x01) for _ in range(10)))
        assert all(len(r) == 1 for r in many)
        assert len({parse_message(r[0]).seq for r in many}) == 10
    finally:
        await t.close()
    assert fd_count() == base


async def test_error_reply_raises_oserror_with_errno() -> None:
    t = PyrouteTransport(family="nlctrl", group="notify")
    await t.open()
    try:
        with pytest.raises(OSError) as info:
            await t.request(getfamily("nosuchfamily"), 0x01)
        assert info.value.errno == errno.ENOENT
        # the socket is still usable afterwards
        assert len(await t.request(getfamily("nlctrl"), 0x01)) == 1
    finally:
        await t.close()


async def test_receive_error_replaces_and_rejoins_the_multicast_socket() -> None:
    base = fd_count()
    t = PyrouteTransport(family="nlctrl", group="notify")
    await t.open()
    try:
        old = t._mcast
        assert old is not None
        reader = asyncio.create_task(t.recv())
        await asyncio.sleep(0.05)
        assert not reader.done()
        # what asyncio's datagram transport does when recvfrom() fails with ENOBUFS
        old.local.protocol.error_received(OSError(errno.ENOBUFS, "No buffer space available"))
        with pytest.raises(OSError) as info:
            await asyncio.wait_for(reader, 2)
        assert info.value.errno == errno.ENOBUFS
        assert t._mcast is not None and t._mcast is not old
        # the replacement works: it waits for messages instead of re-raising
        again = asyncio.create_task(t.recv())
        await asyncio.sleep(0.05)
        assert not again.done()
        again.cancel()
        with pytest.raises(asyncio.CancelledError):
            await again
    finally:
        await t.close()
    assert fd_count() == base


async def test_missing_family_and_group() -> None:
    base = fd_count()
    with pytest.raises(HandshakeFamilyUnavailable, match=r"no family 'nosuchfamily'"):
        await PyrouteTransport(family="nosuchfamily").open()
    with pytest.raises(HandshakeFamilyUnavailable, match=r"no multicast group 'tlshd'"):
        await PyrouteTransport(family="nlctrl").open()
    assert fd_count() == base
