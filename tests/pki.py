# SPDX-License-Identifier: GPL-2.0-or-later
"""Test PKI made at test time with `cryptography` (no private keys are committed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def key_der(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _key(kind: str) -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    cn: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    kind: str = "ec",
    sans: tuple[str, ...] = (),
    eku: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = _key(kind)
    now = dt.datetime.now(dt.UTC)
    nb = not_before or now - dt.timedelta(days=1)
    na = not_after or now + dt.timedelta(days=30)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, kind == "rsa", False, False, False, False, False, False),
            True,
        )
    if sans:
        names: list[x509.GeneralName] = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku == "server":
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    elif eku == "client":
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    signer = issuer.key if issuer else key
    cert = b.sign(signer, hashes.SHA256())
    return Issued(cert, key)


@dataclass
class Pki:
    ca: Issued
    inter: Issued
    server: Issued  # P-256, signed by ca
    server_rsa: Issued  # RSA-2048, signed by ca
    client_rsa: Issued  # RSA-2048 client.test (kernels without ECDSA parse it as a key)
    server_chained: Issued  # P-256, signed by the intermediate
    client: Issued
    expired: Issued
    wrong_name: Issued
    rogue_ca: Issued
    rogue: Issued  # signed by an unknown CA
    server_eku_client: Issued  # server.test, but EKU clientAuth only
    client_eku_server: Issued  # client.test, but EKU serverAuth only
    server_ip_only: Issued  # IP address SAN 127.0.0.1, no DNS name
    server_other_ip: Issued  # IP address SAN 127.0.0.2 only
    server_idn: Issued  # DNS SAN xn--bcher-kva.test (bücher.test), CN the same
    server_public: Issued  # a name nothing asks for (as any public server's would be)

    def chain_pem(self) -> bytes:
        return self.server_chained.cert_pem + self.inter.cert_pem

    def write(self, d: Path) -> dict[str, Path]:
        """Write PEM files for external peers; returns name -> path."""
        out: dict[str, Path] = {}
        names = ("ca", "server", "server_rsa", "client", "client_rsa", "expired", "wrong_name")
        special = ("server_eku_client", "client_eku_server", "server_ip_only")
        special += ("server_other_ip", "server_idn", "server_public")
        for name in (*names, "rogue", *special):
            it: Issued = getattr(self, name)
            (d / f"{name}.pem").write_bytes(it.cert_pem)
            (d / f"{name}.key").write_bytes(it.key_pem)
            (d / f"{name}.key").chmod(0o600)
            out[name] = d / f"{name}.pem"
            out[name + "_key"] = d / f"{name}.key"
        (d / "chain.pem").write_bytes(self.chain_pem())
        (d / "chain.key").write_bytes(self.server_chained.key_pem)
        out["chain"] = d / "chain.pem"
        out["chain_key"] = d / "chain.key"
        return out


def write_peer_dir(d: Path) -> Path:
    """``d`` with a fresh PKI (:meth:`Pki.write`) and the ``htdocs/index.html`` that
    gtlsserver serves: the working directory of the ngtcp2 peers' tests."""
    make_pki().write(d)
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text("hello\n")
    return d


SERVER_NAMES = ("server.test", "localhost", "127.0.0.1")
#: an internationalised name, as a U-label and as its IDNA2008 A-label
IDN_U_LABEL = "bücher.test"
IDN_A_LABEL = "xn--bcher-kva.test"


def make_pki() -> Pki:
    ca = issue("quichsd test CA", ca=True)
    inter = issue("quichsd test intermediate", ca, ca=True)
    now = dt.datetime.now(dt.UTC)
    rogue_ca = issue("rogue CA", ca=True)
    return Pki(
        ca=ca,
        inter=inter,
        server=issue("server.test", ca, sans=SERVER_NAMES, eku="server"),
        server_rsa=issue("server.test", ca, kind="rsa", sans=SERVER_NAMES, eku="server"),
        server_chained=issue("server.test", inter, sans=SERVER_NAMES, eku="server"),
        client=issue("client.test", ca, sans=("client.test",), eku="client"),
        client_rsa=issue("client.test", ca, kind="rsa", sans=("client.test",), eku="client"),
        expired=issue(
            "server.test",
            ca,
            sans=SERVER_NAMES,
            eku="server",
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        ),
        wrong_name=issue("other.test", ca, sans=("other.test",), eku="server"),
        rogue_ca=rogue_ca,
        rogue=issue("server.test", rogue_ca, sans=SERVER_NAMES, eku="server"),
        server_eku_client=issue("server.test", ca, sans=SERVER_NAMES, eku="client"),
        client_eku_server=issue("client.test", ca, sans=("client.test",), eku="server"),
        server_ip_only=issue("127.0.0.1", ca, sans=("127.0.0.1",), eku="server"),
        server_other_ip=issue("127.0.0.2", ca, sans=("127.0.0.2",), eku="server"),
        server_idn=issue(IDN_A_LABEL, ca, sans=(IDN_A_LABEL,), eku="server"),
        server_public=issue("www.public.test", ca, sans=("www.public.test",), eku="server"),
    )
