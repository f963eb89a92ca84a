# SPDX-License-Identifier: GPL-2.0-or-later
"""Seams for the worker-process tests.

``RecordingTransport`` is the netlink request socket of a *worker* process: it frames
each request exactly as a netlink socket would send it and mails it, with the sender's
pid and the inode of the socket its DONE's SOCKFD names *in the sender's own fd table*,
to the test process over a datagram socket inherited through fork. ``Records`` reads
them back.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
from dataclasses import dataclass

FAMILY = 0x21
PID = 777


def sockfd_of_done(message: bytes) -> int:
    """SOCKFD (attr 2) of a framed DONE (nlmsghdr 16 + genl 4 + attrs)."""
    off = 20
    while off + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, off)
        if kind == 2:
            return int(struct.unpack_from("=i", message, off + 4)[0])
        off += (length + 3) & ~3
    raise AssertionError(f"no SOCKFD in {message.hex()}")


def inode(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


@dataclass
class Record:
    pid: int
    message: bytes
    ino: int | None  # of the fd DONE names, looked up in the sender's fd table

    @property
    def seq(self) -> int:
        return int(struct.unpack_from("=I", self.message, 8)[0])

    @property
    def sockfd(self) -> int:
        return sockfd_of_done(self.message)


class RecordingTransport:
    """NetlinkTransport for a worker: DONE requests are recorded, never answered with
    an error."""

    def __init__(self, out: socket.socket) -> None:
        self._out = out
        self._seq = 0

    @property
    def family_id(self) -> int:
        return FAMILY

    async def open(self) -> None:
        pass

    async def recv(self) -> list[bytes]:
        raise OSError(22, "a worker reads no multicast")

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        self._seq += 1
        msg = struct.pack("=IHHII", 16 + len(body), FAMILY, flags, self._seq, PID) + body
        ino = inode(sockfd_of_done(msg)) if body[0] == 3 else None
        self._out.send(pickle.dumps(Record(os.getpid(), msg, ino)))
        await asyncio.sleep(0)
        return []

    async def close(self) -> None:
        pass


class Records:
    def __init__(self) -> None:
        self.theirs, self.mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.mine.setblocking(False)
        self.got: list[Record] = []

    def poll(self) -> list[Record]:
        while True:
            try:
                data = self.mine.recv(1 << 16)
            except BlockingIOError:
                return self.got
            self.got.append(pickle.loads(data))

    def close(self) -> None:
        self.theirs.close()
        self.mine.close()
