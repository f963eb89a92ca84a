# SPDX-License-Identifier: GPL-2.0-or-later
"""Credential files: loading, PEM checks, owner/mode warnings, kernel-serial precedence."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from quichsd import credentials as cr
from quichsd.config import ClientSettings, ServerSettings, Settings, X509Paths
from quichsd.credentials import (
    CredentialsError,
    CredentialStore,
    Format,
    load_credentials,
    read_file,
)
from quichsd.errors import LocalError
from quichsd.pem import PemError, check_certificates, check_crls, check_private_key

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


def _cert(
    key: ec.EllipticCurvePrivateKey, name: str, issuer_key: ec.EllipticCurvePrivateKey, issuer: str
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(issuer_key, hashes.SHA256())
    )


class Pki:
    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert(self.ca_key, "Test CA", self.ca_key, "Test CA")
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = _cert(self.key, "server.test", self.ca_key, "Test CA")
        now = datetime.datetime.now(datetime.UTC)
        self.crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.subject)
            .last_update(now)
            .next_update(now + datetime.timedelta(days=1))
            .sign(self.ca_key, hashes.SHA256())
        )

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def key_der(self) -> bytes:
        return self.key.private_bytes(
            DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def chain_pem(self) -> bytes:
        return self.leaf.public_bytes(PEM) + self.ca.public_bytes(PEM)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _write(path: Path, data: bytes, mode: int) -> str:
    path.write_bytes(data)
    os.chmod(path, mode)
    return str(path)


@pytest.fixture
def files(tmp_path: Path, pki: Pki) -> dict[str, str]:
    return {
        "certificate": _write(tmp_path / "chain.pem", pki.chain_pem(), 0o644),
        "private_key": _write(tmp_path / "key.pem", pki.key_pem(), 0o600),
        "truststore": _write(tmp_path / "ca.pem", pki.ca.public_bytes(PEM), 0o644),
        "crl": _write(tmp_path / "crl.pem", pki.crl.public_bytes(PEM), 0o644),
    }


def _settings(
    client: dict[str, str] | None = None, server: dict[str, str] | None = None
) -> Settings:
    return Settings(
        client=ClientSettings(x509=X509Paths(**(client or {}))),
        server=ServerSettings(x509=X509Paths(**(server or {}))),
    )


def test_load_all_files(files: dict[str, str], pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "quichsd.credentials")
    creds = load_credentials(_settings(server=files))
    s = creds.server
    assert s.chain is not None and s.chain.count == 2 and s.chain.format is Format.PEM
    assert s.chain.data == pki.chain_pem()
    assert s.key is not None and s.key.format is Format.PEM and bytes(s.key.data) == pki.key_pem()
    assert s.trust_pem == pki.ca.public_bytes(PEM)
    assert s.crl_pem == pki.crl.public_bytes(PEM)
    assert creds.client == cr.X509Material()  # nothing configured: system trust, no cert
    assert caplog.records == []  # root-owned (tests run as root), good modes: no warnings
    assert "BEGIN" not in repr(creds) and "PRIVATE" not in repr(creds)
    size = len(pki.key_pem())
    assert repr(s.key) == f"PrivateKey(pem, {size} bytes, from {files['private_key']})"


def test_der_private_key(tmp_path: Path, files: dict[str, str], pki: Pki) -> None:
    files["private_key"] = _write(tmp_path / "key.der", pki.key_der(), 0o600)
    key = load_credentials(_settings(client=files)).client.key
    assert key is not None and key.format is Format.DER and bytes(key.data) == pki.key_der()


def test_wipe_zeroes_key(files: dict[str, str]) -> None:
    creds = load_credentials(_settings(server=files))
    assert creds.server.key is not None
    creds.wipe()
    assert set(creds.server.key.data) == {0}


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_owner_and_mode_warnings(files: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(files["private_key"], 0o640)
    os.chmod(files["certificate"], 0o666)
    os.chown(files["truststore"], 1000, 0)
    caplog.set_level(logging.WARNING, "quichsd.credentials")
    load_credentials(_settings(client=files))
    got = sorted(r.getMessage() for r in caplog.records)
    assert got == sorted(
        [
            f"{files['private_key']}: private key file has mode 0640: group or others can access "
            "it (expected 0600)",
            f"{files['certificate']}: certificate file has mode 0666: group or others can write "
            "it (expected 0644)",
            f"{files['truststore']}: owned by uid 1000, not root (mode 0644)",
        ]
    )
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_private_key_symlink_refused(tmp_path: Path, files: dict[str, str]) -> None:
    link = tmp_path / "link.pem"
    link.symlink_to(files["private_key"])
    files["private_key"] = str(link)
    with pytest.raises(CredentialsError) as info:
        load_credentials(_settings(server=files))
    assert info.value.errors == [
        f"{link}: private key file is a symbolic link; name the file itself"
    ]


def test_missing_files_all_reported(tmp_path: Path) -> None:
    paths = {k: str(tmp_path / k) for k in ("certificate", "private_key", "truststore", "crl")}
    with pytest.raises(CredentialsError) as info:
        load_credentials(_settings(client=paths))
    assert info.value.errors == [
        f"{paths[k]}: cannot open: No such file or directory"
        for k in ("certificate", "private_key", "truststore", "crl")
    ]


def test_not_a_regular_file(tmp_path: Path, files: dict[str, str]) -> None:
    files["truststore"] = str(tmp_path)
    with pytest.raises(CredentialsError) as info:
        load_credentials(_settings(client=files))
    assert info.value.errors == [f"{tmp_path}: a directory, not a regular file"]


def test_key_in_certificate_slot(tmp_path: Path, files: dict[str, str], pki: Pki) -> None:
    files["certificate"] = _write(tmp_path / "oops.pem", pki.key_pem(), 0o644)
    with pytest.raises(CredentialsError) as info:
        load_credentials(_settings(server=files))
    assert info.value.errors == [
        f"{files['certificate']}: server certificate: no PEM 'CERTIFICATE' block found"
    ]


def test_chain_of_eleven_refused(tmp_path: Path, files: dict[str, str], pki: Pki) -> None:
    files["certificate"] = _write(tmp_path / "long.pem", pki.leaf.public_bytes(PEM) * 11, 0o644)
    with pytest.raises(CredentialsError) as info:
        load_credentials(_settings(client=files))
    assert info.value.errors == [
        f"{files['certificate']}: client certificate: 11 certificates, more than the 10 allowed"
    ]


def test_truncated_chain(pki: Pki) -> None:
    pem = pki.chain_pem()
    with pytest.raises(
        PemError,
        match=r"^'-----BEGIN CERTIFICATE-----' at line \d+ has no "
        "matching END line$",
    ):
        check_certificates(pem[:-40], limit=10)
    body_cut = pki.leaf.public_bytes(PEM).replace(b"\n", b"\n", 1)
    lines = body_cut.split(b"\n")
    damaged = b"\n".join(lines[:2] + lines[3:])  # drop one base64 line: DER length mismatch
    with pytest.raises(PemError, match=r"^certificate 1 \(line 1\) is not a DER structure"):
        check_certificates(damaged, limit=10)
    with pytest.raises(PemError, match=r"^certificate 2 \(line \d+\) is not valid base64$"):
        check_certificates(
            pki.leaf.public_bytes(PEM) + pki.ca.public_bytes(PEM).replace(b"\n", b"\n!", 2),
            limit=10,
        )


def test_chain_count_and_text_between_blocks(pki: Pki) -> None:
    data = b"subject=CN = server.test\n" + pki.chain_pem() + b"# trailing comment\n"
    assert check_certificates(data, limit=10) == 2
    assert check_crls(pki.crl.public_bytes(PEM)) == 1
    with pytest.raises(PemError, match="no PEM 'X509 CRL' block found"):
        check_crls(pki.ca.public_bytes(PEM))


def test_private_key_checks(pki: Pki) -> None:
    assert check_private_key(bytearray(pki.key_pem())) is True
    assert check_private_key(bytearray(pki.key_der())) is False
    sec1 = pki.key.private_bytes(
        PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert check_private_key(bytearray(sec1)) is True
    enc = pki.key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(PemError, match=r"^encrypted private keys are not supported \(line 1\)"):
        check_private_key(bytearray(enc))
    with pytest.raises(PemError, match="^2 PEM private key blocks found"):
        check_private_key(bytearray(pki.key_pem() * 2))
    with pytest.raises(PemError, match="^no PEM private key blocks found"):
        check_private_key(bytearray(pki.ca.public_bytes(PEM)))
    with pytest.raises(PemError, match="^neither a PEM private key nor a DER one$"):
        check_private_key(bytearray(pki.key_der()[:-1]))


def test_read_file_size_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "big", b"x" * 100, 0o600)
    with pytest.raises(CredentialsError) as info:
        read_file(path, secret=True, limit=99)
    assert info.value.errors == [f"{path}: 100 bytes, more than 99"]
    assert read_file(path, secret=True, limit=100) == bytearray(b"x" * 100)


def test_store_reload_swaps_only_on_success(tmp_path: Path, files: dict[str, str]) -> None:
    store = CredentialStore(_settings(server=files))
    first = store.current
    assert first.server.chain is not None
    with pytest.raises(CredentialsError):
        store.reload(_settings(server={"truststore": str(tmp_path / "gone.pem")}))
    assert store.current is first
    second = store.reload(_settings())
    assert store.current is second and second.server.chain is None


def test_kernel_serials_win_over_files(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str], pki: Pki
) -> None:
    payloads = {101: bytearray(pki.leaf.public_bytes(DER)), 102: bytearray(pki.key_der())}
    monkeypatch.setattr(cr.keyring, "read_key", lambda serial: bytearray(payloads[serial]))
    creds = load_credentials(_settings(client=files))
    m = creds.x509("client", cert_serial=101, key_serial=102)
    assert m.chain is not None and m.chain.format is Format.DER and m.chain.count == 1
    assert m.chain.data == pki.leaf.public_bytes(DER) and m.chain.source == "key serial 101"
    assert m.key is not None and m.key.format is Format.DER and m.key.transient
    assert m.trust_pem == creds.client.trust_pem  # trust still from the config
    m.release()
    assert set(m.key.data) == {0}
    assert creds.client.key is not None and bytes(creds.client.key.data) == pki.key_pem()
    assert creds.x509("client") == creds.client  # no serials: config material
    creds.x509("client").release()  # config keys are not transient: untouched
    assert bytes(creds.client.key.data) == pki.key_pem()


def test_kernel_serial_not_der(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cr.keyring, "read_key", lambda serial: bytearray(b"-----BEGIN"))
    with pytest.raises(LocalError, match="^key serial 7: certificate is not DER$"):
        cr.Credentials().x509("server", cert_serial=7)
    with pytest.raises(LocalError, match="^key serial 8: private key is not DER$"):
        cr.Credentials().x509("server", key_serial=8)


def _imports(module: str) -> set[str]:
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module", ["quichsd.credentials", "quichsd.keyring", "quichsd.pem", "quichsd.config"]
)
def test_bytes_level_modules_do_not_import_gnutls(module: str) -> None:
    bad = {n for n in _imports(module) if n.startswith(("quichsd.gnutls", "quichsd.tls"))}
    assert bad == set()


def test_config_and_pem_are_pure() -> None:
    io = {"os", "socket", "asyncio", "ctypes", "subprocess", "pyroute2", "logging"}
    assert _imports("quichsd.config") & io == set()
    assert _imports("quichsd.pem") & io == set()
