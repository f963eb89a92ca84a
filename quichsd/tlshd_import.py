# SPDX-License-Identifier: GPL-2.0-or-later
"""Convert a tlshd configuration into quichsd's YAML (``quichsd --import-tlshd-config``). Pure.

tlshd (oracle/ktls-utils) reads a GLib key file, ``/etc/tlshd/config`` or the older
``/etc/tlshd.conf`` (the same format). The keys tlshd 1.4 reads (``src/tlshd/config.c``,
``tlshd.conf(5)``) and what each becomes:

=====================================  ===============================================
``[debug] loglevel``                   ``log.level: debug`` when > 0
``[debug] tls``                        ``log.gnutls_level`` (0-8)
``[debug] nl``, ``delay_done``         no equivalent (reported)
``[authenticate] keyrings``            ``keyrings`` (names or serials; ``.nvme``, ``.nfs``,
                                       ``.nfsd`` are always linked by both, so dropped)
``[authenticate.client|server]``       ``client.x509`` / ``server.x509``:
``x509.truststore``, ``x509.crl``,     ``truststore``, ``crl``, ``certificate``,
``x509.certificate``,                  ``private_key`` (absolute paths, and a PKCS#11 URL
``x509.private_key``                   for the key; a relative path is reported, not
                                       converted)
``x509.pq.certificate``,               no equivalent (reported): quichsd presents one
``x509.pq.private_key``                certificate per role
=====================================  ===============================================

Anything else (unknown groups or keys) is reported as having no equivalent. The result is
the YAML text plus a list of notes, each naming the tlshd file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from .config import GNUTLS_KEY_LEVEL

#: where tlshd looks when started without -c, in its order (the first one found is used)
TLSHD_CONFIG_PATHS = ("/etc/tlshd.conf", "/etc/tlshd/config")
#: keyrings both tlshd and quichsd always link
_ALWAYS = (".nvme", ".nfs", ".nfsd")
_X509 = {
    "x509.truststore": "truststore",
    "x509.crl": "crl",
    "x509.certificate": "certificate",
    "x509.private_key": "private_key",
}
_NO_EQUIVALENT = {
    ("debug", "nl"): "netlink library debugging: quichsd has no such level",
    ("debug", "delay_done"): "a tlshd test knob that delays DONE",
    **{
        (f"authenticate.{role}", f"x509.pq.{what}"): (
            "quichsd presents one certificate per role; configure the post-quantum one as "
            f"{role}.x509.{what} if every peer supports it"
        )
        for role in ("client", "server")
        for what in ("certificate", "private_key")
    },
}
#: level 9 logs TLS record keys; quichsd allows it only with log.keylog_file on
MAX_GNUTLS_LEVEL = GNUTLS_KEY_LEVEL - 1


class KeyFileError(ValueError):
    """The text is not a key file; ``str()`` is ``PATH:LINE: message``."""


@dataclass(frozen=True, slots=True)
class Entry:
    group: str
    key: str
    value: str
    line: int


@dataclass
class Conversion:
    yaml_text: str
    #: ``PATH:LINE: message`` for each setting that has no equivalent or was changed
    notes: list[str] = field(default_factory=list)


_GROUP = re.compile(r"\[([^\[\]]+)\]")
_KEY = re.compile(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*=(.*)")
_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\", ";": "\\;"}


def _unescape(raw: str, path: str, line: int) -> str:
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in _ESCAPES:
                raise KeyFileError(f"{path}:{line}: invalid escape in value {raw!r}")
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_keyfile(text: str, path: str) -> list[Entry]:
    """The entries of a GLib key file, in order (the later of a repeated key wins, as in
    GLib). Comments (``#``) and blank lines are skipped; localised keys (``key[de]``) too."""
    entries: list[Entry] = []
    group: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _GROUP.fullmatch(line)
        if m:
            group = m.group(1).strip()
            continue
        m = _KEY.fullmatch(line)
        if not m:
            raise KeyFileError(f"{path}:{n}: not a [group] or key=value line: {line!r}")
        if group is None:
            raise KeyFileError(f"{path}:{n}: key {m.group(1)!r} before any [group]")
        if m.group(2):
            continue
        value = _unescape(m.group(3).strip(), path, n)
        entries.append(Entry(group, m.group(1), value, n))
    return entries


def _split_list(value: str) -> list[str]:
    # GLib string lists: ';'-separated, '\;' a literal semicolon (kept escaped above)
    parts = re.split(r"(?<!\\);", value)
    return [p.replace("\\;", ";").strip() for p in parts if p.strip()]


def convert(text: str, path: str) -> Conversion:
    """quichsd YAML for the tlshd config ``text`` read from ``path``."""
    latest: dict[tuple[str, str], Entry] = {}
    for e in parse_keyfile(text, path):
        latest[(e.group, e.key)] = e
    notes: list[str] = []
    doc: dict[str, object] = {}

    def note(e: Entry, message: str) -> None:
        notes.append(f"{path}:{e.line}: [{e.group}] {e.key}: {message}")

    for (group, key), e in sorted(latest.items(), key=lambda kv: kv[1].line):
        if (group, key) in _NO_EQUIVALENT:
            if e.value not in ("", "0"):
                note(e, f"no equivalent, not converted ({_NO_EQUIVALENT[(group, key)]})")
        elif group == "debug" and key in ("loglevel", "tls"):
            try:
                level = int(e.value)
            except ValueError:
                note(e, f"{e.value!r} is not an integer (tlshd reads it as 0); not converted")
                continue
            if key == "loglevel":
                if level > 0:
                    doc.setdefault("log", {})["level"] = "debug"  # type: ignore[index]
            elif level > 0:
                clamped = min(level, MAX_GNUTLS_LEVEL)
                if clamped != level:
                    note(
                        e,
                        f"GnuTLS debug level {level} capped at {MAX_GNUTLS_LEVEL} (level "
                        f"{GNUTLS_KEY_LEVEL} logs TLS record keys: quichsd allows it only "
                        "with log.keylog_file set)",
                    )
                doc.setdefault("log", {})["gnutls_level"] = clamped  # type: ignore[index]
        elif group == "authenticate" and key == "keyrings":
            rings = [r for r in _split_list(e.value) if r not in _ALWAYS]
            if rings:
                doc["keyrings"] = [int(r) if r.isdigit() else r for r in rings]
        elif group in ("authenticate.client", "authenticate.server") and key in _X509:
            if not e.value:
                continue
            role = group.split(".")[1]
            value = e.value
            if value.startswith("pkcs11:") and key != "x509.private_key":
                note(
                    e,
                    "a PKCS#11 URL: quichsd takes PKCS#11 URLs for private keys only, "
                    "certificates from files or the kernel keyring; not converted",
                )
                continue
            if value.startswith("pkcs11:"):
                section = doc.setdefault(role, {})
                section.setdefault("x509", {})["private_key"] = value  # type: ignore[attr-defined]
                continue
            if not value.startswith("/"):
                note(e, f"relative path {value!r}: quichsd needs an absolute path; not converted")
                continue
            section = doc.setdefault(role, {})
            section.setdefault("x509", {})[_X509[key]] = value  # type: ignore[attr-defined]
        else:
            note(e, "not a tlshd 1.4 setting; not converted")
    for role in ("client", "server"):
        x509 = doc.get(role, {}).get("x509", {})  # type: ignore[attr-defined]
        pair = ("certificate", "private_key")
        if len([k for k in pair if k in x509]) == 1:
            have, other = pair if "certificate" in x509 else pair[::-1]
            e = latest[(f"authenticate.{role}", f"x509.{have}")]
            del x509[have]
            note(e, f"not converted either: quichsd needs it with its x509.{other}")
    notes.sort(key=lambda n: int(n[len(path) + 1 :].split(":", 1)[0]))
    header = f"# quichsd configuration converted from the tlshd configuration {path}\n"
    if notes:
        header += "# Not converted (see quichsd.yaml(5), MIGRATING FROM TLSHD):\n"
        header += "".join(f"#   {n}\n" for n in notes)
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False) if doc else ""
    return Conversion(header + body, notes)
