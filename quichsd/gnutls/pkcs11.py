# SPDX-License-Identifier: GPL-2.0-or-later
"""Private keys on a PKCS#11 token (RFC 7512 ``pkcs11:`` URLs), as tlshd allows.

GnuTLS reads the key through p11-kit's configured modules (``gnutls_privkey_import_url``);
the key never enters our memory: GnuTLS asks the token to sign. The PIN, if the token
needs one, comes from the URL itself (``pin-value=`` or ``pin-source=FILE``, RFC 7512
§2.3), which GnuTLS reads when it logs in. The certificate chain stays ours (PEM or DER
bytes); ``gnutls_certificate_set_key`` then owns both.
"""

from __future__ import annotations

import ctypes as C
import re

from . import _lib as L

_PIN_VALUE = re.compile(r"(pin-value=)[^;?&]*", re.IGNORECASE)


def shown(url: str) -> str:
    """``url`` for messages: a ``pin-value`` is a secret and is replaced by ``***``."""
    return _PIN_VALUE.sub(r"\1***", url)


class pcert_st(C.Structure):  # noqa: N801 - the C name
    """``gnutls_pcert_st`` (gnutls/abstract.h): pubkey, cert datum, certificate type."""

    _fields_ = [("pubkey", C.c_void_p), ("cert", L.datum_t), ("type", C.c_int)]


_privkey_init = L._fn("gnutls_privkey_init", C.c_int, C.POINTER(C.c_void_p))
_privkey_deinit = L._fn("gnutls_privkey_deinit", None, C.c_void_p)
_privkey_import_url = L._fn("gnutls_privkey_import_url", C.c_int, C.c_void_p, C.c_char_p, C.c_uint)
_pcert_list_import = L._fn(
    "gnutls_pcert_list_import_x509_raw",
    C.c_int,
    C.POINTER(pcert_st),
    C.POINTER(C.c_uint),
    C.POINTER(L.datum_t),
    C.c_int,
    C.c_uint,
)
_pcert_deinit = L._fn("gnutls_pcert_deinit", None, C.POINTER(pcert_st))
_set_key = L._fn(
    "gnutls_certificate_set_key",
    C.c_int,
    C.c_void_p,
    C.c_void_p,
    C.c_int,
    C.POINTER(pcert_st),
    C.c_int,
    C.c_void_p,
)
#: certificates in one chain at most (config.MAX_CHAIN_CERTS is 10)
MAX_CHAIN = 16


def set_key_url(creds: int, chain: bytes, url: str, *, der: bool = False) -> None:
    """Install ``chain`` (leaf first) with the token key ``url`` into the certificate
    credentials ``creds``. Raises :class:`~quichsd.errors.GnuTLSError` naming the step."""
    key = C.c_void_p()
    L.check(_privkey_init(C.byref(key)), "allocate a private key")
    try:
        L.check(_privkey_import_url(key, url.encode(), 0), f"open the PKCS#11 key {shown(url)}")
        certs = (pcert_st * MAX_CHAIN)()
        n = C.c_uint(MAX_CHAIN)
        data = L.OwnedDatum(chain)
        fmt = L.GNUTLS_X509_FMT_DER if der else L.GNUTLS_X509_FMT_PEM
        L.check(_pcert_list_import(certs, C.byref(n), data.ref(), fmt, 0), "parse certificates")
    except BaseException:
        _privkey_deinit(key)
        raise
    ret = _set_key(creds, None, 0, certs, n.value, key)
    if ret < 0:  # not taken over: ours to free
        for i in range(n.value):
            _pcert_deinit(C.byref(certs[i]))
        _privkey_deinit(key)
    L.check(ret, "load certificate and PKCS#11 private key")
