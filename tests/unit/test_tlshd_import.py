# SPDX-License-Identifier: GPL-2.0-or-later
"""``quichsd --import-tlshd-config``: a tlshd config becomes quichsd YAML (issue 13 item 12).

The inputs are tlshd 1.4 key files (both the ``/etc/tlshd/config`` and the older
``/etc/tlshd.conf`` layout use the same format); each converted text is validated by
quichsd's own config parser, and one is run through the real ``quichsd --check`` with the
certificate files it names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pki import make_pki

from quichsd import cli
from quichsd.config import parse_config
from quichsd.tlshd_import import KeyFileError, convert, parse_keyfile

ROOT = Path(__file__).resolve().parents[2]

# the layout tlshd ships as etc/tlshd/config: every setting commented out
SHIPPED_LAYOUT = """\
# See tlshd.conf(5) for details.

[debug]
loglevel=0
tls=0
nl=0

[authenticate]
#keyrings= <keyring>;<keyring>;<keyring>

[authenticate.client]
#x509.truststore= <pathname>
#x509.private_key= <pathname>
#x509.pq.certificate= <pathname>

[authenticate.server]
#x509.certificate= <pathname>
"""


def full(d: Path) -> str:
    return f"""\
[debug]
loglevel=1
tls=12
nl=3
delay_done=5

[authenticate]
keyrings= quic ; 123456;.nvme;.nfs;odd\\;name

[authenticate.client]
x509.truststore= {d}/ca.pem
x509.crl=
x509.certificate= {d}/client.pem
x509.private_key= {d}/client.key
x509.pq.certificate= {d}/pq.pem

[authenticate.server]
x509.truststore= {d}/ca.pem
x509.certificate= {d}/server.pem
x509.private_key= pkcs11:token=t;object=k
x509.pq.private_key= {d}/pq.key
bogus= 1
x509.crl= relative/crl.pem
"""


def test_shipped_layout_converts_to_the_defaults() -> None:
    r = convert(SHIPPED_LAYOUT, "/etc/tlshd/config")
    assert r.notes == []
    assert parse_config(r.yaml_text, "/etc/quichsd/config.yaml") == parse_config("", "x")
    assert r.yaml_text.startswith("# quichsd configuration converted from the tlshd ")


def test_every_tlshd_key(tmp_path: Path) -> None:
    src = "/etc/tlshd.conf"
    r = convert(full(tmp_path), src)
    s = parse_config(r.yaml_text, "/etc/quichsd/config.yaml")
    assert s.log.level == "debug" and s.log.gnutls_level == 8
    # .nvme/.nfs are always linked by both, so dropped; serials stay numbers
    assert s.keyrings == ("quic", "123456", "odd;name")
    assert s.client.x509.truststore == f"{tmp_path}/ca.pem"
    assert s.client.x509.certificate == f"{tmp_path}/client.pem"
    assert s.client.x509.private_key == f"{tmp_path}/client.key"
    assert s.client.x509.crl is None  # empty in tlshd means unset
    # the server's key is a PKCS#11 URL: converted as it is (GnuTLS opens it on the token)
    assert s.server.x509.certificate == f"{tmp_path}/server.pem"
    assert s.server.x509.private_key == "pkcs11:token=t;object=k"
    assert s.server.x509.truststore == f"{tmp_path}/ca.pem" and s.server.x509.crl is None
    by_line = {int(n.split(":")[1]): n for n in r.notes}
    assert list(by_line) == [3, 4, 5, 15, 21, 22, 23]  # sorted by line
    assert by_line[3] == (
        f"{src}:3: [debug] tls: GnuTLS debug level 12 capped at 8 (level 9 logs TLS record "
        "keys: quichsd allows it only with log.keylog_file set)"
    )
    assert "[debug] nl: no equivalent" in by_line[4]
    assert "[debug] delay_done: no equivalent" in by_line[5]
    assert "[authenticate.client] x509.pq.certificate: no equivalent" in by_line[15]
    assert "x509.pq.private_key: no equivalent" in by_line[21]
    assert (
        by_line[22]
        == f"{src}:22: [authenticate.server] bogus: not a tlshd 1.4 setting; not converted"
    )
    assert "relative path 'relative/crl.pem'" in by_line[23]
    # what was not converted is in the YAML's header too
    assert all(f"#   {n}\n" in r.yaml_text for n in r.notes)


def test_key_file_syntax() -> None:
    e = parse_keyfile("[g]\nk = a\\sb\\tc\nk[de]=x\n# c\n", "f")
    assert [(x.group, x.key, x.value, x.line) for x in e] == [("g", "k", "a b\tc", 2)]
    with pytest.raises(KeyFileError, match=r"^f:2: not a \[group\] or key=value line"):
        parse_keyfile("[g]\nwhat\n", "f")
    with pytest.raises(KeyFileError, match=r"^f:1: key 'k' before any \[group\]"):
        parse_keyfile("k=1\n", "f")
    with pytest.raises(KeyFileError, match=r"^f:2: invalid escape"):
        parse_keyfile("[g]\nk=\\q\n", "f")


def test_later_repeated_key_wins() -> None:
    r = convert("[debug]\nloglevel=1\nloglevel=0\n", "f")
    assert parse_config(r.yaml_text, "x").log.level == "info"


def test_converted_config_passes_the_real_check(tmp_path: Path) -> None:
    files = make_pki().write(tmp_path)
    src = tmp_path / "config"
    src.write_text(
        "[authenticate.server]\n"
        f"x509.certificate= {files['server']}\n"
        f"x509.private_key= {files['server_key']}\n"
        "[authenticate.client]\n"
        f"x509.truststore= {files['ca']}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "quichsd", "--import-tlshd-config", str(src)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = tmp_path / "quichsd.yaml"
    out.write_text(r.stdout)
    check = subprocess.run(
        [sys.executable, "-m", "quichsd", "--check", "-c", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_default_path_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "tlshd.conf", tmp_path / "tlshd" / "config"
    monkeypatch.setattr(cli, "TLSHD_CONFIG_PATHS", (str(old), str(new)))
    assert cli.main(["--import-tlshd-config"]) == 1
    assert capsys.readouterr().err == f"quichsd: no tlshd configuration at {old} or {new}\n"
    new.parent.mkdir()
    new.write_text("[debug]\nloglevel=2\n")
    (new.parent / "tags.d").mkdir()
    assert cli.main(["--import-tlshd-config"]) == 0
    out = capsys.readouterr()
    assert "level: debug" in out.out and out.err == ""
    (new.parent / "tags.d" / "nfs.tags").write_text("x\n")
    assert cli.main(["--import-tlshd-config"]) == 0
    tags = new.parent / "tags.d"
    assert (
        capsys.readouterr().err == f"{tags}: tlshd session tags have no equivalent; not converted\n"
    )
    old.write_text("[debug]\nbroken\n")  # tlshd reads /etc/tlshd.conf first, so do we
    assert cli.main(["--import-tlshd-config"]) == 1
    assert (
        capsys.readouterr().err == f"quichsd: {old}:2: not a [group] or key=value line: 'broken'\n"
    )
    assert cli.main(["--import-tlshd-config", str(tmp_path / "nope")]) == 1
    assert "cannot read: No such file or directory" in capsys.readouterr().err


def test_pkcs11_urls_convert_for_keys_only() -> None:
    """A PKCS#11 URL is taken for a private key (quichsd opens it on the token), not for
    a certificate: that one, and so its key, is reported."""
    text = (
        "[authenticate.client]\nx509.certificate=pkcs11:token=t;object=c\n"
        "x509.private_key=pkcs11:token=t;object=k\n"
    )
    r = convert(text, "/etc/tlshd/config")
    s = parse_config(r.yaml_text, "/etc/quichsd/config.yaml")
    assert s.client.x509.certificate is None and s.client.x509.private_key is None
    assert r.notes[0] == (
        "/etc/tlshd/config:2: [authenticate.client] x509.certificate: a PKCS#11 URL: quichsd "
        "takes PKCS#11 URLs for private keys only, certificates from files or the kernel "
        "keyring; not converted"
    )
    assert "x509.private_key: not converted either" in r.notes[1]
