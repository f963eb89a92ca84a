# SPDX-License-Identifier: GPL-2.0-or-later
"""``--profile``: cProfile of N handshake pairs (both sides, executor None).

ctypes calls into GnuTLS are not separate entries: their time is in the tottime of the
Python function that made the call (Engine._step / receive for gnutls_handshake). For a
sampling view with native frames use py-spy: ``py-spy record --native -f raw -- ...``.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
from typing import Any

from . import cpu
from .fixture import Daemon


def run(d: Daemon, n: int) -> dict[str, Any]:
    asyncio.run(cpu.measure(d, 50, resumed=False))
    pr = cProfile.Profile(timer=__import__("time").thread_time)
    pr.enable()
    asyncio.run(cpu.measure(d, n, resumed=False))
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(25)
    text = buf.getvalue()
    print(text)
    return {"n": n, "top_tottime": text}
