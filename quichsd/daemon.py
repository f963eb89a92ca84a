# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon: the composition root and the process life cycle.

Concurrency model: one asyncio event loop in one process, GnuTLS steps run inline on
it. The netlink agent reads the ``tlshd`` multicast group and ACCEPTs requests (at most
``handshake.max_in_flight`` in flight); each accepted request is one task running the
handshake driver, and every GnuTLS step (``gnutls_handshake_write`` + ``gnutls_handshake``
for one received flight) runs to completion on the loop between two awaits. Handshakes
interleave step by step: one never waits for another to finish, only for the step in
progress, and netlink reading is delayed by at most one step. Measured (bench/, P-256
ECDSA + X25519, 2-CPU VM): a server step p50 240 µs / max 0.37 ms; a client step (chain
verification) p99 0.52 ms / max 0.67 ms. An RSA server key adds its signature to the
server step (openssl speed, same VM: RSA-2048 0.66 ms, RSA-4096 4.6 ms): fine for 2048,
a per-handshake stall of ~5 ms with 4096. Threads were measured and rejected: a
ThreadPoolExecutor(2) around the steps cut throughput to x0.6-0.8 of inline (GIL
hand-offs plus an executor round trip per step). What handshakes share lives here: the
settings+credentials snapshot, the process-wide 0-RTT anti-replay context, the GnuTLS
priority cache, and the session keyring links.

More cores: ``handshake.workers`` > 1 (0 = one per CPU) runs handshakes in worker
processes (:mod:`quichsd.workers`); 1 (the default) is the single process above.
* The main process keeps the netlink reader/drainer and sends every ACCEPT, so READY,
  the drain and ``max_in_flight`` stay in one place. ACCEPT installs the fd in the main
  process (docs/kernel-interfaces.md §1.6); the agent's handler (``WorkerPool.handle``) sends
  the decoded request and a dup of the fd to the least-loaded worker (SCM_RIGHTS on a
  SEQPACKET socketpair) and closes the dup; the agent keeps the original.
* The worker runs ``HandshakeService.handle`` on its event loop as above, sends DONE
  itself through its own netlink request socket naming its own fd (DONE's fd is resolved
  in the sender's fd table), closes the fd and reports the status; the main process logs
  the completion line and closes its fd (``HandshakeOutcome.answered``: no second DONE).
* A worker that dies mid-handshake: the main process still holds the fd, so it answers
  DONE EIO itself, and the fork server starts a replacement. (Without that kept fd the
  request would be stranded until the kernel consumer's own timeout cancels it -- the
  kernel never times out an accepted request, §1.8 -- which is why it is kept.)
* Workers are forked by a fork server (``zygote.py``) that is itself forked before the
  event loop starts, after config and credentials are loaded: a worker, first or
  replacement, inherits that state but none of the main process's fds or loop. Workers
  get SIGTERM when the fork server dies, the fork server when the main process dies
  (PR_SET_PDEATHSIG), and both exit on EOF of their channel.
* 0-RTT anti-replay stays process-wide: the one store lives in the main process and each
  worker's GnuTLS add callback asks it synchronously over a dedicated socketpair (one
  small blocking round trip per early-data ClientHello; no answer = early data refused).
* SIGHUP: the main process validates and applies the new config, then forwards SIGHUP
  to the fork server and every worker, which reload the same file themselves (a worker
  that cannot keeps its old snapshot and says so). SIGTERM: the agent stops ACCEPTing,
  workers get SIGTERM and finish within the grace period minus a margin (answering the
  rest themselves), then whatever is still unanswered is answered by the main process.
* Each worker joins an anonymous session keyring of its own and links the configured
  keyrings into it, so per-request keyring links never race between workers.
* The unix service stays in the main process (its handshakes run there, inline, sharing
  the same anti-replay store). With no worker alive a kernel request also runs there.

Signals (:mod:`quichsd.signals`): SIGHUP and SIGUSR1 reload the config and credentials,
read in a thread (a bad file keeps the old ones; handshakes in flight keep their snapshot;
the metrics endpoint, :mod:`quichsd.metrics_http`, follows ``metrics.enabled``/``listen``);
SIGTERM/SIGINT/SIGQUIT stop accepting, let handshakes in flight finish within the grace
period, answer the rest (DONE ETIMEDOUT) and exit 0; the other signals a process may be
sent are logged and ignored.
Where the kernel has no ``handshake`` family the daemon says so once and stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import __version__, metrics, sdnotify, signals
from . import log as logsetup
from .config import Settings, load_config_lines
from .credcheck import load_checked
from .credentials import Credentials, CredentialsError, SessionKeyrings
from .errors import ConfigError
from .gnutls import _lib as gnutls
from .gnutls.features import features
from .heap import release_free_heap
from .keylog import KeyLogFile, open_keylog
from .keylog import warning as keylog_warning
from .netlink import HandshakeAgent, HandshakeFamilyUnavailable
from .netlink.transports import netlink_transport
from .service import HandshakeService
from .unix.listen import ListenError
from .unix.server import UnixService

if TYPE_CHECKING:  # imported where used: only some configurations need them (issue 15)
    from .metrics_http import MetricsEndpoint
    from .workers import WorkerPool

log = logging.getLogger("quichsd")

STOP_GRACE = 10.0
#: workers stop this much earlier than the main process gives up on them
WORKER_STOP_MARGIN = 1.0


class Daemon:
    def __init__(
        self,
        config_path: str,
        settings: Settings,
        *,
        stderr: bool = False,
        lines: dict[str, int] | None = None,
    ) -> None:
        """``lines``: of the keys in the config file, for ``PATH:LINE`` credential errors."""
        self.config_path = config_path
        self.settings = settings
        self.stderr = stderr
        self.stopping = asyncio.Event()
        self.agent: HandshakeAgent | None = None
        self.pool: WorkerPool | None = None
        self.unix: UnixService | None = None
        self.metrics: MetricsEndpoint | None = None  # made when metrics are first enabled
        self._metrics_reloads: set[asyncio.Task[None]] = set()
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self.keyrings = SessionKeyrings()
        creds, warnings = load_checked(settings, config_path, lines or {})
        for line in warnings:
            log.warning("%s", line)
        try:
            self.keylog = open_keylog(settings.log.keylog_file)
        except BaseException:
            creds.wipe()
            raise
        # executor None: GnuTLS steps run inline on the loop (see the module docstring)
        self.service = HandshakeService(
            settings, creds, keyrings=self.keyrings, executor=None, keylog=self.keylog
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        signals.install(loop, self.stopping.set, self.reload)
        self.keyrings.link_session_keyrings(self.settings.keyrings)
        status = await self.start_agent()
        if self.settings.unix_socket.enabled:
            status += "; " + await self.start_unix()
        python = ".".join(map(str, sys.version_info[:3]))
        metrics.BUILD_INFO.set(1, __version__, gnutls.version(), python)
        if self.settings.metrics.enabled:
            status += f"; {await self._apply_metrics()}"
        release_free_heap()  # what start-up freed (quichsd.heap)
        log.log(
            logsetup.NOTICE,
            "quichsd %s (GnuTLS %s) running: %s",
            __version__,
            gnutls.version(),
            status,
            extra=logsetup.event("started", QUICHSD_VERSION=__version__),
        )
        if gnutls.SSLKEYLOGFILE_IGNORED:
            log.warning("SSLKEYLOGFILE in the environment is ignored; use log.keylog_file")
        self._warn_keylog()
        sdnotify.notify(f"READY=1\nSTATUS={status}")
        wd_interval = sdnotify.watchdog_interval()
        wd = asyncio.create_task(sdnotify.watchdog(wd_interval)) if wd_interval else None
        try:
            await self.stopping.wait()
        finally:
            log.log(logsetup.NOTICE, "stopping", extra=logsetup.event("stopping"))
            sdnotify.notify("STOPPING=1")
            if wd is not None:
                wd.cancel()
            # both drain at once: the whole stop stays within one grace period
            parts = (self.unix, self.agent, self.pool)
            stops = [x.stop(timeout=STOP_GRACE) for x in parts if x is not None]
            if self.metrics is not None:
                stops.append(self.metrics.stop())
            await asyncio.gather(*stops)
        return 0

    def prepare_workers(self) -> None:
        """With ``handshake.workers`` > 1: the pool and its fork server (before the loop)."""
        if self.settings.handshake.workers == 1:
            return  # the default: this process only, quichsd.workers is not even imported
        from .workers import make_pool, worker_count

        count = worker_count(self.settings.handshake.workers)
        if count < 2:
            return
        self.pool = make_pool(
            count,
            self.service,
            lambda: netlink_transport(join=False),
            reload=self.reload_worker,
            grace=STOP_GRACE - WORKER_STOP_MARGIN,
            keyring_names=lambda: self.settings.keyrings,
        )
        self.pool.start_fork_server()

    async def start_agent(self) -> str:
        pool = self.pool
        agent = HandshakeAgent(
            netlink_transport(),
            pool.handle if pool is not None else self.service.handle,
            max_in_flight=self.settings.handshake.max_in_flight,
        )
        try:
            await agent.start()
        except HandshakeFamilyUnavailable as e:
            log.warning("%s; kernel handshake requests cannot be served", e)
            if pool is not None:
                self.pool = None
                await pool.stop(timeout=0)
            return "kernel handshake family not available"
        self.agent = agent
        status = "serving kernel handshake requests (netlink family handshake, group tlshd)"
        if pool is not None:  # requests ACCEPTed before a worker is up run in this process
            await pool.start()
            status += f" in {len(pool.alive())} worker processes"
        return status

    async def start_unix(self) -> str:
        unix = UnixService(self.service)
        try:
            status = await unix.start()
        except ListenError as e:
            log.error("unix service not started: %s", e)
            return f"unix service not started ({e})"
        self.unix = unix
        return status

    def reload(self) -> None:
        """SIGHUP (and SIGUSR1): new config and credentials, or keep the old ones and say
        why. The files are read and checked in a thread, so a slow or hostile file never
        stalls the handshakes on the loop; a signal during a reload runs one more after it."""
        if self._reloading is not None:
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reloads())

    async def _reloads(self) -> None:
        try:
            self._reload_again = True
            while self._reload_again:
                self._reload_again = False
                await self._reload_once()
        finally:
            self._reloading = None

    async def _reload_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            settings, creds, keylog, warnings = await loop.run_in_executor(None, self._load)
        except (ConfigError, CredentialsError) as e:
            for line in e.errors:
                log.error("reload refused: %s", line, extra=logsetup.event("reload_refused"))
            metrics.CONFIG_RELOADS.inc("refused")
            return
        for line in warnings:
            log.warning("%s", line)
        self._apply(settings, creds, keylog)
        release_free_heap()
        if self.pool is not None:
            self.pool.reload()
        metrics.CONFIG_RELOADS.inc("ok")
        log.log(
            logsetup.NOTICE,
            "configuration reloaded from %s",
            self.config_path,
            extra=logsetup.event("reload"),
        )
        self._warn_keylog()
        task = loop.create_task(self._reload_metrics())
        self._metrics_reloads.add(task)  # moves the endpoint if metrics.listen changed
        task.add_done_callback(self._metrics_reloads.discard)
        sdnotify.notify("READY=1\nSTATUS=configuration reloaded")

    async def _apply_metrics(self) -> str | None:
        """Start, move or stop the metrics endpoint as ``metrics`` says (MetricsEndpoint.apply);
        quichsd.metrics_http is imported only once metrics are enabled."""
        if self.metrics is None:
            if not self.settings.metrics.enabled:
                return None
            from .metrics_http import MetricsEndpoint

            self.metrics = MetricsEndpoint()
        return await self.metrics.apply(self.settings.metrics)

    async def _reload_metrics(self) -> None:
        change = await self._apply_metrics()
        if change is not None:
            log.info("%s", change)

    def reload_worker(self) -> Callable[[], str]:
        """SIGHUP in a worker or the fork server: the same, quietly; raises if refused.
        Loads and checks (a worker runs this in a thread) and returns the swap (a worker
        runs it on its loop)."""
        settings, creds, keylog, _ = self._load()  # ConfigError/CredentialsError say what

        def apply() -> str:
            self._apply(settings, creds, keylog)
            return f"configuration reloaded from {self.config_path}"

        return apply

    def _warn_keylog(self) -> None:
        if self.keylog is not None:
            log.warning("%s", keylog_warning(self.keylog.path))

    def _load(self) -> tuple[Settings, Credentials, KeyLogFile | None, list[str]]:
        """The new config, its credentials (checked) and key log file, and the warnings;
        raises ConfigError/CredentialsError (nothing loaded is kept)."""
        groups = features().groups
        settings, lines = load_config_lines(self.config_path, available_groups=groups)
        creds, warnings = load_checked(settings, self.config_path, lines)
        try:
            return settings, creds, open_keylog(settings.log.keylog_file), warnings
        except BaseException:
            creds.wipe()
            raise

    def _apply(self, settings: Settings, creds: Credentials, keylog: KeyLogFile | None) -> None:
        old, self.keylog = self.keylog, keylog
        if old is not None:  # a handshake in flight with the old one writes nothing more
            old.close()
        self.settings = settings
        logsetup.setup(
            settings.log.level,
            stderr=self.stderr,
            gnutls_level=settings.log.gnutls_level,
            handshake_completion=settings.log.handshake_completion,
        )
        self.service.reload(settings, creds, keylog)
        self.keyrings.link_session_keyrings(settings.keyrings)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (systemd starts services at 1024 soft,
    524288 hard): each handshake in flight holds an fd, and ACCEPT into a full fd table
    fails the consumer's request. Nothing in this process uses select()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, e)
        return
    log.debug("open-file limit raised from %d to %d", soft, hard)


def serve(
    config_path: str,
    settings: Settings,
    *,
    stderr: bool = False,
    lines: dict[str, int] | None = None,
) -> int:
    signals.ignore_all()  # no signal kills us before the loop's handlers are in place
    raise_fd_limit()  # before the fork server, so workers inherit it
    try:
        daemon = Daemon(config_path, settings, stderr=stderr, lines=lines)
    except CredentialsError as e:
        for line in e.errors:
            log.error("%s", line)
        return 1
    daemon.prepare_workers()  # forks the fork server: before the event loop exists
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(daemon.run())
    return 0
