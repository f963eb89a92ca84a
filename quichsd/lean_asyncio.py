# SPDX-License-Identifier: GPL-2.0-or-later
"""Importing asyncio without the ``ssl`` module, for the daemon (issue 15).

``import asyncio`` imports ``ssl`` (for TLS streams, which quichsd never uses: its TLS is
GnuTLS), and ``ssl`` loads and initialises OpenSSL's libssl and libcrypto: about 5 MB of
resident memory here (Python 3.11, OpenSSL 3), a sixth of the idle daemon. asyncio is
written for interpreters built without ``ssl`` (``try: import ssl except ImportError:
ssl = None``), so :func:`import_asyncio_without_ssl` lets that import fail for the
duration of ``import asyncio`` only: asyncio then refuses ``ssl=`` arguments with
"stdlib ssl module not available", and a later ``import ssl`` elsewhere works as usual.
Where asyncio or ssl is already imported, nothing changes.
"""

from __future__ import annotations

import importlib
import sys


def import_asyncio_without_ssl() -> None:
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError
    try:
        importlib.import_module("asyncio")
    finally:
        del sys.modules["ssl"]
