# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench.daemon_run CONFIG``: the real daemon (``quichsd -s -c CONFIG``), whose
netlink transport falls back to an idle kernel when this kernel has no ``handshake``
family, so that ``handshake.workers`` > 1 still starts its fork server and workers.

Used by :mod:`bench.daemon_rss` to read idle memory. The transport really opens first
(the real pyroute2 sockets); only where the family is missing does it then behave as a
kernel that never sends a request. It imports nothing the daemon would not, so the
process measured is the daemon's.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from quichsd import cli

#: written to stderr once per process whose transport fell back
IDLE_NOTE = "bench.daemon_run: no handshake family: idle kernel stand-in"


class IdleWhenMissing:
    """The real transport, or an idle kernel where the family is missing."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.idle = False

    @property
    def family_id(self) -> int:
        return 0 if self.idle else int(self.real.family_id)

    async def open(self) -> None:
        from quichsd.netlink import HandshakeFamilyUnavailable

        try:
            await self.real.open()
        except HandshakeFamilyUnavailable:
            self.idle = True
            sys.stderr.write(IDLE_NOTE + "\n")

    async def recv(self) -> list[bytes]:
        if self.idle:
            import asyncio

            await asyncio.Event().wait()
        return list(await self.real.recv())

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        if self.idle:
            raise OSError(11, "EAGAIN")  # nothing pending, ever
        return list(await self.real.request(body, flags))

    async def close(self) -> None:
        await self.real.close()


class _PatchDaemon:
    """Wraps quichsd.daemon's netlink_transport once the CLI has imported that module, so
    this launcher imports nothing before the CLI does (its import order is the daemon's).

    A meta path finder needs only ``find_spec``: not deriving from
    ``importlib.abc.MetaPathFinder`` keeps ``importlib.abc`` out of the measured process
    (it imports importlib.resources and tempfile, which the daemon itself does not load:
    the stand-in measured 0.3 MB more than the real CLI with it)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "quichsd.daemon":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        assert spec is not None and spec.loader is not None
        loader, run = spec.loader, spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            real = module.netlink_transport
            module.netlink_transport = lambda *, join=True: IdleWhenMissing(real(join=join))

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


#: where to write the daemon's module names (import order) when it has stopped, if set
MODULES_ENV = "QUICHSD_BENCH_MODULES"

if __name__ == "__main__":
    sys.meta_path.insert(0, _PatchDaemon())
    rc = cli.main(["-s", "-c", sys.argv[1]])
    if os.environ.get(MODULES_ENV):
        with open(os.environ[MODULES_ENV], "w") as f:  # os and open: no import here
            f.write("[" + ", ".join(f'"{m}"' for m in sys.modules) + "]\n")
    sys.exit(rc)
