# SPDX-License-Identifier: GPL-2.0-or-later
"""Worker processes: handshakes on every core (``handshake.workers`` > 1).

See :mod:`quichsd.daemon` for the design; :mod:`.pool` is the main process's side,
:mod:`.worker` a worker's, :mod:`.zygote` the fork server, :mod:`.replay` the
process-wide 0-RTT anti-replay store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from ..credentials import SessionKeyrings
from ..keyring import KeyringError, join_session_keyring
from ..netlink import NetlinkTransport
from ..service import HandshakeService
from .pool import WorkerHandle, WorkerPool
from .replay import RemoteReplayStore, ReplayStore, SharedAntiReplay
from .worker import ReloadHook, Worker, reload_now
from .zygote import WorkerMain

log = logging.getLogger("quichsd.workers")

__all__ = [
    "ReplayStore",
    "SharedAntiReplay",
    "WorkerHandle",
    "WorkerPool",
    "make_pool",
    "worker_count",
]


def worker_count(configured: int) -> int:
    """``handshake.workers``: 0 means one per CPU this process may run on."""
    if configured > 0:
        return configured
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except OSError:
        return os.cpu_count() or 1


def make_pool(
    count: int,
    service: HandshakeService,
    transport: Callable[[], NetlinkTransport],
    *,
    reload: ReloadHook | None,
    grace: float,
    keyring_names: Callable[[], tuple[str, ...]] = tuple,
) -> WorkerPool:
    """A pool whose workers run ``service.handle`` and send DONE through ``transport()``
    (made in the worker). The service's anti-replay context is replaced by one backed by
    the pool's store, so the main process (unix service) and every worker share it."""
    store = ReplayStore()
    old = service.anti_replay
    service.anti_replay = SharedAntiReplay(store)
    old.close()

    def worker_main(chan: socket.socket, replay: socket.socket) -> int:
        anti = service.anti_replay
        assert isinstance(anti, SharedAntiReplay)
        anti.store = RemoteReplayStore(replay)
        if service.keyrings is not None:
            _own_session_keyring(service.keyrings, keyring_names())
        worker = Worker(chan, service.handle, transport(), reload=reload, grace=grace)
        return asyncio.run(worker.run())

    main: WorkerMain = worker_main
    return WorkerPool(
        count,
        main,
        store=store,
        fallback=service.handle,
        reload=None if reload is None else reload_now(reload),
        deadline=service.timeout,
    )


def _own_session_keyring(keyrings: SessionKeyrings, names: tuple[str, ...]) -> None:
    """A worker links request keyrings per handshake and unlinks them after, counting in
    its own memory: an anonymous session keyring of its own keeps two workers from
    unlinking what the other still uses. The configured keyrings are linked into it."""
    try:
        join_session_keyring(None)
    except KeyringError as exc:
        log.warning("worker %d: no session keyring of its own: %s", os.getpid(), exc)
        return
    keyrings.link_session_keyrings(names)
