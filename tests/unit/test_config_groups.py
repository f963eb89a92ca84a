# SPDX-License-Identifier: GPL-2.0-or-later
"""tls.groups against what the linked GnuTLS offers (issue 14: post-quantum key exchange).

The availability of a group is the real library's (``gnutls_group_list``), read by
:mod:`quichsd.gnutls.features`; the tests that need a GnuTLS *with* ML-KEM inject that set,
since neither Debian 12's nor Debian 13's GnuTLS has one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quichsd.config import (
    CLASSICAL_GROUPS,
    DEFAULT_GROUPS,
    PQ_GROUPS,
    default_groups,
    load_config,
    parse_config,
)
from quichsd.errors import ConfigError
from quichsd.gnutls.features import MIN_VERSION, features, parse_version

P = "/etc/quichsd/config.yaml"


def test_features_read_from_the_linked_library() -> None:
    f = features()
    assert f.supported, f.version
    assert f.version_tuple >= MIN_VERSION
    # every classical group quichsd names is one the library really lists
    assert set(CLASSICAL_GROUPS) <= f.groups, sorted(f.groups)


def test_parse_version() -> None:
    assert parse_version("3.7.9") == (3, 7, 9)
    assert parse_version("3.8") == (3, 8, 0)
    assert parse_version("garbage") == (0, 0, 0)


def test_pq_group_absent_here_is_a_path_line_error() -> None:
    have = features().groups
    missing = [g for g in PQ_GROUPS if g not in have]
    if not missing:
        pytest.skip(f"GnuTLS {features().version} offers every hybrid group quichsd names")
    text = f"tls:\n  groups:\n    - X25519\n    - {missing[0]}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, P, available_groups=have)
    assert info.value.errors == [
        f"{P}:4: tls.groups[1]: group {missing[0]!r} is not available in the linked GnuTLS: "
        "it needs a GnuTLS built with ML-KEM (leancrypto or liboqs)"
    ]


def test_pq_group_accepted_where_available() -> None:
    have = frozenset(CLASSICAL_GROUPS) | {"X25519-MLKEM768"}
    s = parse_config("tls:\n  groups: [X25519-MLKEM768, X25519]\n", P, available_groups=have)
    assert s.tls.groups == ("X25519-MLKEM768", "X25519")


def test_default_groups_put_available_hybrids_first() -> None:
    have = frozenset(CLASSICAL_GROUPS) | {"X25519-MLKEM768", "X25519-KYBER768"}
    # the draft Kyber group is never a default
    assert default_groups(have) == ("X25519-MLKEM768", *DEFAULT_GROUPS)
    assert default_groups(frozenset(CLASSICAL_GROUPS)) == DEFAULT_GROUPS
    assert parse_config("log:\n  level: info\n", P, available_groups=have).tls.groups == (
        "X25519-MLKEM768",
        *DEFAULT_GROUPS,
    )
    # an explicit list is kept as written
    s = parse_config("tls:\n  groups: [SECP256R1]\n", P, available_groups=have)
    assert s.tls.groups == ("SECP256R1",)


def test_default_groups_from_the_real_library() -> None:
    s = parse_config("", P, available_groups=features().groups)
    hybrids = [g for g in PQ_GROUPS[:3] if g in features().groups]
    assert s.tls.groups == (*hybrids, *DEFAULT_GROUPS)


def test_shipped_config_offers_hybrids_first_where_available() -> None:
    shipped = Path(__file__).resolve().parents[2] / "etc" / "quichsd" / "config.yaml"
    have = frozenset(CLASSICAL_GROUPS) | {"X25519-MLKEM768", "SECP256R1-MLKEM768"}
    groups = load_config(str(shipped), available_groups=have).tls.groups
    assert groups == ("X25519-MLKEM768", "SECP256R1-MLKEM768", *DEFAULT_GROUPS)
