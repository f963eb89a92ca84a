# SPDX-License-Identifier: GPL-2.0-or-later
"""GnuTLS credential objects, priority caches and the anti-replay context.

Each class owns one GnuTLS handle and frees it in ``close()`` (idempotent; also on
garbage collection). Certificate credentials and priority caches are read-only once
built and may be shared by many sessions (GnuTLS allows that); PSK server credentials
carry a per-handshake lookup, so the engine makes one per session.
"""

from __future__ import annotations

import ctypes as C
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import GnuTLSError
from . import _lib as L


class CertificateCredentials:
    """``gnutls_certificate_credentials_t``: own chain + key, trust anchors, CRLs."""

    def __init__(self) -> None:
        h = C.c_void_p()
        L.check(L.gnutls_certificate_allocate_credentials(C.byref(h)), "allocate certificate creds")
        self.handle: int | None = h.value
        self.has_key = False
        self.has_trust = False

    def set_key_pair(self, chain: bytes, key: bytes, *, der: bool = False) -> None:
        """Our certificate chain (leaf first) and its private key, PEM or DER."""
        fmt = L.GNUTLS_X509_FMT_DER if der else L.GNUTLS_X509_FMT_PEM
        c, k = L.OwnedDatum(chain), L.OwnedDatum(key)
        try:
            ret = L.gnutls_certificate_set_x509_key_mem2(
                self.handle, c.ref(), k.ref(), fmt, None, L.GNUTLS_PKCS_PLAIN
            )
        finally:
            k.wipe()
        L.check(ret, "load certificate and private key")
        self.has_key = True

    def set_key_url(self, chain: bytes, url: str, *, der: bool = False) -> None:
        """Our certificate chain and a private key on a PKCS#11 token (``pkcs11:`` URL)."""
        from .pkcs11 import set_key_url

        assert self.handle is not None
        set_key_url(self.handle, chain, url, der=der)
        self.has_key = True

    def set_trust(self, pem: bytes | None) -> int:
        """Trust anchors from PEM bytes, or the system trust store when None."""
        if pem is None:
            n = L.gnutls_certificate_set_x509_system_trust(self.handle)
            L.check(n, "load system trust store")
        else:
            d = L.OwnedDatum(pem)
            n = L.gnutls_certificate_set_x509_trust_mem(self.handle, d.ref(), L.GNUTLS_X509_FMT_PEM)
            L.check(n, "load trust store")
            if n == 0:
                raise GnuTLSError("load trust store", 0, "no certificate found in the trust store")
        self.has_trust = True
        return int(n)

    def add_crl(self, pem: bytes) -> int:
        d = L.OwnedDatum(pem)
        n = L.gnutls_certificate_set_x509_crl_mem(self.handle, d.ref(), L.GNUTLS_X509_FMT_PEM)
        return L.check(int(n), "load CRL")

    def close(self) -> None:
        if self.handle is not None:
            L.gnutls_certificate_free_credentials(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


class PskClientCredentials:
    """External PSK for a client: an identity and a raw key."""

    def __init__(self, identity: str, key: bytes, *, sha384: bool = False) -> None:
        """``sha384``: bind the PSK to SHA-384 (:mod:`quichsd.gnutls.pskhash`)."""
        from .pskhash import allocate

        self.handle: int | None = allocate("client", sha384)
        k = L.OwnedDatum(key)
        try:
            ret = L.gnutls_psk_set_client_credentials(
                self.handle, identity.encode(), k.ref(), L.GNUTLS_PSK_KEY_RAW
            )
        finally:
            k.wipe()
        if ret < 0:
            self.close()
        L.check(ret, "set PSK client credentials")

    def close(self) -> None:
        if self.handle is not None:
            L.gnutls_psk_free_client_credentials(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


PskLookup = Callable[[str], bytes | None]


class PskServerCredentials:
    """External PSK for a server: ``lookup(identity)`` returns the key or None."""

    def __init__(self, callback: L.psk_server_func2_t, *, sha384: bool = False) -> None:  # type: ignore[valid-type]
        from .pskhash import allocate

        self.handle: int | None = allocate("server", sha384)
        self._cb = callback  # referenced for as long as the credentials live
        L.gnutls_psk_set_server_credentials_function2(self.handle, callback)

    def close(self) -> None:
        if self.handle is not None:
            L.gnutls_psk_free_server_credentials(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


class PriorityCache:
    """Parsed priority strings, shared by all sessions (parsing costs 7-15 µs each)."""

    def __init__(self) -> None:
        self._cache: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, priority: str) -> int:
        with self._lock:
            p = self._cache.get(priority)
            if p is None:
                h = C.c_void_p()
                err = C.c_char_p()
                ret = L.gnutls_priority_init2(C.byref(h), priority.encode(), C.byref(err), 0)
                if ret < 0:
                    at = err.value.decode(errors="replace") if err.value else ""
                    raise GnuTLSError(
                        f"priority string {priority!r} (at {at!r})", ret, L.strerror(ret)
                    )
                p = int(h.value or 0)
                self._cache[priority] = p
            return p

    def close(self) -> None:
        with self._lock:
            for p in self._cache.values():
                L.gnutls_priority_deinit(p)
            self._cache.clear()


class AntiReplay:
    """One process-wide 0-RTT anti-replay context with a real store (pitfall 3).

    GnuTLS calls the add function with a key per accepted early-data ClientHello; a key
    seen before (within its expiry) is a replay and is refused with DB_ENTRY_EXISTS.
    """

    def __init__(self, window_ms: int = 10_000) -> None:
        h = C.c_void_p()
        L.check(L.gnutls_anti_replay_init(C.byref(h)), "anti-replay init")
        self.handle: int | None = h.value
        self._seen: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._cb = L.db_add_func_t(self._add)
        L.gnutls_anti_replay_set_window(self.handle, window_ms)
        L.gnutls_anti_replay_set_add_function(self.handle, self._cb)

    def _add(self, _ptr: int | None, exp_time: int, key: Any, _data: Any) -> int:
        try:
            k = L.datum_bytes(key.contents)
            now = time.time()
            with self._lock:
                if len(self._seen) > 4096:
                    for old in [x for x, exp in self._seen.items() if exp < now]:
                        del self._seen[old]
                exp = self._seen.get(k)
                if exp is not None and exp >= now:
                    return L.GNUTLS_E_DB_ENTRY_EXISTS
                self._seen[k] = float(exp_time)
            return 0
        except BaseException:  # never let an exception reach C: refuse the early data
            return L.GNUTLS_E_DB_ENTRY_EXISTS

    def enable(self, session: int) -> None:
        L.gnutls_anti_replay_enable(session, self.handle)

    def close(self) -> None:
        if self.handle is not None:
            L.gnutls_anti_replay_deinit(self.handle)
            self.handle = None

    def __del__(self) -> None:
        self.close()


def generate_ticket_key() -> bytes:
    """A fresh 64-byte session-ticket master key (for servers without a kernel key)."""
    d = L.datum_t()
    L.check(L.gnutls_session_ticket_key_generate(C.byref(d)), "generate ticket key")
    return L.take_datum(d)
