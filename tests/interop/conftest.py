# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures shared by the interop tests: the test PKI (made once per module), its PEM files
with an ``htdocs`` for gtlsserver, GnuTLS credentials of both roles, one anti-replay
context (modules may define their own ``pki_dir``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import Pki, make_pki

from quichsd.gnutls.creds import AntiReplay, CertificateCredentials


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def pki_dir(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.write(d)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_bytes(b"hello from gtlsserver\n")
    return d


@pytest.fixture
def client_creds(pki: Pki) -> Iterator[CertificateCredentials]:
    c = CertificateCredentials()
    c.set_trust(pki.ca.cert_pem)
    yield c
    c.close()


@pytest.fixture
def server_creds(pki: Pki) -> Iterator[CertificateCredentials]:
    c = CertificateCredentials()
    c.set_key_pair(pki.server.cert_pem, pki.server.key_pem)
    c.set_trust(pki.ca.cert_pem)
    yield c
    c.close()


@pytest.fixture(scope="module")
def anti_replay() -> Iterator[AntiReplay]:
    a = AntiReplay()
    yield a
    a.close()
