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
hand-offs plus an executor round trip per step). Using a second core takes worker
processes (x1.95 in the issue-7 bench on an idle host); they need the accepted fd handed
over and DONE sent by a process holding it (kernel-interfaces.md §1.6) -- not done yet.
What handshakes share lives here: the settings+credentials snapshot, the process-wide
0-RTT anti-replay context, the GnuTLS priority cache, and the session keyring links.

Signals: SIGHUP reloads the config and credentials (a bad file keeps the old ones;
handshakes in flight keep their snapshot); SIGTERM/SIGINT stop accepting, let handshakes
in flight finish within the grace period, answer the rest (DONE ETIMEDOUT) and exit 0.
Where the kernel has no ``handshake`` family the daemon says so once and stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from . import __version__, sdnotify
from . import log as logsetup
from .config import Settings, load_config
from .credentials import CredentialsError, SessionKeyrings, load_credentials
from .errors import ConfigError
from .gnutls import _lib as gnutls
from .netlink import HandshakeAgent, HandshakeFamilyUnavailable
from .netlink.pyroute import PyrouteTransport
from .service import HandshakeService
from .unix.listen import ListenError
from .unix.server import UnixService

log = logging.getLogger("quichsd")

STOP_GRACE = 10.0


class Daemon:
    def __init__(self, config_path: str, settings: Settings, *, stderr: bool = False) -> None:
        self.config_path = config_path
        self.settings = settings
        self.stderr = stderr
        self.stopping = asyncio.Event()
        self.agent: HandshakeAgent | None = None
        self.unix: UnixService | None = None
        self.keyrings = SessionKeyrings()
        # executor None: GnuTLS steps run inline on the loop (see the module docstring)
        self.service = HandshakeService(
            settings, load_credentials(settings), keyrings=self.keyrings, executor=None
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.keyrings.link_session_keyrings(self.settings.keyrings)
        status = await self.start_agent()
        if self.settings.unix_socket.enabled:
            status += "; " + await self.start_unix()
        log.info("quichsd %s (GnuTLS %s) running: %s", __version__, gnutls.version(), status)
        sdnotify.notify(f"READY=1\nSTATUS={status}")
        wd_interval = sdnotify.watchdog_interval()
        wd = asyncio.create_task(sdnotify.watchdog(wd_interval)) if wd_interval else None
        try:
            await self.stopping.wait()
        finally:
            log.info("stopping")
            sdnotify.notify("STOPPING=1")
            if wd is not None:
                wd.cancel()
            # both drain at once: the whole stop stays within one grace period
            stops = [x.stop(timeout=STOP_GRACE) for x in (self.unix, self.agent) if x is not None]
            await asyncio.gather(*stops)
        return 0

    async def start_agent(self) -> str:
        agent = HandshakeAgent(
            PyrouteTransport(),
            self.service.handle,
            max_in_flight=self.settings.handshake.max_in_flight,
        )
        try:
            await agent.start()
        except HandshakeFamilyUnavailable as e:
            log.warning("%s; kernel handshake requests cannot be served", e)
            return "kernel handshake family not available"
        self.agent = agent
        return "serving kernel handshake requests (netlink family handshake, group tlshd)"

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
        """SIGHUP: new config and credentials, or keep the old ones and say why."""
        try:
            settings = load_config(self.config_path)
            creds = load_credentials(settings)
        except ConfigError as e:
            for line in e.errors:
                log.error("reload refused: %s", line)
            return
        except CredentialsError as e:
            for line in e.errors:
                log.error("reload refused: %s", line)
            return
        self.settings = settings
        logsetup.setup(
            settings.log.level, stderr=self.stderr, gnutls_level=settings.log.gnutls_level
        )
        self.service.reload(settings, creds)
        self.keyrings.link_session_keyrings(settings.keyrings)
        log.info("configuration reloaded from %s", self.config_path)
        sdnotify.notify("READY=1\nSTATUS=configuration reloaded")


def serve(config_path: str, settings: Settings, *, stderr: bool = False) -> int:
    try:
        daemon = Daemon(config_path, settings, stderr=stderr)
    except CredentialsError as e:
        for line in e.errors:
            log.error("%s", line)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(daemon.run())
    return 0
