# SPDX-License-Identifier: GPL-2.0-or-later
"""The fork server: a small process that forks worker processes on request.

It is forked from the main process before the main process starts its event loop,
opens netlink sockets or accepts a single handshake fd, so it holds none of them: a
worker forked from it (at start, or later to replace one that died, while the main
process is busy with a handshake storm) inherits the loaded config, credentials and
GnuTLS state and nothing else. Forking the main process itself at that point would copy
every accepted fd in flight (keeping those kernel sockets alive in the worker) and the
running event loop's state.

Life cycle: it asks for SIGTERM when the main process dies (PR_SET_PDEATHSIG) and exits
when its control socket reaches EOF; each worker asks for SIGTERM when the fork server
dies, so nothing outlives the daemon, and a worker told to stop still answers what it
holds. SIGHUP makes it reload (so later workers start with the current config).

A fork server that dies (killed, crashed) is reaped by the main process and started
again (:meth:`quichsd.workers.pool.WorkerPool`), necessarily from the running main
process. Its child then gets rid of what the main process opened since the first fork
server was started (accepted handshake sockets, netlink and unix sockets, worker
channels, the event loop's fds): every fd that is not one of those open at that first
fork (:func:`fd_snapshot`, same inode) is pointed at ``/dev/null`` (``dup2``), so no
kernel socket is kept alive by it, and the fd numbers stay taken: a cached number (a
library's socket, a Python object of the parent's) can never reach a new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from types import FrameType

from .. import signals
from ..heap import release_free_heap
from ..libc import libc

log = logging.getLogger("quichsd.workers")

PR_SET_PDEATHSIG = 1
_PID = struct.Struct("=i")

#: runs in a freshly forked worker with its (channel, anti-replay) sockets; returns the
#: exit code
WorkerMain = Callable[[socket.socket, socket.socket], int]


def set_parent_death_signal(sig: int, parent: int) -> None:
    """Get ``sig`` when the parent dies; exit at once if it already has."""
    if libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        os._exit(0)


def reset_after_fork() -> None:
    """Forget the parent's event loop and signal set-up (the fork may happen while the
    parent runs a loop, e.g. under a test runner)."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for sig in (*signals.STOP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signals.ignore_all()  # until the worker's loop handles them (quichsd.signals)
    asyncio._set_running_loop(None)
    asyncio.set_event_loop(None)


def _reap(_sig: int, _frame: FrameType | None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            how = f"signal {-code}" if code < 0 else f"status {code}"
            log.warning("worker %d exited with %s", pid, how)


def serve(ctl: socket.socket, worker_main: WorkerMain, reload: Callable[[], object] | None) -> int:
    """The fork server's loop (in its own process)."""
    signal.signal(signal.SIGCHLD, _reap)
    for sig in (signal.SIGINT, signal.SIGQUIT):  # the main process decides when we stop
        signal.signal(sig, signal.SIG_IGN)

    def on_hup(_sig: int, _frame: FrameType | None) -> None:
        if reload is not None:
            try:
                reload()
            except Exception as exc:
                log.error("fork server: reload refused: %s", exc)
            release_free_heap()

    signal.signal(signal.SIGHUP, on_hup)
    ctl.setblocking(True)
    release_free_heap()  # workers are forked from this heap: without the free pages
    me = os.getpid()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, 16, 2)
        except OSError as exc:
            log.error("fork server: control socket: %s", exc)
            return 1
        if not data:
            return 0
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ctl.close()
                reset_after_fork()
                set_parent_death_signal(signal.SIGTERM, me)
                code = worker_main(socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1]))
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        ctl.send(_PID.pack(pid))


#: fd -> (st_dev, st_ino) of the fds open in a process
FdSnapshot = dict[int, tuple[int, int]]


def fd_snapshot() -> FdSnapshot:
    out: FdSnapshot = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            st = os.fstat(int(name))
            out[int(name)] = (st.st_dev, st.st_ino)
    return out


def _forget_fds(keep: FdSnapshot, own: int) -> None:
    """In a fork server forked from the running main process: every fd but ``own`` and
    those of ``keep`` (same inode) now names /dev/null (see the module docstring)."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd, ident in fd_snapshot().items():
        if fd in (own, null) or keep.get(fd) == ident:
            continue
        with contextlib.suppress(OSError):
            os.dup2(null, fd, inheritable=False)
    os.close(null)


def start(
    worker_main: WorkerMain,
    reload: Callable[[], object] | None,
    keep: FdSnapshot | None = None,
) -> tuple[int, socket.socket]:
    """Fork the fork server; returns its pid and the main process's control socket.
    ``keep``: a restart from the running main process keeps only these fds."""
    main_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            main_end.close()
            if keep is not None:
                _forget_fds(keep, server_end.fileno())
            reset_after_fork()
            set_parent_death_signal(signal.SIGTERM, parent)
            code = serve(server_end, worker_main, reload)
        except BaseException:
            log.exception("fork server failed")
        finally:
            logging.shutdown()
            os._exit(code)
    server_end.close()
    return pid, main_end


async def spawn(ctl: socket.socket, chan: socket.socket, replay: socket.socket) -> int:
    """Ask the fork server for a worker with these sockets; returns the worker's pid."""
    loop = asyncio.get_running_loop()
    ctl.setblocking(False)
    socket.send_fds(ctl, [b"w"], [chan.fileno(), replay.fileno()])
    async with asyncio.timeout(10):
        data = await loop.sock_recv(ctl, _PID.size)
    if len(data) != _PID.size:
        raise ConnectionError("the fork server is gone")
    return int(_PID.unpack(data)[0])
