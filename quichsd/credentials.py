# SPDX-License-Identifier: GPL-2.0-or-later
"""Certificates, private keys, trust stores, CRLs and PSKs, as bytes. No GnuTLS here.

Sources, as in tlshd: files named in the config (read once by :func:`load_credentials`,
rebuilt by :meth:`CredentialStore.reload`), and kernel keys whose serials arrive with a
handshake request (DER certificate / DER private key / PSK). Kernel serials win over config
files, item by item (:meth:`Credentials.x509`). The TLS engine turns these bytes into GnuTLS
credentials.

Files are checked like tlshd does: a warning on logger ``quichsd.credentials`` when a file is
not owned by root, when a private key file is accessible to group or others, or when a
certificate/trust/CRL file is writable by group or others. Private keys are opened with
``O_NOFOLLOW``, read into a ``bytearray`` (zeroable with :meth:`PrivateKey.wipe`) and never
logged or shown in a ``repr``. PSK secrets are ``bytearray`` s too.

Keyrings: :class:`SessionKeyrings` links ``.nvme``, ``.nfs``, ``.nfsd`` and the configured
keyrings into the session keyring, and links a request's keyring for the duration of one
handshake (reference counted, since handshakes run concurrently in one process).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from quichsd import keyring
from quichsd.config import PKCS11_PREFIX, Settings, X509Paths
from quichsd.errors import LocalError, QuichsdError
from quichsd.pem import (
    MAX_CHAIN_CERTS,
    PemError,
    check_certificates,
    check_crls,
    check_private_key,
    is_der_sequence,
)
from quichsd.regularfile import NotRegularFile, open_regular

log = logging.getLogger("quichsd.credentials")

Role = Literal["client", "server"]
#: Keyrings tlshd always links into its session keyring (ktls-utils ``config.c``).
ALWAYS_LINKED_KEYRINGS = (".nvme", ".nfs", ".nfsd")
MAX_KEY_BYTES = 64 << 10
MAX_CHAIN_BYTES = 1 << 20
MAX_BUNDLE_BYTES = 16 << 20  # trust stores and CRLs


class Format(enum.Enum):
    PEM = "pem"
    DER = "der"


class CredentialsError(QuichsdError):
    """Configured credential files could not be loaded; ``errors`` has one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True, slots=True)
class CertChain:
    """A certificate chain, leaf first: PEM text of 1..10 certificates, or one DER cert."""

    data: bytes = field(repr=False)
    format: Format
    count: int
    source: str


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class PrivateKey:
    """A private key (PEM text or DER). ``transient``: read for one request, wipe after use."""

    data: bytearray
    format: Format
    source: str
    transient: bool = False

    def wipe(self) -> None:
        self.data[:] = bytes(len(self.data))

    def __repr__(self) -> str:
        return f"PrivateKey({self.format.value}, {len(self.data)} bytes, from {self.source})"


@dataclass(frozen=True, slots=True)
class X509Material:
    """What one role needs for x509. ``trust_pem`` ``None`` means the system trust store."""

    chain: CertChain | None = None
    key: PrivateKey | None = None
    trust_pem: bytes | None = field(default=None, repr=False)
    crl_pem: bytes | None = field(default=None, repr=False)
    #: the private key is on a PKCS#11 token (``pkcs11:`` URL); ``key`` is then None
    key_url: str | None = None

    def release(self) -> None:
        """Zero a key read for this request only (cached config keys are left alone)."""
        if self.key is not None and self.key.transient:
            self.key.wipe()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A snapshot of the configured material for both roles."""

    client: X509Material = field(default_factory=X509Material)
    server: X509Material = field(default_factory=X509Material)

    def x509(self, role: Role, cert_serial: int = 0, key_serial: int = 0) -> X509Material:
        """Material for one handshake: kernel key serials (non-zero) replace config files.

        Raises :class:`~quichsd.errors.LocalError` (DONE status EIO) naming the serial when
        a kernel key cannot be read or is not DER.
        """
        base = self.client if role == "client" else self.server
        chain, key, key_url = base.chain, base.key, base.key_url
        if cert_serial:
            der = _read_serial(cert_serial, "certificate")
            if not is_der_sequence(der):
                raise LocalError(f"key serial {cert_serial}: certificate is not DER")
            chain = CertChain(bytes(der), Format.DER, 1, f"key serial {cert_serial}")
        if key_serial:
            raw = _read_serial(key_serial, "private key")
            if not raw or raw[0] != 0x30:
                raw[:] = bytes(len(raw))
                raise LocalError(f"key serial {key_serial}: private key is not DER")
            key = PrivateKey(raw, Format.DER, f"key serial {key_serial}", transient=True)
            key_url = None
        return X509Material(chain, key, base.trust_pem, base.crl_pem, key_url)

    def wipe(self) -> None:
        for material in (self.client, self.server):
            if material.key is not None:
                material.key.wipe()


def _read_serial(serial: int, what: str) -> bytearray:
    try:
        return keyring.read_key(serial)
    except keyring.KeyringError as exc:
        hint = ""
        if exc.errno == errno.EOPNOTSUPP:
            hint = "; store the DER bytes in a key of type 'user'"
        raise LocalError(f"cannot read {what} from key serial {serial}: {exc}{hint}") from exc


# --- files -------------------------------------------------------------------------------


def _warn_owner_mode(path: str, st: os.stat_result, secret: bool) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0:
        log.warning("%s: owned by uid %d, not root (mode %04o)", path, st.st_uid, mode)
    if secret and mode & 0o077:
        log.warning(
            "%s: private key file has mode %04o: group or others can access it (expected 0600)",
            path,
            mode,
        )
    elif not secret and mode & 0o022:
        log.warning(
            "%s: certificate file has mode %04o: group or others can write it (expected 0644)",
            path,
            mode,
        )


def read_file(path: str, *, secret: bool, limit: int) -> bytearray:
    """Read a whole regular file. ``secret``: refuse symlinks. Raises CredentialsError."""
    try:
        fd, st = open_regular(path, nofollow=secret)  # a FIFO would block the read
    except NotRegularFile as exc:
        raise CredentialsError([f"{path}: {exc}"]) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and secret:
            raise CredentialsError(
                [f"{path}: private key file is a symbolic link; name the file itself"]
            ) from None
        raise CredentialsError([f"{path}: cannot open: {exc.strerror}"]) from None
    try:
        _warn_owner_mode(path, st, secret)
        if st.st_size > limit:
            raise CredentialsError([f"{path}: {st.st_size} bytes, more than {limit}"])
        buf = bytearray(st.st_size)
        view, done = memoryview(buf), 0
        try:
            while done < len(buf):
                n = os.readv(fd, [view[done:]])
                if n == 0:
                    break
                done += n
            grew = os.read(fd, 1)
        except OSError as exc:
            buf[:] = bytes(len(buf))
            raise CredentialsError([f"{path}: cannot read: {exc.strerror}"]) from None
        finally:
            view.release()
        if done != len(buf) or grew:
            buf[:] = bytes(len(buf))
            raise CredentialsError([f"{path}: changed while being read"])
        return buf
    finally:
        os.close(fd)


def _load_role(role: Role, paths: X509Paths, errors: list[str]) -> X509Material:
    def attempt(path: str | None, limit: int = MAX_BUNDLE_BYTES) -> bytearray | None:
        if path is None:
            return None
        try:
            return read_file(path, secret=False, limit=limit)
        except CredentialsError as exc:
            errors.extend(exc.errors)
            return None

    chain = key = trust = crl = None
    if paths.certificate is not None:
        data = attempt(paths.certificate, MAX_CHAIN_BYTES)
        if data is not None:
            try:
                n = check_certificates(data, limit=MAX_CHAIN_CERTS)
                chain = CertChain(bytes(data), Format.PEM, n, paths.certificate)
            except PemError as exc:
                errors.append(f"{paths.certificate}: {role} certificate: {exc}")
    key_url = None
    if paths.private_key is not None and paths.private_key.startswith(PKCS11_PREFIX):
        key_url = paths.private_key  # GnuTLS opens it on the token (quichsd.gnutls.pkcs11)
    elif paths.private_key is not None:
        try:
            raw = read_file(paths.private_key, secret=True, limit=MAX_KEY_BYTES)
            try:
                is_pem = check_private_key(raw)
                key = PrivateKey(raw, Format.PEM if is_pem else Format.DER, paths.private_key)
            except PemError as exc:
                raw[:] = bytes(len(raw))
                errors.append(f"{paths.private_key}: {role} private key: {exc}")
        except CredentialsError as exc:
            errors.extend(exc.errors)
    for attr, label in (("truststore", "trust store"), ("crl", "CRL")):
        p = getattr(paths, attr)
        data = attempt(p)
        if data is None or p is None:
            continue
        try:
            if attr == "truststore":
                check_certificates(data, limit=None)
                trust = bytes(data)
            else:
                check_crls(data)
                crl = bytes(data)
        except PemError as exc:
            errors.append(f"{p}: {role} {label}: {exc}")
    return X509Material(chain, key, trust, crl, key_url)


def load_credentials(settings: Settings) -> Credentials:
    """Read and check every file the config names; raises CredentialsError listing all."""
    errors: list[str] = []
    client = _load_role("client", settings.client.x509, errors)
    server = _load_role("server", settings.server.x509, errors)
    creds = Credentials(client, server)
    if errors:
        creds.wipe()
        raise CredentialsError(errors)
    return creds


class CredentialStore:
    """The current :class:`Credentials`; :meth:`reload` swaps in a new set only on success.

    Handshakes in flight keep the snapshot they took, so old keys are not wiped on reload.
    """

    def __init__(self, settings: Settings) -> None:
        self._current = load_credentials(settings)

    @property
    def current(self) -> Credentials:
        return self._current

    def reload(self, settings: Settings) -> Credentials:
        self._current = load_credentials(settings)
        return self._current


# --- PSK ---------------------------------------------------------------------------------

_NOT_FOUND = (errno.ENOKEY, errno.EKEYEXPIRED, errno.EKEYREVOKED, errno.EACCES)


def lookup_psk(identity: str) -> tuple[int, bytearray] | None:
    """Server side: the session-keyring key named ``identity``, type "psk" then "user".

    Returns ``(serial, secret)`` or ``None`` when there is no such key.
    """
    for key_type in ("psk", "user"):
        try:
            serial = keyring.search(keyring.KEY_SPEC_SESSION_KEYRING, key_type, identity)
        except keyring.KeyringError as exc:
            if exc.errno not in _NOT_FOUND and exc.errno != errno.EINVAL:
                raise LocalError(f"PSK lookup of identity {identity!r} failed: {exc}") from exc
            log.debug("no %s key for PSK identity %r: %s", key_type, identity, exc)
            continue
        try:
            return serial, keyring.read_key(serial)
        except keyring.KeyringError as exc:
            raise LocalError(f"PSK identity {identity!r} (key serial {serial}): {exc}") from exc
    return None


def psk_from_serial(serial: int) -> tuple[str, bytearray]:
    """Client side: ``(identity, secret)`` of key ``serial``: the description's text after
    its last ``;`` and the payload (tlshd semantics)."""
    try:
        identity = keyring.psk_identity(serial)
        secret = keyring.read_key(serial)
    except keyring.KeyringError as exc:
        raise LocalError(f"PSK key serial {serial}: {exc}") from exc
    if not identity or not secret:
        secret[:] = bytes(len(secret))
        raise LocalError(f"PSK key serial {serial}: empty identity or key")
    return identity, secret


# --- keyrings ----------------------------------------------------------------------------


class SessionKeyrings:
    """Links keyrings into the session keyring: configured ones, and one per request."""

    def __init__(self, session: int = keyring.KEY_SPEC_SESSION_KEYRING) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._configured: dict[int, bool] = {}  # serial -> we linked it (so may unlink)
        self._requests: dict[int, list[int]] = {}  # serial -> [refcount, we linked it]

    def _linked(self) -> set[int]:
        try:
            return set(keyring.keyring_members(self._session))
        except keyring.KeyringError as exc:
            log.debug("cannot list the session keyring: %s", exc)
            return set()

    def link_session_keyrings(self, names: Iterable[str]) -> dict[str, int]:
        """Link ``.nvme``, ``.nfs``, ``.nfsd`` and ``names``; absent ones are skipped.

        Called at start and on reload: keyrings we linked before that are no longer
        configured are unlinked. Returns the name -> serial of those now linked.
        """
        with self._lock:
            present, wanted = self._linked(), {}
            for name in dict.fromkeys((*ALWAYS_LINKED_KEYRINGS, *names)):
                try:
                    serial = keyring.find_keyring(name)
                except keyring.KeyutilsUnavailable as exc:  # once, not once per keyring
                    log.warning("keyrings not linked: %s", exc)
                    break
                except keyring.KeyringError as exc:
                    level = logging.DEBUG if exc.errno == errno.ENOKEY else logging.WARNING
                    log.log(level, "keyring %s not linked: %s", name, exc)
                    continue
                owned = self._configured.get(serial, False) or bool(
                    self._requests.get(serial, [0, 0])[1]
                )
                if serial not in present:
                    try:
                        keyring.link(serial, self._session)
                    except keyring.KeyringError as exc:
                        log.warning("keyring %s not linked: %s", name, exc)
                        continue
                    owned = True
                wanted[name] = serial
                self._configured[serial] = owned
            for serial, owned in list(self._configured.items()):
                if serial not in wanted.values():
                    del self._configured[serial]
                    if owned and serial not in self._requests:
                        self._unlink(serial)
            return wanted

    def _unlink(self, serial: int) -> None:
        try:
            keyring.unlink(serial, self._session)
        except keyring.KeyringError as exc:
            log.warning("%s", exc)

    @contextmanager
    def request_keyring(self, serial: int | None) -> Iterator[None]:
        """Link a request's keyring (``HANDSHAKE_A_ACCEPT_KEYRING``) for one handshake.

        ``0``/``None``: nothing to do. A failed link raises LocalError (status EIO); the
        link is removed on every exit path once no other handshake uses it, and never if it
        was there before (configured, or linked by someone else).
        """
        if not serial:
            yield
            return
        with self._lock:
            entry = self._requests.get(serial)
            if entry is None:
                linked = serial not in self._configured and serial not in self._linked()
                if linked:
                    try:
                        keyring.link(serial, self._session)
                    except keyring.KeyringError as exc:
                        raise LocalError(f"cannot link the request's keyring: {exc}") from exc
                entry = self._requests[serial] = [0, int(linked)]
            entry[0] += 1
        try:
            yield
        finally:
            with self._lock:
                entry[0] -= 1
                if entry[0] == 0:
                    del self._requests[serial]
                    if entry[1] and serial not in self._configured:
                        self._unlink(serial)
