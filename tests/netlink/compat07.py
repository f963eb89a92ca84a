# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks of :mod:`quichsd.netlink.pyroute07` against this machine's kernel, run by
``test_nlpyroute07.py`` under an interpreter whose pyroute2 is 0.7 (Debian's
python3-pyroute2: 0.7.2 in Debian 12, 0.7.7 in Debian 13). Stdlib and quichsd only, so it
needs no pytest there. Like test_nlpyroute.py it talks to ``nlctrl`` (id 0x10, group
``notify``), which every kernel has. Prints one line per check; exit 0 if all passed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import sys

from quichsd.netlink.codec import iter_attrs, parse_message
from quichsd.netlink.pyroute import AsyncGenericNetlinkSocket
from quichsd.netlink.pyroute07 import Pyroute07Transport
from quichsd.netlink.transport import HandshakeFamilyUnavailable
from quichsd.netlink.transports import netlink_transport

GENL_ID_CTRL = 0x10
NETLINK_GENERIC = 16
CTRL_CMD_NEWFAMILY, CTRL_CMD_GETFAMILY = 1, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2


def getfamily(name: str) -> bytes:
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), CTRL_ATTR_FAMILY_NAME) + raw + b"\0" * (-len(raw) % 4)
    return struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def check_factory_picks_the_07_transport() -> None:
    assert AsyncGenericNetlinkSocket is None, "this pyroute2 has the asyncio API"
    t = netlink_transport(family="nlctrl", group="notify")
    assert isinstance(t, Pyroute07Transport), type(t)


async def check_request_reply_is_returned_raw() -> None:
    base = fd_count()
    t = Pyroute07Transport(family="nlctrl", group="notify")
    await t.open()
    try:
        assert t.family_id == GENL_ID_CTRL
        replies = await t.request(getfamily("nlctrl"), 0x01)
        assert len(replies) == 1, replies
        m = parse_message(replies[0])
        assert (m.nl_type, m.cmd) == (GENL_ID_CTRL, CTRL_CMD_NEWFAMILY)
        assert m.seq != 0
        attrs = dict(iter_attrs(m.attrs))
        assert attrs[CTRL_ATTR_FAMILY_ID] == struct.pack("=H", GENL_ID_CTRL)
        assert attrs[CTRL_ATTR_FAMILY_NAME] == b"nlctrl\0"
        many = await asyncio.gather(*(t.request(getfamily("nlctrl"), 0x01) for _ in range(10)))
        assert all(len(r) == 1 for r in many)
        assert len({parse_message(r[0]).seq for r in many}) == 10
        # with NLM_F_ACK (as DONE is sent) the ACK is not returned
        assert len(await t.request(getfamily("nlctrl"), 0x01 | 0x04)) == 1
    finally:
        await t.close()
    assert fd_count() == base, (fd_count(), base)


async def check_error_reply_raises_oserror_with_errno() -> None:
    t = Pyroute07Transport(family="nlctrl", group="notify")
    await t.open()
    try:
        try:
            await t.request(getfamily("nosuchfamily"), 0x01)
        except OSError as exc:
            assert exc.errno == errno.ENOENT, exc
        else:
            raise AssertionError("no error for an unknown family")
        assert len(await t.request(getfamily("nlctrl"), 0x01)) == 1
    finally:
        await t.close()


async def check_recv_waits_without_blocking_the_loop() -> None:
    t = Pyroute07Transport(family="nlctrl", group="notify")
    await t.open()
    try:
        reader = asyncio.create_task(t.recv())
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 10 and not reader.done()
        # a datagram arrives (unicast to the socket's netlink port): returned whole, raw
        msg = struct.pack("=IHHII", 20, GENL_ID_CTRL, 0, 0, 0) + struct.pack("=BBH", 99, 1, 0)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as poke:
            poke.sendto(msg, (t._mcast.getsockname()[0], 0))
        got = await asyncio.wait_for(reader, 2)
        assert got == [msg], got
    finally:
        await t.close()


async def check_receive_error_replaces_and_rejoins() -> None:
    """A receive error (ENOBUFS after an overrun) is raised once; the multicast socket is
    replaced, joined again, and the replacement waits for messages."""
    base = fd_count()
    t = Pyroute07Transport(family="nlctrl", group="notify")
    await t.open()
    poke = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
    try:
        old = t._mcast

        def overrun(*a: object, **k: object) -> object:
            raise OSError(errno.ENOBUFS, "No buffer space available")

        old.get = overrun  # what pyroute2's get() raises after an overrun
        reader = asyncio.create_task(t.recv())
        await asyncio.sleep(0.02)
        assert not reader.done()
        # a real datagram makes the socket readable (unicast to its netlink port)
        portid = old.getsockname()[0]
        poke.sendto(struct.pack("=IHHII", 16, 0x10, 0, 1, 0), (portid, 0))
        try:
            await asyncio.wait_for(reader, 2)
        except OSError as exc:
            assert exc.errno == errno.ENOBUFS, exc
        else:
            raise AssertionError("no error raised")
        assert t._mcast is not None and t._mcast is not old
        again = asyncio.create_task(t.recv())
        await asyncio.sleep(0.05)
        assert not again.done()
        again.cancel()
        try:
            await again
        except asyncio.CancelledError:
            pass
    finally:
        poke.close()
        await t.close()
    assert fd_count() == base, (fd_count(), base)


async def check_missing_family_and_group() -> None:
    base = fd_count()
    for kw, want in (
        (dict(family="nosuchfamily"), "no family 'nosuchfamily'"),
        (dict(family="nlctrl"), "no multicast group 'tlshd'"),
    ):
        try:
            await Pyroute07Transport(**kw).open()
        except HandshakeFamilyUnavailable as exc:
            assert want in str(exc), exc
        else:
            raise AssertionError(f"{kw} opened")
    assert fd_count() == base


CHECKS = [
    check_factory_picks_the_07_transport,
    check_request_reply_is_returned_raw,
    check_error_reply_raises_oserror_with_errno,
    check_recv_waits_without_blocking_the_loop,
    check_receive_error_replaces_and_rejoins,
    check_missing_family_and_group,
]


def main() -> int:
    from importlib.metadata import version

    print(f"pyroute2 {version('pyroute2')} python {sys.version.split()[0]}")
    failed = 0
    for check in CHECKS:
        try:
            asyncio.run(check())
            print(f"ok {check.__name__}")
        except Exception as exc:  # noqa: BLE001 - report every check
            failed += 1
            print(f"FAILED {check.__name__}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
