# SPDX-License-Identifier: GPL-2.0-or-later
"""What both pyroute2 transports share: a message pyroute2 frames but leaves undecoded
(the codec parses it), the raw bytes of a received one, and errors as OSError.

:mod:`quichsd.netlink.pyroute` (pyroute2 0.9, asyncio) and
:mod:`quichsd.netlink.pyroute07` (pyroute2 0.7, Debian's) both import it.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

from .lean import import_lean

import_lean()  # before any pyroute2 import: see quichsd.netlink.lean

from pyroute2.netlink import nlmsg  # noqa: E402

from .. import uapi  # noqa: E402
from . import codec  # noqa: E402
from .transport import HandshakeFamilyUnavailable  # noqa: E402


class _RawGenlMsg(nlmsg):  # type: ignore[misc]
    """A message pyroute2 frames and routes but whose payload it leaves alone."""

    def decode(self) -> None:
        fields = (0, 0, 0, 0, 0)
        if len(self.data) - self.offset >= codec.NLMSG_HDR.size:
            fields = codec.NLMSG_HDR.unpack_from(self.data, self.offset)
        names = ("length", "type", "flags", "sequence_number", "pid")
        self["header"] = dict(zip(names, fields, strict=True))
        self.length = max(fields[0], 4)
        self.decoded = True

    def encode(self) -> None:
        hdr = self["header"]
        data = codec.frame(
            hdr["type"], hdr["flags"], hdr["sequence_number"], hdr["pid"], self["body"]
        )
        self.data.extend(data)
        self.length = hdr["length"] = len(data)


def _raw(msg: Any) -> bytes:
    """The whole nlmsg a parsed pyroute2 message came from."""
    length = struct.unpack_from("=I", msg.data, msg.offset)[0]
    return bytes(msg.data[msg.offset : msg.offset + length])


def _os_error(exc: BaseException) -> OSError:
    if isinstance(exc, OSError):
        return exc
    code = getattr(exc, "code", None) or errno.EIO
    return OSError(code, f"netlink: {os.strerror(code)}")


def bind_error(exc: Any, family: str) -> Exception:
    """What a failed bind of ``family`` (a pyroute2 NetlinkError) means to the agent: the
    family is absent (ENOENT; named only when it is not the handshake family), else the
    error as an OSError."""
    if getattr(exc, "code", None) == errno.ENOENT:
        other = family != uapi.HANDSHAKE_FAMILY_NAME
        return HandshakeFamilyUnavailable(f"no family {family!r}" if other else None)
    return _os_error(exc)


def join_group(sock: Any, group: str) -> None:
    """Join the multicast ``group`` of the family ``sock`` is bound to, or say it lacks it."""
    if group not in sock.mcast_groups:
        raise HandshakeFamilyUnavailable(
            f"no multicast group {group!r} (groups: {sorted(sock.mcast_groups)})"
        )
    sock.add_membership(group)
