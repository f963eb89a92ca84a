# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 13 item 12: private keys given as PKCS#11 URLs, on a real token (SoftHSM 2 through
p11-kit, the way GnuTLS finds any module), as tlshd allows.

The daemon (a real process) signs its TLS 1.3 CertificateVerify with the token's key for
a client certificate gtlsserver asks for; ``--check`` refuses a token key that does not
match its certificate with ``PATH:LINE``; a ``pin-value`` never appears in a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki import write_peer_dir
from quichsd_proc import QuichsdProcess, via_connect
from userspace_peers import GtlsServer

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        shutil.which("softhsm2-util") is None or shutil.which("p11tool") is None,
        reason="needs softhsm2-util and p11tool (packages softhsm2, gnutls-bin)",
    ),
]
PIN = "4711"
QUICHSD = str(Path(sys.executable).parent / "quichsd")


class Token:
    """A SoftHSM token in a private directory, holding the test PKI's client key."""

    def __init__(self, d: Path, pki: Path) -> None:
        (d / "tokens").mkdir(parents=True)
        self.conf = d / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\n")
        self.env = {**os.environ, "SOFTHSM2_CONF": str(self.conf)}
        self.run("softhsm2-util", "--init-token", "--free", "--label", "quichsd",
                 "--pin", PIN, "--so-pin", "123456")  # fmt: skip
        for label, key in (("client", "client.key"), ("server", "server.key")):
            self.run("p11tool", "--login", "--write", "--label", label,
                     "--load-privkey", str(pki / key), "pkcs11:token=quichsd",
                     env={"GNUTLS_PIN": PIN})  # fmt: skip

    def run(self, *argv: str, env: dict[str, str] | None = None) -> str:
        r = subprocess.run(
            argv, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, (argv, r.stdout, r.stderr)
        return r.stdout

    @staticmethod
    def url(label: str) -> str:
        return f"pkcs11:token=quichsd;object={label};type=private?pin-value={PIN}"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_peer_dir(tmp_path_factory.mktemp("pki11p"))


@pytest.fixture(scope="module")
def token(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Token:
    return Token(tmp_path_factory.mktemp("hsm"), pki_dir)


@pytest.fixture(scope="module")
def mtls_server(pki_dir: Path) -> Iterator[GtlsServer]:
    s = GtlsServer(pki_dir, pki_dir / "server.pem", pki_dir / "server.key", "--verify-client")
    yield s
    s.stop()


def client_config(pki: Path, key: str) -> str:
    return (
        f"client:\n  x509:\n    truststore: {pki / 'ca.pem'}\n"
        f"    certificate: {pki / 'client.pem'}\n    private_key: '{key}'\n"
    )


async def test_client_certificate_signed_with_the_token_key(
    pki_dir: Path, token: Token, mtls_server: GtlsServer, tmp_path: Path
) -> None:
    """gtlsserver asks for a client certificate: the daemon sends client.pem and proves
    it owns the key with a CertificateVerify the token signed (the key never left it)."""
    d = QuichsdProcess(tmp_path, client_config(pki_dir, token.url("client")), env=token.env)
    try:
        res = await via_connect(d, mtls_server.port, "server.test")
    finally:
        d.stop()
    assert res.status == 0, (res, d.log()[-2000:])
    assert PIN not in d.log()


def test_check_refuses_a_token_key_of_another_certificate(
    pki_dir: Path, token: Token, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(client_config(pki_dir, token.url("server")))  # client.pem, server's key
    r = subprocess.run([QUICHSD, "--check", "-c", str(cfg)], env=token.env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r
    line = r.stderr.strip().splitlines()[0]
    assert line.startswith(f"{cfg}:5: client.x509.private_key: pkcs11:token=quichsd;"), line
    assert "does not match the certificate" in line and str(pki_dir / "client.pem") in line
    assert "pin-value=***" in line and PIN not in r.stderr


def test_check_names_a_missing_token_object_without_the_pin(
    pki_dir: Path, token: Token, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(client_config(pki_dir, token.url("nosuchkey")))
    r = subprocess.run([QUICHSD, "--check", "-c", str(cfg)], env=token.env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1, r
    line = r.stderr.strip().splitlines()[0]
    assert line.startswith(f"{cfg}:5: client.x509.private_key: GnuTLS cannot open the PKCS#11 key")
    assert "object=nosuchkey" in line and PIN not in r.stderr, line
    cfg.write_text(client_config(pki_dir, token.url("client")))
    r = subprocess.run([QUICHSD, "--check", "-c", str(cfg)], env=token.env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
