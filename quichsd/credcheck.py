# SPDX-License-Identifier: GPL-2.0-or-later
"""Credentials checked the way a handshake loads them, at ``--check``, start-up and reload.

:func:`quichsd.credentials.load_credentials` reads the files and checks their PEM
structure. :func:`check_credentials` then builds each role's GnuTLS certificate
credentials with the very function a handshake uses
(:func:`quichsd.service.build_certificate_credentials`: ``gnutls_certificate_set_x509_key_mem2``,
the trust store, the CRL), so what GnuTLS refuses is refused here, once, instead of at
every handshake (which then fails with EIO and no TLS alert). A private key that does not
match its certificate (``GNUTLS_E_CERTIFICATE_KEY_MISMATCH``) is reported as::

    /etc/quichsd/config.yaml:12: server.x509.private_key: /etc/quichsd/server.key does
    not match the certificate /etc/quichsd/server.pem (GnuTLS: ...)

Certificates of our own chains that are expired or not yet valid are only warned about
(a clock may be wrong; the peer decides), one line each, naming the file:
``/etc/quichsd/server.pem: warning: server certificate (CN=x) expired on 2026-01-01T00:00:00Z``.
"""

from __future__ import annotations

import datetime as dt

from .config import Settings, X509Paths
from .credentials import (
    CertChain,
    Credentials,
    CredentialsError,
    Format,
    Role,
    X509Material,
    load_credentials,
)
from .errors import GnuTLSError, LocalError
from .gnutls.pkcs11 import shown as shown_url
from .gnutls.x509 import certificate_dates
from .service import build_certificate_credentials

#: GNUTLS_E_CERTIFICATE_KEY_MISMATCH
KEY_MISMATCH = -60
_KEY_PAIR = "load certificate and private key"


def load_checked(
    settings: Settings, path: str, lines: dict[str, int]
) -> tuple[Credentials, list[str]]:
    """:func:`load_credentials` then :func:`check_credentials`: the credentials and the
    warnings; raises :class:`CredentialsError` (nothing loaded is kept)."""
    creds = load_credentials(settings)
    try:
        return creds, check_credentials(settings, creds, path, lines)
    except BaseException:
        creds.wipe()
        raise


def check_credentials(
    settings: Settings, creds: Credentials, path: str, lines: dict[str, int]
) -> list[str]:
    """Load each role's credentials into GnuTLS as a handshake does; raise
    :class:`CredentialsError` with ``PATH:LINE:`` lines for what GnuTLS refuses. Returns
    warnings (certificates outside their validity period), one line each."""
    errors: list[str] = []
    warnings: list[str] = []
    now = dt.datetime.now(dt.UTC)
    roles: tuple[tuple[Role, X509Paths, X509Material], ...] = (
        ("client", settings.client.x509, creds.client),
        ("server", settings.server.x509, creds.server),
    )
    for role, paths, material in roles:
        try:
            build_certificate_credentials(material, need_key=False).close()
        except LocalError as exc:
            cause = exc.__cause__
            if not isinstance(cause, GnuTLSError):
                raise
            errors.append(_explain(role, paths, cause, path, lines))
        if material.chain is not None:
            warnings.extend(validity_warnings(role, material.chain, now))
    if errors:
        raise CredentialsError(errors)
    return warnings


def _explain(
    role: Role, paths: X509Paths, err: GnuTLSError, path: str, lines: dict[str, int]
) -> str:
    def where(key: str) -> str:
        line = lines.get(f"{role}.x509.{key}")
        return f"{path}:{line}: {role}.x509.{key}" if line else f"{path}: {role}.x509.{key}"

    if err.what == _KEY_PAIR or "PKCS#11" in err.what:  # a key file, or a token's key
        cert, key = paths.certificate, shown_url(paths.private_key or "")
        if err.code == KEY_MISMATCH:
            return (
                f"{where('private_key')}: {key} does not match the certificate {cert} "
                f"(GnuTLS: {err.message})"
            )
        if err.what != _KEY_PAIR:
            return f"{where('private_key')}: GnuTLS cannot {err.what}: {err.message}"
        return f"{where('private_key')}: GnuTLS cannot use {key} with {cert}: {err.message}"
    if "CRL" in err.what:
        return f"{where('crl')}: GnuTLS cannot load {paths.crl}: {err.message}"
    store = paths.truststore or "the system trust store"
    return f"{where('truststore')}: GnuTLS cannot load {store}: {err.message}"


def validity_warnings(role: Role, chain: CertChain, now: dt.datetime) -> list[str]:
    """One line per certificate of ``chain`` that is expired or not yet valid at ``now``."""
    try:
        certs = certificate_dates(chain.data, der=chain.format is Format.DER)
    except GnuTLSError as exc:  # it loaded as a key pair; say why the dates were not read
        return [f"{chain.source}: warning: {role} certificate: validity not checked: {exc}"]
    out = []
    for i, cert in enumerate(certs):
        what = f"{role} certificate" if i == 0 else f"{role} chain certificate {i + 1}"
        subject = cert.subject or "an empty subject"
        before, after = cert.not_before, cert.not_after
        if now > after:
            out.append(f"{chain.source}: warning: {what} ({subject}) expired on {_iso(after)}")
        elif now < before:
            out.append(
                f"{chain.source}: warning: {what} ({subject}) is not valid before {_iso(before)}"
            )
    return out


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
