# SPDX-License-Identifier: GPL-2.0-or-later
"""systemd integration: readiness/status notifications and the watchdog.

Uses systemd-python's ``sd_notify`` when it is installed and falls back to the
notification protocol itself (a datagram to ``$NOTIFY_SOCKET``) otherwise, so a test can
bind its own socket and read what the daemon says.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("quichsd.systemd")


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1\\nSTATUS=...``); False when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    try:
        import systemd.daemon as sd_daemon

        return bool(sd_daemon.notify(state))
    except ImportError:
        pass
    addr = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), addr)
        return True
    except OSError as e:
        log.debug("sd_notify to %s failed: %s", path, e)
        return False


def watchdog_interval() -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, if the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def watchdog(interval: float) -> None:
    """Ping the watchdog while the event loop is alive (a stalled loop stops the pings)."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
