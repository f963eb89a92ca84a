# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``quichsd-probe -v`` report: what one handshake did, as text for an engineer.

Built from the :class:`~quichsd.probe_trace.Trace` of the handshake and its JSON result:
the peer's certificate chain (subject, issuer, validity, SANs, key), what was negotiated
(version, suite, group, ALPN, SNI, resumption, early data, HelloRetryRequest), both sides'
transport parameters decoded, and the time each phase was reached. Pure: returns lines.
"""

from __future__ import annotations

from typing import Any

from . import probe_wire as W
from .probe_trace import Trace


def describe_certificate(der: bytes) -> list[str]:
    """Subject, issuer, validity, SANs and key of one DER certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        return [f"(not a parsable X.509 certificate: {e})"]
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        kind = f"RSA {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        kind = "Ed25519"
    elif isinstance(key, ed448.Ed448PublicKey):
        kind = "Ed448"
    elif isinstance(key, dsa.DSAPublicKey):
        kind = f"DSA {key.key_size} bits"
    else:
        kind = type(key).__name__
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [_san(n) for n in ext.value]
    except x509.ExtensionNotFound:
        sans = []
    return [
        f"subject: {cert.subject.rfc4514_string() or '(empty)'}",
        f"issuer: {cert.issuer.rfc4514_string() or '(empty)'}",
        f"valid: {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC to "
        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        f"SANs: {', '.join(sans) if sans else '(none)'}",
        f"key: {kind}",
    ]


def _san(name: Any) -> str:
    from cryptography import x509

    prefixes: dict[type, str] = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.RFC822Name: "email",
        x509.UniformResourceIdentifier: "URI",
    }
    prefix = prefixes.get(type(name), type(name).__name__)
    return f"{prefix}:{name.value}"


def _yes(flag: bool | None) -> str:
    return "yes" if flag else "no"


def report(
    trace: Trace,
    result: dict[str, Any],
    *,
    early_data_sent: str | None = None,
    zero_rtt_packets: int | None = None,
) -> list[str]:
    """The verbose report; ``early_data_sent`` says how a client's --early-data text went
    out, ``zero_rtt_packets`` how many 0-RTT packets a server decrypted."""
    out: list[str] = []
    try:
        chain = trace.peer_chain()
    except W.WireError as e:
        chain = []
        out.append(f"- Peer certificate chain: undecodable ({e})")
    if chain:
        out.append(f"- Peer certificate chain ({len(chain)}):")
        for i, der in enumerate(chain):
            lines = describe_certificate(der)
            out.append(f"  [{i}] {lines[0]}")
            out += [f"      {ln}" for ln in lines[1:]]
    elif not out:
        out.append("- Peer certificate chain: none received")
    out += _negotiated(trace, result, early_data_sent, zero_rtt_packets)
    for who, raw in (("our", trace.local_tp), ("peer's", trace.peer_tp)):
        if raw is None:
            out.append(f"- Transport parameters ({who}): none")
            continue
        tps = W.transport_parameters(raw)
        out.append(f"- Transport parameters ({who}, {len(raw)} bytes):")
        out += [f"  {p.name}: {p.value}" for p in tps.params]
        if tps.error:
            out.append(f"  (undecodable after that: {tps.error})")
    out.append("- Timing (ms since the handshake started):")
    out += [f"  {ms * 1000:8.1f}  {phase}" for phase, ms in trace.phases]
    out.append(f"  {float(result['ms']):8.1f}  handshake {'done' if result['ok'] else 'failed'}")
    return out


def _negotiated(
    trace: Trace, result: dict[str, Any], sent: str | None, zero_rtt: int | None
) -> list[str]:
    try:
        hellos = trace.client_hellos()
        shs = trace.server_hellos()
        ee_early = trace.early_data_in_ee()
    except W.WireError as e:
        return [f"- Negotiated: handshake messages undecodable ({e})"]
    final = next((sh for sh in shs if not sh.retry), None)
    version = "TLS 1.3" if final and final.version == 0x0304 else "none"
    group = W.group_name(final.group) if final and final.group else "-"
    out = [
        "- Negotiated:",
        f"  version: {version}",
        f"  cipher suite: {result['cipher'] or (W.suite_name(final.suite) if final else '-')}",
        f"  group: {result['group'] or group}",
        f"  ALPN: {result['alpn'] or '-'}",
    ]
    if hellos:
        ch = hellos[-1]
        out.append(f"  SNI: {ch.server_name or '(none sent)'}")
        out.append(f"  offered suites: {', '.join(W.suite_name(s) for s in ch.suites)}")
        out.append(f"  offered groups: {', '.join(W.group_name(g) for g in ch.groups)}")
        out.append(f"  key shares: {', '.join(W.group_name(g) for g in ch.key_shares)}")
    out.append(f"  HelloRetryRequest: {_yes(trace.hello_retry)}")
    out.append(f"  resumption: {_yes(result['resumed'])}")
    offered = bool(hellos and hellos[0].early_data)
    if not offered:
        early = "not offered"
    elif ee_early is None:
        early = "offered, no answer"
    else:
        early = "offered, " + ("accepted" if ee_early else "rejected by the server")
    if sent:
        early += f"; data sent {sent}"
    if zero_rtt is not None and offered:
        early += f"; {zero_rtt} 0-RTT packet(s) received"
    out.append(f"  early data: {early}")
    return out
