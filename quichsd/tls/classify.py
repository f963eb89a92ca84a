# SPDX-License-Identifier: GPL-2.0-or-later
"""GnuTLS failures -> :class:`~quichsd.errors.HandshakeError` with the TLS alert to send.

One place decides which error class (and so which kernel status) and which alert a failed
GnuTLS call becomes (STYLE.md §3.4). The engine calls these only on its failure paths; the
session-dependent parts (the verify status, the alert GnuTLS picked) are read by the engine
and passed in.
"""

from __future__ import annotations

import ctypes as C

from ..errors import HandshakeError, LocalError, PeerRejected
from ..gnutls import _lib as L
from ..logtext import printable
from .alerts import (
    ALERT_BAD_CERTIFICATE,
    ALERT_CERTIFICATE_EXPIRED,
    ALERT_CERTIFICATE_REVOKED,
    ALERT_INTERNAL_ERROR,
    ALERT_NO_APPLICATION_PROTOCOL,
    ALERT_UNKNOWN_CA,
)


def verify_alert(status: int) -> int:
    """The TLS alert that best names a certificate-verification failure (RFC 8446 §6.2)."""
    if status & L.GNUTLS_CERT_REVOKED:
        return ALERT_CERTIFICATE_REVOKED
    if status & (L.GNUTLS_CERT_EXPIRED | L.GNUTLS_CERT_NOT_ACTIVATED):
        return ALERT_CERTIFICATE_EXPIRED
    if status & (L.GNUTLS_CERT_SIGNER_NOT_FOUND | L.GNUTLS_CERT_SIGNER_NOT_CA):
        return ALERT_UNKNOWN_CA
    return ALERT_BAD_CERTIFICATE


def verify_text(status: int) -> str:
    """GnuTLS's own words for a verification status (``status 0x..`` if it has none)."""
    out = L.datum_t()
    if (
        L.gnutls_certificate_verification_status_print(status, L.GNUTLS_CRT_X509, C.byref(out), 0)
        < 0
    ):
        return f"status 0x{status:x}"
    return L.take_datum(out).decode(errors="replace").strip()  # GnuTLS ends it with a space


def verify_error(status: int, expected: str | None = None) -> PeerRejected:
    """The peer's certificate chain failed verification with ``status`` (nonzero);
    ``expected`` names the peer it had to be for, said when the name did not match."""
    text = verify_text(status).strip()
    if expected and status & L.GNUTLS_CERT_UNEXPECTED_OWNER:
        text += f" (expected {expected})"
    return PeerRejected(f"peer certificate rejected: {text}", alert=verify_alert(status))


def captured_error(err: BaseException, what: str) -> HandshakeError:
    """An exception captured in a callback during ``what``: a HandshakeError as it is,
    anything else (our bug) as LocalError with internal_error, chained to its cause."""
    if isinstance(err, HandshakeError):
        return err
    exc = LocalError(f"internal error during {what}: {err!r}", alert=ALERT_INTERNAL_ERROR)
    exc.__cause__ = err
    return exc


def classify(ret: int, what: str, alert: int | None, alpns: tuple[bytes, ...]) -> HandshakeError:
    """GnuTLS error ``ret`` from ``what`` (not a verification failure: see verify_error).

    ``alert`` is the one GnuTLS chose to send for ``ret`` (gnutls_alert_send_appropriate),
    if any; ``alpns`` are the protocols we offered.
    """
    msg = L.strerror(ret)
    if ret == L.GNUTLS_E_NO_APPLICATION_PROTOCOL:
        offered = ",".join(printable(a) for a in alpns)
        return PeerRejected(
            f"no common application protocol (we offer {offered})",
            alert=ALERT_NO_APPLICATION_PROTOCOL,
        )
    if ret in (L.GNUTLS_E_MEMORY_ERROR, L.GNUTLS_E_INTERNAL_ERROR):
        return LocalError(f"{what}: {msg}", alert=alert or ALERT_INTERNAL_ERROR)
    return PeerRejected(f"{what}: {msg}", alert=alert)
