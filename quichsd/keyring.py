# SPDX-License-Identifier: GPL-2.0-or-later
"""Kernel key retention service through ``libkeyutils.so.1`` (ctypes). Returns bytes.

The PyPI ``keyutils`` package does not build on Python 3.11, so this is a direct binding of
the handful of calls tlshd makes (ktls-utils ``src/tlshd/keyring.c``): ``keyctl_read_alloc``,
``keyctl_describe_alloc``, ``keyctl_search``, ``find_key_by_type_and_desc``, ``keyctl_link``,
``keyctl_unlink``, ``add_key``, plus ``keyctl_join_session_keyring`` and ``keyctl_invalidate``
(used by tests and by the client-verify path).

Every prototype's ``restype`` is declared exactly as in ``keyutils.h`` (``key_serial_t`` is
``int32_t``; ``int`` functions must not be declared ``c_long``, or -1 reads back as
4294967295). Failures raise :class:`KeyringError`, an :class:`OSError` whose ``errno`` is the
call's and whose message names the call and the key or keyring serial.

Secrets: :func:`read_key` copies the payload straight from the C buffer into a
``bytearray`` (no intermediate immutable ``bytes``), then zeroes and frees the C buffer.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Any

from quichsd.errors import QuichsdError
from quichsd.libc import libc

#: libkeyutils by its soname, as the dynamic linker finds it (no ldconfig search)
KEYUTILS_SONAME = "libkeyutils.so.1"

# Special keyring ids (linux/keyctl.h).
KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5
KEY_SPEC_GROUP_KEYRING = -6
KEY_SPEC_REQKEY_AUTH_KEY = -7

_SPECIAL_NAMES = {
    KEY_SPEC_THREAD_KEYRING: "@t",
    KEY_SPEC_PROCESS_KEYRING: "@p",
    KEY_SPEC_SESSION_KEYRING: "@s",
    KEY_SPEC_USER_KEYRING: "@u",
    KEY_SPEC_USER_SESSION_KEYRING: "@us",
    KEY_SPEC_GROUP_KEYRING: "@g",
    KEY_SPEC_REQKEY_AUTH_KEY: "@a",
}

#: Largest payload we accept when adding a key (the kernel's own limit for "user" keys is
#: 32767 bytes; asymmetric keys may be up to 1 MiB).
MAX_PAYLOAD = 1 << 20

_key_serial_t = ctypes.c_int32


class KeyringError(OSError, QuichsdError):
    """A keyutils call failed; ``errno`` is the call's errno."""

    def __init__(self, err: int, call: str, what: str) -> None:
        name = "EOPNOTSUPP" if err == errno.EOPNOTSUPP else errno.errorcode.get(err, str(err))
        detail = os.strerror(err)
        if err == errno.EOPNOTSUPP and call == "keyctl_read_alloc":
            detail += " (this key type cannot be read from userspace, e.g. 'asymmetric')"
        super().__init__(err, f"{call}({what}): {detail} ({name})")
        self.call = call
        self.what = what

    def __str__(self) -> str:
        return str(self.strerror)


class KeyutilsUnavailable(KeyringError):
    """libkeyutils cannot be loaded: no keyring call can work (errno ELIBACC)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.ELIBACC, "dlopen", path)
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"cannot load {self.what}: {self.reason}; kernel keyrings are unavailable "
            "(install libkeyutils1)"
        )


def describe_serial(serial: int) -> str:
    """Human name of a key serial for messages: ``key 123`` or ``@s``."""
    return _SPECIAL_NAMES.get(serial, f"key {serial}")


class _Lib:
    """The loaded libraries with their prototypes; created on first use."""

    def __init__(self) -> None:
        path = KEYUTILS_SONAME
        try:
            lib = ctypes.CDLL(path, use_errno=True)
        except OSError as exc:
            raise KeyutilsUnavailable(path, str(exc)) from exc
        self.libc = libc()
        c_char_p, c_void_p, c_long, c_int = (
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_long,
            ctypes.c_int,
        )
        pp = ctypes.POINTER(c_void_p)
        self.add_key = self._proto(
            lib,
            "add_key",
            _key_serial_t,
            [c_char_p, c_char_p, c_void_p, ctypes.c_size_t, _key_serial_t],
        )
        self.find_key_by_type_and_desc = self._proto(
            lib, "find_key_by_type_and_desc", _key_serial_t, [c_char_p, c_char_p, _key_serial_t]
        )
        self.keyctl_join_session_keyring = self._proto(
            lib, "keyctl_join_session_keyring", _key_serial_t, [c_char_p]
        )
        self.keyctl_link = self._proto(lib, "keyctl_link", c_long, [_key_serial_t, _key_serial_t])
        self.keyctl_unlink = self._proto(
            lib, "keyctl_unlink", c_long, [_key_serial_t, _key_serial_t]
        )
        self.keyctl_search = self._proto(
            lib, "keyctl_search", c_long, [_key_serial_t, c_char_p, c_char_p, _key_serial_t]
        )
        self.keyctl_invalidate = self._proto(lib, "keyctl_invalidate", c_long, [_key_serial_t])
        self.keyctl_read_alloc = self._proto(lib, "keyctl_read_alloc", c_int, [_key_serial_t, pp])
        self.keyctl_describe_alloc = self._proto(
            lib, "keyctl_describe_alloc", c_int, [_key_serial_t, pp]
        )
        self.free = self._proto(self.libc, "free", None, [c_void_p])

    @staticmethod
    def _proto(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
        fn = lib[name]  # a private function object (attribute access is cached and shared)
        fn.restype = restype
        fn.argtypes = argtypes
        return fn


_lib: _Lib | None = None


def _get() -> _Lib:
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib


def _check(rc: int, call: str, what: str) -> int:
    if rc < 0:
        raise KeyringError(ctypes.get_errno() or errno.EIO, call, what)
    return rc


def _alloc_call(fn: Any, serial: int, call: str) -> bytearray:
    """Run a ``*_alloc`` call and copy its buffer into a bytearray; zero and free the C copy."""
    lib = _get()
    buf = ctypes.c_void_p()
    n = _check(fn(serial, ctypes.byref(buf)), call, describe_serial(serial))
    if not buf.value:
        return bytearray()
    try:
        return bytearray((ctypes.c_char * n).from_address(buf.value))
    finally:
        ctypes.memset(buf.value, 0, n)
        lib.free(buf)


def read_key(serial: int) -> bytearray:
    """The payload of key ``serial`` (``keyctl read``). For a keyring: its member serials.

    The result is a ``bytearray`` so the caller can zero a secret after use.
    """
    lib = _get()
    return _alloc_call(lib.keyctl_read_alloc, serial, "keyctl_read_alloc")


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """The parsed ``keyctl describe`` string ``type;uid;gid;perm;description``."""

    type: str
    uid: int
    gid: int
    perm: int
    description: str


def _describe_raw(serial: int) -> str:
    lib = _get()
    raw = _alloc_call(lib.keyctl_describe_alloc, serial, "keyctl_describe_alloc")
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape")


def describe_key(serial: int) -> KeyDescription:
    """Type, owner, permissions and description of key ``serial``."""
    raw = _describe_raw(serial)
    parts = raw.split(";", 4)
    if len(parts) != 5:
        raise KeyringError(
            errno.EBADMSG,
            "keyctl_describe_alloc",
            f"{describe_serial(serial)}: unexpected description format {raw!r}",
        )
    ktype, uid, gid, perm, desc = parts
    try:
        return KeyDescription(ktype, int(uid), int(gid), int(perm, 16), desc)
    except ValueError as exc:
        raise KeyringError(
            errno.EBADMSG,
            "keyctl_describe_alloc",
            f"{describe_serial(serial)}: cannot parse {raw!r}",
        ) from exc


def psk_identity(serial: int) -> str:
    """The PSK identity of key ``serial``: the text after the last ``;`` (tlshd semantics)."""
    return _describe_raw(serial).rsplit(";", 1)[-1]


def keyring_members(keyring: int) -> list[int]:
    """The serials linked into ``keyring`` (its payload is an array of ``key_serial_t``)."""
    raw = read_key(keyring)
    n = len(raw) // 4
    return list((_key_serial_t * n).from_buffer(raw)) if n else []


def search(keyring: int, key_type: str, description: str) -> int:
    """Serial of the key of ``key_type`` named ``description`` in ``keyring`` (recursively)."""
    lib = _get()
    rc = lib.keyctl_search(keyring, key_type.encode(), _encode(description), 0)
    return _check(
        rc,
        "keyctl_search",
        f"{describe_serial(keyring)}, type {key_type!r}, description {description!r}",
    )


def find_keyring(name: str) -> int:
    """Serial of the keyring named ``name`` (``find_key_by_type_and_desc("keyring", name, 0)``),
    or, for a decimal number, the keyring with that serial (tlshd's config allows either)."""
    if name.isascii() and name.isdigit():
        serial = int(name)
        kind = describe_key(serial).type  # KeyringError if absent or not viewable
        if kind != "keyring":
            what = f"key {serial} is a {kind!r} key, not a keyring"
            raise KeyringError(errno.ENOTDIR, "find_keyring", what)
        return serial
    lib = _get()
    rc = lib.find_key_by_type_and_desc(b"keyring", _encode(name), 0)
    return _check(rc, "find_key_by_type_and_desc", f"keyring {name!r}")


def link(key: int, keyring: int) -> None:
    """Link ``key`` into ``keyring``."""
    lib = _get()
    _check(
        lib.keyctl_link(key, keyring),
        "keyctl_link",
        f"{describe_serial(key)} into {describe_serial(keyring)}",
    )


def unlink(key: int, keyring: int) -> None:
    """Remove the link from ``keyring`` to ``key``."""
    lib = _get()
    _check(
        lib.keyctl_unlink(key, keyring),
        "keyctl_unlink",
        f"{describe_serial(key)} from {describe_serial(keyring)}",
    )


def add_key(
    key_type: str, description: str, payload: bytes | bytearray | None, keyring: int
) -> int:
    """Create or update a key in ``keyring``; returns its serial. ``None`` payload: a keyring."""
    lib = _get()
    what = f"type {key_type!r}, description {description!r}, into {describe_serial(keyring)}"
    if payload is None:
        rc = lib.add_key(key_type.encode(), _encode(description), None, 0, keyring)
        return _check(rc, "add_key", what)
    if len(payload) > MAX_PAYLOAD:
        raise KeyringError(errno.EMSGSIZE, "add_key", f"{what}: payload of {len(payload)} bytes")
    buf = (ctypes.c_char * len(payload)).from_buffer_copy(payload) if payload else None
    try:
        rc = lib.add_key(key_type.encode(), _encode(description), buf, len(payload), keyring)
    finally:
        if buf is not None:
            ctypes.memset(buf, 0, len(payload))
    return _check(rc, "add_key", what)


def invalidate(key: int) -> None:
    """Invalidate ``key`` (it is removed from every keyring at once)."""
    lib = _get()
    _check(lib.keyctl_invalidate(key), "keyctl_invalidate", describe_serial(key))


def join_session_keyring(name: str | None = None) -> int:
    """Join (creating if needed) the session keyring ``name``; ``None``: a new anonymous one.

    This changes the calling thread's credentials: the daemon never calls it; tests do, to get
    a fresh, isolated session keyring.
    """
    lib = _get()
    rc = lib.keyctl_join_session_keyring(None if name is None else _encode(name))
    return _check(rc, "keyctl_join_session_keyring", repr(name))


def _encode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise KeyringError(errno.EINVAL, "encode", f"{text!r} contains a NUL byte")
    return data
