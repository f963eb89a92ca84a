"""``python -m quichsd.demo``: the main job, shown on a kernel without QUIC.

1. ``quichsd --check`` on the embedded default config, then the daemon itself for a few
   seconds: it reports whether the kernel's ``handshake`` family is there and keeps
   serving (on this kind of machine it is absent and the daemon says so once).
2. quichsd's handshake path (driver + GnuTLS engine) through the userspace QUIC socket,
   as a client of Debian's ``gtlsserver`` (ngtcp2 + GnuTLS, an independent QUIC stack) over
   UDP on loopback: a full handshake, then a resumed one with 0-RTT, then AES-128-CCM.

A demo PKI is made in a temporary directory each run. Output is the daemon's log and
the probe's JSON result lines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE.parent / "etc" / "quichsd" / "config.yaml"


def say(text: str) -> None:
    sys.stdout.write(f"\n== {text}\n")
    sys.stdout.flush()


def make_pki(d: Path) -> None:
    import datetime as dt
    import ipaddress

    now = dt.datetime.now(dt.UTC)

    def cert(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("server.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quichsd demo CA")])
    ca = cert("quichsd demo CA", ca_key, ca_name, ca_key, True)
    srv = cert("server.test", srv_key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(srv.public_bytes(pem))
    (d / "server.key").write_bytes(
        srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "htdocs").mkdir()
    (d / "htdocs" / "index.html").write_text("hello from gtlsserver\n")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def run_daemon(config: Path) -> int:
    say(f"quichsd --check -c {config}")
    rc = subprocess.call([bin_path("quichsd"), "--check", "-c", str(config)])
    sys.stdout.write(f"exit status {rc}\n")
    say("quichsd -s (runs 3 s, then SIGTERM)")
    p = subprocess.Popen([bin_path("quichsd"), "-s", "-c", str(config)])
    time.sleep(3)
    p.send_signal(signal.SIGTERM)
    rc2 = p.wait(timeout=30)
    sys.stdout.write(f"exit status {rc2}\n")
    return rc or rc2


def run_probes(d: Path) -> int:
    server = shutil.which("gtlsserver") or "/usr/sbin/gtlsserver"
    port = free_udp_port()
    log = open(d / "gtlsserver.log", "w")  # noqa: SIM115 - closed below
    srv = subprocess.Popen(
        [
            server,
            "127.0.0.1",
            str(port),
            str(d / "server.key"),
            str(d / "server.pem"),
            "-d",
            str(d / "htdocs"),
            "-q",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    failures = 0
    base = [
        bin_path("quichsd-probe"),
        "connect",
        "127.0.0.1",
        str(port),
        "--alpn",
        "h3",
        "--sni",
        "server.test",
        "--cafile",
        str(d / "ca.pem"),
    ]
    runs = [
        ("full handshake, verified server certificate", ["--session-file", str(d / "s.json")]),
        ("resumption with 0-RTT", ["--session-file", str(d / "s.json"), "--early-data", "hi"]),
        ("AES-128-CCM, X25519", ["--ciphers", "AES-128-CCM", "--groups", "X25519"]),
    ]
    try:
        for title, extra in runs:
            say(f"quichsd-probe -> gtlsserver (ngtcp2 + GnuTLS): {title}")
            failures += subprocess.call(base + extra, timeout=60) != 0
    finally:
        srv.terminate()
        srv.wait(timeout=10)
        log.close()
    return failures


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="quichsd-demo-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o700)
        make_pki(d)
        rc = run_daemon(DEFAULT_CONFIG)
        failures = run_probes(d)
    say("done: " + ("all handshakes succeeded" if not (rc or failures) else "FAILURES above"))
    return 1 if (rc or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
