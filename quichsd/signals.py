# SPDX-License-Identifier: GPL-2.0-or-later
"""What each signal does to the daemon and its worker processes: none of them
default-terminates (SIGUSR1 or SIGUSR2 from ``kill`` used to kill the daemon with no log
line, the unix socket file left behind and handshakes in flight cut off).

* :data:`STOP` (SIGTERM, SIGINT, SIGQUIT): stop gracefully (drain, answer, exit 0).
* :data:`RELOAD` (SIGHUP, SIGUSR1): reload the configuration; SIGUSR1 does what SIGHUP
  does, for scripts that send USR1 to reload.
* :data:`IGNORED`: every other signal whose default action terminates or stops the process
  and that another process may send (SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR,
  SIGXCPU, SIGXFSZ, SIGSTKFLT, SIGTSTP, SIGTTIN, SIGTTOU, SIGRTMIN..SIGRTMAX): one log
  line each time, nothing else. SIGPIPE is ignored silently (a closed peer is an error
  return on the write that hit it).
* Left alone: SIGKILL and SIGSTOP (cannot be caught), the faults of the process itself
  (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS: a core dump is what helps),
  and the signals whose default is to do nothing (SIGCHLD, SIGWINCH, SIGURG, SIGCONT).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

log = logging.getLogger("quichsd")

STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
RELOAD = (signal.SIGHUP, signal.SIGUSR1)
_IGNORED_NAMES = (
    "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGXCPU", "SIGXFSZ",
    "SIGSTKFLT", "SIGTSTP", "SIGTTIN", "SIGTTOU",
)  # fmt: skip
IGNORED: tuple[int, ...] = tuple(
    int(getattr(signal, n)) for n in _IGNORED_NAMES if hasattr(signal, n)
) + tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


def name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"


def ignore_all() -> None:
    """Until an event loop handles them (start-up, after a fork, the fork server):
    RELOAD, IGNORED and SIGPIPE are ignored outright; STOP keeps its default."""
    for sig in (*RELOAD, *IGNORED, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)


def install(
    loop: asyncio.AbstractEventLoop,
    stop: Callable[[], object],
    reload: Callable[[], object],
    who: str = "",
) -> None:
    """The loop's handlers: STOP -> ``stop()``, RELOAD -> ``reload()``, IGNORED -> a
    log line (``who`` names the process, e.g. "worker 123: ")."""
    for sig in STOP:
        loop.add_signal_handler(sig, stop)
    for sig in RELOAD:
        loop.add_signal_handler(sig, reload)
    for num in IGNORED:
        loop.add_signal_handler(num, _ignored, who, num)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _ignored(who: str, sig: int) -> None:
    log.warning("%s%s ignored (SIGTERM stops the daemon, SIGHUP reloads it)", who, name(sig))
