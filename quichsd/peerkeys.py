# SPDX-License-Identifier: GPL-2.0-or-later
"""The peer's certificate as a kernel key, for DONE's REMOTE_AUTH after an x509 handshake.

As tlshd does (ktls-utils ``keyring.c``, ``tlshd_keyring_create_cert``), the certificate (DER)
becomes an ``asymmetric`` key described ``TLS x509 <peer>`` in the daemon's user keyring,
and its serial goes in DONE's REMOTE_AUTH. The kernel hands the first serial to the
consumer's ``ta_done``.

Where quichsd differs from tlshd:

* Only the end-entity certificate is added. tlshd adds every certificate of the chain under
  the same description, and each ``add_key`` replaces the previous key's link, so the first
  serial it reports (the one the consumer gets) belongs to a key that is already unlinked.
* A server also reports the client's certificate (tlshd sends 0xffffffff placeholders). The
  description names the client's address, since a server has no peer name.

The asymmetric key type has no update operation, so ``add_key`` with a description already
in the keyring creates a new key and unlinks the old one. The keyring therefore holds at most
one key per peer. The kernel parses the certificate itself. When it cannot (for example a
kernel built without ECDSA), the handshake still succeeds, DONE carries no REMOTE_AUTH (the
consumer sees TLS_NO_PEERID), and a warning names the peer and the kernel's error, once per
error. Later failures of the same kind are logged at debug level.
"""

from __future__ import annotations

import logging

from . import keyring
from .keyring import KEY_SPEC_USER_KEYRING, KeyringError

log = logging.getLogger(__name__)

KEY_TYPE = "asymmetric"
DESCRIPTION_PREFIX = "TLS x509 "

_warned: set[int] = set()


def peer_certificate_key(der: bytes, peer: str, target: int = KEY_SPEC_USER_KEYRING) -> int | None:
    """Add ``der`` as the key ``TLS x509 <peer>`` to ``target``; its serial, or None."""
    try:
        return keyring.add_key(KEY_TYPE, DESCRIPTION_PREFIX + peer, der, target)
    except KeyringError as e:
        code = e.errno or 0
        first = code not in _warned
        _warned.add(code)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "peer %s: its certificate could not become a kernel key, so DONE reports no "
            "REMOTE_AUTH: %s",
            peer,
            e,
        )
        return None
