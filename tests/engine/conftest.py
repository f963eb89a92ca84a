# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures for the in-process client engine <-> server engine tests.

The PKI is made once per session by ``tests/pki.py``; credentials are shared by every
engine (as the daemon does). ``pair(client_cfg, server_cfg)`` makes two engines that are
closed at teardown; ``roundtrip`` (from engine_helpers) drives them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for pki.py

from engine_helpers import (  # noqa: E402
    CLIENT_TP,
    SERVER_NAME,
    SERVER_TP,
    Pair,
    Run,
    Transcript,
    creds,
    roundtrip,
)
from pki import Pki, make_pki  # noqa: E402

from quichsd.gnutls.creds import (  # noqa: E402
    AntiReplay,
    CertificateCredentials,
    generate_ticket_key,
)
from quichsd.tls.engine import Engine, EngineConfig, Role  # noqa: E402


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="session")
def client_trust(pki: Pki) -> CertificateCredentials:
    """A client with no certificate that trusts only the test root CA."""
    return creds(trust=pki.ca.cert_pem)


@pytest.fixture(scope="session")
def client_with_cert(pki: Pki) -> CertificateCredentials:
    return creds(pki.client, trust=pki.ca.cert_pem)


@pytest.fixture(scope="session")
def server_p256(pki: Pki) -> CertificateCredentials:
    return creds(pki.server, trust=pki.ca.cert_pem)


@pytest.fixture(scope="session")
def ticket_key() -> bytes:
    return generate_ticket_key()


@pytest.fixture(scope="session")
def anti_replay() -> AntiReplay:
    """One process-wide anti-replay context, as in the daemon."""
    return AntiReplay()


@pytest.fixture
def client_cfg(client_trust: CertificateCredentials) -> EngineConfig:
    return EngineConfig(
        Role.CLIENT,
        alpns=(b"h3",),
        transport_params=CLIENT_TP,
        peer_name=SERVER_NAME,
        x509=client_trust,
    )


@pytest.fixture
def server_cfg(
    server_p256: CertificateCredentials, ticket_key: bytes, anti_replay: AntiReplay
) -> EngineConfig:
    return EngineConfig(
        Role.SERVER,
        alpns=(b"smb", b"h3"),
        transport_params=SERVER_TP,
        x509=server_p256,
        ticket_key=ticket_key,
        anti_replay=anti_replay,
    )


@pytest.fixture
def pair() -> Iterator[Pair]:
    made: list[Engine] = []

    def make(ccfg: EngineConfig, scfg: EngineConfig) -> tuple[Engine, Engine]:
        c = Engine(ccfg)
        made.append(c)
        s = Engine(scfg)
        made.append(s)
        return c, s

    yield make
    for e in made:
        e.close()
        e.close()  # idempotent


@pytest.fixture
def run(pair: Pair) -> Run:
    """``run(client_cfg, server_cfg, **client_overrides)`` -> Transcript."""

    def go(ccfg: EngineConfig, scfg: EngineConfig, **over: Any) -> Transcript:
        if over:
            ccfg = dataclasses.replace(ccfg, **over)
        return roundtrip(*pair(ccfg, scfg))

    return go
