# SPDX-License-Identifier: GPL-2.0-or-later
"""External PSKs bound to SHA-384 (NVMe's ``NVMe1R02`` keys) on every supported GnuTLS.

A TLS 1.3 external PSK has a hash; its binders and the suite must use it. GnuTLS 3.8.10+
takes it at allocation (``gnutls_psk_allocate_{client,server}_credentials2``). Older
GnuTLS (Debian 12's 3.7.9, Debian 13's 3.8.9) has no API for it: every PSK credential
binds to SHA-256, so a SHA-384 PSK fails with "No supported cipher suites". There
:func:`bind_sha384` sets the credential's ``binder_algo`` member (``lib/auth/psk.h``) to
GnuTLS's own SHA-384 hash entry. The member's offset depends on the release
(:func:`binder_offset`: 3.8.1 added a callback pointer before it in both structs), and it
is written only after checking what it reads: the member must point at the SHA-256 entry
GnuTLS put there (name "SHA256", id 6, 32 bytes) and the SHA-384 entry is found next to
it in the same table (name "SHA384", id 7, 48 bytes). Anything else is refused with a
clear error, never guessed.
"""

from __future__ import annotations

import ctypes as C
from typing import Any

from ..errors import LocalError
from . import _lib as L
from .features import features, parse_version

GNUTLS_MAC_SHA256 = 6
GNUTLS_MAC_SHA384 = 7


def _optional(name: str) -> Any:
    try:
        f = L._lib[name]
    except AttributeError:
        return None
    f.restype = C.c_int
    f.argtypes = [C.POINTER(C.c_void_p), C.c_int]
    return f


_ALLOC2 = {
    "client": _optional("gnutls_psk_allocate_client_credentials2"),
    "server": _optional("gnutls_psk_allocate_server_credentials2"),
}
#: offsetof(binder_algo) on x86-64 and other LP64, by the first release with that layout:
#: 3.6.13 (client: username, key, get_function2, get_function1; server: password_file,
#: pwd_callback2, pwd_callback1, dh_params, deinit_dh_params, dh_sec_param, params_func,
#: hint), then 3.8.1 (get_function3 / pwd_callback3 first among the callbacks)
_BINDER_OFFSETS = (
    ((3, 8, 1), {"client": 56, "server": 64}),
    ((3, 6, 13), {"client": 48, "server": 56}),
)
#: sizeof(mac_entry_st) candidates (3 pointers + 6..10 unsigned ints, 8-byte aligned)
_ENTRY_STRIDES = (48, 56, 64, 72)


class _MacHead(C.Structure):
    _fields_ = [
        ("name", C.c_void_p),
        ("oid", C.c_void_p),
        ("mac_oid", C.c_void_p),
        ("id", C.c_int),
        ("output_size", C.c_uint),
    ]


def _entry(addr: int, mac: int, size: int, name: bytes) -> bool:
    head = _MacHead.from_address(addr)
    return (
        head.id == mac
        and head.output_size == size
        and bool(head.name)
        and (C.string_at(head.name) == name)
    )


def allocate(kind: str, sha384: bool) -> int:
    """New PSK credentials (``kind`` "client" or "server"); SHA-384 bound if asked."""
    h = C.c_void_p()
    alloc2 = _ALLOC2[kind]
    if sha384 and alloc2 is not None:
        L.check(alloc2(C.byref(h), GNUTLS_MAC_SHA384), f"allocate SHA-384 PSK {kind} creds")
        return int(h.value or 0)
    alloc = (
        L.gnutls_psk_allocate_client_credentials
        if kind == "client"
        else L.gnutls_psk_allocate_server_credentials
    )
    L.check(alloc(C.byref(h)), f"allocate PSK {kind} creds")
    handle = int(h.value or 0)
    if sha384:
        try:
            bind_sha384(handle, kind)
        except BaseException:
            free = (
                L.gnutls_psk_free_client_credentials
                if kind == "client"
                else L.gnutls_psk_free_server_credentials
            )
            free(handle)
            raise
    return handle


def binder_offset(kind: str, version: str) -> int | None:
    """offsetof(binder_algo) in GnuTLS ``version``'s ``kind`` credentials, or None for a
    release older than 3.6.13 (no TLS 1.3 PSK binder member to set)."""
    release = parse_version(version)
    for first, offsets in _BINDER_OFFSETS:
        if release >= first:
            return offsets[kind]
    return None


def bind_sha384(handle: int, kind: str, version: str | None = None) -> None:
    """GnuTLS < 3.8.10: point the credential's binder hash at SHA-384 (checked first)."""
    version = version or features().version
    offset = binder_offset(kind, version)
    if offset is None:
        raise LocalError(f"GnuTLS {version} cannot use a SHA-384 PSK (3.6.13 or later can)")
    slot = C.c_void_p.from_address(handle + offset)
    sha256 = slot.value
    if not sha256 or not _entry(sha256, GNUTLS_MAC_SHA256, 32, b"SHA256"):
        raise LocalError(
            f"GnuTLS {version} cannot use a SHA-384 PSK: its {kind} credentials do not have "
            "the layout quichsd knows (GnuTLS 3.8.10+ can)"
        )
    for stride in _ENTRY_STRIDES:
        if _entry(sha256 + stride, GNUTLS_MAC_SHA384, 48, b"SHA384"):
            slot.value = sha256 + stride
            return
    raise LocalError(f"GnuTLS {version} cannot use a SHA-384 PSK: no SHA-384 hash entry found")
