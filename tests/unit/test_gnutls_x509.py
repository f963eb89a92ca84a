# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.gnutls.x509: subjects and validity periods as GnuTLS reads them, compared with
what the independent ``cryptography`` parser wrote into the test PKI."""

from __future__ import annotations

import pytest
from pki import make_pki

from quichsd.errors import GnuTLSError
from quichsd.gnutls.x509 import certificate_dates


def test_a_pem_chain_in_order_and_a_der_certificate() -> None:
    pki = make_pki()
    got = certificate_dates(pki.chain_pem())
    want = [pki.server_chained.cert, pki.inter.cert]
    assert [d.subject for d in got] == [c.subject.rfc4514_string() for c in want]
    assert [(d.not_before, d.not_after) for d in got] == [
        (c.not_valid_before_utc, c.not_valid_after_utc) for c in want
    ]
    (expired,) = certificate_dates(pki.expired.cert_der, der=True)
    assert expired.not_after == pki.expired.cert.not_valid_after_utc
    assert expired.subject == "CN=server.test"


def test_garbage_is_a_gnutls_error() -> None:
    with pytest.raises(GnuTLSError):
        certificate_dates(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(GnuTLSError):
        certificate_dates(b"\x30\x03\x02\x01\x00", der=True)
