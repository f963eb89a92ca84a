# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m quichsd.demo``: the main job, shown on a kernel without QUIC.

1. ``quichsd --check`` on the shipped default config (etc/quichsd/config.yaml).
2. The daemon itself, on the shipped defaults plus a demo PKI and a unix socket in a
   temporary directory: it reports that the kernel's ``handshake`` family is absent (on
   this kind of machine) and keeps serving its unix socket.
3. Handshakes performed BY THE DAEMON for a userspace QUIC stack (``quichsd-probe --via``:
   the QUIC connection lives in the probe, the TLS in the daemon), over UDP on loopback
   against Debian's ngtcp2 (an independent QUIC stack on GnuTLS): as a client of
   ``gtlsserver`` (full handshake, then resumption with 0-RTT, then AES-128-CCM), and as a
   server for ``gtlsclient``.
4. SIGTERM: the daemon drains and exits 0.

Output: the daemon's log and the probe's JSON result lines.
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
    key = d / "server.key"
    key.touch(mode=0o600)
    key.write_bytes(
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


def demo_config(d: Path) -> Path:
    """The shipped defaults, with the demo PKI and a private unix socket."""
    cfg = d / "config.yaml"
    cfg.write_text(
        f"""client:
  x509:
    truststore: {d}/ca.pem
server:
  x509:
    certificate: {d}/server.pem
    private_key: {d}/server.key
unix_socket:
  path: {d}/run/quichsd.sock
"""
    )
    return cfg


def start_daemon(cfg: Path) -> subprocess.Popen[bytes]:
    say(f"quichsd -s -c {cfg}")
    p = subprocess.Popen([bin_path("quichsd"), "-s", "-c", str(cfg)])
    sock = cfg.parent / "run" / "quichsd.sock"
    for _ in range(200):
        if sock.exists() or p.poll() is not None:
            break
        time.sleep(0.05)
    return p


def stop_daemon(p: subprocess.Popen[bytes]) -> int:
    say("SIGTERM to the daemon")
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    sys.stdout.write(f"exit status {rc}\n")
    return rc


def gtlsclient(port: int, d: Path, *extra: str) -> int:
    out = subprocess.run(
        [
            shutil.which("gtlsclient") or "/usr/bin/gtlsclient",
            "127.0.0.1",
            str(port),
            f"https://localhost:{port}/",
            "--exit-on-all-streams-close",
            "--no-quic-dump",
            "--no-http-dump",
            "--handshake-timeout=10s",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        cwd=d,
    ).stdout
    done = "QUIC handshake has completed" in out
    # gtlsclient exits 0 whatever happened: its log says how the handshake went
    rejected = "Early data was rejected" in out
    sys.stdout.write(f"gtlsclient: handshake completed: {done}; early data rejected: {rejected}\n")
    return 0 if done and not rejected else 1


def run_probes(d: Path) -> int:
    via = str(d / "run" / "quichsd.sock")
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
        "--via",
        via,
    ]
    runs = [
        (
            "full handshake, server certificate verified by the daemon",
            ["--session-file", str(d / "s.json")],
        ),
        # early data offered and accepted; no --early-data text: gtlsserver speaks HTTP/3
        ("resumption, 0-RTT accepted", ["--session-file", str(d / "s.json")]),
        ("AES-128-CCM (the socket's cipher hint)", ["--ciphers", "AES-128-CCM"]),
    ]
    try:
        for title, extra in runs:
            say(f"probe -> gtlsserver (ngtcp2 + GnuTLS), TLS in the daemon: {title}")
            failures += subprocess.call(base + extra, timeout=60) != 0
    finally:
        srv.terminate()
        srv.wait(timeout=10)
        log.close()
    say("gtlsclient (ngtcp2 + GnuTLS) -> probe serve, TLS in the daemon: full, then 0-RTT")
    sport = free_udp_port()
    serve = subprocess.Popen(
        [
            bin_path("quichsd-probe"),
            "serve",
            str(sport),
            "--alpn",
            "h3",
            "--count",
            "2",
            "--via",
            via,
        ],
    )
    time.sleep(1.0)
    sess = [f"--session-file={d}/g.pem", f"--tp-file={d}/g.tp"]
    failures += gtlsclient(sport, d, *sess)
    failures += gtlsclient(sport, d, *sess)
    failures += serve.wait(timeout=60) != 0
    return failures


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="quichsd-demo-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o700)
        make_pki(d)
        say(f"quichsd --check -c {DEFAULT_CONFIG}")
        rc = subprocess.call([bin_path("quichsd"), "--check", "-c", str(DEFAULT_CONFIG)])
        sys.stdout.write(f"exit status {rc}\n")
        daemon = start_daemon(demo_config(d))
        try:
            failures = run_probes(d)
        finally:
            rc = stop_daemon(daemon) or rc
    ok = not (rc or failures)
    say("done: " + ("every handshake succeeded" if ok else "FAILURES above"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
