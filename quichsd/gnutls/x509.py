# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading certificates' subjects and validity periods with GnuTLS itself.

The daemon must not need the ``cryptography`` package (it is the probe's optional extra),
and what GnuTLS parses is what a handshake will use, so a certificate GnuTLS reads
differently from another parser cannot be reported wrongly.
"""

from __future__ import annotations

import ctypes as C
import datetime as dt
from dataclasses import dataclass

from . import _lib as L

#: gnutls_x509_crt_get_dn3: the RFC 4514 string in the compatibility (pre-3.5.6) order
GNUTLS_X509_DN_FLAG_COMPAT = 1

_crt_t = C.c_void_p
_list_import2 = L._fn(
    "gnutls_x509_crt_list_import2",
    C.c_int,
    C.POINTER(C.POINTER(_crt_t)),
    C.POINTER(C.c_uint),
    C.POINTER(L.datum_t),
    C.c_int,
    C.c_uint,
)
_deinit = L._fn("gnutls_x509_crt_deinit", None, _crt_t)
_activation = L._fn("gnutls_x509_crt_get_activation_time", C.c_int64, _crt_t)
_expiration = L._fn("gnutls_x509_crt_get_expiration_time", C.c_int64, _crt_t)
_dn3 = L._fn("gnutls_x509_crt_get_dn3", C.c_int, _crt_t, C.POINTER(L.datum_t), C.c_uint)


@dataclass(frozen=True, slots=True)
class CertificateDates:
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime


def _utc(t: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def certificate_dates(data: bytes, *, der: bool = False) -> list[CertificateDates]:
    """The subject and validity period of each certificate in ``data`` (a PEM bundle, or
    one DER certificate), in order. Raises :class:`~quichsd.errors.GnuTLSError` if GnuTLS
    cannot parse it."""
    arr = C.POINTER(_crt_t)()
    n = C.c_uint(0)
    buf = C.create_string_buffer(data, len(data))
    datum = L.datum_t(C.cast(buf, C.c_void_p), len(data))
    fmt = L.GNUTLS_X509_FMT_DER if der else L.GNUTLS_X509_FMT_PEM
    L.check(_list_import2(C.byref(arr), C.byref(n), C.byref(datum), fmt, 0), "parse certificates")
    try:
        out = []
        for i in range(n.value):
            dn = L.datum_t()
            L.check(_dn3(arr[i], C.byref(dn), GNUTLS_X509_DN_FLAG_COMPAT), "read subject")
            subject = L.take_datum(dn).decode(errors="replace")
            out.append(
                CertificateDates(subject, _utc(_activation(arr[i])), _utc(_expiration(arr[i])))
            )
        return out
    finally:
        for i in range(n.value):
            _deinit(arr[i])
        if arr:
            L.gnutls_free(C.cast(arr, C.c_void_p))
