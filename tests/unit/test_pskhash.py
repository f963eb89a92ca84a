# SPDX-License-Identifier: GPL-2.0-or-later
"""quichsd.gnutls.pskhash: SHA-384-bound PSK credentials on this machine's GnuTLS."""

from __future__ import annotations

import ctypes as C

import pytest

from quichsd.errors import LocalError
from quichsd.gnutls import _lib as L
from quichsd.gnutls import pskhash


@pytest.mark.parametrize("kind", ["client", "server"])
def test_sha384_credentials_are_bound_to_sha384(kind: str) -> None:
    h = pskhash.allocate(kind, sha384=True)
    try:
        if pskhash._ALLOC2[kind] is None:  # GnuTLS < 3.8.1: the checked member write
            entry = C.c_void_p.from_address(h + pskhash._BINDER_OFFSET[kind]).value
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
