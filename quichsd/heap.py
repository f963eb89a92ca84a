# SPDX-License-Identifier: GPL-2.0-or-later
"""The process heap: how much memory is allocated and not freed, as opposed to the RSS,
and handing free heap pages back to the kernel.

RSS also holds what the allocators keep after a peak (freed chunks glibc has not returned,
Python's emptied pools), so after a burst of handshakes it stays up without a leak. The two
numbers here fall back when the memory is freed, and so show a leak as steady growth:

- :func:`malloc_in_use`: bytes the C heap hands out now (glibc ``mallinfo2(3)``: ``uordblks``
  in every arena plus ``hblkhd`` of mmap'ed chunks), which is where GnuTLS keeps sessions,
  credentials and keys;
- :func:`python_blocks`: memory blocks Python's allocator hands out now
  (``sys.getallocatedblocks``).

:func:`release_free_heap` (issue 15): start-up (imports, the config parse, loading and
checking credentials: the system trust store alone is a few hundred certificates parsed
and dropped) frees most of what it allocates, but glibc's malloc keeps freed memory in the
process for reuse: about 3.5 MB of the idle daemon's resident memory here.
``malloc_trim(0)`` returns every whole free page of the heap (and of the other arenas) to
the kernel. Called when a burst of such work has ended (start-up, a reload, a fork server
about to fork workers), never per handshake.

The C library is this process's own (``CDLL(None)``, no ``ctypes.util`` search); one
without ``mallinfo2`` or ``malloc_trim`` (not glibc, or glibc < 2.33) makes them None / a
no-op.
"""

from __future__ import annotations

import ctypes
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
    fn: Callable[[], _Mallinfo2] | None = getattr(ctypes.CDLL(None), "mallinfo2", None)
    if fn is not None:
        fn.restype = _Mallinfo2  # type: ignore[attr-defined]
        fn.argtypes = []  # type: ignore[attr-defined]
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


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    fn: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int  # type: ignore[attr-defined]
    return fn


def release_free_heap() -> bool:
    """``malloc_trim(0)``; True when some memory was returned, False otherwise (or when
    this libc has no ``malloc_trim``)."""
    trim = _malloc_trim()
    return bool(trim and trim(0))
