# SPDX-License-Identifier: GPL-2.0-or-later
"""Non-root programs reach the unix socket (issue 13 item 13), as real unprivileged users.

The test creates throwaway system groups and users (useradd/groupadd, removed afterwards)
and runs ``quichsd-probe connect --via`` as each of them (``setpriv --init-groups``: the
user's supplementary groups from the group database, as a login gets them) against a real
daemon and ngtcp2's gtlsserver. ``sockgrp`` is ``unix_socket.group`` (reach: the socket
and its directory), ``allowgrp`` is in ``unix_socket.allowed_gids`` (admission):

* ``served``: in both, as supplementary groups only -> the handshake completes;
* ``refused``: in ``sockgrp`` only -> reaches the socket, refused with EACCES and the
  documented message (a uid/gid not allowed);
* ``outsider``: in neither -> the filesystem stops it (the directory is 0750).
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from unixd import Daemon, start_daemon

from quichsd.unix import listen

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from userspace_peers import GtlsServer  # noqa: E402

pytestmark = pytest.mark.peer

BIN = Path(sys.executable).parent
REFUSED = "refused: uid/gid not in unix_socket.allowed_uids/allowed_gids"


@dataclass
class Accounts:
    sockgrp: str
    allowgrp: str
    users: dict[str, str]  # role -> user name

    def gid(self, group: str) -> int:
        return grp.getgrnam(group).gr_gid


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def accounts() -> Iterator[Accounts]:
    if os.geteuid() != 0:
        pytest.skip("creating throwaway users needs root")
    for tool in ("useradd", "groupadd", "userdel", "groupdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot test as a real unprivileged user")
    tag = f"q{os.getpid() % 100000}"
    acc = Accounts(f"{tag}sock", f"{tag}allow", {})
    made_groups: list[str] = []
    try:
        for g in (acc.sockgrp, acc.allowgrp):
            _run("groupadd", "--system", g)
            made_groups.append(g)
        for role, groups in (
            ("served", f"{acc.sockgrp},{acc.allowgrp}"),
            ("refused", acc.sockgrp),
            ("outsider", ""),
        ):
            name = f"{tag}{role[:4]}"
            extra = ["-G", groups] if groups else []
            _run("useradd", "--system", "-M", "-U", "-s", "/usr/sbin/nologin", *extra, name)
            acc.users[role] = name
        yield acc
    finally:
        for name in acc.users.values():
            subprocess.run(["userdel", name], capture_output=True, timeout=30)
        for g in made_groups:
            subprocess.run(["groupdel", g], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A directory every user can search (pytest's tmp_path is under a 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="quichsd-perm-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def served(accounts: Accounts, world: Path) -> Iterator[tuple[Daemon, GtlsServer]]:
    extra = (
        f"  allowed_gids: [{accounts.gid(accounts.allowgrp)}]\n"
        f"  group: {accounts.sockgrp}\n  mode: 0660\n"
    )
    daemon = start_daemon(world, extra)
    srv = GtlsServer(world, world / "server.pem", world / "server.key")
    try:
        yield daemon, srv
    finally:
        srv.stop()
        daemon.stop()


def probe_as(
    user: str, sock: Path, port: int, groups: list[int] | None = None
) -> tuple[int, dict[str, object], str]:
    """``quichsd-probe connect --via`` run as ``user`` with its groups (or ``groups``):
    exit code, the JSON result line, stderr."""
    how = ["--groups", ",".join(map(str, groups))] if groups else ["--init-groups"]
    p = subprocess.run(
        ["setpriv", "--reuid", user, "--regid", str(pwd.getpwnam(user).pw_gid), *how,
         "--", str(BIN / "quichsd-probe"), "connect", "127.0.0.1", str(port),
         "--sni", "server.test", "--alpn", "h3", "--via", str(sock)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/"},
    )  # fmt: skip
    results = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert len(results) == 1, (p.returncode, p.stdout, p.stderr)
    return p.returncode, results[0], p.stderr


def test_socket_and_directory_get_the_group_and_mode(
    accounts: Accounts, served: tuple[Daemon, GtlsServer]
) -> None:
    daemon, _srv = served
    gid = accounts.gid(accounts.sockgrp)
    st, dst = daemon.sock.stat(), daemon.sock.parent.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o660)
    assert (dst.st_uid, dst.st_gid, stat.S_IMODE(dst.st_mode)) == (0, gid, 0o750)


def test_member_of_allowed_supplementary_group_is_served(
    accounts: Accounts, served: tuple[Daemon, GtlsServer]
) -> None:
    daemon, srv = served
    user = accounts.users["served"]
    pw = pwd.getpwnam(user)
    allow = accounts.gid(accounts.allowgrp)
    assert pw.pw_uid != 0 and pw.pw_gid != allow  # admitted by a supplementary group only
    rc, res, err = probe_as(user, daemon.sock, srv.port)
    assert rc == 0 and res["ok"] is True, (res, err, daemon.log.read_text()[-2000:])
    assert res["alpn"] == "h3"
    text = daemon.log.read_text()
    assert f"uid {pw.pw_uid} gid {pw.pw_gid}" in text and "done: status 0 OK" in text


def test_allowed_group_after_300_others_is_found(
    accounts: Accounts, served: tuple[Daemon, GtlsServer]
) -> None:
    """More groups than Python's getsockopt can read (1024 bytes = 256 gids): the daemon
    reads the whole list, and the allowed group is the last of 302."""
    daemon, srv = served
    groups = [*range(70000, 70300), accounts.gid(accounts.sockgrp), accounts.gid(accounts.allowgrp)]
    rc, res, err = probe_as(accounts.users["refused"], daemon.sock, srv.port, groups)
    assert rc == 0 and res["ok"] is True, (res, err, daemon.log.read_text()[-2000:])


def test_member_of_socket_group_only_is_refused(
    accounts: Accounts, served: tuple[Daemon, GtlsServer]
) -> None:
    daemon, srv = served
    user = accounts.users["refused"]
    uid = pwd.getpwnam(user).pw_uid
    rc, res, err = probe_as(user, daemon.sock, srv.port)
    assert rc != 0 and res["ok"] is False, (res, err)
    assert res["status"] == errno.EACCES and str(res["error"]).endswith(REFUSED), res
    log_lines = [x for x in daemon.log.read_text().splitlines() if REFUSED in x]
    assert len(log_lines) == 1 and f"uid {uid} " in log_lines[0], log_lines


def test_user_outside_the_group_cannot_reach_the_socket(
    accounts: Accounts, served: tuple[Daemon, GtlsServer]
) -> None:
    daemon, srv = served
    rc, res, err = probe_as(accounts.users["outsider"], daemon.sock, srv.port)
    assert rc != 0 and res["ok"] is False, (res, err)
    assert res["status"] == errno.EACCES, res
    assert str(res["error"]).endswith(f"{daemon.sock}: Permission denied"), res
    assert f"uid {pwd.getpwnam(accounts.users['outsider']).pw_uid} " not in daemon.log.read_text()


#: the shipped unit's capabilities (CapabilityBoundingSet=CAP_NET_ADMIN): no CAP_CHOWN
UNIT_CAPS = ("setpriv", "--bounding-set", "-all,+net_admin", "--inh-caps", "-all")


def _runtime_dir(d: Path) -> Path:
    """``run/`` as systemd's RuntimeDirectory= makes it: root:root 0750."""
    run = d / "run"
    run.mkdir()
    run.chmod(0o750)
    return run


def test_unit_runtime_directory_without_cap_chown_needs_the_group(
    accounts: Accounts, tmp_path: Path
) -> None:
    """Without CAP_CHOWN (as under the unit) and not in the group, the unix service does
    not start and the log line says what to do; the daemon itself keeps running."""
    run = _runtime_dir(tmp_path)
    extra = f"  group: {accounts.sockgrp}\n"
    daemon = start_daemon(tmp_path, extra, prefix=UNIT_CAPS, until_logged="running:")
    try:
        text = daemon.log.read_text()
        want = (
            f"{run}: cannot give it group {accounts.gid(accounts.sockgrp)} "
            "(unix_socket.group): Operation not permitted (the daemon must belong to the "
            "group or have CAP_CHOWN; under systemd add SupplementaryGroups= for it)"
        )
        assert want in text, text
        assert not daemon.sock.exists()
        assert stat.S_IMODE(run.stat().st_mode) == 0o750 and run.stat().st_gid == 0
    finally:
        daemon.stop()


def test_unit_runtime_directory_with_supplementary_group_serves_the_member(
    accounts: Accounts, world: Path
) -> None:
    """As the unit with SupplementaryGroups=: the existing root:root 0750 directory gets
    the group, and a member is served."""
    d = world / "unit"
    d.mkdir()
    d.chmod(0o711)
    run = _runtime_dir(d)
    gid = accounts.gid(accounts.sockgrp)
    extra = f"  group: {gid}\n  mode: 0660\n  allowed_gids: [{accounts.gid(accounts.allowgrp)}]\n"
    prefix = (*UNIT_CAPS, "--groups", str(gid))
    daemon = start_daemon(d, extra, prefix=prefix)
    srv = GtlsServer(d, d / "server.pem", d / "server.key")
    try:
        caps = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        assert "CapEff:\t0000000000001000" in caps, caps  # CAP_NET_ADMIN (12) only
        st = run.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o750)
        rc, res, err = probe_as(accounts.users["served"], daemon.sock, srv.port)
        assert rc == 0 and res["ok"] is True, (res, err, daemon.log.read_text()[-2000:])
    finally:
        srv.stop()
        daemon.stop()


def test_a_directory_others_can_search_is_left_alone(accounts: Accounts, tmp_path: Path) -> None:
    """Like /run: the socket gets the group and mode, the shared directory is unchanged."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    gid = accounts.gid(accounts.sockgrp)
    sock = listen.bind(str(shared / "q.sock"), 0o640, gid)
    try:
        st, dst = (shared / "q.sock").stat(), shared.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o640)
        assert (dst.st_gid, stat.S_IMODE(dst.st_mode)) == (0, 0o755)
    finally:
        sock.close()


def test_socket_group_refused_leaves_no_socket_file(accounts: Accounts, tmp_path: Path) -> None:
    """In a directory others can search, the socket's own chgrp fails without CAP_CHOWN:
    a clear error, and the file bound a moment before is removed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    gid = accounts.gid(accounts.sockgrp)
    code = (
        "import sys\nfrom quichsd.unix import listen\n"
        "try:\n    listen.bind(sys.argv[1], 0o660, int(sys.argv[2]))\n"
        "except listen.ListenError as e:\n    print(e)\n"
    )
    p = subprocess.run(
        [*UNIT_CAPS, sys.executable, "-c", code, str(shared / "q.sock"), str(gid)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.stdout.startswith(f"{shared / 'q.sock'}: cannot give it group {gid} "), p
    assert "Operation not permitted" in p.stdout, p
    assert list(shared.iterdir()) == []
