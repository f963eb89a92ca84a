# SPDX-License-Identifier: GPL-2.0-or-later
"""The libkeyutils binding and the keyring parts of credentials, on this machine's REAL kernel
keyring. Each test first joins a new anonymous session keyring, so keys and links made by one
test are invisible to the next (the pytest process stays in the last anonymous session)."""

from __future__ import annotations

import datetime
import errno
import logging
import os
import time
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from quichsd import keyring as kr
from quichsd import peerkeys
from quichsd.credentials import Credentials, Format, SessionKeyrings, lookup_psk, psk_from_serial
from quichsd.errors import LocalError

pytestmark = pytest.mark.keyring
SESSION = kr.KEY_SPEC_SESSION_KEYRING


@pytest.fixture(autouse=True)
def fresh_session() -> int:
    try:
        return kr.join_session_keyring(None)
    except kr.KeyringError as exc:
        pytest.skip(f"kernel keyring unavailable here: {exc}")


@pytest.fixture
def user_keyring() -> Iterator[tuple[str, int]]:
    """A uniquely named keyring outside the session keyring, removed afterwards.

    It lives in the process keyring, where the kernel links a request's keyring
    (``tls_handshake_private_keyring``): possessed by us, but not searched via @s.
    """
    name = f"quichsd-test-{uuid.uuid4().hex[:12]}"
    serial = kr.add_key("keyring", name, None, kr.KEY_SPEC_PROCESS_KEYRING)
    try:
        yield name, serial
    finally:
        kr.invalidate(serial)


def _der_cert() -> bytes:
    key = rsa.generate_private_key(65537, 2048)  # the kernel may lack ECDSA for x509 keys
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quichsd keyring test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_user_key_roundtrip_and_describe(fresh_session: int) -> None:
    payload = os.urandom(32) + b"\0tail"
    serial = kr.add_key("user", "quichsd:roundtrip", payload, SESSION)
    assert serial > 0
    data = kr.read_key(serial)
    assert isinstance(data, bytearray) and data == payload
    d = kr.describe_key(serial)
    assert (d.type, d.uid, d.gid, d.description) == (
        "user",
        os.geteuid(),
        os.getegid(),
        "quichsd:roundtrip",
    )
    assert d.perm & 0x3F000000 == 0x3F000000  # possessor has all rights
    assert kr.keyring_members(SESSION) == [serial]
    assert kr.keyring_members(fresh_session) == [serial]  # @s is the joined keyring
    assert kr.search(SESSION, "user", "quichsd:roundtrip") == serial


def test_add_key_updates_same_description() -> None:
    a = kr.add_key("user", "quichsd:update", b"one", SESSION)
    b = kr.add_key("user", "quichsd:update", b"two", SESSION)
    assert a == b and kr.read_key(a) == b"two"


def test_psk_identity_is_text_after_last_semicolon() -> None:
    serial = kr.add_key("user", "NVMe0R01 nqn.host;nqn.subsys", b"k" * 32, SESSION)
    assert kr.psk_identity(serial) == "nqn.subsys"
    assert kr.describe_key(serial).description == "NVMe0R01 nqn.host;nqn.subsys"
    plain = kr.add_key("user", "test1", b"secret-1", SESSION)
    assert psk_from_serial(plain) == ("test1", bytearray(b"secret-1"))


def test_psk_lookup_by_identity() -> None:
    secret = os.urandom(32)
    serial = kr.add_key("user", "client-7", secret, SESSION)
    kr.add_key("user", "other", b"x" * 32, SESSION)
    assert lookup_psk("client-7") == (serial, bytearray(secret))
    assert lookup_psk("client-8") is None


def test_psk_lookup_searches_nested_keyrings() -> None:
    ring = kr.add_key("keyring", "quic", None, SESSION)
    serial = kr.add_key("user", "test2", b"nested-secret", ring)
    assert lookup_psk("test2") == (serial, bytearray(b"nested-secret"))


def test_psk_lookup_not_in_an_unlinked_keyring(user_keyring: tuple[str, int]) -> None:
    _, ring = user_keyring
    kr.add_key("user", "hidden", b"s", ring)
    assert lookup_psk("hidden") is None


def test_link_and_unlink(user_keyring: tuple[str, int]) -> None:
    name, ring = user_keyring
    assert kr.find_keyring(name) == ring
    assert ring not in kr.keyring_members(SESSION)
    kr.link(ring, SESSION)
    assert ring in kr.keyring_members(SESSION)
    kr.unlink(ring, SESSION)
    assert ring not in kr.keyring_members(SESSION)
    with pytest.raises(kr.KeyringError) as info:
        kr.unlink(ring, SESSION)
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == (
        f"keyctl_unlink(key {ring} from @s): No such file or directory (ENOENT)"
    )


def test_session_keyrings_link_configured(
    user_keyring: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    name, ring = user_keyring
    caplog.set_level(logging.DEBUG, "quichsd.credentials")
    sk = SessionKeyrings()
    linked = sk.link_session_keyrings([name, "quichsd-no-such-keyring"])
    assert linked[name] == ring and "quichsd-no-such-keyring" not in linked
    assert ring in kr.keyring_members(SESSION)
    absent = [r for r in caplog.records if "quichsd-no-such-keyring" in r.getMessage()]
    assert len(absent) == 1 and absent[0].levelno == logging.DEBUG
    assert sk.link_session_keyrings([]) == {k: v for k, v in linked.items() if k != name}
    assert ring not in kr.keyring_members(SESSION)  # dropped from config: unlinked on reload


def test_session_keyrings_by_serial(user_keyring: tuple[str, int]) -> None:
    """Issue 13 item 12: a configured keyring may be given by serial, as tlshd allows; a
    serial that is not a keyring is refused with a warning, not linked."""
    name, ring = user_keyring
    user_key = kr.add_key("user", f"{name}-k", b"x", ring)
    sk = SessionKeyrings()
    linked = sk.link_session_keyrings([str(ring), str(user_key)])
    assert linked[str(ring)] == ring and str(user_key) not in linked
    assert ring in kr.keyring_members(SESSION)
    with pytest.raises(kr.KeyringError) as info:
        kr.find_keyring(str(user_key))
    assert info.value.errno == errno.ENOTDIR and "'user' key, not a keyring" in str(info.value)
    sk.link_session_keyrings([])
    assert ring not in kr.keyring_members(SESSION)


def test_request_keyring_linked_for_the_handshake_only(user_keyring: tuple[str, int]) -> None:
    _, ring = user_keyring
    kr.add_key("user", "req-psk", b"req-secret", ring)
    sk = SessionKeyrings()
    assert lookup_psk("req-psk") is None
    with sk.request_keyring(ring):
        assert ring in kr.keyring_members(SESSION)
        assert lookup_psk("req-psk") is not None
        with sk.request_keyring(ring):  # a concurrent handshake with the same keyring
            pass
        assert ring in kr.keyring_members(SESSION)  # still needed by the first
    assert ring not in kr.keyring_members(SESSION)
    with pytest.raises(RuntimeError), sk.request_keyring(ring):
        assert ring in kr.keyring_members(SESSION)
        raise RuntimeError("handshake failed")
    assert ring not in kr.keyring_members(SESSION)
    with sk.request_keyring(0):
        assert kr.keyring_members(SESSION) == []


def test_request_keyring_keeps_a_link_it_did_not_make(user_keyring: tuple[str, int]) -> None:
    name, ring = user_keyring
    sk = SessionKeyrings()
    sk.link_session_keyrings([name])
    with sk.request_keyring(ring):
        pass
    assert ring in kr.keyring_members(SESSION)
    other = SessionKeyrings()  # linked by someone else
    with other.request_keyring(ring):
        pass
    assert ring in kr.keyring_members(SESSION)


def test_request_keyring_missing_is_a_local_error() -> None:
    # Not in @s: an invalidated key stays listed in its keyrings until the GC runs.
    dead = kr.add_key(
        "keyring", f"doomed-{uuid.uuid4().hex[:8]}", None, kr.KEY_SPEC_PROCESS_KEYRING
    )
    kr.invalidate(dead)
    with pytest.raises(LocalError) as info, SessionKeyrings().request_keyring(dead):
        pass
    assert info.value.status == errno.EIO
    assert f"keyctl_link(key {dead} into @s)" in str(info.value)


def test_asymmetric_key_read_is_eopnotsupp() -> None:
    der = _der_cert()
    serial = kr.add_key("asymmetric", "", der, SESSION)
    assert kr.describe_key(serial).type == "asymmetric"
    with pytest.raises(kr.KeyringError) as info:
        kr.read_key(serial)
    assert info.value.errno == errno.EOPNOTSUPP
    assert str(info.value) == (
        f"keyctl_read_alloc(key {serial}): Operation not supported "
        "(this key type cannot be read from userspace, e.g. "
        "'asymmetric') (EOPNOTSUPP)"
    )
    with pytest.raises(
        LocalError,
        match=rf"^cannot read certificate from key serial {serial}: "
        r".*; store the DER bytes in a key of type 'user'$",
    ):
        Credentials().x509("client", cert_serial=serial)


def test_der_cert_and_key_from_user_keys() -> None:
    der = _der_cert()
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cs = kr.add_key("user", "tls cert", der, SESSION)
    ks = kr.add_key("user", "tls key", key, SESSION)
    m = Credentials().x509("server", cert_serial=cs, key_serial=ks)
    assert m.chain is not None and m.chain.data == der and m.chain.format is Format.DER
    assert m.key is not None and bytes(m.key.data) == key and m.key.transient


def test_missing_serial_is_a_clear_error() -> None:
    serial = kr.add_key("user", "quichsd:gone", b"x", SESSION)
    kr.invalidate(serial)
    deadline = time.monotonic() + 5
    while True:  # an invalidated key reads EACCES until the garbage collector frees it
        with pytest.raises(kr.KeyringError) as info:
            kr.read_key(serial)
        if info.value.errno != errno.EACCES or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOKEY
    assert str(info.value) == (
        f"keyctl_read_alloc(key {serial}): Required key not available (ENOKEY)"
    )
    with pytest.raises(kr.KeyringError, match=rf"^keyctl_describe_alloc\(key {serial}\)"):
        kr.describe_key(serial)
    with pytest.raises(LocalError, match=rf"^PSK key serial {serial}: keyctl_describe_alloc"):
        psk_from_serial(serial)


def test_find_missing_keyring() -> None:
    with pytest.raises(kr.KeyringError) as info:
        kr.find_keyring("quichsd-no-such-keyring")
    assert info.value.errno == errno.ENOKEY
    assert str(info.value) == (
        "find_key_by_type_and_desc(keyring 'quichsd-no-such-keyring'): "
        "Required key not available (ENOKEY)"
    )


# -- the x509 peer's certificate as a kernel key (quichsd.peerkeys, DONE's REMOTE_AUTH) --


def test_peer_certificate_becomes_an_asymmetric_key() -> None:
    der = _der_cert()
    serial = peerkeys.peer_certificate_key(der, "server.test", SESSION)
    assert serial is not None and serial > 0
    d = kr.describe_key(serial)
    assert (d.type, d.description) == ("asymmetric", "TLS x509 server.test")
    assert kr.keyring_members(SESSION) == [serial]


def test_peer_certificate_key_replaces_the_previous_one_of_that_peer() -> None:
    first = peerkeys.peer_certificate_key(_der_cert(), "server.test", SESSION)
    other = peerkeys.peer_certificate_key(_der_cert(), "other.test", SESSION)
    again = peerkeys.peer_certificate_key(_der_cert(), "server.test", SESSION)
    assert None not in (first, other, again) and again != first
    # one key per peer: the first server.test key lost its link
    assert sorted(kr.keyring_members(SESSION)) == sorted([other, again])


def test_unparsable_certificate_gives_no_serial_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peerkeys._warned.discard(errno.EBADMSG)
    caplog.set_level(logging.DEBUG, logger="quichsd.peerkeys")
    assert peerkeys.peer_certificate_key(b"\x30\x03\x02\x01\x00", "10.0.0.7", SESSION) is None
    assert peerkeys.peer_certificate_key(b"\x30\x03\x02\x01\x00", "10.0.0.8", SESSION) is None
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "peer 10.0.0.7: its certificate could not become a kernel key, so DONE reports "
            "no REMOTE_AUTH: add_key(type 'asymmetric', description 'TLS x509 10.0.0.7', "
            "into @s): Bad message (EBADMSG)",
        ),
        (
            logging.DEBUG,
            "peer 10.0.0.8: its certificate could not become a kernel key, so DONE reports "
            "no REMOTE_AUTH: add_key(type 'asymmetric', description 'TLS x509 10.0.0.8', "
            "into @s): Bad message (EBADMSG)",
        ),
    ]
    assert kr.keyring_members(SESSION) == []
