# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd: TLS 1.3 handshake agent for kernel TCP consumers (kTLS) and QUIC sockets."""

__version__ = "0.2.0"
