# SPDX-License-Identifier: GPL-2.0-or-later
"""CRLs: a server certificate revoked by the CA's CRL is refused with certificate_revoked."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from engine_helpers import Run, creds
from pki import Issued, Pki

from quichsd.errors import PeerRejected
from quichsd.tls.engine import EngineConfig
from quichsd.tls.events import AlertSent, HandshakeComplete


def crl_pem(ca: Issued, revoked: list[Issued]) -> bytes:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=1))
    )
    for r in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(r.cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
    return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_revoked_server_certificate_alert_44(
    pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    trust = creds(trust=pki.ca.cert_pem)
    assert trust.add_crl(crl_pem(pki.ca, [pki.server])) == 1
    t = run(client_cfg, server_cfg, x509=trust)
    err = t.errors["client"]
    assert type(err) is PeerRejected and err.alert == 44, err
    assert "revoked" in err.reason
    assert t.of("client", AlertSent) == [AlertSent(44)]
    trust.close()


def test_crl_listing_other_serials_does_not_reject(
    pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    trust = creds(trust=pki.ca.cert_pem)
    trust.add_crl(crl_pem(pki.ca, [pki.client]))
    t = run(client_cfg, server_cfg, x509=trust)
    assert not t.errors, t.errors
    assert t.of("client", HandshakeComplete)
    trust.close()
