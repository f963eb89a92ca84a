# SPDX-License-Identifier: GPL-2.0-or-later
"""TLS_AES_128_CCM_SHA256 (0x1304) packet protection for aioquic, and the cipher mapping.

aioquic 1.7 protects packets with AES-GCM and ChaCha20 only. RFC 9001 §5.3 also allows
AEAD_AES_128_CCM (16-byte tag) with AES-ECB header protection (§5.4.3), which the kernel
module supports (``ccm(aes)``, docs/kernel-interfaces.md §2.7). :func:`register` teaches
aioquic's packet-protection layer this suite; it is additive (the three native suites and
aioquic's own TLS negotiation are unchanged) and idempotent. Key updates work too, since
aioquic derives the next phase through the same tables.
"""

from __future__ import annotations

from typing import Any, cast

from aioquic import tls as aq_tls
from aioquic.quic import crypto as aq_crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from ..uapi import Cipher

CCM_SUITE = 0x1304
CCM_TAG_LENGTH = 16
_AEAD_NAME = b"aes-128-ccm"

#: kernel cipher number (``quic_crypto_secret.type``) -> TLS 1.3 cipher suite
CIPHER_TO_SUITE: dict[Cipher, int] = {
    Cipher.AES_GCM_128: 0x1301,
    Cipher.AES_GCM_256: 0x1302,
    Cipher.CHACHA20_POLY1305: 0x1303,
    Cipher.AES_CCM_128: CCM_SUITE,
}

_crypto_globals = vars(aq_crypto)
_NativeAEAD: Any = _crypto_globals["AEAD"]
_CryptoError: Any = _crypto_globals["CryptoError"]


class _AEAD(_NativeAEAD):  # type: ignore[misc]
    """aioquic's AEAD, plus AES-128-CCM with a 16-byte tag (same nonce construction)."""

    def __init__(self, cipher_name: bytes, key: bytes, iv: bytes) -> None:
        if cipher_name != _AEAD_NAME:
            super().__init__(cipher_name, key, iv)
            return
        if len(key) != 16 or len(iv) != 12:
            raise _CryptoError(
                f"AES-128-CCM needs a 16-byte key and 12-byte IV, got {len(key)}/{len(iv)}"
            )
        # the base class encrypts/decrypts through self._aead.(en|de)crypt(nonce, data, ad)
        # and maps InvalidTag to CryptoError; AESCCM has the same interface
        self._aead = AESCCM(key, tag_length=CCM_TAG_LENGTH)
        self._iv = int.from_bytes(iv, "big")


def register() -> None:
    """Make aioquic's packet protection accept suite 0x1304 (idempotent)."""
    cast(dict[int, Any], aq_tls.CIPHER_SUITES).setdefault(CCM_SUITE, hashes.SHA256)
    cast(dict[int, Any], aq_crypto.CIPHER_SUITES).setdefault(
        CCM_SUITE, (b"aes-128-ecb", _AEAD_NAME)
    )
    if _crypto_globals["AEAD"] is _NativeAEAD:
        _crypto_globals["AEAD"] = _AEAD
