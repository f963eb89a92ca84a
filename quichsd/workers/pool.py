# SPDX-License-Identifier: GPL-2.0-or-later
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

No request waits on a worker for ever. Each hand-over is bounded by the request's own
deadline (``deadline(request)``, the handshake timeout) plus ``margin``: a worker that has
not reported by then (hung in a call, SIGSTOPped, its channel full) is SIGKILLed (which
also closes its copy of the fd, so the kernel socket is not kept alive by it) and the
main process answers DONE ETIMEDOUT itself with its fd; the worker's other jobs get EIO,
and a replacement is started. Between jobs a heartbeat (``("ping", n)`` every
``heartbeat`` seconds) finds a worker that stopped answering even while idle: no pong
within ``unresponsive_after`` seconds and it is killed and replaced the same way; no new
job is handed to a worker whose ping is overdue while another one answers. The fork
server itself is watched, reaped and restarted (:mod:`.forkserver`), and the workers it
took with it are started again.
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
from .forkserver import ForkServer
from .replay import ReplayStore, serve_replay_query

log = logging.getLogger("quichsd.workers")

SPAWN_TIMEOUT = 10.0
RESPAWN_BACKOFF_MAX = 5.0
#: a worker must answer a job this long after the request's own deadline
ANSWER_MARGIN = 2.0
HEARTBEAT = 1.0
UNRESPONSIVE_AFTER = 5.0
DEFAULT_DEADLINE = 10.0


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
    ping_sent: float | None = None  # loop time of the ping not answered yet


class WorkerPool:
    def __init__(
        self,
        count: int,
        worker_main: zygote.WorkerMain,
        *,
        store: ReplayStore,
        fallback: Handler,
        reload: Callable[[], object] | None = None,
        deadline: Callable[[AcceptRequest], float] = lambda _r: DEFAULT_DEADLINE,
        margin: float = ANSWER_MARGIN,
        heartbeat: float = HEARTBEAT,
        unresponsive_after: float = UNRESPONSIVE_AFTER,
    ) -> None:
        """``deadline(request)``: the handshake's own timeout in seconds (see above)."""
        if count < 1:
            raise ValueError(f"worker count must be >= 1, got {count}")
        self.count = count
        self.store = store
        self._worker_main = worker_main
        self._fallback = fallback
        self._reload = reload
        self._deadline = deadline
        self._margin = margin
        self._heartbeat = heartbeat
        self._unresponsive_after = unresponsive_after
        self._beat: asyncio.Task[None] | None = None
        self.fork_server = ForkServer(worker_main, reload, on_restart=self._top_up)
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
        self.fork_server.start()

    async def start(self) -> None:
        self.start_fork_server()
        self.fork_server.watch()
        self._beat = asyncio.create_task(self._heartbeats(), name="worker-heartbeat")
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
        if self._spawn_lock is None:
            self._spawn_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        mine, theirs = channel.pair()
        rmine, rtheirs = channel.pair()
        try:
            async with self._spawn_lock:
                pid = await self.fork_server.spawn(theirs, rtheirs)
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
        self.fork_server.reload()
        for w in self.workers:
            self._kill(w.pid, signal.SIGHUP)

    async def stop(self, timeout: float) -> None:
        """SIGTERM the workers (they drain within their grace), wait for them to go, then
        stop the fork server."""
        self._stopping = True
        if self._beat is not None:
            self._beat.cancel()
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
        await self.fork_server.stop()

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
        overdue = asyncio.get_running_loop().time() - self._heartbeat
        answering = [w for w in alive if w.ping_sent is None or w.ping_sent > overdue]
        alive = answering or alive
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
        limit = self._deadline(request) + self._margin
        fut: asyncio.Future[HandshakeOutcome] = asyncio.get_running_loop().create_future()
        w.jobs[jid] = fut
        try:
            async with asyncio.timeout(limit):
                try:
                    await channel.send(w.chan, ("job", jid, request), [sock.fileno()])
                except OSError as exc:
                    failed: OSError | None = exc
                else:
                    failed = None
                    sock.close()  # the worker has its own copy; the agent keeps request.sockfd
                    return await asyncio.shield(fut)  # the timeout must not cancel fut
        except TimeoutError:
            if fut.done():  # answered (or lost) as the time ran out
                return fut.result()
            why = f"did not answer within {limit:.1f} s (the request's deadline + {self._margin} s)"
            self._unresponsive(w, why)
            return HandshakeOutcome(errno.ETIMEDOUT, (), f"worker process {w.pid} {why}")
        finally:
            w.jobs.pop(jid, None)
        log.warning("worker %d: hand-over failed (%s): running in the main process", w.pid, failed)
        self._lost(w)
        return await self._fallback(request, sock)

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
            _, jid, status, remote, reason, answered, fields = message
            fut = w.jobs.pop(jid, None)
            w.served += 1
            if fut is not None and not fut.done():
                outcome = HandshakeOutcome(status, tuple(remote), reason, answered, tuple(fields))
                fut.set_result(outcome)
        elif kind == "hello":
            if w.ready is not None and not w.ready.done():
                w.ready.set_result(None)
        elif kind == "reloaded":
            w.reloads.append((bool(message[1]), str(message[2])))
            if message[1]:
                log.info("worker %d: %s", w.pid, message[2])
            else:
                log.error("worker %d kept its old configuration: %s", w.pid, message[2])
        elif kind == "pong":
            w.ping_sent = None
        elif kind == "stats":
            if w.stats is not None and not w.stats.done():
                w.stats.set_result((int(message[2]), int(message[3])))
        else:
            log.error("worker %d: unexpected message %r", w.pid, kind)

    def _on_replay(self, w: WorkerHandle) -> None:
        if not serve_replay_query(w.replay, self.store):
            asyncio.get_running_loop().remove_reader(w.replay.fileno())

    def _unresponsive(self, w: WorkerHandle, why: str) -> None:
        """Kill a worker that stopped answering (SIGKILL works on a stopped process too;
        its fds close with it) and replace it; the caller answers the request."""
        log.error("worker %d %s: killed, starting a new one", w.pid, why)
        self._kill(w.pid, signal.SIGKILL)
        self._lost(w, f"worker process {w.pid} stopped answering and was killed")

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        while not self._stopping:
            await asyncio.sleep(self._heartbeat)
            now = loop.time()
            for w in self.alive():
                if w.ping_sent is not None:
                    if now - w.ping_sent > self._unresponsive_after:
                        self._unresponsive(w, f"answered no ping for {self._unresponsive_after} s")
                    continue
                seq += 1
                w.ping_sent = now
                try:  # never waits: a worker that does not read its channel gets no ping
                    socket.send_fds(w.chan, [channel.encode(("ping", seq))], [])
                except BlockingIOError:
                    pass
                except OSError:
                    self._lost(w)

    def _top_up(self) -> None:
        """After a fork server restart: start the workers the pool is short of."""
        missing = self.count - len(self.workers) - len(self._respawns)
        for _ in range(max(missing, 0)):
            self._schedule_respawn()

    def _lost(self, w: WorkerHandle, why: str | None = None) -> None:
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
                reason = why or f"worker process {w.pid} exited mid-handshake"
                fut.set_result(HandshakeOutcome(errno.EIO, (), reason))
        w.jobs.clear()
        if self._stopping or not was_ready:  # a failed start is retried by its caller
            return
        if why is None:
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
