# SPDX-License-Identifier: GPL-2.0-or-later
"""The main process's handle on the fork server (:mod:`.zygote`): started before the
event loop, watched once the loop runs (a pidfd), reaped and started again when it dies.

Killing the fork server used to leave a zombie and a pool that never recovered: its
workers stop when it dies (PR_SET_PDEATHSIG), and no replacement could be forked. Now its
exit is seen at once, the process is reaped, a new fork server is forked from the main
process (with the fd hygiene described in :mod:`.zygote`), after a delay that grows while
it keeps dying, and ``on_restart`` lets the pool start the workers it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

from . import zygote

log = logging.getLogger("quichsd.workers")

RESTART_BACKOFF_MAX = 5.0


class ForkServer:
    def __init__(
        self,
        worker_main: zygote.WorkerMain,
        reload: Callable[[], object] | None,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self._worker_main = worker_main
        self._reload = reload
        self._on_restart = on_restart
        self.pid: int | None = None
        self.ctl: socket.socket | None = None
        self._keep: zygote.FdSnapshot | None = None
        self._pidfd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._exits: list[float] = []
        self._stopping = False
        self.restarts = 0

    def start(self) -> None:
        """The first fork server; call before the event loop starts (see zygote.py)."""
        if self.pid is None and self._keep is None:
            self._keep = zygote.fd_snapshot()
            self.pid, self.ctl = zygote.start(self._worker_main, self._reload)

    def watch(self) -> None:
        """From the event loop: notice the fork server's exit (idempotent)."""
        if self.pid is None or self._pidfd is not None:
            return
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError as exc:  # (kernel < 5.3) a dead fork server then stays dead
            log.warning("fork server %d cannot be watched: %s", self.pid, exc)
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._exited)

    async def spawn(self, chan: socket.socket, replay: socket.socket) -> int:
        if self.ctl is None:
            raise ConnectionError("the fork server is not running")
        return await zygote.spawn(self.ctl, chan, replay)

    def reload(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _exited(self) -> None:
        pid = self.pid
        self._unwatch()
        if pid is None:
            return
        how = "an unknown status"
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {-code}" if code < 0 else f"status {code}"
        self.pid = None
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self._stopping:
            return
        now = time.monotonic()
        self._exits = [t for t in self._exits if now - t < 10.0] + [now]
        delay = min(0.05 * 2 ** (len(self._exits) - 1), RESTART_BACKOFF_MAX)
        log.error("fork server %d exited with %s: starting a new one in %.2f s", pid, how, delay)
        self._timer = asyncio.get_running_loop().call_later(delay, self._restart)

    def _restart(self) -> None:
        self._timer = None
        if self._stopping or self.pid is not None:
            return
        self.pid, self.ctl = zygote.start(self._worker_main, self._reload, keep=self._keep)
        self.restarts += 1
        log.warning("fork server %d started (replacement)", self.pid)
        self.watch()
        self._on_restart()

    async def stop(self) -> None:
        """Close its control socket (it exits on EOF) and reap it."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
        self._unwatch()
        pid, ctl = self.pid, self.ctl
        self.pid = self.ctl = None
        if ctl is not None:
            ctl.close()
        if pid is not None:
            await asyncio.get_running_loop().run_in_executor(None, _reap, pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
