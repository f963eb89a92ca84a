# SPDX-License-Identifier: GPL-2.0-or-later
"""What the linked GnuTLS offers, detected once: the one place that knows its version.

Behaviour that differs between the GnuTLS releases quichsd runs on (3.7.9 in Debian 12,
3.8.9 in Debian 13) is decided here, from what the library reports at run time, never
from the distribution: the rest of the code asks :func:`features`.

Key-exchange groups are read from ``gnutls_group_list()``, the groups this build can
negotiate. Hybrid post-quantum groups (``X25519-MLKEM768`` and the like) exist only in a
GnuTLS built with an ML-KEM provider (leancrypto or liboqs, GnuTLS >= 3.8.9); neither
Debian 12's nor Debian 13's build has one, so there they are absent and refused by the
configuration check, by name.
"""

from __future__ import annotations

import ctypes as C
import functools
import re
from dataclasses import dataclass

from . import _lib

#: the oldest GnuTLS with the QUIC API quichsd uses (gnutls_handshake_set_read_function,
#: gnutls_handshake_write, gnutls_handshake_set_secret_function, gnutls_alert_set_read_function)
MIN_VERSION = (3, 7, 2)

_gnutls_group_list = _lib._fn("gnutls_group_list", C.POINTER(C.c_int))
_gnutls_group_get_name = _lib._fn("gnutls_group_get_name", C.c_char_p, C.c_int)


@dataclass(frozen=True, slots=True)
class Features:
    #: the version string the library reports (``gnutls_check_version(NULL)``)
    version: str
    #: (major, minor, patch); (0, 0, 0) if the string could not be read
    version_tuple: tuple[int, int, int]
    #: every key-exchange group this build can negotiate, by GnuTLS name
    groups: frozenset[str]

    @property
    def supported(self) -> bool:
        """True if this GnuTLS is new enough for quichsd's QUIC handshake."""
        return self.version_tuple >= MIN_VERSION


def parse_version(text: str) -> tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _groups() -> frozenset[str]:
    ids = _gnutls_group_list()
    names: set[str] = set()
    i = 0
    while ids and ids[i]:
        name = _gnutls_group_get_name(ids[i])
        if name:
            names.add(name.decode("ascii", "replace"))
        i += 1
    return frozenset(names)


@functools.cache
def features() -> Features:
    """The linked library's features (read once per process)."""
    version = _lib.version()
    return Features(version=version, version_tuple=parse_version(version), groups=_groups())
