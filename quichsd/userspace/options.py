# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-socket settings of the userspace QUIC socket and the aioquic configuration they make.

``SocketOptions`` is what the kernel keeps per socket and hands to the agent with
getsockopt: the ALPN option, ``quic_config`` and the session-ticket buffer (client: session
data; server: the 64-byte ticket master key). Pure: no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicProtocolVersion

from .. import uapi


@dataclass(frozen=True)
class TransportSettings:
    """Our transport parameters (encoded by aioquic into the 0x39 extension)."""

    idle_timeout: float = 30.0
    max_data: int = 1 << 20
    max_stream_data: int = 1 << 20
    max_datagram_frame_size: int | None = None
    initial_rtt: float = 0.1


@dataclass
class SocketOptions:
    is_client: bool
    alpns: tuple[bytes, ...]
    config: uapi.QuicConfig
    #: client: stored session data; server: ticket master key (64 bytes)
    ticket: bytes = field(default=b"", repr=False)

    @classmethod
    def make(
        cls,
        alpns: Iterable[bytes | str],
        *,
        is_client: bool,
        ticket: bytes = b"",
        cipher: int = 0,
        receive_session_ticket: int = 0,
        certificate_request: int = 0,
    ) -> SocketOptions:
        names = tuple(a.encode() if isinstance(a, str) else bytes(a) for a in alpns)
        # validate like the kernel's ALPN option (comma list, <= 128 bytes, no empty entry)
        parsed = uapi.parse_alpn_option(uapi.format_alpn_option(names))
        if cipher and cipher not in set(uapi.Cipher):
            raise ValueError(f"cipher hint {cipher} is not 0 or one of 51-54")
        if not 0 <= receive_session_ticket <= 255:
            raise ValueError(f"receive_session_ticket {receive_session_ticket} not in 0..255")
        if certificate_request not in set(uapi.CertRequest):
            raise ValueError(f"certificate_request {certificate_request} not in 0..2")
        if not is_client:
            if not ticket:
                ticket = os.urandom(uapi.QUIC_TICKET_MASTER_KEY_LEN)
            if len(ticket) != uapi.QUIC_TICKET_MASTER_KEY_LEN:
                raise ValueError(f"ticket_key must be 64 bytes, got {len(ticket)}")
        config = uapi.QuicConfig(
            version=QuicProtocolVersion.VERSION_1,
            initial_smoothed_rtt=333_000,
            payload_cipher_type=cipher,
            receive_session_ticket=receive_session_ticket,
            certificate_request=certificate_request,
        )
        return cls(is_client, parsed, config, ticket)

    def copy(self) -> SocketOptions:
        return SocketOptions(self.is_client, self.alpns, self.config, self.ticket)


def _base(opts: SocketOptions, transport: TransportSettings) -> QuicConfiguration:
    return QuicConfiguration(
        alpn_protocols=[a.decode("ascii", "replace") for a in opts.alpns],
        is_client=opts.is_client,
        idle_timeout=transport.idle_timeout,
        max_data=transport.max_data,
        max_stream_data=transport.max_stream_data,
        max_datagram_frame_size=transport.max_datagram_frame_size,
        initial_rtt=transport.initial_rtt,
        supported_versions=[QuicProtocolVersion.VERSION_1],
    )


def client_configuration(
    opts: SocketOptions, server_name: str | None, transport: TransportSettings
) -> QuicConfiguration:
    cfg = _base(opts, transport)
    cfg.server_name = server_name
    return cfg


class _TlsElsewhere:
    """Stands for the server certificate and key aioquic insists on: TLS is not aioquic's."""

    def __repr__(self) -> str:
        return "<certificate held by the handshake agent>"


def server_configuration(opts: SocketOptions, transport: TransportSettings) -> QuicConfiguration:
    cfg = _base(opts, transport)
    cfg.certificate = cfg.private_key = _TlsElsewhere()
    return cfg
