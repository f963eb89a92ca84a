# SPDX-License-Identifier: GPL-2.0-or-later
"""Error hierarchy. Each handshake error carries the DONE status (a positive errno).

The mapping from failure to status is defined here and only here (see
``docs/kernel-interfaces.md`` §3.8 and ``docs/fault-catalogue.md``):
TLS failure -> EACCES, deadline -> ETIMEDOUT, local setup fault -> EIO,
not QUIC -> EOPNOTSUPP, unknown PSK -> EKEYREJECTED, socket error -> its errno.
"""

from __future__ import annotations

import errno

#: Linux aliases where ``errno.errorcode`` picks the name tlshd and the kernel docs don't
_ERRNO_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EDEADLK: "EDEADLK"}


def errno_name(code: int) -> str:
    """``OK`` for 0, else the errno's name as tlshd and the kernel docs spell it."""
    if code == 0:
        return "OK"
    return _ERRNO_NAMES.get(code) or errno.errorcode.get(code, "UNKNOWN")


class QuichsdError(Exception):
    """Base class of every error quichsd raises on purpose."""


class ConfigError(QuichsdError):
    """The configuration is invalid; ``errors`` holds one ``PATH:LINE: message`` line each."""

    def __init__(self, errors: str | list[str]) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class LibraryUnavailable(QuichsdError):
    """A shared library quichsd needs cannot be loaded, or lacks what quichsd calls; the
    message is one line naming the library and the package to install."""


class GnuTLSError(QuichsdError):
    """A GnuTLS call failed."""

    def __init__(self, what: str, code: int, message: str) -> None:
        super().__init__(f"{what}: {message} ({code})")
        self.what = what
        self.code = code
        self.message = message


class HandshakeError(QuichsdError):
    """A handshake failed; ``status`` is the positive errno sent with DONE."""

    status: int = errno.EIO
    #: TLS alert description sent to (or received from) the peer, if any.
    alert: int | None = None

    def __init__(self, reason: str, *, alert: int | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if alert is not None:
            self.alert = alert
        if status is not None:
            self.status = status


class LocalError(HandshakeError):
    """Our side could not set up or continue the handshake (credentials, GnuTLS, our bug)."""

    status = errno.EIO


class PeerRejected(HandshakeError):
    """TLS failed: the peer was not acceptable, or it refused us."""

    status = errno.EACCES


class MissingTransportParams(PeerRejected):
    """The peer sent no QUIC transport-parameters extension (RFC 9001 §8.2)."""

    alert = 109  # missing_extension


class KeyRejected(HandshakeError):
    """The PSK identity is unknown to the peer, or to us."""

    status = errno.EKEYREJECTED


class HandshakeTimeout(HandshakeError):
    """The handshake did not finish before its deadline."""

    status = errno.ETIMEDOUT


class Unsupported(HandshakeError):
    """The socket or request is of a kind quichsd does not handle (e.g. not QUIC)."""

    status = errno.EOPNOTSUPP


class InvalidRequest(HandshakeError):
    """The socket's settings or the request are malformed (bad ALPN, bad cipher hint...)."""

    status = errno.EINVAL


class ProtocolViolation(HandshakeError):
    """The QUIC socket delivered handshake data we must not feed to TLS."""

    status = errno.EPROTO


class BadMessage(HandshakeError):
    """recvmsg returned data without a usable handshake-info cmsg (uapi mismatch)."""

    status = errno.EBADMSG


class ConnectionReset(HandshakeError):
    """The connection was closed by the peer or the stack during the handshake."""

    status = errno.ECONNRESET


class SocketError(HandshakeError):
    """A socket call failed; the status is its errno."""

    def __init__(self, reason: str, err: int) -> None:
        super().__init__(reason, status=err)
