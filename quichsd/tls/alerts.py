# SPDX-License-Identifier: GPL-2.0-or-later
"""TLS alert descriptions by their RFC 8446 §6 names (pure)."""

from __future__ import annotations

# the alert descriptions quichsd chooses itself
ALERT_UNEXPECTED_MESSAGE = 10
ALERT_BAD_CERTIFICATE = 42
ALERT_CERTIFICATE_REVOKED = 44
ALERT_CERTIFICATE_EXPIRED = 45
ALERT_UNKNOWN_CA = 48
ALERT_DECODE_ERROR = 50
ALERT_PROTOCOL_VERSION = 70
ALERT_INTERNAL_ERROR = 80
ALERT_MISSING_EXTENSION = 109
ALERT_UNKNOWN_PSK_IDENTITY = 115
ALERT_NO_APPLICATION_PROTOCOL = 120

ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}


def alert_name(desc: int) -> str:
    return ALERT_NAMES.get(desc, f"alert_{desc}")
