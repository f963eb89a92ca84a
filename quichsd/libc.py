# SPDX-License-Identifier: GPL-2.0-or-later
"""The C library this process already runs on, for the few calls Python's os and socket
modules do not offer: prctl, free for libkeyutils' buffers, and getsockopt with a buffer
larger than CPython's 1024 bytes (QUIC session tickets, SO_PEERGROUPS).

``ctypes.CDLL(None)`` is ``dlopen(NULL)``: the libraries already loaded into the process,
libc among them. ``ctypes.util.find_library("c")`` is not used: on Linux it runs
``/sbin/ldconfig -p`` (and, failing that, ``gcc`` and ``ld``) in a subprocess, so every
worker start and the first keyring or large-getsockopt call forked and executed a program
from inside the daemon, and it imports shutil, tempfile and the compression modules.
Libraries that are not already loaded are opened by their soname (``libkeyutils.so.1``),
which is what the dynamic linker resolves, in the system's library path, as for any program.
"""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def libc() -> ctypes.CDLL:
    """This process's C library, with ``use_errno`` (``ctypes.get_errno()`` after a call)."""
    return ctypes.CDLL(None, use_errno=True)
