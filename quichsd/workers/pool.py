"""The main process's side of the worker processes: hand-over, accounting, respawn.

:meth:`WorkerPool.handle` is the netlink agent's handler when ``handshake.workers`` > 1:
it sends the request and a dup of the accepted fd to the least-loaded worker, closes that
dup and waits for the worker's report. The agent keeps its own fd (``request.sockfd``)
until the report arrives: when the worker has sent DONE the outcome says ``answered`` and
the agent only logs and closes; when the worker died first, the outcome is EIO and the
agent answers DONE from the main process with that fd. (A worker that sent DONE and died
before reporting gets a second DONE from the main process; the kernel refuses it, the
consumer never sees it.) A dead worker is replaced by a new one from the fork server.
With no worker alive the handshake runs in the main process (``fallback``).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..netlink import AcceptRequest, Handler, HandshakeOutcome
from . import channel, zygote
from .replay import ReplayStore, serve_replay_query

log = logging.getLogger("quichsd.workers")

SPAWN_TIMEOUT = 10.0
RESPAWN_BACKOFF_MAX = 5.0


@dataclass(eq=False)
class WorkerHandle:
    pid: int
    chan: socket.socket
    replay: socket.socket
    jobs: dict[int, asyncio.Future[HandshakeOutcome]] = field(default_factory=dict)
    ready: asyncio.Future[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    served: int = 0
    reloads: list[tuple[bool, str]] = field(default_factory=list)
    stats: asyncio.Future[tuple[int, int]] | None = None


class WorkerPool:
    def __init__(
        self,
        count: int,
        worker_main: zygote.WorkerMain,
        *,
        store: ReplayStore,
        fallback: Handler,
        reload: Callable[[], object] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"worker count must be >= 1, got {count}")
        self.count = count
        self.store = store
        self._worker_main = worker_main
        self._fallback = fallback
        self._reload = reload
        self._zygote: tuple[int, socket.socket] | None = None
        self.workers: list[WorkerHandle] = []
        self._ids = itertools.count(1)
        self._rr = 0
        self._stopping = False
        self._spawn_lock: asyncio.Lock | None = None
        self._respawns: set[asyncio.Task[None]] = set()
        self._deaths: list[float] = []
        self._started = False

    # --- life cycle -------------------------------------------------------------------
    def start_fork_server(self) -> None:
        """Fork the fork server; call before the event loop starts (see zygote.py)."""
        if self._zygote is None:
            self._zygote = zygote.start(self._worker_main, self._reload)

    async def start(self) -> None:
        self.start_fork_server()
        results = await asyncio.gather(
            *(self._spawn() for _ in range(self.count)), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                log.error("worker not started: %s", r)
                self._schedule_respawn()
        self._started = True
        log.info("%d of %d worker processes running", len(self.alive()), self.count)

    def alive(self) -> list[WorkerHandle]:
        return [w for w in self.workers if w.ready is not None and w.ready.done()]

    async def _spawn(self) -> WorkerHandle:
        if self._zygote is None:
            raise RuntimeError("the fork server is not running")
        if self._spawn_lock is None:
            self._spawn_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        mine, theirs = channel.pair()
        rmine, rtheirs = channel.pair()
        try:
            async with self._spawn_lock:
                pid = await zygote.spawn(self._zygote[1], theirs, rtheirs)
        except BaseException:
            for s in (mine, rmine):
                s.close()
            raise
        finally:
            theirs.close()
            rtheirs.close()
        ready: asyncio.Future[None] = loop.create_future()
        w = WorkerHandle(pid, mine, rmine, ready=ready)
        self.workers.append(w)
        mine.setblocking(False)
        rmine.setblocking(False)
        loop.add_reader(mine.fileno(), self._on_channel, w)
        loop.add_reader(rmine.fileno(), self._on_replay, w)
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT):
                await asyncio.shield(ready)
        except (TimeoutError, ConnectionError) as exc:
            self._lost(w)
            raise ConnectionError(f"worker {pid} did not start: {exc or 'timeout'}") from None
        log.debug("worker %d started", pid)
        return w

    def reload(self) -> None:
        """Forward SIGHUP to the fork server and every worker (each reloads itself)."""
        pids = ([self._zygote[0]] if self._zygote else []) + [w.pid for w in self.workers]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    async def stop(self, timeout: float) -> None:
        """SIGTERM the workers (they drain within their grace), wait for them to go, then
        stop the fork server."""
        self._stopping = True
        for task in self._respawns:
            task.cancel()
        for w in list(self.workers):
            try:
                os.kill(w.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        waits = [w.gone.wait() for w in self.workers]
        if waits:
            try:
                async with asyncio.timeout(timeout + 1.0):
                    await asyncio.gather(*waits)
            except TimeoutError:
                for w in list(self.workers):
                    log.warning("worker %d did not stop in time: killed", w.pid)
                    self._kill(w.pid, signal.SIGKILL)
                    self._lost(w)
        if self._zygote is not None:
            pid, ctl = self._zygote
            self._zygote = None
            ctl.close()
            await asyncio.get_running_loop().run_in_executor(None, _reap, pid)

    @staticmethod
    def _kill(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # --- hand-over --------------------------------------------------------------------
    def _pick(self) -> WorkerHandle | None:
        alive = self.alive()
        if not alive:
            return None
        self._rr += 1
        n = len(alive)
        return min((alive[(self._rr + i) % n] for i in range(n)), key=lambda w: len(w.jobs))

    async def handle(self, request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        """The agent's handler: run the handshake in a worker (see the module docstring)."""
        w = self._pick()
        if w is None:
            level = logging.WARNING if self._started else logging.DEBUG
            log.log(level, "no worker process ready: handshake runs in the main process")
            return await self._fallback(request, sock)
        jid = next(self._ids)
        fut: asyncio.Future[HandshakeOutcome] = asyncio.get_running_loop().create_future()
        w.jobs[jid] = fut
        try:
            await channel.send(w.chan, ("job", jid, request), [sock.fileno()])
        except OSError as exc:
            del w.jobs[jid]
            log.warning("worker %d: hand-over failed (%s): running in the main process", w.pid, exc)
            self._lost(w)
            return await self._fallback(request, sock)
        sock.close()  # the worker has its own copy; the agent keeps request.sockfd
        try:
            return await fut
        finally:
            w.jobs.pop(jid, None)

    def _on_channel(self, w: WorkerHandle) -> None:
        while True:
            try:
                message, fds = channel.receive(w.chan)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:
                log.error("worker %d: bad message: %s", w.pid, exc)
                self._lost(w)
                return
            for fd in fds:  # workers never send fds
                os.close(fd)
            if message is None:
                self._lost(w)
                return
            self._on_message(w, message)

    def _on_message(self, w: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            _, jid, status, remote, reason, answered = message
            fut = w.jobs.pop(jid, None)
            w.served += 1
            if fut is not None and not fut.done():
                fut.set_result(HandshakeOutcome(status, tuple(remote), reason, answered))
        elif kind == "hello":
            if w.ready is not None and not w.ready.done():
                w.ready.set_result(None)
        elif kind == "reloaded":
            w.reloads.append((bool(message[1]), str(message[2])))
            if message[1]:
                log.info("worker %d: %s", w.pid, message[2])
            else:
                log.error("worker %d kept its old configuration: %s", w.pid, message[2])
        elif kind == "stats":
            if w.stats is not None and not w.stats.done():
                w.stats.set_result((int(message[2]), int(message[3])))
        else:
            log.error("worker %d: unexpected message %r", w.pid, kind)

    def _on_replay(self, w: WorkerHandle) -> None:
        if not serve_replay_query(w.replay, self.store):
            asyncio.get_running_loop().remove_reader(w.replay.fileno())

    def _lost(self, w: WorkerHandle) -> None:
        """A worker's channel closed: answer what it held, replace it unless stopping."""
        if w.gone.is_set():
            return
        w.gone.set()
        loop = asyncio.get_running_loop()
        for s in (w.chan, w.replay):
            loop.remove_reader(s.fileno())
            s.close()
        if w in self.workers:
            self.workers.remove(w)
        was_ready = w.ready is not None and w.ready.done()
        if w.ready is not None and not w.ready.done():
            w.ready.set_exception(ConnectionError("exited before it was ready"))
            w.ready.exception()  # retrieved here; _spawn reports it
        for fut in w.jobs.values():
            if not fut.done():
                reason = f"worker process {w.pid} exited mid-handshake"
                fut.set_result(HandshakeOutcome(errno.EIO, (), reason))
        w.jobs.clear()
        if self._stopping or not was_ready:  # a failed start is retried by its caller
            return
        log.warning("worker %d exited: starting a new one", w.pid)
        self._schedule_respawn()

    def _schedule_respawn(self) -> None:
        task = asyncio.create_task(self._respawn(), name="worker-respawn")
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self) -> None:
        """Start a replacement; retried with a growing delay while workers keep dying."""
        while not self._stopping:
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < 10.0] + [now]
            excess = len(self._deaths) - self.count
            if excess > 0:  # dying in a loop: back off
                await asyncio.sleep(min(0.1 * 2**excess, RESPAWN_BACKOFF_MAX))
            if self._stopping:
                return
            try:
                await self._spawn()
                return
            except Exception as exc:
                log.error("worker not replaced: %s", exc)

    async def stats(self, w: WorkerHandle) -> tuple[int, int]:
        """(open fds, jobs in flight) of a worker process, as it reports them."""
        w.stats = asyncio.get_running_loop().create_future()
        await channel.send(w.chan, ("stats",))
        async with asyncio.timeout(5):
            return await w.stats


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
