# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.gnutls.pskhash: SHA-384-bound PSK credentials on this machine's GnuTLS."""

from __future__ import annotations

import ctypes as C

import pytest

from quichsd.errors import LocalError
from quichsd.gnutls import _lib as L
from quichsd.gnutls import pskhash
from quichsd.gnutls.features import features


@pytest.mark.parametrize("kind", ["client", "server"])
def test_sha384_credentials_are_bound_to_sha384(kind: str) -> None:
    h = pskhash.allocate(kind, sha384=True)
    try:
        if pskhash._ALLOC2[kind] is None:  # GnuTLS < 3.8.10: the checked member write
            offset = pskhash.binder_offset(kind, features().version)
            assert offset is not None
            entry = C.c_void_p.from_address(h + offset).value
            assert entry is not None
            head = pskhash._MacHead.from_address(entry)
            assert (head.id, head.output_size) == (pskhash.GNUTLS_MAC_SHA384, 48)
            assert C.string_at(head.name) == b"SHA384"
    finally:
        free = getattr(L, f"gnutls_psk_free_{kind}_credentials")
        free(h)


def test_unknown_layout_is_refused_not_guessed() -> None:
    fake = (C.c_ubyte * 128)()  # no SHA-256 entry pointer where GnuTLS keeps it
    with pytest.raises(LocalError, match="cannot use a SHA-384 PSK"):
        pskhash.bind_sha384(C.addressof(fake), "client")


@pytest.mark.parametrize(
    ("version", "client", "server"),
    [
        ("3.6.13", 48, 56),
        ("3.7.9", 48, 56),  # Debian 12
        ("3.8.0", 48, 56),
        ("3.8.1", 56, 64),  # get_function3 / pwd_callback3 added
        ("3.8.9", 56, 64),  # Debian 13
        ("3.6.12", None, None),
    ],
)
def test_binder_offset_by_release(version: str, client: int | None, server: int | None) -> None:
    assert pskhash.binder_offset("client", version) == client
    assert pskhash.binder_offset("server", version) == server


def test_a_release_without_the_member_is_refused() -> None:
    fake = (C.c_ubyte * 128)()
    with pytest.raises(LocalError, match=r"GnuTLS 3\.6\.12 cannot use a SHA-384 PSK"):
        pskhash.bind_sha384(C.addressof(fake), "client", "3.6.12")
