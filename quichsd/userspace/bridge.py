# SPDX-License-Identifier: GPL-2.0-or-later
"""aioquic's QuicConnection with its TLS replaced by the socket user (the handshake driver).

aioquic calls ``tls.Context.handle_message(data, buffers)`` with reassembled CRYPTO data and
expects TLS to install packet keys through ``update_traffic_key_cb``
(docs/gnutls-binding.md §5.3). :class:`BridgeTls` duck-types that surface: received CRYPTO
data goes to a callback (the socket queues it for ``recvmsg``); nothing is produced by
itself. :class:`BridgedConnection` adds the operations the kernel performs on behalf of
the QUIC socket's setsockopt/sendmsg: queue CRYPTO data at an epoch, install a secret,
apply the peer's transport parameters, and complete the handshake when both 1-RTT keys
are in place (the server then sends HANDSHAKE_DONE, as aioquic does on its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from aioquic import tls as aq_tls
from aioquic.quic import events as aq_events
from aioquic.quic.connection import QuicConnection, QuicConnectionError
from aioquic.quic.packet import QuicPacketType

from ..uapi import CryptoLevel

Epoch = aq_tls.Epoch

#: kernel crypto level -> aioquic epoch (and back)
LEVEL_TO_EPOCH: dict[CryptoLevel, Any] = {
    CryptoLevel.INITIAL: Epoch.INITIAL,
    CryptoLevel.EARLY: Epoch.ZERO_RTT,
    CryptoLevel.HANDSHAKE: Epoch.HANDSHAKE,
    CryptoLevel.APP: Epoch.ONE_RTT,
}
EPOCH_TO_LEVEL: dict[Any, CryptoLevel] = {v: k for k, v in LEVEL_TO_EPOCH.items()}

TRANSPORT_PARAMETER_ERROR = 0x08
FRAME_CRYPTO = 0x06

CryptoSink = Callable[[CryptoLevel, bytes], None]


class BridgeTls:
    """Stands where aioquic expects ``aioquic.tls.Context``; TLS runs elsewhere."""

    def __init__(self, is_client: bool, on_crypto: CryptoSink) -> None:
        self.is_client = is_client
        self._on_crypto = on_crypto
        self.current_epoch: Any = Epoch.INITIAL
        # attributes QuicConnection reads or writes
        self.handshake_extensions: list[tuple[int, bytes]] = []
        self.received_extensions: list[tuple[int, bytes]] = []
        self.alpn_negotiated: str | None = None
        self.early_data_accepted = False
        self.session_resumed = False
        self.session_ticket: Any = None
        self.client_random = b""
        self.legacy_session_id = b""
        self.certificate: Any = None
        self.certificate_chain: list[Any] = []
        self.certificate_private_key: Any = None
        self.alpn_cb: Any = None
        self.get_session_ticket_cb: Any = None
        self.new_session_ticket_cb: Any = None
        self.update_traffic_key_cb: Any = None
        # never CLIENT_EXPECT_SERVER_HELLO: aioquic would read "HANDSHAKE packet before
        # handshake keys" as a lost server Initial, but here keys arrive asynchronously
        self.state = (
            aq_tls.State.CLIENT_EXPECT_ENCRYPTED_EXTENSIONS
            if is_client
            else aq_tls.State.SERVER_EXPECT_FINISHED
        )

    def handle_message(self, input_data: bytes, output_buf: dict[Any, Any]) -> None:
        if input_data:
            self._on_crypto(EPOCH_TO_LEVEL[self.current_epoch], bytes(input_data))

    @property
    def transport_parameters(self) -> bytes:
        for ext_type, data in self.handshake_extensions:
            if ext_type == aq_tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS:
                return data
        return b""


class BridgedConnection(QuicConnection):
    """A QuicConnection whose handshake messages and keys come from outside."""

    def __init__(self, *, on_crypto: CryptoSink, **kwargs: Any) -> None:
        self._on_crypto = on_crypto
        super().__init__(**kwargs)

    # -- hooks into aioquic ----
    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        native = self.tls
        bridge = BridgeTls(self._is_client, self._on_crypto)
        bridge.handshake_extensions = list(native.handshake_extensions)
        bridge.update_traffic_key_cb = self._update_traffic_key
        self.bridge = bridge
        self.tls = cast(Any, bridge)

    def _handle_crypto_frame(self, context: Any, frame_type: int, buf: Any) -> None:
        self.bridge.current_epoch = context.epoch
        super()._handle_crypto_frame(context, frame_type, buf)

    # -- what the kernel does for the socket ----
    @property
    def local_transport_parameters(self) -> bytes:
        return self.bridge.transport_parameters

    @property
    def handshake_complete(self) -> bool:
        return bool(self._handshake_complete)

    @property
    def packets_accepted(self) -> bool:
        """Whether any packet from the peer decrypted (aioquic's per-space largest packet
        number received stays -1 until one does)."""
        return any(space.largest_received_packet >= 0 for space in self._spaces.values())

    def can_send(self, level: CryptoLevel) -> bool:
        return bool(self._cryptos[LEVEL_TO_EPOCH[level]].send.is_valid())

    def can_receive(self, level: CryptoLevel) -> bool:
        return bool(self._cryptos[LEVEL_TO_EPOCH[level]].recv.is_valid())

    def queue_crypto(self, level: CryptoLevel, data: bytes) -> None:
        """Append handshake bytes to the CRYPTO stream of ``level``."""
        self._crypto_streams[LEVEL_TO_EPOCH[level]].sender.write(data)

    def install_secret(self, level: CryptoLevel, send: bool, suite: int, secret: bytes) -> None:
        direction = aq_tls.Direction.ENCRYPT if send else aq_tls.Direction.DECRYPT
        self._update_traffic_key(direction, LEVEL_TO_EPOCH[level], cast(Any, suite), secret)

    def apply_peer_transport_parameters(self, data: bytes) -> None:
        """Parse and apply the peer's extension body; raises QuicConnectionError if bad."""
        self.bridge.received_extensions = [(aq_tls.ExtensionType.QUIC_TRANSPORT_PARAMETERS, data)]
        try:
            self._parse_transport_parameters(data)
        except QuicConnectionError:
            raise
        except Exception as e:  # malformed encoding (buffer underrun, bad varint...)
            raise QuicConnectionError(
                error_code=TRANSPORT_PARAMETER_ERROR,
                frame_type=FRAME_CRYPTO,
                reason_phrase=f"malformed transport parameters: {e}",
            ) from e

    def remember_peer_transport_parameters(self, data: bytes) -> None:
        """Client: the server's parameters from the last connection, for 0-RTT limits."""
        self._parse_transport_parameters(data, from_session_ticket=True)

    def set_alpn(self, alpn: str) -> None:
        if self.bridge.alpn_negotiated is None:
            self.bridge.alpn_negotiated = alpn
            self._events.append(aq_events.ProtocolNegotiated(alpn_protocol=alpn))

    def complete_handshake(self, *, early_data_accepted: bool, resumed: bool) -> None:
        """Both 1-RTT keys are installed: what aioquic does when its own TLS finishes."""
        if self._handshake_complete:
            return
        tls = self.bridge
        tls.early_data_accepted = early_data_accepted
        tls.session_resumed = resumed
        tls.state = (
            aq_tls.State.CLIENT_POST_HANDSHAKE
            if self._is_client
            else aq_tls.State.SERVER_POST_HANDSHAKE
        )
        self._handshake_complete = True
        if not self._is_client:
            self._confirm_handshake()
            self._handshake_done_pending = True
        self._replenish_connection_ids()
        self._events.append(
            aq_events.HandshakeCompleted(
                alpn_protocol=tls.alpn_negotiated,
                early_data_accepted=early_data_accepted,
                session_resumed=resumed,
            )
        )
        self._unblock_streams(is_unidirectional=False)
        self._unblock_streams(is_unidirectional=True)

    #: 0-RTT packets from the peer that decrypted (a server's count of early data received)
    zero_rtt_received = 0

    def _payload_received(
        self, context: Any, plain: bytes, crypto_frame_required: bool = False
    ) -> tuple[bool, bool]:
        if context.epoch == Epoch.ZERO_RTT:
            self.zero_rtt_received += 1
        return super()._payload_received(context, plain, crypto_frame_required)

    def resend_zero_rtt(self, now: float) -> int:
        """Client, the server rejected 0-RTT: every 0-RTT packet still in flight is lost,
        its frames go out again in 1-RTT (RFC 9001 §4.6.2, RFC 9002 §6.4). Returns how
        many packets that was."""
        space = self._spaces[Epoch.ONE_RTT]
        lost = [p for p in space.sent_packets.values() if p.packet_type == QuicPacketType.ZERO_RTT]
        if lost:
            self._loss._on_packets_lost(congestion_event=False, now=now, packets=lost, space=space)
        return len(lost)

    #: the CONNECTION_CLOSE the peer sent, as opposed to our own close
    _peer_close: aq_events.ConnectionTerminated | None = None

    def _handle_connection_close_frame(self, context: Any, frame_type: int, buf: Any) -> None:
        super()._handle_connection_close_frame(context, frame_type, buf)
        if self._peer_close is None and self._close_event is not None:
            self._peer_close = self._close_event
