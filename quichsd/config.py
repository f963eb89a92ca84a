# SPDX-License-Identifier: GPL-2.0-or-later
"""The YAML configuration: schema, defaults and ``PATH:LINE: message`` errors. Pure.

The text is parsed with PyYAML's safe loader (libyaml's when available) but *composed*, not
constructed: validation walks the node tree, so each error names the line of the offending
key or value, and types are checked against what the YAML text says. YAML 1.1 surprises are
refused, not coerced: ``yes``/``on`` where a string or boolean is expected (write
``true``/``false``, or quote the string); ``0o17``, ``017``, ``0x1f``, ``1:30`` where an
integer is expected (write a plain decimal number). Duplicate keys, unknown keys and merge
keys (``<<``) are errors. All errors are collected, sorted by line and raised together as
:class:`~quichsd.errors.ConfigError`, whose ``errors`` lists ``PATH:LINE: key: message``.

Every key is optional: an empty file or an empty section means the defaults, which are the
dataclass defaults below. Each key is documented in ``etc/quichsd/config.yaml``.
"""

from __future__ import annotations

import grp
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from quichsd.errors import ConfigError
from quichsd.regularfile import NotRegularFile, open_regular

#: TLS 1.3 cipher suites usable by QUIC, by their GnuTLS priority names (RFC 9001 §5.3).
CIPHERS = ("AES-128-GCM", "AES-256-GCM", "AES-128-CCM", "CHACHA20-POLY1305")
DEFAULT_CIPHERS = ("AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CCM")
#: TLS 1.3 key-exchange groups every GnuTLS quichsd runs on accepts after ``GROUP-``.
CLASSICAL_GROUPS = (
    "X25519", "X448", "SECP256R1", "SECP384R1", "SECP521R1",
    "FFDHE2048", "FFDHE3072", "FFDHE4096", "FFDHE6144", "FFDHE8192",
)  # fmt: skip
#: Hybrid post-quantum groups by their GnuTLS names; only a GnuTLS built with an ML-KEM
#: provider has them (see :mod:`quichsd.gnutls.features`). The first three are offered
#: first by default where the linked GnuTLS has them; X25519-KYBER768 is the pre-standard
#: draft and is used only when named.
PQ_GROUPS = ("X25519-MLKEM768", "SECP256R1-MLKEM768", "SECP384R1-MLKEM1024", "X25519-KYBER768")
_PQ_DEFAULT = PQ_GROUPS[:3]
GROUPS = CLASSICAL_GROUPS + PQ_GROUPS
DEFAULT_GROUPS = ("X25519", "SECP256R1", "SECP384R1", "SECP521R1")
LOG_LEVELS = ("debug", "info", "notice", "warning", "error")
RESUMPTION_KEY_EXCHANGES = ("psk_dhe", "psk")
CLIENT_CERTIFICATE_POLICIES = ("ignore", "request", "require", "socket")
#: The kernel's HANDSHAKE_A_ACCEPT_TIMEOUT is a u32 of milliseconds.
MAX_TIMEOUT_MS = 2**32 - 1
MAX_CONFIG_BYTES = 1 << 20
MAX_WORKERS = 1024
#: connections the metrics endpoint holds at once (quichsd.metrics_http)
MAX_METRICS_CONNECTIONS = 16
#: the lowest GnuTLS log level whose messages carry key material (GnuTLS 3.7 and 3.8 log
#: the record keys and IVs of every epoch at 9, "INT: CLIENT WRITE KEY ...")
GNUTLS_KEY_LEVEL = 9


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    gnutls_level: int = 0
    handshake_completion: bool = True
    #: NSS key log file for the TLS secrets of every handshake; None = off
    keylog_file: str | None = None


@dataclass(frozen=True, slots=True)
class HandshakeSettings:
    default_timeout_ms: int = 10_000
    max_timeout_ms: int = 600_000
    max_in_flight: int = 256
    workers: int = 1  # processes running handshakes; 0 = one per CPU; 1 = the main one only


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS
    groups: tuple[str, ...] = DEFAULT_GROUPS
    resumption_key_exchange: str = "psk_dhe"
    session_tickets: bool = True
    early_data: bool = True


@dataclass(frozen=True, slots=True)
class X509Paths:
    """Files for one role; ``None`` truststore means the system trust store."""

    truststore: str | None = None
    crl: str | None = None
    certificate: str | None = None
    private_key: str | None = None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    x509: X509Paths = field(default_factory=X509Paths)
    verify_server_unauthenticated: bool = True
    #: a request with no peer name and no peer address: verify chain and purpose only
    #: (true) or refuse it (false, EINVAL)
    verify_server_without_name: bool = False


@dataclass(frozen=True, slots=True)
class ServerSettings:
    x509: X509Paths = field(default_factory=X509Paths)
    client_certificate: str = "socket"


@dataclass(frozen=True, slots=True)
class UnixSocketSettings:
    enabled: bool = True
    path: str = "/run/quichsd/quichsd.sock"
    allowed_uids: tuple[int, ...] = (0,)
    allowed_gids: tuple[int, ...] = ()
    #: connections accepted but silent (no request yet), counted apart from handshakes
    max_idle_connections: int = 64
    idle_timeout_ms: int = 2000
    #: gid given to the socket and its directory (a name is resolved when the config is
    #: read); None = the daemon's own group
    group: int | None = None
    #: permission bits of the socket; its directory gets 0750 if they give the group any
    #: access, else 0700
    mode: int = 0o660


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = False
    listen: ListenAddress = ListenAddress("127.0.0.1", 9470)
    max_connections_per_address: int = 4


@dataclass(frozen=True, slots=True)
class Settings:
    log: LogSettings = field(default_factory=LogSettings)
    keyrings: tuple[str, ...] = ()
    handshake: HandshakeSettings = field(default_factory=HandshakeSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    unix_socket: UnixSocketSettings = field(default_factory=UnixSocketSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


# --- node checking -----------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_DECIMAL = re.compile(r"[-+]?(0|[1-9](_?[0-9])*)")
#: what YAML 1.1 (PyYAML's resolver) reads as an integer
_YAML11_INT = re.compile(
    r"[-+]?(0b[0-1_]+|0[0-7_]+|(0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|[1-9][0-9_]*(:[0-5]?[0-9])+)"
)


class _Invalid(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.message = message


@dataclass
class _Ctx:
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: dotted key -> line of the key, for keys present in the file
    lines: dict[str, int] = field(default_factory=dict)
    #: the groups the linked GnuTLS offers; None = not checked (names only)
    available_groups: frozenset[str] | None = None

    def error(self, line: int, key: str, message: str) -> None:
        self.errors.append((line, f"{key}: {message}" if key else message))


_Check = Callable[[_Ctx, Node, str], Any]


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    value, tag = node.value, node.tag
    if not tag.startswith(_TAG):
        return f"a value tagged {tag}"
    kind = tag[len(_TAG) :]
    if kind == "null":
        return "an empty value"
    if kind == "str":
        return f"the string {value!r}"
    if kind == "bool":
        return f"{value!r}, which YAML reads as a boolean"
    if kind in ("int", "float"):
        return f"the number {value}"
    if kind in ("timestamp", "binary", "merge", "value", "yaml"):
        return f"{value!r}, which YAML reads as a {kind}"
    return f"a value tagged !!{kind}"


def _expected(node: Node, what: str) -> _Invalid:
    hint = ""
    if isinstance(node, ScalarNode):
        if node.tag == _TAG + "bool":
            hint = " (quote it to make it a string)"
        elif node.tag == _TAG + "str" and node.style in ("'", '"') and "string" not in what:
            hint = " (remove the quotes)"
    return _Invalid(node, f"expected {what}, got {_describe(node)}{hint}")


def _is(node: Node, kind: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + kind


def string(ctx: _Ctx, node: Node, key: str) -> str:
    if not _is(node, "str"):
        raise _expected(node, "a string")
    value: str = node.value
    if not value:
        raise _Invalid(node, "must not be empty")
    return value


def boolean(ctx: _Ctx, node: Node, key: str) -> bool:
    if not _is(node, "bool"):
        raise _expected(node, "true or false")
    if node.value.lower() not in ("true", "false"):
        raise _Invalid(
            node,
            f"{node.value!r} is a YAML 1.1 boolean that YAML 1.2 reads as a string; "
            "write true or false",
        )
    return bool(node.value.lower() == "true")


def _not_decimal(raw: str) -> str:
    """Why an int-tagged scalar is refused, with what YAML 1.1 makes of it when it can say
    (``!!int`` may tag any text: only YAML 1.1 integer syntax is handed to the loader)."""
    advice = "write a plain decimal number"
    if _YAML11_INT.fullmatch(raw):
        try:
            meant = yaml.safe_load(raw)
        except ValueError:  # integer syntax without digits, e.g. 0b_ or 0x_
            meant = None
        if isinstance(meant, int):
            return f"{raw!r} is not a decimal integer (YAML 1.1 reads it as {meant}); {advice}"
    return f"{raw!r} is not a decimal integer; {advice}"


def integer(lo: int, hi: int) -> _Check:
    def check(ctx: _Ctx, node: Node, key: str) -> int:
        if isinstance(node, ScalarNode) and node.tag in (_TAG + "int", _TAG + "str"):
            raw = node.value
            if node.tag == _TAG + "int" and not _DECIMAL.fullmatch(raw):
                raise _Invalid(node, _not_decimal(raw))
            if node.tag == _TAG + "str" and not node.style and re.fullmatch(r"[-+]?0o\d+", raw):
                raise _Invalid(
                    node,
                    f"{raw!r} is not a number (YAML 1.1 has no 0o prefix); "
                    "write a plain decimal number",
                )
        if not _is(node, "int"):
            raise _expected(node, f"an integer from {lo} to {hi}")
        value = int(node.value.replace("_", ""))
        if not lo <= value <= hi:
            raise _Invalid(node, f"{value} is out of range (expected {lo} to {hi})")
        return value

    return check


def choice(options: tuple[str, ...], what: str = "value") -> _Check:
    def check(ctx: _Ctx, node: Node, key: str) -> str:
        expected = ", ".join(options)
        if not _is(node, "str"):
            raise _expected(node, f"one of {expected}")
        if node.value not in options:
            raise _Invalid(node, f"unknown {what} {node.value!r} (expected one of {expected})")
        return str(node.value)

    return check


def default_groups(available: frozenset[str] | None) -> tuple[str, ...]:
    """The default ``tls.groups``: hybrid post-quantum groups first where GnuTLS has them."""
    pq = tuple(g for g in _PQ_DEFAULT if available is not None and g in available)
    return pq + DEFAULT_GROUPS


def group(ctx: _Ctx, node: Node, key: str) -> str:
    name: str = choice(GROUPS, "group")(ctx, node, key)
    have = ctx.available_groups
    if have is not None and name not in have:
        why = (
            "it needs a GnuTLS built with ML-KEM (leancrypto or liboqs)"
            if name in PQ_GROUPS
            else "this GnuTLS build does not offer it"
        )
        raise _Invalid(node, f"group {name!r} is not available in the linked GnuTLS: {why}")
    return name


def keyring_ref(ctx: _Ctx, node: Node, key: str) -> str:
    """A keyring by name, or by serial number (a positive integer), as tlshd allows."""
    if _is(node, "int"):
        return str(integer(1, 2**31 - 1)(ctx, node, key))
    return string(ctx, node, key)


def path(ctx: _Ctx, node: Node, key: str) -> str:
    value = string(ctx, node, key)
    if not value.startswith("/"):
        raise _Invalid(node, f"{value!r} is not an absolute path")
    return value


def unix_group(ctx: _Ctx, node: Node, key: str) -> int | None:
    """A group by name (looked up in the group database now, so an unknown name is an
    error at its line) or by number; empty = the daemon's own group."""
    if _is(node, "null"):
        return None
    if _is(node, "int"):
        gid: int = integer(0, 2**32 - 2)(ctx, node, key)
        return gid
    if not _is(node, "str"):
        raise _expected(node, "a group name or a gid")
    name = string(ctx, node, key)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise _Invalid(node, f"unknown group {name!r} (not in the group database)") from None


_OCTAL_MODE = re.compile(r"0o?([0-7]{3})")


def socket_mode(ctx: _Ctx, node: Node, key: str) -> int:
    """Octal permission bits with a leading 0 (``0660``; quoted or not, as YAML 1.1 would
    read ``0660`` as an octal integer and YAML 1.2 as decimal 660). The owner needs read
    and write; others may have no access: connecting needs write permission, and a
    socket any local user may connect to exposes the request parser to all of them (the
    credential check would still refuse them) -- put the users in ``unix_socket.group``."""
    usage = "expected an octal mode with a leading 0, e.g. 0660"
    if not isinstance(node, ScalarNode) or node.tag not in (_TAG + "int", _TAG + "str"):
        raise _expected(node, "an octal mode with a leading 0, e.g. 0660")
    m = _OCTAL_MODE.fullmatch(node.value)
    if not m:
        raise _Invalid(node, f"{node.value!r} is not a permission mode ({usage})")
    mode = int(m[1], 8)
    if mode & 0o600 != 0o600:
        raise _Invalid(node, f"{mode:04o} denies the owner read and write (the daemon itself)")
    if mode & 0o007:
        raise _Invalid(
            node,
            f"{mode:04o} gives others access (any local user could connect); "
            "give access through unix_socket.group instead",
        )
    return mode


def optional_path(ctx: _Ctx, node: Node, key: str) -> str | None:
    return None if _is(node, "null") else path(ctx, node, key)


#: a PKCS#11 URL (RFC 7512) names a key GnuTLS reads from a token through p11-kit
PKCS11_PREFIX = "pkcs11:"


def key_location(ctx: _Ctx, node: Node, key: str) -> str | None:
    """A private key: an absolute path, or a PKCS#11 URL (``pkcs11:...``), as tlshd allows."""
    if _is(node, "null"):
        return None
    value = string(ctx, node, key)
    if value.startswith(PKCS11_PREFIX):
        if any(not ch.isprintable() or ch.isspace() for ch in value):
            raise _Invalid(node, "a PKCS#11 URL has no spaces or control characters")
        if len(value) == len(PKCS11_PREFIX):
            raise _Invalid(node, f"{value!r} names no object (e.g. pkcs11:token=T;object=K)")
        return value
    if not value.startswith("/"):
        raise _Invalid(node, f"{value!r} is not an absolute path or a pkcs11: URL")
    return value


def listen_address(ctx: _Ctx, node: Node, key: str) -> ListenAddress:
    value = string(ctx, node, key)
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    usage = "expected IP:PORT, e.g. 127.0.0.1:9470 or [::1]:9470"
    if not m:
        raise _Invalid(node, f"{value!r} is not an address ({usage})")
    host, port = (m[1], m[2]) if m[1] is not None else (m[3], m[4])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise _Invalid(node, f"{host!r} is not an IP address ({usage})") from None
    if m[1] is not None and ip.version != 6:
        raise _Invalid(node, f"{host!r} in brackets is not an IPv6 address ({usage})")
    if not 1 <= int(port) <= 65535:
        raise _Invalid(node, f"port {int(port)} is out of range (expected 1 to 65535)")
    return ListenAddress(str(ip), int(port))


def list_of(item: _Check, what: str, *, nonempty: bool = False, unique: bool = True) -> _Check:
    def check(ctx: _Ctx, node: Node, key: str) -> tuple[Any, ...]:
        if not isinstance(node, SequenceNode):
            extra = "; write [] for an empty list" if _is(node, "null") else ""
            raise _Invalid(node, f"expected a list, got {_describe(node)}{extra}")
        if nonempty and not node.value:
            raise _Invalid(node, f"must list at least one {what}")
        values: list[Any] = []
        seen: dict[Any, int] = {}
        for i, child in enumerate(node.value):
            ikey = f"{key}[{i}]"
            try:
                value = item(ctx, child, ikey)
            except _Invalid as exc:
                ctx.error(exc.line, ikey, exc.message)
                continue
            if unique and value in seen:
                first = f"{key}[{seen[value]}]"
                ctx.error(line_of(child), ikey, f"duplicate {what} {value!r} (also at {first})")
                continue
            seen[value] = i
            values.append(value)
        return tuple(values)

    return check


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _key_name(knode: Node) -> str:
    """A mapping key as it may appear in a one-line error: quoted if not printable."""
    if not isinstance(knode, ScalarNode):
        return f"<{_describe(knode)}>"
    text = str(knode.value)
    return text if text.isprintable() else repr(text)


def section(cls: type, checks: dict[str, _Check]) -> _Check:
    """A mapping whose keys are ``checks``; builds ``cls`` from the valid ones."""

    def check(ctx: _Ctx, node: Node, key: str) -> Any:
        if _is(node, "null"):
            return cls()
        if not isinstance(node, MappingNode):
            raise _expected(node, "a mapping of settings")
        values: dict[str, Any] = {}
        first: dict[str, int] = {}
        for knode, vnode in node.value:
            name = knode.value if _is(knode, "str") else None
            shown = _key_name(knode)
            dotted = f"{key}.{shown}" if key else shown
            if name is None or name not in checks:
                kind = (
                    "merge keys (<<) are not supported"
                    if knode.tag == _TAG + "merge"
                    else (f"unknown key (expected one of {', '.join(checks)})")
                )
                ctx.error(line_of(knode), dotted, kind)
                continue
            if name in first:
                ctx.error(line_of(knode), dotted, f"duplicate key (first at line {first[name]})")
                continue
            first[name] = ctx.lines[dotted] = line_of(knode)
            try:
                values[name] = checks[name](ctx, vnode, dotted)
            except _Invalid as exc:
                ctx.error(exc.line, dotted, exc.message)
        return cls(**values)

    return check


_X509 = section(
    X509Paths,
    {
        **{k: optional_path for k in ("truststore", "crl", "certificate")},
        "private_key": key_location,
    },
)
_SETTINGS = section(Settings, {
    "log": section(LogSettings, {
        "level": choice(LOG_LEVELS, "log level"),
        "gnutls_level": integer(0, 9),
        "handshake_completion": boolean,
        "keylog_file": optional_path,
    }),
    "keyrings": list_of(keyring_ref, "keyring"),
    "handshake": section(HandshakeSettings, {
        "default_timeout_ms": integer(1, MAX_TIMEOUT_MS),
        "max_timeout_ms": integer(1, MAX_TIMEOUT_MS),
        "max_in_flight": integer(1, 65536),
        "workers": integer(0, MAX_WORKERS),
    }),
    "tls": section(TlsSettings, {
        "ciphers": list_of(choice(CIPHERS, "cipher"), "cipher", nonempty=True),
        "groups": list_of(group, "group", nonempty=True),
        "resumption_key_exchange": choice(RESUMPTION_KEY_EXCHANGES),
        "session_tickets": boolean,
        "early_data": boolean,
    }),
    "client": section(ClientSettings, {
        "x509": _X509,
        "verify_server_unauthenticated": boolean,
        "verify_server_without_name": boolean,
    }),
    "server": section(ServerSettings, {
        "x509": _X509,
        "client_certificate": choice(CLIENT_CERTIFICATE_POLICIES),
    }),
    "unix_socket": section(UnixSocketSettings, {
        "enabled": boolean,
        "path": path,
        "allowed_uids": list_of(integer(0, 2**32 - 2), "uid"),
        "allowed_gids": list_of(integer(0, 2**32 - 2), "gid"),
        "group": unix_group,
        "mode": socket_mode,
        "max_idle_connections": integer(1, 65536),
        "idle_timeout_ms": integer(1, 60_000),
    }),
    "metrics": section(MetricsSettings, {
        "enabled": boolean,
        "listen": listen_address,
        "max_connections_per_address": integer(1, MAX_METRICS_CONNECTIONS),
    }),
})  # fmt: skip


def _semantic(ctx: _Ctx, s: Settings) -> None:
    for role, x509 in (("client", s.client.x509), ("server", s.server.x509)):
        cert, key = f"{role}.x509.certificate", f"{role}.x509.private_key"
        if (x509.certificate is None) != (x509.private_key is None):
            have, missing = (cert, key) if x509.certificate is not None else (key, cert)
            ctx.error(ctx.lines[have], have, f"is set but {missing} is not (set both or neither)")
    if s.log.gnutls_level >= GNUTLS_KEY_LEVEL and s.log.keylog_file is None:
        ctx.error(
            ctx.lines["log.gnutls_level"],
            "log.gnutls_level",
            f"{s.log.gnutls_level} makes GnuTLS log TLS record keys and IVs; allowed only with "
            "key logging on (log.keylog_file set), else use 8 or less",
        )
    hs = s.handshake
    if hs.default_timeout_ms > hs.max_timeout_ms:
        d, m = "handshake.default_timeout_ms", "handshake.max_timeout_ms"
        ctx.error(
            ctx.lines.get(d) or ctx.lines[m],
            d,
            f"{hs.default_timeout_ms} is greater than {m} ({hs.max_timeout_ms})",
        )


#: what YAML counts as a line break (marks count lines by these, not only by LF)
_YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _syntax_line(exc: yaml.YAMLError, text: str) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        # libyaml puts the end of a text without a final line break on the line after it
        return min(int(mark.line) + 1, len(_YAML_LINE_BREAK.split(text)))
    position = getattr(exc, "position", None)  # ReaderError: a character offset
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else 1


def parse_config(
    text: str, path: str, *, available_groups: frozenset[str] | None = None
) -> Settings:
    """Validate the YAML ``text`` of the config file ``path`` (used only in messages).

    ``available_groups``: the key-exchange groups the linked GnuTLS offers
    (:func:`quichsd.gnutls.features.features`); with it a group it lacks is an error, and
    the default ``tls.groups`` puts the hybrid post-quantum groups it has first. Without
    it names are checked only, and the default is :data:`DEFAULT_GROUPS`.
    """
    return parse_config_lines(text, path, available_groups=available_groups)[0]


def parse_config_lines(
    text: str, path: str, *, available_groups: frozenset[str] | None = None
) -> tuple[Settings, dict[str, int]]:
    """:func:`parse_config`, and the line of each dotted key set in the file (for
    ``PATH:LINE`` errors found later, e.g. a private key that does not match its
    certificate)."""
    settings, lines = _parse(text, path, available_groups)
    if available_groups is not None and "tls.groups" not in lines:
        settings = replace(
            settings, tls=replace(settings.tls, groups=default_groups(available_groups))
        )
    return settings, lines


def _parse(
    text: str, path: str, available_groups: frozenset[str] | None
) -> tuple[Settings, dict[str, int]]:
    """The settings and the line of each dotted key present in the text."""
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            [f"{path}:{_syntax_line(exc, text)}: YAML syntax error: {problem}"]
        ) from None
    ctx = _Ctx(available_groups=available_groups)
    if root is None:
        return Settings(), {}
    try:
        settings: Settings = _SETTINGS(ctx, root, "")
    except _Invalid as exc:
        ctx.error(exc.line, "", exc.message)
        settings = Settings()
    if not ctx.errors:
        _semantic(ctx, settings)
    if ctx.errors:
        ctx.errors.sort(key=lambda e: e[0])
        raise ConfigError([f"{path}:{line}: {msg}" for line, msg in ctx.errors])
    return settings, ctx.lines


def load_config(path: str, *, available_groups: frozenset[str] | None = None) -> Settings:
    """Read and validate the config file at ``path`` (``available_groups``: as
    :func:`parse_config`)."""
    return load_config_lines(path, available_groups=available_groups)[0]


def load_config_lines(
    path: str, *, available_groups: frozenset[str] | None = None
) -> tuple[Settings, dict[str, int]]:
    """:func:`load_config`, and the line of each dotted key (:func:`parse_config_lines`)."""
    try:
        fd, _st = open_regular(path)  # a FIFO or a device would block the read
    except (OSError, NotRegularFile) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError([f"{path}: cannot read: {why}"]) from None
    with open(fd, "rb") as f:
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: cannot read: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not valid UTF-8"]) from None
    return parse_config_lines(text, path, available_groups=available_groups)
