# SPDX-License-Identifier: GPL-2.0-or-later
"""The public Python API: TLS 1.3 handshakes for QUIC sockets, run in this process or by
the quichsd daemon. Import it from the package (``from quichsd import client_handshake``);
docs/api.md describes it with a worked example.

The socket is a kernel ``IPPROTO_QUIC`` socket (``socket.socket``) the caller has set up as
the kernel's QUIC sample does (ALPN, transport parameters and session ticket through
``setsockopt(SOL_QUIC, ...)``, then ``connect()`` for a client), or anything with the same
socket operations, such as :class:`quichsd.userspace.aioquic.UserspaceQuicSocket` (a QUIC
stack in userspace, for a kernel without QUIC). Four ways to run the handshake:

- :func:`client_handshake` / :func:`server_handshake`: GnuTLS in this process, with the
  certificates and keys given here;
- :func:`daemon_handshake`: the daemon runs the TLS with its own credentials and policy,
  bridged over its unix socket (socket-ops), while the QUIC connection stays here;
- :func:`hand_off`: the socket's fd goes to the daemon, which runs the whole handshake on
  it (a kernel QUIC socket, or a connected TCP socket it gives back keyed for kTLS).

Each returns a :class:`Handshake` of what was negotiated on the wire, with names (role,
cipher suite, group), or raises :class:`HandshakeFailed` with the errno a kernel consumer
would get and the reason. Everything else here may change; these names will not.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from . import uapi
from .errors import GnuTLSError, QuichsdError, errno_name
from .quicsocket import QuicSocket
from .request import HandshakeRequest, HandshakeResult, TlsPolicy
from .tls.config import Auth, Role

if TYPE_CHECKING:
    import socket

    from .gnutls.creds import AntiReplay, CertificateCredentials
    from .unix.client import ViaRequest
    from .unix.codec import Result

#: where the daemon listens unless its config says otherwise (quichsd.yaml(5) unix_socket)
DEFAULT_DAEMON_SOCKET = "/run/quichsd/quichsd.sock"
RoleName = Literal["client", "server"]
AuthName = Literal["x509", "psk", "unauthenticated"]
_SUITE = {name: c for c, name in uapi.CIPHER_SUITE_NAME.items()}
_AUTH = {
    "x509": uapi.AuthMode.X509,
    "psk": uapi.AuthMode.PSK,
    "unauthenticated": uapi.AuthMode.UNAUTH,
}
_ROLE = {"client": uapi.MsgType.CLIENTHELLO, "server": uapi.MsgType.SERVERHELLO}


@dataclass(frozen=True)
class Handshake:
    """What a finished handshake negotiated, as it happened on the wire."""

    #: ``"client"`` or ``"server"``: our side
    role: RoleName
    #: the TLS 1.3 cipher suite, IANA name (``"TLS_AES_128_GCM_SHA256"``)
    cipher: str
    #: the key-exchange group, as GnuTLS and the config name it (``"X25519"``,
    #: ``"SECP256R1"``...); None for a PSK-only handshake
    group: str | None
    #: the application protocol agreed (ALPN), None if none
    alpn: str | None
    #: the session was resumed (a ticket or PSK)
    resumed: bool
    #: 0-RTT data was accepted by the server (client) or received (server)
    early_data: bool
    #: time the handshake took, in milliseconds
    duration_ms: float
    #: in-process handshakes: the peer's certificate chain, DER, leaf first (empty for PSK,
    #: or a client that sent none; for a resumed session, the chain verified when it was
    #: established)
    peer_certificates: tuple[bytes, ...] = field(default=(), repr=False)
    #: in-process server with PSK: the identity the client used
    psk_identity: str | None = None
    #: in-process client whose socket asked for a ticket (``receive_session_ticket``):
    #: the session data to resume with, set on the next socket as
    #: ``QUIC_SOCKOPT_SESSION_TICKET`` (the driver also stores it on this socket, as the
    #: kernel expects); None if no ticket came
    session: bytes | None = field(default=None, repr=False)


class HandshakeFailed(QuichsdError):
    """The handshake failed. ``status`` is the positive errno a kernel consumer gets in
    DONE (EACCES: the peer or its certificate was refused; ETIMEDOUT; EKEYREJECTED: unknown
    PSK identity; ECONNREFUSED...); ``reason`` says what went wrong, naming the peer."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{errno_name(status)}: {reason}")

    @property
    def errno_name(self) -> str:
        return errno_name(self.status)


def _suites(names: Sequence[str]) -> tuple[uapi.Cipher, ...]:
    try:
        return tuple(_SUITE[n] for n in names)
    except KeyError as e:
        raise ValueError(
            f"unknown cipher suite {e.args[0]!r}; one of {', '.join(_SUITE)}"
        ) from None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what} {path}: {e.strerror}") from None


def _credentials(cafile: str | None, cert: str | None, key: str | None) -> CertificateCredentials:
    from .gnutls.creds import CertificateCredentials

    if (cert is None) != (key is None):
        raise ValueError("cert and key go together")
    cc = CertificateCredentials()
    try:
        if cert is not None and key is not None:
            try:
                cc.set_key_pair(_read(cert, "cert"), _read(key, "key"))
            except GnuTLSError as e:
                raise ValueError(f"cert {cert} / key {key}: {e.message}") from None
        try:
            cc.set_trust(_read(cafile, "cafile") if cafile else None)
        except GnuTLSError as e:
            raise ValueError(f"cafile {cafile or '(system trust store)'}: {e.message}") from None
    except BaseException:
        cc.close()
        raise
    return cc


def _policy(ciphers: Sequence[str], groups: Sequence[str]) -> TlsPolicy:
    """The daemon's default policy (X25519 first...), narrowed by the caller's choices."""
    from .service import default_policy

    pol = default_policy()
    return replace(pol, ciphers=_suites(ciphers) or pol.ciphers, groups=tuple(groups) or pol.groups)


def _in_process(role: RoleName, res: HandshakeResult, peer: str | None) -> Handshake:
    if not res.ok or res.info is None:
        reason = res.error.reason.strip() if res.error else "handshake failed"
        raise HandshakeFailed(res.status or errno.EIO, f"{peer or 'peer'}: {reason}")
    info = res.info
    return Handshake(
        role=role,
        cipher=uapi.CIPHER_SUITE_NAME[info.cipher],
        group=info.group,
        alpn=res.alpn.decode(errors="replace") if res.alpn else None,
        resumed=info.resumed,
        early_data=info.early_data_accepted,
        duration_ms=round(res.elapsed * 1000, 3),
        peer_certificates=info.peer_certificates,
        psk_identity=info.psk_identity,
        session=res.session_data,
    )


@cache
def _anti_replay() -> AntiReplay:
    """One 0-RTT anti-replay window for every server handshake of this process."""
    from .gnutls.creds import AntiReplay

    return AntiReplay()


async def client_handshake(
    sock: QuicSocket,
    *,
    server_name: str | None = None,
    cafile: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    psk: tuple[str, bytes] | None = None,
    ciphers: Sequence[str] = (),
    groups: Sequence[str] = (),
    timeout: float = 10.0,
) -> Handshake:
    """The client handshake on ``sock``, in this process.

    The server is verified fail-closed: its chain against ``cafile`` (PEM; default the
    system trust store), its name against ``server_name`` (also sent as SNI; without one,
    its IP address against the certificate's IP addresses), key purpose and validity.
    ``cert``/``key`` (PEM files) answer a server that asks for a client certificate;
    ``psk`` = (identity, key) uses an external PSK instead of certificates.
    ``ciphers`` (IANA names) and ``groups`` narrow the daemon's default policy.
    """
    from .driver import run_handshake

    cc = _credentials(cafile, cert, key)
    try:
        req = HandshakeRequest(
            role=Role.CLIENT,
            auth=Auth.PSK if psk else Auth.X509,
            peer_name=server_name,
            x509=cc,
            psk_identity=psk[0] if psk else None,
            psk_key=psk[1] if psk else None,
            timeout=timeout,
            policy=_policy(ciphers, groups),
        )
        return _in_process("client", await run_handshake(sock, req), server_name)
    finally:
        cc.close()


async def server_handshake(
    sock: QuicSocket,
    *,
    cert: str,
    key: str,
    cafile: str | None = None,
    require_client_cert: bool = False,
    psk: Mapping[str, bytes] | None = None,
    ciphers: Sequence[str] = (),
    groups: Sequence[str] = (),
    timeout: float = 10.0,
) -> Handshake:
    """The server handshake on an accepted ``sock``, in this process, with the chain
    ``cert`` and its ``key`` (PEM files). With ``require_client_cert`` the client must
    present a certificate that chains to ``cafile`` (else the socket's own
    certificate-request setting applies). ``psk`` maps the identities clients may use to
    their keys (PSK handshakes; unknown identities are refused). Session tickets are
    sealed with the socket's ticket key (getsockopt SESSION_TICKET), as the kernel's QUIC
    server sockets provide it; 0-RTT replays are refused across this process."""
    from .driver import run_handshake

    cc = _credentials(cafile, cert, key)
    try:
        req = HandshakeRequest(
            role=Role.SERVER,
            auth=Auth.PSK if psk else Auth.X509,
            x509=cc,
            psk_lookup=dict(psk).get if psk else None,
            cert_request=uapi.CertRequest.REQUIRE if require_client_cert else None,
            timeout=timeout,
            policy=_policy(ciphers, groups),
            anti_replay=_anti_replay(),
        )
        return _in_process("server", await run_handshake(sock, req), None)
    finally:
        cc.close()


def _via(role: RoleName, auth: AuthName, server_name: str | None, timeout: float) -> ViaRequest:
    from .unix.client import ViaRequest

    if role not in _ROLE:
        raise ValueError(f"role {role!r}: 'client' or 'server'")
    if auth not in _AUTH:
        raise ValueError(f"auth {auth!r}: one of {', '.join(_AUTH)}")
    return ViaRequest(_ROLE[role], _AUTH[auth], server_name, int(timeout * 1000))


def _from_daemon(role: RoleName, r: Result, peer: str | None) -> Handshake:
    if r.status != 0 or r.cipher is None:
        raise HandshakeFailed(r.status or errno.EIO, f"{peer or 'peer'}: {r.error or 'failed'}")
    return Handshake(
        role=role,
        cipher=uapi.CIPHER_SUITE_NAME[uapi.Cipher(r.cipher)],
        group=r.group,
        alpn=r.alpn.decode(errors="replace") if r.alpn else None,
        resumed=r.resumed,
        early_data=r.early_data,
        duration_ms=r.elapsed_us / 1000,
    )


async def _by_daemon(
    call: Coroutine[Any, Any, Result], daemon: str, role: RoleName, peer: str | None
) -> Handshake:
    """The daemon's RESULT of ``call`` as a Handshake; its refusal as HandshakeFailed."""
    from .unix.client import ViaError

    try:
        result = await call
    except ViaError as e:
        raise HandshakeFailed(e.status, f"daemon at {daemon}: {e.text}") from None
    return _from_daemon(role, result, peer)


async def daemon_handshake(
    sock: QuicSocket,
    *,
    role: RoleName = "client",
    server_name: str | None = None,
    auth: AuthName = "x509",
    timeout: float = 10.0,
    daemon: str = DEFAULT_DAEMON_SOCKET,
) -> Handshake:
    """The handshake on ``sock`` run by the daemon listening on ``daemon`` (socket-ops):
    the daemon's credentials, trust and policy; the QUIC connection stays in this
    process. Raises :class:`HandshakeFailed` also when the daemon refuses the caller
    (``unix_socket.allowed_uids``) or cannot be reached."""
    from .unix.client import handshake_via

    req = _via(role, auth, server_name, timeout)
    return await _by_daemon(handshake_via(daemon, sock, req), daemon, role, server_name)


async def hand_off(
    sock: socket.socket | int,
    *,
    role: RoleName = "client",
    server_name: str | None = None,
    auth: AuthName = "x509",
    timeout: float = 10.0,
    daemon: str = DEFAULT_DAEMON_SOCKET,
) -> Handshake:
    """The whole handshake on ``sock`` (a kernel IPPROTO_QUIC socket, or a connected TCP
    socket; or its fd) run by the daemon on a copy of its fd. A TCP socket comes back with
    kTLS installed: plain ``send``/``recv`` on it then carry TLS records."""
    from .unix.client import hand_off as _hand_off

    req = _via(role, auth, server_name, timeout)
    fd = sock if isinstance(sock, int) else sock.fileno()
    os.fstat(fd)  # EBADF here rather than from the daemon
    return await _by_daemon(_hand_off(daemon, fd, req), daemon, role, server_name)
