# SPDX-License-Identifier: GPL-2.0-or-later
"""Messages between the main process and a worker: pickled tuples on a SOCK_SEQPACKET
socketpair, an accepted fd riding along with a job (SCM_RIGHTS).

Pickle is safe here: both ends are the same program, forked from one process, and the
socketpair is never reachable by anything else.

main -> worker: ``("job", id, AcceptRequest)`` + 1 fd; ``("stats",)``; ``("ping", n)``.
worker -> main: ``("hello", pid)``; ``("done", id, status, remote_auth, reason, answered, fields)``;
``("reloaded", ok, detail)``; ``("stats", pid, open_fds, in_flight)``; ``("pong", n)``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
from typing import Any

MAX_MESSAGE = 1 << 16


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"worker channel message of {len(data)} bytes (limit {MAX_MESSAGE})")
    return data


def receive(sock: socket.socket) -> tuple[tuple[Any, ...] | None, list[int]]:
    """One message and its fds; ``(None, [])`` at EOF. Raises BlockingIOError if none.

    A peer that closed with messages of ours still unread (a worker SIGKILLed with a
    heartbeat ping in its queue) shows as ECONNRESET before the EOF: that is the same
    end of the channel, not a bad message."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except ConnectionResetError:
        return None, []
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = pickle.loads(data)
    if not isinstance(message, tuple) or not message:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"worker channel: unexpected message {type(message).__name__}")
    return message, fds


async def send(sock: socket.socket, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
    """Send one message on a non-blocking socket, waiting while its buffer is full."""
    data = encode(message)
    loop = asyncio.get_running_loop()
    while True:
        try:
            socket.send_fds(sock, [data], fds or [])
            return
        except BlockingIOError:
            writable: asyncio.Future[None] = loop.create_future()
            loop.add_writer(sock.fileno(), _set_once, writable)
            try:
                await writable
            finally:
                loop.remove_writer(sock.fileno())


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
