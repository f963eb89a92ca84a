# SPDX-License-Identifier: GPL-2.0-or-later
"""The 0-RTT anti-replay store, process-wide across worker processes.

GnuTLS asks the anti-replay context's *add* function, synchronously from inside
``gnutls_handshake``, whether a ClientHello's key is new. With worker processes the store
must be one for all of them, or a ClientHello replayed to another worker would get its
early data accepted twice. :class:`ReplayStore` (a dict with expiry) lives in the main
process; :class:`SharedAntiReplay` is the GnuTLS context whose add function consults a
store: the main process's own one directly, or, in a worker, :class:`RemoteReplayStore`,
a short blocking request/response over a dedicated socketpair that the main process
answers from its event loop (:func:`serve_replay_query`). The worker's loop is blocked for
that round trip only (tens of µs); no answer within ``REMOTE_TIMEOUT`` refuses the early
data (the handshake still completes, as 1-RTT), so a stalled main process never lets a
replay through.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Any, Protocol

from ..gnutls import _lib as L
from ..gnutls.creds import AntiReplay

log = logging.getLogger("quichsd.workers")

REMOTE_TIMEOUT = 1.0
MAX_KEY = 512
#: query: seq (u32), expiry (f64, unix time), key bytes; answer: seq (u32), fresh (u8)
_QUERY = struct.Struct("=Id")
_ANSWER = struct.Struct("=IB")


class Store(Protocol):
    def add(self, key: bytes, expires: float) -> bool:
        """Record ``key`` until ``expires``; False when it was seen and is not expired."""
        ...


class ReplayStore:
    """The one store: keys of accepted early-data ClientHellos, until they expire."""

    def __init__(self, prune_above: int = 4096) -> None:
        self._seen: dict[bytes, float] = {}
        self._prune_above = prune_above

    def add(self, key: bytes, expires: float) -> bool:
        now = time.time()
        if len(self._seen) > self._prune_above:
            for old in [k for k, exp in self._seen.items() if exp < now]:
                del self._seen[old]
        exp = self._seen.get(key)
        if exp is not None and exp >= now:
            return False
        self._seen[key] = expires
        return True

    def __len__(self) -> int:
        return len(self._seen)


class SharedAntiReplay(AntiReplay):
    """GnuTLS's anti-replay context backed by a :class:`Store` (swappable after fork)."""

    def __init__(self, store: Store, window_ms: int = 10_000) -> None:
        self.store = store
        super().__init__(window_ms)

    def _add(self, _ptr: int | None, exp_time: int, key: Any, _data: Any) -> int:
        try:
            k = L.datum_bytes(key.contents)
            return 0 if self.store.add(k, float(exp_time)) else L.GNUTLS_E_DB_ENTRY_EXISTS
        except BaseException:  # never let an exception reach C: refuse the early data
            return L.GNUTLS_E_DB_ENTRY_EXISTS


class RemoteReplayStore:
    """A worker's view of the main process's store: one blocking query per key."""

    def __init__(self, sock: socket.socket, timeout: float = REMOTE_TIMEOUT) -> None:
        self._sock = sock
        self._timeout = timeout
        self._seq = 0
        sock.setblocking(True)

    def add(self, key: bytes, expires: float) -> bool:
        if len(key) > MAX_KEY:
            log.warning("anti-replay key of %d bytes refused (limit %d)", len(key), MAX_KEY)
            return False
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        deadline = time.monotonic() + self._timeout
        try:
            self._sock.settimeout(self._timeout)
            self._sock.send(_QUERY.pack(self._seq, expires) + key)
            while True:  # answers to earlier, timed-out queries are skipped
                self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = self._sock.recv(_ANSWER.size)
                if not data:
                    raise ConnectionError("main process closed the anti-replay channel")
                seq, fresh = _ANSWER.unpack(data)
                if seq == self._seq:
                    return bool(fresh)
        except (OSError, struct.error) as exc:
            log.warning("anti-replay query failed (%s): early data refused", exc)
            return False

    def close(self) -> None:
        self._sock.close()


def serve_replay_query(sock: socket.socket, store: Store) -> bool:
    """Answer the queries waiting on ``sock`` (non-blocking); False once the peer is gone."""
    while True:
        try:
            data = sock.recv(_QUERY.size + MAX_KEY)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        if len(data) < _QUERY.size:
            log.warning("anti-replay query of %d bytes ignored", len(data))
            continue
        seq, expires = _QUERY.unpack_from(data)
        fresh = store.add(data[_QUERY.size :], expires)
        try:
            sock.send(_ANSWER.pack(seq, int(fresh)))
        except OSError:
            return False
