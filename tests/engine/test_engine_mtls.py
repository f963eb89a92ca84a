# SPDX-License-Identifier: GPL-2.0-or-later
"""Client certificates: REQUIRE with and without one, REQUEST (optional), bad client certs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno

from engine_helpers import HT_CERTIFICATE, HT_CERTIFICATE_REQUEST, Run, creds
from pki import Pki, issue

from quichsd.errors import PeerRejected
from quichsd.gnutls.creds import CertificateCredentials
from quichsd.tls.engine import EngineConfig
from quichsd.tls.events import AlertSent, HandshakeComplete
from quichsd.uapi import CertRequest


def test_require_with_client_cert(
    pki: Pki,
    client_cfg: EngineConfig,
    server_cfg: EngineConfig,
    client_with_cert: CertificateCredentials,
    run: Run,
) -> None:
    scfg = dataclasses.replace(server_cfg, cert_request=CertRequest.REQUIRE)
    t = run(client_cfg, scfg, x509=client_with_cert)
    assert not t.errors
    assert t.complete("server").peer_certificates == (pki.client.cert_der,)
    assert t.complete("client").peer_certificates == (pki.server.cert_der,)
    assert any(ht == HT_CERTIFICATE_REQUEST for _, ht, _ in t.messages("server"))
    assert any(ht == HT_CERTIFICATE for _, ht, _ in t.messages("client"))


def test_require_without_client_cert_fails_116(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    scfg = dataclasses.replace(server_cfg, cert_request=CertRequest.REQUIRE)
    t = run(client_cfg, scfg)  # client has trust anchors only
    err = t.errors["server"]
    assert type(err) is PeerRejected and err.status == errno.EACCES
    assert err.alert == 116  # certificate_required (GnuTLS 3.7.9)
    assert "Certificate is required" in err.reason
    assert t.of("server", AlertSent) == [AlertSent(116)]
    assert not t.of("server", HandshakeComplete)


def test_require_untrusted_client_cert_is_not_sent(
    pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    """GnuTLS's client sends only a cert issued by a CA the server named: 116 again."""
    scfg = dataclasses.replace(server_cfg, cert_request=CertRequest.REQUIRE)
    t = run(client_cfg, scfg, x509=creds(pki.rogue, trust=pki.ca.cert_pem))
    assert t.errors["server"].alert == 116
    certs = [body for _, ht, body in t.messages("client") if ht == HT_CERTIFICATE]
    assert certs == [b"\x00\x00\x00\x00"]  # empty context, empty certificate_list


def test_request_without_client_cert_succeeds(
    client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    scfg = dataclasses.replace(server_cfg, cert_request=CertRequest.REQUEST)
    t = run(client_cfg, scfg)
    assert not t.errors
    assert t.complete("server").peer_certificates == ()


def test_request_with_client_cert(
    pki: Pki,
    client_cfg: EngineConfig,
    server_cfg: EngineConfig,
    client_with_cert: CertificateCredentials,
    run: Run,
) -> None:
    scfg = dataclasses.replace(server_cfg, cert_request=CertRequest.REQUEST)
    t = run(client_cfg, scfg, x509=client_with_cert)
    assert not t.errors
    assert t.complete("server").peer_certificates == (pki.client.cert_der,)


def test_expired_client_cert_rejected_45(
    pki: Pki, client_cfg: EngineConfig, server_cfg: EngineConfig, run: Run
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = issue(
        "client.test",
        pki.ca,
        sans=("client.test",),
        eku="client",
        not_before=now - dt.timedelta(days=9),
        not_after=now - dt.timedelta(days=2),
    )
    for policy in (CertRequest.REQUEST, CertRequest.REQUIRE):
        scfg = dataclasses.replace(server_cfg, cert_request=policy)
        t = run(client_cfg, scfg, x509=creds(old, trust=pki.ca.cert_pem))
        err = t.errors["server"]
        assert type(err) is PeerRejected and err.alert == 45, (policy, err)
        assert "expired" in err.reason
        assert t.of("server", AlertSent) == [AlertSent(45)]
