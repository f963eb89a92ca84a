# SPDX-License-Identifier: GPL-2.0-or-later
"""One worker process: runs the handshakes the main process hands it, sends their DONE.

A worker receives ``("job", id, AcceptRequest)`` with the accepted fd (now in *its* fd
table), runs :meth:`HandshakeService.handle` on it, sends DONE through its own netlink
request socket naming its own fd number (the kernel resolves DONE's fd in the sender's
table, docs/kernel-interfaces.md §1.6), closes the fd and reports the status to the main
process, which logs the completion line and keeps the in-flight accounting.

Signals: SIGHUP reloads config and credentials (the reload hook) and reports the result:
the files are read and checked in a thread, so the loop keeps answering the main process's
heartbeat and running handshakes meanwhile (a slow reload on a loaded machine must not get
the worker killed as unresponsive), and only the swap runs on the loop;
SIGTERM/SIGINT, or the main process going away (channel EOF), stop it: jobs in flight get
``grace`` seconds, the rest are cancelled (DONE EIO "agent shutting down"), then it exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
from collections.abc import Callable

from .. import signals
from ..netlink import Handler, NetlinkTransport
from ..netlink.agent import format_peer, run_handler, send_done
from ..netlink.codec import AcceptRequest
from . import channel

log = logging.getLogger("quichsd.workers")

#: loads and checks the new config and credentials (run in a thread; raises with the reason
#: if refused) and returns the step that puts them in place (run on the loop), which returns
#: a one-line description of what was reloaded
ReloadHook = Callable[[], Callable[[], str]]


def reload_now(hook: ReloadHook) -> Callable[[], str]:
    """Both steps of ``hook`` at once, for a process without a loop (the fork server)."""
    return lambda: hook()()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Worker:
    def __init__(
        self,
        chan: socket.socket,
        handler: Handler,
        transport: NetlinkTransport,
        *,
        reload: ReloadHook | None,
        grace: float,
    ) -> None:
        self._chan = chan
        self._handler = handler
        self._transport = transport
        self._reload = reload
        self._grace = grace
        self._jobs: set[asyncio.Task[None]] = set()
        self._reports: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._chan_open = True
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        signals.install(loop, self._stopping.set, self._on_sighup, f"worker {os.getpid()}: ")
        try:
            await self._transport.open()
        except Exception as exc:
            log.error("worker %d: cannot open the netlink request socket: %s", os.getpid(), exc)
            return 1
        self._chan.setblocking(False)
        loop.add_reader(self._chan.fileno(), self._readable)
        await self._report(("hello", os.getpid()))
        await self._stopping.wait()
        if self._jobs:
            _done, late = await asyncio.wait(set(self._jobs), timeout=self._grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._chan_open:
            loop.remove_reader(self._chan.fileno())
        await self._transport.close()
        return 0

    def _readable(self) -> None:
        while self._chan_open:
            try:
                message, fds = channel.receive(self._chan)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:
                log.error("worker %d: bad message from the main process: %s", os.getpid(), exc)
                continue
            if message is None:  # the main process is gone: finish what we hold, then exit
                asyncio.get_running_loop().remove_reader(self._chan.fileno())
                self._chan_open = False
                self._stopping.set()
                return
            self._dispatch(message, fds)

    def _dispatch(self, message: tuple[object, ...], fds: list[int]) -> None:
        kind = message[0]
        if kind == "job" and len(fds) == 1 and isinstance(message[2], AcceptRequest):
            jid = message[1]
            assert isinstance(jid, int)
            task = asyncio.create_task(self._job(jid, message[2], fds[0]), name="worker-job")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
            return
        for fd in fds:
            os.close(fd)
        if kind == "ping":  # the main process's heartbeat
            self._spawn_report(("pong", message[1]))
        elif kind == "stats":
            self._spawn_report(("stats", os.getpid(), open_fds(), len(self._jobs)))
        else:
            log.error("worker %d: unexpected message %r", os.getpid(), kind)

    async def _job(self, jid: int, request: AcceptRequest, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:  # not answered here: the main process answers with its fd
            os.close(fd)
            why = f"handed-over fd: {exc}"
            await self._report(("done", jid, errno.EINVAL, (), why, False, ()))
            return
        request = dataclasses.replace(request, sockfd=fd)  # DONE names our fd number
        try:
            status, remote, reason, _, fields = await run_handler(self._handler, request, sock)
            failed = await send_done(self._transport, fd, status, remote, format_peer(sock))
        finally:
            sock.close()
        reason = "; ".join(r for r in (reason, failed) if r) or None
        await self._report(("done", jid, status, remote, reason, True, fields))

    async def _report(self, message: tuple[object, ...]) -> None:
        if not self._chan_open:
            return
        try:
            await channel.send(self._chan, message)
        except OSError as exc:
            log.warning("worker %d: cannot report to the main process: %s", os.getpid(), exc)

    def _spawn_report(self, message: tuple[object, ...]) -> None:
        task = asyncio.create_task(self._report(message))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    def _on_sighup(self) -> None:
        if self._reloading is not None:  # a signal during a reload: one more after it
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reloads())

    async def _reloads(self) -> None:
        try:
            self._reload_again = True
            while self._reload_again:
                self._reload_again = False
                await self._report(await self._reload_once())
        finally:
            self._reloading = None

    async def _reload_once(self) -> tuple[object, ...]:
        if self._reload is None:
            return ("reloaded", False, "no reload hook")
        try:
            apply = await asyncio.get_running_loop().run_in_executor(None, self._reload)
            detail = apply()
        except Exception as exc:
            log.error("worker %d: reload refused: %s", os.getpid(), exc)
            return ("reloaded", False, str(exc))
        return ("reloaded", True, detail)
