"""quichsd: TLS 1.3 handshake agent for QUIC sockets (kernel IPPROTO_QUIC and userspace stacks)."""

__version__ = "0.1.0"
