# SPDX-License-Identifier: GPL-2.0-or-later
"""How much memory this process has allocated and not freed, as opposed to its RSS.

RSS also holds what the allocators keep after a peak (freed chunks glibc has not returned,
Python's emptied pools), so after a burst of handshakes it stays up without a leak. The two
numbers here fall back when the memory is freed, and so show a leak as steady growth:

- :func:`malloc_in_use`: bytes the C heap hands out now (glibc ``mallinfo2(3)``: ``uordblks``
  in every arena plus ``hblkhd`` of mmap'ed chunks), which is where GnuTLS keeps sessions,
  credentials and keys;
- :func:`python_blocks`: memory blocks Python's allocator hands out now
  (``sys.getallocatedblocks``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from functools import cache


class _Mallinfo2(ctypes.Structure):
    """``struct mallinfo2`` of glibc >= 2.33 (ten ``size_t``, in this order)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _mallinfo2() -> Callable[[], _Mallinfo2] | None:
    """libc's ``mallinfo2``, or None where the C library has none (musl, glibc < 2.33)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []
    return fn


def malloc_in_use() -> int | None:
    """Bytes malloc has handed out and not had back, or None without ``mallinfo2``."""
    fn = _mallinfo2()
    if fn is None:
        return None
    info: _Mallinfo2 = fn()
    return int(info.uordblks) + int(info.hblkhd)


def python_blocks() -> int:
    """Blocks Python's own allocator has handed out and not had back."""
    return sys.getallocatedblocks()
