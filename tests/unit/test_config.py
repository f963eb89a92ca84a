# SPDX-License-Identifier: GPL-2.0-or-later
"""Config validation: exact ``PATH:LINE: message`` lines for bad files, typed values for good."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from quichsd.config import (
    ClientSettings,
    HandshakeSettings,
    ListenAddress,
    LogSettings,
    MetricsSettings,
    ServerSettings,
    Settings,
    TlsSettings,
    UnixSocketSettings,
    X509Paths,
    load_config,
    parse_config,
)
from quichsd.errors import ConfigError

P = "/etc/quichsd/config.yaml"
SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "quichsd" / "config.yaml"

BAD: list[tuple[str, str, list[str]]] = [
    (
        "unknown cipher",
        "tls:\n  ciphers:\n    - AES-128-GCM\n    - AES-256-GCM\n    - AES-128-CBC\n",
        [
            f"{P}:5: tls.ciphers[2]: unknown cipher 'AES-128-CBC' (expected one of "
            "AES-128-GCM, AES-256-GCM, AES-128-CCM, CHACHA20-POLY1305)"
        ],
    ),
    (
        "unknown top-level key",
        "log:\n  level: info\ncolour: red\n",
        [
            f"{P}:3: colour: unknown key (expected one of log, keyrings, handshake, tls, client, "
            "server, unix_socket, metrics)"
        ],
    ),
    (
        "unknown nested key",
        "client:\n  x509:\n    trust_store: /etc/ssl/ca.pem\n",
        [
            f"{P}:3: client.x509.trust_store: unknown key (expected one of truststore, crl, "
            "certificate, private_key)"
        ],
    ),
    (
        "yes for a string (YAML 1.1 boolean)",
        "keyrings: [quic, yes]\n",
        [
            f"{P}:1: keyrings[1]: expected a string, got 'yes', which YAML reads as a boolean "
            "(quote it to make it a string)"
        ],
    ),
    (
        "yes for a boolean",
        "tls:\n  early_data: yes\n",
        [
            f"{P}:2: tls.early_data: 'yes' is a YAML 1.1 boolean that YAML 1.2 reads as a string; "
            "write true or false"
        ],
    ),
    (
        "0o17 for an integer",
        "log:\n  gnutls_level: 0o17\n",
        [
            f"{P}:2: log.gnutls_level: '0o17' is not a number (YAML 1.1 has no 0o prefix); "
            "write a plain decimal number"
        ],
    ),
    (
        "leading zero octal",
        "handshake:\n  max_in_flight: 010\n",
        [
            f"{P}:2: handshake.max_in_flight: '010' is not a decimal integer (YAML 1.1 reads it "
            "as 8); write a plain decimal number"
        ],
    ),
    (
        "sexagesimal",
        "handshake:\n  default_timeout_ms: 1:30\n",
        [
            f"{P}:2: handshake.default_timeout_ms: '1:30' is not a decimal integer (YAML 1.1 "
            "reads it as 90); write a plain decimal number"
        ],
    ),
    (
        "quoted number",
        'handshake:\n  max_in_flight: "64"\n',
        [
            f"{P}:2: handshake.max_in_flight: expected an integer from 1 to 65536, got the "
            "string '64' (remove the quotes)"
        ],
    ),
    (
        "issue 11 items 11 and 12: the new limits are ranged",
        "unix_socket:\n  max_idle_connections: 0\n  idle_timeout_ms: 60001\n"
        "metrics:\n  max_connections_per_address: 17\n",
        [
            f"{P}:2: unix_socket.max_idle_connections: 0 is out of range (expected 1 to 65536)",
            f"{P}:3: unix_socket.idle_timeout_ms: 60001 is out of range (expected 1 to 60000)",
            f"{P}:5: metrics.max_connections_per_address: 17 is out of range (expected 1 to 16)",
        ],
    ),
    (
        "issue 13 item 13: unix_socket.mode is octal, the owner has rw, others nothing",
        "unix_socket:\n  mode: 660\n  group: nosuch-quichsd-group\n"
        "  allowed_gids: [0]\nmetrics:\n  enabled: true\nunix_socket2: 1\n",
        [
            f"{P}:2: unix_socket.mode: '660' is not a permission mode (expected an octal "
            "mode with a leading 0, e.g. 0660)",
            f"{P}:3: unix_socket.group: unknown group 'nosuch-quichsd-group' (not in the "
            "group database)",
            f"{P}:7: unix_socket2: unknown key (expected one of log, keyrings, handshake, tls, "
            "client, server, unix_socket, metrics)",
        ],
    ),
    (
        "unix_socket.mode: world access",
        "unix_socket:\n  mode: 0662\n",
        [
            f"{P}:2: unix_socket.mode: 0662 gives others access (any local user could "
            "connect); give access through unix_socket.group instead"
        ],
    ),
    (
        "unix_socket.group: a boolean is neither a name nor a gid",
        'unix_socket:\n  group: yes\n  mode: "0460"\n',
        [
            f"{P}:2: unix_socket.group: expected a group name or a gid, got 'yes', which "
            "YAML reads as a boolean (quote it to make it a string)",
            f"{P}:3: unix_socket.mode: 0460 denies the owner read and write (the daemon itself)",
        ],
    ),
    (
        "negative workers",
        "handshake:\n  workers: -1\n",
        [f"{P}:2: handshake.workers: -1 is out of range (expected 0 to 1024)"],
    ),
    (
        "workers not an integer",
        "handshake:\n  workers: all\n",
        [f"{P}:2: handshake.workers: expected an integer from 0 to 1024, got the string 'all'"],
    ),
    (
        "gnutls_level out of range",
        "log:\n  gnutls_level: 10\n",
        [f"{P}:2: log.gnutls_level: 10 is out of range (expected 0 to 9)"],
    ),
    (
        "zero timeout",
        "handshake:\n  default_timeout_ms: 0\n",
        [f"{P}:2: handshake.default_timeout_ms: 0 is out of range (expected 1 to 4294967295)"],
    ),
    (
        "default timeout above max",
        "handshake:\n  max_timeout_ms: 5000\n",
        [
            f"{P}:2: handshake.default_timeout_ms: 10000 is greater than handshake.max_timeout_ms "
            "(5000)"
        ],
    ),
    (
        "duplicate cipher",
        "tls:\n  ciphers: [AES-128-GCM, CHACHA20-POLY1305,\n            AES-128-GCM]\n",
        [f"{P}:3: tls.ciphers[2]: duplicate cipher 'AES-128-GCM' (also at tls.ciphers[0])"],
    ),
    (
        "empty cipher list",
        "tls:\n  ciphers: []\n",
        [f"{P}:2: tls.ciphers: must list at least one cipher"],
    ),
    (
        "certificate without private_key",
        "server:\n  x509:\n    truststore: null\n    certificate: /etc/quichsd/server.pem\n",
        [
            f"{P}:4: server.x509.certificate: is set but server.x509.private_key is not "
            "(set both or neither)"
        ],
    ),
    (
        "private_key without certificate",
        "client:\n  x509:\n    private_key: /etc/quichsd/client.key\n",
        [
            f"{P}:3: client.x509.private_key: is set but client.x509.certificate is not "
            "(set both or neither)"
        ],
    ),
    (
        "relative path",
        "client:\n  x509:\n    truststore: ca.pem\n",
        [f"{P}:3: client.x509.truststore: 'ca.pem' is not an absolute path"],
    ),
    (
        "relative key path",
        "server:\n  x509:\n    certificate: /c.pem\n    private_key: k.pem\n",
        [f"{P}:4: server.x509.private_key: 'k.pem' is not an absolute path or a pkcs11: URL"],
    ),
    (
        "empty PKCS#11 URL",
        "server:\n  x509:\n    certificate: /c.pem\n    private_key: 'pkcs11:'\n",
        [
            f"{P}:4: server.x509.private_key: 'pkcs11:' names no object "
            "(e.g. pkcs11:token=T;object=K)"
        ],
    ),
    (
        "PKCS#11 URL with a space",
        "server:\n  x509:\n    certificate: /c.pem\n    private_key: 'pkcs11:token=a b'\n",
        [f"{P}:4: server.x509.private_key: a PKCS#11 URL has no spaces or control characters"],
    ),
    (
        "unknown enum value",
        "server:\n  client_certificate: optional\n",
        [
            f"{P}:2: server.client_certificate: unknown value 'optional' (expected one of "
            "ignore, request, require, socket)"
        ],
    ),
    (
        "list where a mapping is expected",
        "log:\n  - level\n",
        [f"{P}:2: log: expected a mapping of settings, got a list"],
    ),
    (
        "scalar where a list is expected",
        "keyrings: quic\n",
        [f"{P}:1: keyrings: expected a list, got the string 'quic'"],
    ),
    (
        "empty value for a list",
        "unix_socket:\n  allowed_uids:\n  enabled: true\n",
        [
            f"{P}:2: unix_socket.allowed_uids: expected a list, got an empty value; write [] "
            "for an empty list"
        ],
    ),
    (
        "duplicate key",
        "metrics:\n  enabled: true\n  enabled: false\n",
        [f"{P}:3: metrics.enabled: duplicate key (first at line 2)"],
    ),
    (
        "bad listen address",
        "metrics:\n  listen: localhost:9470\n",
        [
            f"{P}:2: metrics.listen: 'localhost' is not an IP address (expected IP:PORT, e.g. "
            "127.0.0.1:9470 or [::1]:9470)"
        ],
    ),
    (
        "listen port out of range",
        "metrics:\n  listen: '[::1]:70000'\n",
        [f"{P}:2: metrics.listen: port 70000 is out of range (expected 1 to 65535)"],
    ),
    (
        "python tag is not constructed",
        "log:\n  level: !!python/name:os.system\n",
        [
            f"{P}:2: log.level: expected one of debug, info, notice, warning, error, got a value "
            "tagged !!python/name:os.system"
        ],
    ),
    (
        "timestamp for a string",
        "keyrings: [2024-01-01]\n",
        [
            f"{P}:1: keyrings[0]: expected a string, got '2024-01-01', which YAML reads as a "
            "timestamp"
        ],
    ),
    (
        "anchor on an unknown key",
        "base: &b {level: info}\n",
        [
            f"{P}:1: base: unknown key (expected one of log, keyrings, handshake, tls, client, "
            "server, unix_socket, metrics)"
        ],
    ),
    (
        "YAML syntax error",
        "log:\n  level: info\n tls: [\n",
        [f"{P}:3: YAML syntax error: did not find expected key"],
    ),
    (
        "issue 11 item 2: verify_server_without_name is a boolean",
        "client:\n  verify_server_without_name: yes\n",
        [
            f"{P}:2: client.verify_server_without_name: 'yes' is a YAML 1.1 boolean that "
            "YAML 1.2 reads as a string; write true or false"
        ],
    ),
    (
        "issue 11 item 4: keylog_file is an absolute path",
        "log:\n  keylog_file: keys.log\n",
        [f"{P}:2: log.keylog_file: 'keys.log' is not an absolute path"],
    ),
    (
        "issue 11 item 5: gnutls_level 9 without key logging",
        "log:\n  level: debug\n  gnutls_level: 9\n",
        [
            f"{P}:3: log.gnutls_level: 9 makes GnuTLS log TLS record keys and IVs; allowed "
            "only with key logging on (log.keylog_file set), else use 8 or less"
        ],
    ),
    (
        "top level is a list",
        "- log\n",
        [f"{P}:1: expected a mapping of settings, got a list"],
    ),
    (
        "several errors, sorted by line",
        "tls:\n  session_tickets: on\n  groups: [X25519, P-256]\nlog:\n  level: 3\n",
        [
            f"{P}:2: tls.session_tickets: 'on' is a YAML 1.1 boolean that YAML 1.2 reads as "
            "a string; write true or false",
            f"{P}:3: tls.groups[1]: unknown group 'P-256' (expected one of X25519, X448, "
            "SECP256R1, SECP384R1, SECP521R1, FFDHE2048, FFDHE3072, FFDHE4096, FFDHE6144, "
            "FFDHE8192, X25519-MLKEM768, SECP256R1-MLKEM768, SECP384R1-MLKEM1024, "
            "X25519-KYBER768)",
            f"{P}:5: log.level: expected one of debug, info, notice, warning, error, got the "
            "number 3",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exact_error_lines(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, P)
    assert info.value.errors == expected
    assert str(info.value) == "\n".join(expected)


def test_merge_key_is_refused() -> None:
    text = "defaults: &d\n  level: debug\nlog:\n  <<: *d\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, P)
    assert f"{P}:4: log.<<: merge keys (<<) are not supported" in info.value.errors


def test_empty_file_and_empty_sections_mean_defaults() -> None:
    assert parse_config("", P) == Settings()
    assert parse_config("# only a comment\n", P) == Settings()
    assert parse_config("log:\nclient:\n  x509:\n", P) == Settings()


def test_good_config_typed_values() -> None:
    text = """
log: {level: debug, gnutls_level: 4, handshake_completion: false}
keyrings: [quic, .mine]
handshake: {default_timeout_ms: 3_000, max_timeout_ms: 60000, max_in_flight: 8, workers: 0}
tls:
  ciphers: [CHACHA20-POLY1305, AES-128-CCM]
  groups: [SECP384R1]
  resumption_key_exchange: psk
  session_tickets: false
  early_data: FALSE
client:
  x509: {truststore: /etc/ca.pem, crl: /etc/crl.pem, certificate: /c.pem, private_key: /c.key}
  verify_server_unauthenticated: false
server:
  x509: {certificate: /s.pem, private_key: /s.key}
  client_certificate: require
unix_socket: {enabled: false, path: /tmp/q.sock, allowed_uids: [0, 1000], allowed_gids: [27],
  max_idle_connections: 8, idle_timeout_ms: 500, group: root, mode: 0640}
metrics: {enabled: true, listen: "[::1]:9100", max_connections_per_address: 2}
"""
    s = parse_config(text, P)
    assert s == Settings(
        log=LogSettings("debug", 4, False),
        keyrings=("quic", ".mine"),
        handshake=HandshakeSettings(3000, 60000, 8, 0),
        tls=TlsSettings(("CHACHA20-POLY1305", "AES-128-CCM"), ("SECP384R1",), "psk", False, False),
        client=ClientSettings(X509Paths("/etc/ca.pem", "/etc/crl.pem", "/c.pem", "/c.key"), False),
        server=ServerSettings(X509Paths(None, None, "/s.pem", "/s.key"), "require"),
        unix_socket=UnixSocketSettings(False, "/tmp/q.sock", (0, 1000), (27,), 8, 500, 0, 0o640),
        metrics=MetricsSettings(True, ListenAddress("::1", 9100), 2),
    )
    assert str(s.metrics.listen) == "[::1]:9100"
    assert isinstance(s.handshake.default_timeout_ms, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.log.level = "error"  # type: ignore[misc]


def test_quoted_yes_is_a_string() -> None:
    s = parse_config("keyrings: ['yes', !!str on]\n", P)
    assert s.keyrings == ("yes", "on")


def test_shipped_config_loads_and_equals_defaults() -> None:
    assert load_config(str(SHIPPED)) == Settings()


def test_shipped_config_mentions_every_key() -> None:
    text = SHIPPED.read_text()

    def keys(obj: object) -> list[str]:
        out = []
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            out.append(f.name)
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, ListenAddress):
                out += keys(value)
        return out

    for name in keys(Settings()):
        assert f"{name}:" in text, name


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [f"{path}: cannot read: No such file or directory"]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert info.value.errors == [f"{tmp_path}: cannot read: a directory, not a regular file"]


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"log:\n  level: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.errors == [f"{path}:2: not valid UTF-8"]


def test_load_uses_file_path_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("\n\nlog:\n  level: verbose\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.errors == [
        f"{path}:4: log.level: unknown log level 'verbose' (expected one of debug, info, "
        "notice, warning, error)"
    ]


def test_keyrings_by_name_or_serial() -> None:
    """Issue 13 item 12: tlshd's config names keyrings by name or serial number."""
    s = parse_config("keyrings: [quic, 123456, '987']\n", P)
    assert s.keyrings == ("quic", "123456", "987")
    with pytest.raises(ConfigError) as info:
        parse_config("keyrings: [0]\n", P)
    assert info.value.errors == [
        f"{P}:1: keyrings[0]: 0 is out of range (expected 1 to 2147483647)"
    ]
