# SPDX-License-Identifier: GPL-2.0-or-later
"""ctypes binding of the GnuTLS (>= 3.7.2) calls quichsd uses, and nothing else.

Rules (docs/gnutls-binding.md §1.6): a private ``CDLL`` (no shared cached function objects);
``gnutls_datum_t.size`` is ``unsigned int``; binary pointers are ``c_void_p`` (``c_char_p``
stops at NUL); ``gnutls_free``/``gnutls_malloc`` are exported *variables*; every
``CFUNCTYPE`` object must stay referenced as long as C may call it; callbacks must never
let an exception reach C (see :mod:`quichsd.gnutls.callbacks`).
"""

from __future__ import annotations

import ctypes as C
import os
from typing import Any

from ..errors import GnuTLSError, LibraryUnavailable

#: GnuTLS writes every traffic secret to the file ``SSLKEYLOGFILE`` names (its default
#: key-log function, 0644, no log line). quichsd logs keys only when its config says so
#: (``log.keylog_file``): the variable is removed before the library is loaded and can
#: read it. True if it was set (the daemon says it was ignored).
SSLKEYLOGFILE_IGNORED = os.environ.pop("SSLKEYLOGFILE", None) is not None

LIBRARY = "libgnutls.so.30"
#: the oldest GnuTLS with the QUIC API quichsd uses (gnutls_handshake_write and friends)
MIN_VERSION = "3.7.2"
#: Debian's package of the library: libgnutls30t64 from Debian 13 on, libgnutls30 before
PACKAGE_HINT = "install GnuTLS 3.7.2 or later (Debian: libgnutls30t64, or libgnutls30 on Debian 12)"

try:
    _lib = C.CDLL(LIBRARY)
except OSError as _e:
    raise LibraryUnavailable(f"cannot load {LIBRARY}: {_e}; {PACKAGE_HINT}") from None

session_t = C.c_void_p
buffer_t = C.c_void_p


class datum_t(C.Structure):
    _fields_ = [("data", C.c_void_p), ("size", C.c_uint)]


class typed_vdata_st(C.Structure):
    """``gnutls_typed_vdata_st``: one name or purpose certificate verification checks."""

    _fields_ = [("type", C.c_int), ("data", C.c_void_p), ("size", C.c_uint)]


class OwnedDatum:
    """``bytes`` copied into C memory we own, and a datum pointing at it.

    Keep the object alive while GnuTLS may read the datum; ``wipe()`` zeroes the copy
    (used for key material).
    """

    __slots__ = ("buf", "datum")

    def __init__(self, data: bytes) -> None:
        self.buf = C.create_string_buffer(data, max(len(data), 1))
        # addressof, not cast: cast() ties buffer and result in a reference cycle, which
        # left every datum (and its copy of the data) to the cyclic GC
        self.datum = datum_t(C.addressof(self.buf), len(data))

    def ref(self) -> Any:
        return C.byref(self.datum)

    def wipe(self) -> None:
        C.memset(self.buf, 0, len(self.buf))


def datum_bytes(d: datum_t) -> bytes:
    if not d.data or not d.size:
        return b""
    return C.string_at(d.data, d.size)


# --- constants (gnutls.h 3.7.9) --------------------------------------------------------
GNUTLS_SERVER = 1
GNUTLS_CLIENT = 1 << 1
GNUTLS_ENABLE_EARLY_DATA = 1 << 20
GNUTLS_NO_AUTO_SEND_TICKET = 1 << 21
GNUTLS_NO_END_OF_EARLY_DATA = 1 << 22
GNUTLS_NO_TICKETS = 1 << 10
GNUTLS_AL_FATAL = 2
GNUTLS_TLS1_3 = 5

GNUTLS_E_SUCCESS = 0
GNUTLS_E_FATAL_ALERT_RECEIVED = -12
GNUTLS_E_WARNING_ALERT_RECEIVED = -16
GNUTLS_E_PUSH_ERROR = -53
GNUTLS_E_PULL_ERROR = -54
GNUTLS_E_PREMATURE_TERMINATION = -110
GNUTLS_E_AGAIN = -28
GNUTLS_E_INTERRUPTED = -52
GNUTLS_E_INSUFFICIENT_CREDENTIALS = -32
GNUTLS_E_KEYFILE_ERROR = -31
GNUTLS_E_MEMORY_ERROR = -25
GNUTLS_E_NO_CERTIFICATE_FOUND = -49
GNUTLS_E_INTERNAL_ERROR = -59
GNUTLS_E_CERTIFICATE_REQUIRED = -112
GNUTLS_E_USER_ERROR = -320
GNUTLS_E_NO_APPLICATION_PROTOCOL = -344
GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR = -348
GNUTLS_E_MISSING_EXTENSION = -427
GNUTLS_E_DB_ENTRY_EXISTS = -428

GNUTLS_CRD_CERTIFICATE = 1
GNUTLS_CRD_PSK = 4
GNUTLS_X509_FMT_DER = 0
GNUTLS_X509_FMT_PEM = 1
GNUTLS_NAME_DNS = 1
GNUTLS_ALPN_MANDATORY = 1
GNUTLS_PSK_KEY_RAW = 0
GNUTLS_CRT_X509 = 1
GNUTLS_PKCS_PLAIN = 1

GNUTLS_EXT_TLS = 2
GNUTLS_EXT_FLAG_CLIENT_HELLO = 1 << 1
GNUTLS_EXT_FLAG_EE = 1 << 4
GNUTLS_EXT_FLAG_TLS = 1 << 7

GNUTLS_HANDSHAKE_CLIENT_HELLO = 1
GNUTLS_HANDSHAKE_KEY_UPDATE = 24
GNUTLS_HOOK_POST = 1
GNUTLS_HOOK_PRE = 0
GNUTLS_HOOK_BOTH = -1

GNUTLS_SFLAGS_EARLY_DATA = 1 << 10

GNUTLS_CERT_IGNORE = 0
GNUTLS_CERT_REQUEST = 1
GNUTLS_CERT_REQUIRE = 2

GNUTLS_CERT_INVALID = 1 << 1
GNUTLS_CERT_REVOKED = 1 << 5
GNUTLS_CERT_SIGNER_NOT_FOUND = 1 << 6
GNUTLS_CERT_SIGNER_NOT_CA = 1 << 7
GNUTLS_CERT_INSECURE_ALGORITHM = 1 << 8
GNUTLS_CERT_NOT_ACTIVATED = 1 << 9
GNUTLS_CERT_EXPIRED = 1 << 10
GNUTLS_CERT_UNEXPECTED_OWNER = 1 << 14
GNUTLS_CERT_PURPOSE_MISMATCH = 1 << 18

# gnutls_vdata_types_t (typed_vdata_st.type); DNS and IP names cannot be combined
GNUTLS_DT_DNS_HOSTNAME = 1
GNUTLS_DT_KEY_PURPOSE_OID = 2
GNUTLS_DT_IP_ADDRESS = 4  # raw 4 or 16 bytes (GnuTLS >= 3.6.0)
#: Extended Key Usage purposes (x509.h GNUTLS_KP_TLS_WWW_SERVER / _CLIENT)
GNUTLS_KP_TLS_WWW_SERVER = b"1.3.6.1.5.5.7.3.1"
GNUTLS_KP_TLS_WWW_CLIENT = b"1.3.6.1.5.5.7.3.2"
#: gnutls_idna_map: IDNA2008 (non-transitional, via libidn2); without it GnuTLS 3.7 and
#: 3.8 retry with the transitional (IDNA2003-compatible) mapping, which maps e.g. U+00DF
#: to "ss" instead of its own A-label
GNUTLS_IDNA_FORCE_2008 = 1 << 1

# encryption levels (gnutls_record_encryption_level_t) -- NOT the kernel's numbering
GNUTLS_ENCRYPTION_LEVEL_INITIAL = 0
GNUTLS_ENCRYPTION_LEVEL_EARLY = 1
GNUTLS_ENCRYPTION_LEVEL_HANDSHAKE = 2
GNUTLS_ENCRYPTION_LEVEL_APPLICATION = 3

# cipher ids (gnutls_cipher_algorithm_t)
GNUTLS_CIPHER_AES_128_GCM = 10
GNUTLS_CIPHER_AES_256_GCM = 11
GNUTLS_CIPHER_AES_128_CCM = 19
GNUTLS_CIPHER_CHACHA20_POLY1305 = 23

# --- callback types ------------------------------------------------------------------------
read_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_int, C.c_int, C.c_void_p, C.c_size_t)
secret_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_int, C.c_void_p, C.c_void_p, C.c_size_t)
alert_read_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_int, C.c_int, C.c_int)
ext_recv_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_void_p, C.c_size_t)
ext_send_func_t = C.CFUNCTYPE(C.c_int, session_t, buffer_t)
hook_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_uint, C.c_uint, C.c_uint, C.POINTER(datum_t))
db_add_func_t = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_int64, C.POINTER(datum_t), C.POINTER(datum_t))
psk_server_func2_t = C.CFUNCTYPE(C.c_int, session_t, C.POINTER(datum_t), C.POINTER(datum_t))
keylog_func_t = C.CFUNCTYPE(C.c_int, session_t, C.c_char_p, C.POINTER(datum_t))
verify_func_t = C.CFUNCTYPE(C.c_int, session_t)
log_func_t = C.CFUNCTYPE(None, C.c_int, C.c_char_p)


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    try:
        f = _lib[name]
    except AttributeError:
        raise LibraryUnavailable(
            f"{LIBRARY} has no {name}: this GnuTLS lacks the QUIC API; {PACKAGE_HINT}"
        ) from None
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_P = C.POINTER
_VP = C.c_void_p
_I = C.c_int
_U = C.c_uint

gnutls_check_version = _fn("gnutls_check_version", C.c_char_p, C.c_char_p)
if not gnutls_check_version(MIN_VERSION.encode()):
    _have = (gnutls_check_version(None) or b"unknown").decode()
    raise LibraryUnavailable(f"GnuTLS {_have} is older than {MIN_VERSION}; {PACKAGE_HINT}")
gnutls_strerror = _fn("gnutls_strerror", C.c_char_p, _I)
gnutls_error_is_fatal = _fn("gnutls_error_is_fatal", _I, _I)
gnutls_alert_get_name = _fn("gnutls_alert_get_name", C.c_char_p, _I)
gnutls_global_set_log_level = _fn("gnutls_global_set_log_level", None, _I)
gnutls_global_set_log_function = _fn("gnutls_global_set_log_function", None, log_func_t)

# sessions
gnutls_init = _fn("gnutls_init", _I, _P(session_t), _U)
gnutls_deinit = _fn("gnutls_deinit", None, session_t)
gnutls_priority_init2 = _fn("gnutls_priority_init2", _I, _P(_VP), C.c_char_p, _P(C.c_char_p), _U)
gnutls_priority_deinit = _fn("gnutls_priority_deinit", None, _VP)
gnutls_priority_set = _fn("gnutls_priority_set", _I, session_t, _VP)
gnutls_credentials_set = _fn("gnutls_credentials_set", _I, session_t, _I, _VP)
gnutls_server_name_set = _fn("gnutls_server_name_set", _I, session_t, _I, C.c_char_p, C.c_size_t)
gnutls_session_set_verify_cert2 = _fn(
    "gnutls_session_set_verify_cert2", None, session_t, _P(typed_vdata_st), _U, _U
)
gnutls_certificate_verify_peers = _fn(
    "gnutls_certificate_verify_peers", _I, session_t, _P(typed_vdata_st), _U, _P(_U)
)
gnutls_idna_map = _fn("gnutls_idna_map", _I, C.c_char_p, _U, _P(datum_t), _U)
gnutls_session_get_verify_cert_status = _fn("gnutls_session_get_verify_cert_status", _U, session_t)
gnutls_session_set_verify_function = _fn(
    "gnutls_session_set_verify_function", None, session_t, verify_func_t
)
gnutls_certificate_verification_status_print = _fn(
    "gnutls_certificate_verification_status_print", _I, _U, _I, _P(datum_t), _U
)
gnutls_certificate_server_set_request = _fn(
    "gnutls_certificate_server_set_request", None, session_t, _I
)
gnutls_certificate_get_peers = _fn("gnutls_certificate_get_peers", _P(datum_t), session_t, _P(_U))
gnutls_alpn_set_protocols = _fn("gnutls_alpn_set_protocols", _I, session_t, _P(datum_t), _U, _U)
gnutls_alpn_get_selected_protocol = _fn(
    "gnutls_alpn_get_selected_protocol", _I, session_t, _P(datum_t)
)
gnutls_handshake = _fn("gnutls_handshake", _I, session_t)
gnutls_handshake_write = _fn("gnutls_handshake_write", _I, session_t, _I, _VP, C.c_size_t)
gnutls_handshake_set_read_function = _fn(
    "gnutls_handshake_set_read_function", None, session_t, read_func_t
)
gnutls_handshake_set_secret_function = _fn(
    "gnutls_handshake_set_secret_function", None, session_t, secret_func_t
)
gnutls_alert_set_read_function = _fn(
    "gnutls_alert_set_read_function", None, session_t, alert_read_func_t
)
gnutls_handshake_set_hook_function = _fn(
    "gnutls_handshake_set_hook_function", None, session_t, _U, _I, hook_func_t
)
gnutls_session_ext_register = _fn(
    "gnutls_session_ext_register",
    _I,
    session_t,
    C.c_char_p,
    _I,
    _I,
    ext_recv_func_t,
    ext_send_func_t,
    _VP,
    _VP,
    _VP,
    _U,
)
gnutls_buffer_append_data = _fn("gnutls_buffer_append_data", _I, buffer_t, _VP, C.c_size_t)
gnutls_alert_send_appropriate = _fn("gnutls_alert_send_appropriate", _I, session_t, _I)
gnutls_cipher_get = _fn("gnutls_cipher_get", _I, session_t)
gnutls_early_cipher_get = _fn("gnutls_early_cipher_get", _I, session_t)
gnutls_group_get = _fn("gnutls_group_get", _I, session_t)
gnutls_group_get_name = _fn("gnutls_group_get_name", C.c_char_p, _I)
gnutls_session_is_resumed = _fn("gnutls_session_is_resumed", _I, session_t)
gnutls_session_get_flags = _fn("gnutls_session_get_flags", _U, session_t)
gnutls_session_get_random = _fn(
    "gnutls_session_get_random", None, session_t, _P(datum_t), _P(datum_t)
)
gnutls_session_set_keylog_function = _fn(
    "gnutls_session_set_keylog_function", None, session_t, keylog_func_t
)

# TLS over a TCP fd (the kTLS path: quichsd.tls.tcp)
gnutls_transport_set_int2 = _fn("gnutls_transport_set_int2", None, session_t, _I, _I)
gnutls_record_get_direction = _fn("gnutls_record_get_direction", _I, session_t)
gnutls_record_check_pending = _fn("gnutls_record_check_pending", C.c_size_t, session_t)
gnutls_record_get_max_size = _fn("gnutls_record_get_max_size", C.c_size_t, session_t)
gnutls_record_get_state = _fn(
    "gnutls_record_get_state",
    _I,
    session_t,
    _U,
    _P(datum_t),
    _P(datum_t),
    _P(datum_t),
    _P(C.c_ubyte * 8),
)
gnutls_protocol_get_version = _fn("gnutls_protocol_get_version", _I, session_t)
gnutls_alert_send = _fn("gnutls_alert_send", _I, session_t, _I, _I)
gnutls_alert_get = _fn("gnutls_alert_get", _I, session_t)
gnutls_error_to_alert = _fn("gnutls_error_to_alert", _I, _I, _P(_I))

# tickets, resumption, early data
gnutls_session_ticket_key_generate = _fn("gnutls_session_ticket_key_generate", _I, _P(datum_t))
gnutls_session_ticket_enable_server = _fn(
    "gnutls_session_ticket_enable_server", _I, session_t, _P(datum_t)
)
gnutls_session_ticket_send = _fn("gnutls_session_ticket_send", _I, session_t, _U, _U)
gnutls_session_get_data2 = _fn("gnutls_session_get_data2", _I, session_t, _P(datum_t))
gnutls_session_set_data = _fn("gnutls_session_set_data", _I, session_t, _VP, C.c_size_t)
gnutls_record_set_max_early_data_size = _fn(
    "gnutls_record_set_max_early_data_size", _I, session_t, C.c_size_t
)
gnutls_anti_replay_init = _fn("gnutls_anti_replay_init", _I, _P(_VP))
gnutls_anti_replay_deinit = _fn("gnutls_anti_replay_deinit", None, _VP)
gnutls_anti_replay_set_window = _fn("gnutls_anti_replay_set_window", None, _VP, _U)
gnutls_anti_replay_enable = _fn("gnutls_anti_replay_enable", None, session_t, _VP)
gnutls_anti_replay_set_add_function = _fn(
    "gnutls_anti_replay_set_add_function", None, _VP, db_add_func_t
)

# certificate credentials
gnutls_certificate_allocate_credentials = _fn(
    "gnutls_certificate_allocate_credentials", _I, _P(_VP)
)
gnutls_certificate_free_credentials = _fn("gnutls_certificate_free_credentials", None, _VP)
gnutls_certificate_set_x509_key_mem2 = _fn(
    "gnutls_certificate_set_x509_key_mem2", _I, _VP, _P(datum_t), _P(datum_t), _I, C.c_char_p, _U
)
gnutls_certificate_set_x509_trust_mem = _fn(
    "gnutls_certificate_set_x509_trust_mem", _I, _VP, _P(datum_t), _I
)
gnutls_certificate_set_x509_system_trust = _fn("gnutls_certificate_set_x509_system_trust", _I, _VP)
gnutls_certificate_set_x509_crl_mem = _fn(
    "gnutls_certificate_set_x509_crl_mem", _I, _VP, _P(datum_t), _I
)

# PSK credentials
gnutls_psk_allocate_client_credentials = _fn("gnutls_psk_allocate_client_credentials", _I, _P(_VP))
gnutls_psk_free_client_credentials = _fn("gnutls_psk_free_client_credentials", None, _VP)
gnutls_psk_set_client_credentials = _fn(
    "gnutls_psk_set_client_credentials", _I, _VP, C.c_char_p, _P(datum_t), _I
)
gnutls_psk_allocate_server_credentials = _fn("gnutls_psk_allocate_server_credentials", _I, _P(_VP))
gnutls_psk_free_server_credentials = _fn("gnutls_psk_free_server_credentials", None, _VP)
gnutls_psk_set_server_credentials_function2 = _fn(
    "gnutls_psk_set_server_credentials_function2", None, _VP, psk_server_func2_t
)

# exported variables holding the allocator
gnutls_free = C.CFUNCTYPE(None, _VP).in_dll(_lib, "gnutls_free")
gnutls_malloc = C.CFUNCTYPE(_VP, C.c_size_t).in_dll(_lib, "gnutls_malloc")


def version() -> str:
    v = gnutls_check_version(None)
    return str(v.decode()) if v else "unknown"


def strerror(code: int) -> str:
    s = gnutls_strerror(code)
    return str(s.decode()) if s else f"GnuTLS error {code}"


def alert_name(desc: int) -> str:
    s = gnutls_alert_get_name(desc)
    return str(s.decode()) if s else f"alert {desc}"


def check(ret: int, what: str) -> int:
    """Raise :class:`GnuTLSError` for a negative GnuTLS return code."""
    if ret < 0:
        raise GnuTLSError(what, ret, strerror(ret))
    return ret


def take_datum(d: datum_t) -> bytes:
    """Copy a GnuTLS-allocated datum and free it."""
    try:
        return datum_bytes(d)
    finally:
        if d.data:
            gnutls_free(d.data)
            d.data = None
            d.size = 0


def idna_to_ascii(name: bytes) -> bytes:
    """The A-label (ASCII) form of the UTF-8 host name ``name``, by IDNA2008 (GnuTLS's
    own mapping, so what we send and verify is what GnuTLS would make of the name).
    Printable ASCII comes back unchanged. Raises :class:`GnuTLSError` for a name IDNA2008
    refuses (or a GnuTLS built without libidn2, for a non-ASCII one)."""
    out = datum_t()
    check(gnutls_idna_map(name, len(name), C.byref(out), GNUTLS_IDNA_FORCE_2008), "IDNA mapping")
    return take_datum(out)


def malloc_copy(data: bytes) -> datum_t:
    """A datum whose memory GnuTLS owns (for callbacks that hand keys to GnuTLS)."""
    p = gnutls_malloc(max(len(data), 1))
    if not p:
        raise MemoryError("gnutls_malloc failed")
    C.memmove(p, data, len(data))
    return datum_t(p, len(data))
