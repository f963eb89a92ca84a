# SPDX-License-Identifier: GPL-2.0-or-later
"""Turns one kernel handshake request into a driver run: credentials, policy, deadline.

:class:`HandshakeService` holds what all handshakes share and what a reload replaces as
one snapshot: settings, credentials (GnuTLS objects built once per snapshot), the
process-wide anti-replay context and priority cache, the executor for GnuTLS steps.
A handshake in flight keeps the snapshot it started with.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Protocol

from . import ktls, uapi
from .config import Settings, parse_config
from .credentials import (
    Credentials,
    Format,
    SessionKeyrings,
    X509Material,
    lookup_psk,
    psk_from_serial,
)
from .driver import HandshakeRequest, HandshakeResult, TlsPolicy, run_handshake
from .errors import GnuTLSError, HandshakeError, InvalidRequest, LocalError
from .gnutls.creds import AntiReplay, CertificateCredentials, PriorityCache
from .gnutls.features import features
from .keylog import KeyLogFile
from .keyring import KEY_SPEC_USER_KEYRING
from .logtext import printable
from .netlink import AcceptRequest, HandshakeOutcome
from .peerkeys import peer_certificate_key
from .quicsocket import QuicSocket, peer_address
from .tcpdriver import KtlsInstaller, run_tcp_handshake
from .tls.engine import CIPHER_TOKEN, Auth, ResumptionKx, Role
from .uapi import CertRequest, Cipher

log = logging.getLogger("quichsd.service")


class ClosableQuicSocket(QuicSocket, Protocol):
    def close(self) -> None: ...


SocketAdapter = Callable[[socket.socket], Awaitable[ClosableQuicSocket]]

_CIPHER_BY_NAME = {token: c for c, token in CIPHER_TOKEN.items()}
_CERT_REQUEST = {
    "ignore": CertRequest.IGNORE,
    "request": CertRequest.REQUEST,
    "require": CertRequest.REQUIRE,
}


def tls_policy(settings: Settings) -> TlsPolicy:
    t = settings.tls
    return TlsPolicy(
        ciphers=tuple(_CIPHER_BY_NAME[c] for c in t.ciphers),
        groups=tuple(t.groups),
        resumption_kx=ResumptionKx(t.resumption_key_exchange),
        session_tickets=t.session_tickets,
        early_data=t.early_data,
    )


def default_policy() -> TlsPolicy:
    """The TLS policy of a daemon whose config leaves ``tls:`` at the defaults: the same
    ciphers and groups (X25519 first; hybrid post-quantum groups before it where the
    linked GnuTLS has them), resumption key exchange and early-data choice."""
    return tls_policy(parse_config("", "(defaults)", available_groups=features().groups))


def build_certificate_credentials(m: X509Material, *, need_key: bool) -> CertificateCredentials:
    """GnuTLS credentials from loaded material (own chain + key, trust, CRL)."""
    cc = CertificateCredentials()
    try:
        if m.chain is not None and m.key_url is not None:
            cc.set_key_url(m.chain.data, m.key_url, der=m.chain.format is Format.DER)
        elif m.chain is not None and m.key is not None:
            key = bytes(m.key.data)
            der = m.chain.format is Format.DER
            if m.key.format is not m.chain.format:  # GnuTLS takes one format for both
                key = der_key_as_pem(key) if not der else key
            cc.set_key_pair(m.chain.data, key, der=der)
        elif need_key:
            raise LocalError("no certificate and private key configured or passed by the kernel")
        cc.set_trust(m.trust_pem)
        if m.crl_pem:
            cc.add_crl(m.crl_pem)
    except GnuTLSError as e:
        cc.close()
        raise LocalError(f"cannot load x509 credentials: {e}") from e
    except BaseException:
        cc.close()
        raise
    return cc


def der_key_as_pem(der: bytes) -> bytes:
    """A DER (PKCS#8) private key in PEM armour, for a PEM certificate chain."""
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN PRIVATE KEY-----\n" + b"\n".join(lines) + b"\n-----END PRIVATE KEY-----\n"


@dataclass
class Snapshot:
    """Settings + credentials in force; GnuTLS credential objects built lazily, once."""

    settings: Settings
    credentials: Credentials
    policy: TlsPolicy
    #: log.keylog_file, open (None = key logging off)
    keylog: KeyLogFile | None = None
    _built: dict[str, CertificateCredentials] = field(default_factory=dict)

    def x509(self, role: Role, *, anonymous: bool = False) -> CertificateCredentials:
        """The configured credentials of ``role``; ``anonymous`` (a client's unauthenticated
        request): the trust store and CRL only, so that no certificate is ever presented."""
        name = role.value + ("-anonymous" if anonymous else "")
        cc = self._built.get(name)
        if cc is None:
            material = self.credentials.x509(role.value)
            if anonymous:
                material = replace(material, chain=None, key=None, key_url=None)
            cc = build_certificate_credentials(material, need_key=role is Role.SERVER)
            self._built[name] = cc
        return cc


def is_tcp(sock: socket.socket) -> bool:
    """A TCP socket (the kTLS path) rather than a QUIC one."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == socket.IPPROTO_TCP)
    except OSError:
        return False


class HandshakeService:
    def __init__(
        self,
        settings: Settings,
        credentials: Credentials,
        *,
        keyrings: SessionKeyrings | None = None,
        executor: Executor | None = None,
        socket_adapter: SocketAdapter | None = None,
        peer_key_keyring: int = KEY_SPEC_USER_KEYRING,
        ktls_install: KtlsInstaller = ktls.install,
        keylog: KeyLogFile | None = None,
    ) -> None:
        """``socket_adapter`` turns the accepted socket into the QuicSocket the driver
        runs on; None (production) uses the kernel socket itself. ``peer_key_keyring``
        receives the x509 peer's certificate key for a kernel request's REMOTE_AUTH
        (:mod:`quichsd.peerkeys`). A TCP socket is served by :mod:`quichsd.tcpdriver`
        and handed to kTLS with ``ktls_install`` (tests on a kernel without kTLS record
        what it would install). ``keylog``: the open ``log.keylog_file``, if on."""
        self.ktls_install = ktls_install
        self.socket_adapter = socket_adapter
        self.peer_key_keyring = peer_key_keyring
        self.snapshot = Snapshot(settings, credentials, tls_policy(settings), keylog)
        self.anti_replay = AntiReplay()
        self.priorities = PriorityCache()
        self.keyrings = keyrings
        self.executor = executor

    def reload(
        self, settings: Settings, credentials: Credentials, keylog: KeyLogFile | None = None
    ) -> None:
        """Swap the snapshot; handshakes in flight keep theirs."""
        self.snapshot = Snapshot(settings, credentials, tls_policy(settings), keylog)

    def timeout(self, request: AcceptRequest) -> float:
        h = self.snapshot.settings.handshake
        ms = request.timeout_ms or h.default_timeout_ms
        return min(ms, h.max_timeout_ms) / 1000.0

    async def handle(self, request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        """The netlink agent's handler: one handshake on an accepted QUIC socket. An x509
        peer's certificate becomes a kernel key whose serial is the REMOTE_AUTH."""
        return (await self.handle_detailed(request, sock, peer_key=True))[0]

    async def handle_detailed(
        self,
        request: AcceptRequest,
        sock: socket.socket,
        qsock: QuicSocket | None = None,
        *,
        peer_key: bool = False,
    ) -> tuple[HandshakeOutcome, HandshakeResult | None]:
        """:meth:`handle` plus the driver's result (None if it did not run). With ``qsock``
        the driver runs on it instead (the unix service's socket-ops; ``sock`` is then the
        client's unix connection). ``peer_key``: report an x509 peer as a kernel key (only
        a kernel consumer reads REMOTE_AUTH)."""
        snap = self.snapshot
        try:
            if self.keyrings is not None:
                with self.keyrings.request_keyring(request.keyring):
                    return await self._handle(snap, request, sock, qsock, peer_key)
            return await self._handle(snap, request, sock, qsock, peer_key)
        except HandshakeError as e:
            return HandshakeOutcome(e.status, (), e.reason), None

    async def _handle(
        self,
        snap: Snapshot,
        request: AcceptRequest,
        sock: socket.socket,
        qsock: QuicSocket | None,
        peer_key: bool,
    ) -> tuple[HandshakeOutcome, HandshakeResult | None]:
        sock.setblocking(False)
        tcp = qsock is None and is_tcp(sock)
        if request.message_type is uapi.MsgType.CLIENTHELLO:
            role = Role.CLIENT
        elif request.message_type is uapi.MsgType.SERVERHELLO:
            role = Role.SERVER
        else:
            raise LocalError(f"unknown handshake message type {int(request.message_type)}")
        psk_serials: list[int] = []
        owned: CertificateCredentials | None = None
        req = HandshakeRequest(
            role=role,
            timeout=self.timeout(request),
            policy=snap.policy,
            anti_replay=self.anti_replay,
            priorities=self.priorities,
            executor=self.executor,
            keylog=snap.keylog.write if snap.keylog is not None else None,
        )
        try:
            if request.auth_mode is uapi.AuthMode.PSK:
                req, psk_serials = self._psk(req, request)
            elif request.auth_mode in (uapi.AuthMode.X509, uapi.AuthMode.UNAUTH):
                owned = self._x509_for_serials(snap, role, request)
                # unauthenticated (NFS xprtsec=tls): never the configured certificate, as
                # tlshd; it would authenticate the client (nfsd: XPT_PEER_AUTH) unasked
                anonymous = role is Role.CLIENT and request.auth_mode is uapi.AuthMode.UNAUTH
                x509 = owned or snap.x509(role, anonymous=anonymous)
                req = self._x509(req, snap, request, sock, x509)
            else:
                raise InvalidRequest(f"unknown auth mode {int(request.auth_mode)}")
            if qsock is not None:
                result = await run_handshake(qsock, req)
            elif tcp:
                result = await run_tcp_handshake(sock, req, self.ktls_install)
            elif self.socket_adapter is None:
                result = await run_handshake(sock, req)
            else:
                adapted = await self.socket_adapter(sock)
                try:
                    result = await run_handshake(adapted, req)
                finally:
                    adapted.close()
        finally:
            if owned is not None:
                owned.close()
        fields = outcome_fields(result, "tcp" if tcp else "quic")
        if result.error is not None:
            return HandshakeOutcome(result.status, (), result.error.reason, fields=fields), result
        remote = tuple(psk_serials)
        info = result.info
        if peer_key and not remote and info is not None and info.peer_certificates:
            peer = (req.peer_name if role is Role.CLIENT else None) or peer_address(sock)
            serial = peer_certificate_key(
                info.peer_certificates[0], peer or "unknown peer", self.peer_key_keyring
            )
            remote = (serial,) if serial is not None else ()
        summary = describe(result) + (", kTLS" if tcp else "")
        return HandshakeOutcome(0, remote, summary, fields=fields), result

    # -- auth modes -------------------------------------------------------------------------
    def _psk(
        self, req: HandshakeRequest, request: AcceptRequest
    ) -> tuple[HandshakeRequest, list[int]]:
        """PSK: the client's key by serial; the server looks identities up in the session
        keyring. The returned list holds the serials used (filled during the handshake on a
        server) for DONE's REMOTE_AUTH."""
        if req.role is Role.CLIENT:
            if not request.peer_identities:
                raise LocalError("PSK client request carries no key serial", status=errno.ENOKEY)
            serial = request.peer_identities[0]
            identity, key = psk_from_serial(serial)
            try:
                return replace(req, auth=Auth.PSK, psk_identity=identity, psk_key=bytes(key)), [
                    serial
                ]
            finally:
                key[:] = bytes(len(key))
        used: list[int] = []

        def lookup(identity: str) -> bytes | None:
            hit = lookup_psk(identity)
            if hit is None:
                return None
            serial, key = hit
            used.append(serial)
            try:
                return bytes(key)
            finally:
                key[:] = bytes(len(key))

        return replace(req, auth=Auth.PSK, psk_lookup=lookup), used

    def _x509_for_serials(
        self, snap: Snapshot, role: Role, request: AcceptRequest
    ) -> CertificateCredentials | None:
        if not (request.cert_serial or request.privkey_serial):
            return None
        material = snap.credentials.x509(
            role.value, request.cert_serial or 0, request.privkey_serial or 0
        )
        try:
            return build_certificate_credentials(material, need_key=role is Role.SERVER)
        finally:
            material.release()

    def _x509(
        self,
        req: HandshakeRequest,
        snap: Snapshot,
        request: AcceptRequest,
        sock: socket.socket,
        x509: CertificateCredentials,
    ) -> HandshakeRequest:
        s = snap.settings
        if req.role is Role.CLIENT:
            unauth = request.auth_mode is uapi.AuthMode.UNAUTH
            verify = s.client.verify_server_unauthenticated if unauth else True
            # no PEERNAME: the driver verifies the address the socket talks to, if any
            return replace(
                req,
                auth=Auth.UNAUTH if unauth else Auth.X509,
                x509=x509,
                verify_peer=verify,
                peer_name=request.peername,
                verify_without_name=s.client.verify_server_without_name,
            )
        policy = s.server.client_certificate
        cert_request = None if policy == "socket" else _CERT_REQUEST[policy]
        return replace(req, auth=Auth.X509, x509=x509, cert_request=cert_request)


def completion_summary(
    cipher: int | None,
    group: str | None,
    alpn: bytes | None,
    resumed: bool,
    early_data: bool,
    ms: float,
) -> str:
    """The success part of a completion line: suite, group, ALPN, resumption, time."""
    parts = []
    if cipher in _KNOWN_CIPHERS:
        parts.append(uapi.CIPHER_SUITE_NAME[Cipher(cipher)])
    if group:
        parts.append(group)
    if alpn:
        parts.append("alpn " + printable(alpn))
    if resumed:
        parts.append("resumed")
    if early_data:
        parts.append("0-RTT")
    parts.append(f"{ms:.0f} ms")
    return ", ".join(parts)


_KNOWN_CIPHERS = frozenset(int(c) for c in Cipher)


def outcome_fields(result: HandshakeResult, transport: str) -> tuple[tuple[str, str], ...]:
    """The journal fields of what a handshake negotiated (quichsd(8), JOURNAL): the
    transport, and on success the suite, group and ALPN as sent on the wire."""
    fields = [("QUICHSD_TRANSPORT", transport)]
    info = result.info
    if info is not None:
        if int(info.cipher) in _KNOWN_CIPHERS:
            fields.append(("QUICHSD_CIPHER", uapi.CIPHER_SUITE_NAME[Cipher(info.cipher)]))
        if info.group:
            fields.append(("QUICHSD_GROUP", info.group))
        if info.alpn:
            fields.append(("QUICHSD_ALPN", printable(info.alpn)))
        fields.append(("QUICHSD_RESUMED", "1" if info.resumed else "0"))
    return tuple(fields)


def describe(result: HandshakeResult) -> str:
    """:func:`completion_summary` of a driver result."""
    info = result.info
    ms = result.elapsed * 1000
    if info is None:
        return completion_summary(None, None, None, False, False, ms)
    return completion_summary(
        info.cipher, info.group, info.alpn, info.resumed, info.early_data_accepted, ms
    )
