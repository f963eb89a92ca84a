# SPDX-License-Identifier: GPL-2.0-or-later
"""Handing the heap's free pages back to the kernel after start-up and reload (issue 15).

Start-up (imports, the config parse, loading and checking credentials: the system trust
store alone is a few hundred certificates parsed and dropped) frees most of what it
allocates, but glibc's malloc keeps freed memory in the process for reuse: about 3.5 MB
of the idle daemon's resident memory here. ``malloc_trim(0)`` returns every whole free
page of the heap (and of the other arenas) to the kernel. Called when a burst of such
work has ended (start-up, a reload, a fork server about to fork workers), never per
handshake. A libc without ``malloc_trim`` (not glibc) makes it a no-op.
"""

from __future__ import annotations

import ctypes
from typing import Any

#: the bound ``malloc_trim``, False where libc has none, None until first use
_trim: Any = None


def release_free_heap() -> bool:
    """``malloc_trim(0)``; True when some memory was returned, False otherwise (or when
    this libc has no ``malloc_trim``)."""
    global _trim
    if _trim is None:
        fn: Any = getattr(ctypes.CDLL(None), "malloc_trim", None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
        _trim = fn if fn is not None else False
    return bool(_trim and _trim(0))
