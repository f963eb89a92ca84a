# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest side of the real-kernel VM tier (runs inside the virtme-ng guest as root).

Stdlib only: under TCG every import costs 20-25x what it costs on the host.

The kernel consumers are NVMe/TCP with TLS on 127.0.0.1 (docs/kernel-vm.md §4):
the nvmet-tcp target asks for a SERVERHELLO on every TCP connection to its
port (``addr_tsas=tls1.3`` makes ``treq=required``), and the nvme-tcp host asks
for a CLIENTHELLO when an option string with ``tls`` is written to
``/dev/nvme-fabrics`` (the PSK lives in the ``.nvme`` keyring).  The daemon is
the real ``quichsd`` console script, started as ``quichsd -s -c CONFIG``.

Every scenario appends one JSON object to ``<out>/results.jsonl``::

    {"name": ..., "outcome": "passed"|"failed"|"skipped", "reason": ...,
     "seconds": ..., "checks": [[description, ok, detail], ...],
     "dmesg": [lines logged while the scenario ran], "daemon_logs": {file: text}}

A scenario passes only if it ran to the end and every check held.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- constants
SUBNQN = "nqn.2014-08.org.example:quichsd-test"
HOSTNQN_BASE = "nqn.2014-08.org.example:quichsd-host"
NVME_PORT = 4420
CONFIGFS = Path("/sys/kernel/config")
NVMET = CONFIGFS / "nvmet"
#: nvme-tcp / nvmet-tcp default ``tls_handshake_timeout`` (seconds); sent as TIMEOUT=10000
CONSUMER_TIMEOUT = 10.0
#: what a raw (non-TLS) client sends the target: not a TLS record
RAW_HELLO = b"GET / HTTP/1.0\r\n\r\n"
#: how long the daemon may take from start to having joined "tlshd" (TCG, cold imports)
DAEMON_READY_TIMEOUT = 90.0

# dmesg patterns of the consumers (6.12; "done" lines need dynamic debug, enabled below)
RE_TARGET_DONE = re.compile(r"nvmet_tcp: queue (\d+): TLS handshake done, key \w+, status (-?\d+)")
RE_HOST_DONE = re.compile(
    r"nvme (nvme\d+): queue (\d+): TLS handshake done, key \w+, status (-?\d+)"
)
RE_TARGET_NOAGENT = re.compile(r"nvmet_tcp: .*failed to start TLS, err=-3\b")
RE_HOST_NOAGENT = re.compile(r"nvme nvme\d+: queue \d+: failed to start TLS: -3\b")
RE_TIMEOUT = re.compile(r"TLS handshake timeout")

# Substrings of quichsd's own log (stderr with -s) that the scenarios rely on: each
# entry is a tuple of substrings that must all occur on one line.  They come from the
# completion line of quichsd/netlink/agent.py, e.g.
#   handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: status 0 OK
#   (TLS_AES_128_GCM_SHA256, X25519, 48 ms, kTLS)
# The errno name is deliberately not matched (Python's errno.errorcode may differ from
# the kernel's name for the same number).
DAEMON_LOG_EXPECT: dict[str, tuple[str, ...]] = {
    # a TCP handshake handed to kTLS, and one refused (a raw client sent no ClientHello)
    "done_ktls": ("done: status 0 ", "kTLS"),
    "done_eacces": ("(SERVERHELLO, PSK) done: status 13 ",),
    "clienthello": ("handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: status 0 ", "kTLS"),
    "serverhello": ("(SERVERHELLO, PSK) done: status 0 ", "kTLS"),
    # + "handshake for 127.0.0.1:<port of the raw client> (SERVERHELLO, PSK)" built at run time
    "running": ("serving kernel handshake requests", "group tlshd"),
    "done_etimedout": ("done: status 110 ",),
    "done_ok": ("done: status 0 ",),
}

SCENARIOS = (
    "nvme_tls_host_and_target",
    "nvme_unknown_psk_identity",
    "concurrent_requests",
    "no_daemon_then_start",
    "daemon_restart",
    "workers_nvme_concurrent",
    "timeout_honoured",
    "kernel_quic_sample",
    "kernel_quic_psk",
    "kernel_quic_resumption",
    "workers_kernel_quic",
    "nfs_tls",
    "nfs_mtls",
    # last: it costs the most TCG time (dpkg reads the host's whole database over 9p,
    # py3compile); should it push the VM past QUICHSD_VM_TIMEOUT, only it is lost
    "deb_package_nvme_tls",
)

# --------------------------------------------------------------------------- genl (stdlib)
NETLINK_GENERIC = 16
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_MCAST_GROUPS = 1, 2, 7
CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GRP_ID = 1, 2


def _nla(atype: int, payload: bytes) -> bytes:
    ln = 4 + len(payload)
    return struct.pack("=HH", ln, atype) + payload + b"\0" * ((4 - ln % 4) % 4)


def _parse_nlas(buf: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    off = 0
    while off + 4 <= len(buf):
        ln, at = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        out.append((at & 0x3FFF, buf[off + 4 : off + ln]))
        off += (ln + 3) & ~3
    return out


def resolve_handshake_family() -> tuple[int, dict[str, int]]:
    """Return (family id, {group name: group id}) of the "handshake" genl family."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC) as s:
        s.bind((0, 0))
        body = struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + _nla(
            CTRL_ATTR_FAMILY_NAME, b"handshake\0"
        )
        s.send(
            struct.pack("=IHHII", 16 + len(body), GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
            + body
        )
        fam, groups = -1, dict[str, int]()
        while True:
            buf, off = s.recv(65536), 0
            while off + 16 <= len(buf):
                ln, typ, _flags, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
                payload = buf[off + 16 : off + ln]
                off += (ln + 3) & ~3
                if typ == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, f"genl family 'handshake': {os.strerror(err)}")
                    return fam, groups
                for at, val in _parse_nlas(payload[4:]):
                    if at == CTRL_ATTR_FAMILY_ID:
                        fam = struct.unpack("=H", val[:2])[0]
                    elif at == CTRL_ATTR_MCAST_GROUPS:
                        for _, grp in _parse_nlas(val):
                            g = dict(_parse_nlas(grp))
                            name = g[CTRL_ATTR_MCAST_GRP_NAME].rstrip(b"\0").decode()
                            groups[name] = struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID])[0]


# --------------------------------------------------------------------------- helpers
T0 = time.monotonic()


def say(*a: object) -> None:
    print(f"[guest {time.monotonic() - T0:7.2f}s]", *a, flush=True)


def run(cmd: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed rc={p.returncode}: {p.stdout}{p.stderr}".strip())
    return p


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


class Kmsg:
    """All kernel log records, read incrementally from /dev/kmsg."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDWR | os.O_NONBLOCK)
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.poll()

    def poll(self) -> None:
        with self.lock:
            while True:
                try:
                    rec = os.read(self.fd, 8192)
                except BlockingIOError:
                    return
                except BrokenPipeError:  # records overwritten before we read them
                    continue
                head, _, msg = rec.decode(errors="replace").partition(";")
                parts = head.split(",")
                ts = int(parts[2]) / 1e6 if len(parts) > 2 and parts[2].isdigit() else 0.0
                self.lines.append(f"[{ts:10.3f}] {msg.splitlines()[0] if msg else ''}")

    def mark(self, text: str) -> int:
        os.write(self.fd, f"<6>quichsd-vm: {text}\n".encode())
        self.poll()
        return len(self.lines)

    def since(self, idx: int) -> list[str]:
        self.poll()
        return self.lines[idx:]

    def wait_count(
        self, rx: re.Pattern[str], idx: int, count: int, timeout: float
    ) -> list[re.Match[str]]:
        """Wait until ``count`` lines since ``idx`` match ``rx``; return the matches."""
        found: list[re.Match[str]] = []

        def pred() -> bool:
            found[:] = [m for line in self.since(idx) if (m := rx.search(line))]
            return len(found) >= count

        wait_until(pred, timeout, 0.2)
        return found


def table_inodes(*tables: str) -> set[str]:
    """Socket inodes listed in /proc/net/<table> files (inode is column 10, or 7 for unix)."""
    inodes: set[str] = set()
    for name in tables:
        col = 6 if name == "unix" else 9
        try:
            with open(f"/proc/net/{name}") as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if len(cols) > col:
                        inodes.add(cols[col])
        except FileNotFoundError:
            pass
    return inodes


def socket_inodes(pid: int) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return out
    for n in names:
        try:
            tgt = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        if tgt.startswith("socket:["):
            out[int(n)] = tgt[8:-1]
    return out


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc/*/stat."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid: int) -> list[int]:
    kids = children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tlshd_subscribers(group_id: int) -> set[str]:
    """Inodes of NETLINK_GENERIC sockets that joined the multicast group ``group_id``."""
    out: set[str] = set()
    bit = 1 << (group_id - 1)
    with open("/proc/net/netlink") as fh:
        next(fh)
        for line in fh:
            c = line.split()
            # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            if len(c) >= 10 and c[1] == str(NETLINK_GENERIC) and int(c[3], 16) & bit:
                out.add(c[9])
    return out


# --------------------------------------------------------------------------- the daemon
class Daemon:
    """One run of the real ``quichsd -s -c CONFIG``, stderr+stdout to a log file."""

    def __init__(self, cmd: list[str], log: Path, group_id: int) -> None:
        self.cmd, self.log_path, self.group_id = cmd, log, group_id
        self.log_fh = open(log, "wb")  # noqa: SIM115 (closed in stop())
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self.log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ready_after: float | None = None
        say(f"started daemon pid {self.proc.pid}: {shlex.join(cmd)} (log {log.name})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def subscribed(self) -> bool:
        subs = tlshd_subscribers(self.group_id)
        return any(ino in subs for p in descendants(self.pid) for ino in socket_inodes(p).values())

    def wait_ready(self, timeout: float = DAEMON_READY_TIMEOUT) -> bool:
        ok = wait_until(lambda: not self.alive() or self.subscribed(), timeout, 0.1)
        if ok and self.alive():
            self.ready_after = time.monotonic() - self.t_start
            say(f"daemon pid {self.pid} joined 'tlshd' after {self.ready_after:.1f}s")
            return True
        say(f"daemon pid {self.pid} not subscribed after {timeout}s (alive={self.alive()})")
        return False

    def handshake_fds(self) -> dict[int, str]:
        """fd -> inode of every socket the daemon (and its children) hold that is not a
        netlink or unix socket: i.e. accepted TCP or QUIC handshake sockets."""
        own = table_inodes("netlink", "unix")
        out: dict[int, str] = {}
        for p in descendants(self.pid):
            out.update({fd: ino for fd, ino in socket_inodes(p).items() if ino not in own})
        return out

    def log(self) -> str:
        self.log_fh.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)
            self.log_fh.close()

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; returns the exit status."""
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        if not self.log_fh.closed:
            self.log_fh.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- consumers
def setup_nvme(log: list[str]) -> None:
    run("modprobe -a nvmet nvmet-tcp nvme-tcp")
    # memory-backed: data written through the namespace reads back (not discarded)
    run("modprobe null_blk nr_devices=1 gb=1 memory_backed=1")
    if not os.path.ismount(CONFIGFS):
        run(f"mount -t configfs none {CONFIGFS}")
    if not os.path.ismount("/sys/kernel/debug"):
        run("mount -t debugfs none /sys/kernel/debug", check=False)
    # the "TLS handshake done, ... status N" lines are pr_debug/dev_dbg
    with open("/sys/kernel/debug/dynamic_debug/control", "w") as fh:
        fh.write("module nvmet_tcp +p; module nvme_tcp +p\n")
    sub = NVMET / "subsystems" / SUBNQN
    sub.mkdir()
    (sub / "attr_allow_any_host").write_text("1")
    ns = sub / "namespaces" / "1"
    ns.mkdir()
    (ns / "device_path").write_text("/dev/nullb0")
    (ns / "enable").write_text("1")
    port = NVMET / "ports" / "1"
    port.mkdir()
    for k, v in (
        ("addr_trtype", "tcp"),
        ("addr_adrfam", "ipv4"),
        ("addr_traddr", "127.0.0.1"),
        ("addr_trsvcid", str(NVME_PORT)),
        ("addr_tsas", "tls1.3"),
    ):
        (port / k).write_text(v)
    treq = (port / "addr_treq").read_text().strip()
    log.append(f"nvmet port: tsas={(port / 'addr_tsas').read_text().strip()} treq={treq}")
    (port / "subsystems" / SUBNQN).symlink_to(sub)


_host_seq = 0
#: hostnqn -> serial of its PSK (the REMOTE_AUTH both DONEs carry, printed by the
#: consumers as "TLS handshake done, key <serial hex>")
HOST_KEYS: dict[str, int] = {}


def new_host(hmac: int = 1, keyring: str = "%:.nvme") -> tuple[str, str]:
    """A fresh (hostnqn, hostid) with a retained PSK ``NVMe1R0<hmac> <hostnqn> <subnqn>``
    (hmac 1: SHA-256, 32 bytes; 2: SHA-384, 48 bytes) in ``keyring`` (.nvme by default)."""
    global _host_seq
    _host_seq += 1
    hostnqn = f"{HOSTNQN_BASE}-{_host_seq}"
    psk = os.urandom(32 if hmac == 1 else 48)
    p = subprocess.run(
        ["keyctl", "padd", "psk", f"NVMe1R0{hmac} {hostnqn} {SUBNQN}", keyring],
        input=psk,
        capture_output=True,
        timeout=30,
    )
    if p.returncode != 0:
        raise RuntimeError(f"keyctl padd psk failed: {p.stderr.decode(errors='replace')}")
    HOST_KEYS[hostnqn] = int(p.stdout.strip())
    return hostnqn, str(uuid.uuid4())


def host_connect_keep(hostnqn: str, hostid: str, extra: str = "") -> tuple[int, float, str | None]:
    """Write a TLS connect to /dev/nvme-fabrics (one I/O queue: 2 TLS handshakes per
    side); return (errno or 0, seconds, controller name such as ``nvme0`` or None)."""
    opts = (
        f"transport=tcp,traddr=127.0.0.1,trsvcid={NVME_PORT},nqn={SUBNQN},"
        f"hostnqn={hostnqn},hostid={hostid},nr_io_queues=1,tls{extra}"
    )
    t = time.monotonic()
    ctrl: str | None = None
    fd = os.open("/dev/nvme-fabrics", os.O_RDWR)
    try:
        os.write(fd, opts.encode())
        reply = os.read(fd, 4096).decode(errors="replace")
        err = 0
        m = re.search(r"instance=(\d+)", reply)
        ctrl = f"nvme{m.group(1)}" if m else None
    except OSError as e:
        err = e.errno or -1
    finally:
        os.close(fd)
    return err, time.monotonic() - t, ctrl


def delete_ctrl(ctrl: str | None) -> None:
    if ctrl:
        Path(f"/sys/class/nvme/{ctrl}/delete_controller").write_text("1")


def host_connect(hostnqn: str, hostid: str, extra: str = "") -> tuple[int, float]:
    """:func:`host_connect_keep`, the controller deleted again at once."""
    err, secs, ctrl = host_connect_keep(hostnqn, hostid, extra)
    delete_ctrl(ctrl)
    return err, secs


def tls_stat() -> dict[str, int]:
    """/proc/net/tls_stat (the kernel's kTLS counters; absent until tls.ko is loaded)."""
    try:
        text = Path("/proc/net/tls_stat").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def namespace_of(ctrl: str, timeout: float = 10.0) -> Path | None:
    """The block device of namespace 1 behind controller ``ctrl`` (multipath or not)."""
    found: list[Path] = []

    def pred() -> bool:
        for entry in sorted(Path(f"/sys/class/nvme/{ctrl}").glob("nvme*n1")):
            name = entry.name
            mp = re.fullmatch(r"nvme(\d+)c\d+n1", name)  # native multipath: the head device
            dev = Path("/dev") / (f"nvme{mp.group(1)}n1" if mp else name)
            if dev.exists():
                found.append(dev)
                return True
        return False

    return found[0] if wait_until(pred, timeout, 0.2) else None


def write_read_back(dev: Path, mib: int) -> tuple[bool, str]:
    """dd ``mib`` MiB of random data to ``dev`` (O_DIRECT), read them back, compare."""
    data = os.urandom(mib << 20)
    src, back = Path("/run/nvme-io.bin"), Path("/run/nvme-io.back")
    src.write_bytes(data)
    try:
        w = run(f"dd if={src} of={dev} bs=1M count={mib} oflag=direct conv=fsync", check=False)
        r = run(f"dd if={dev} of={back} bs=1M count={mib} iflag=direct", check=False)
        got = back.read_bytes() if back.exists() else b""
    finally:
        src.unlink(missing_ok=True)
        back.unlink(missing_ok=True)
    want, have = hashlib.sha256(data).hexdigest(), hashlib.sha256(got).hexdigest()
    detail = (
        f"dd write rc={w.returncode}, read rc={r.returncode}: sha256 written {want[:16]}, "
        f"read back {have[:16]} ({len(got)} bytes)"
    )
    return w.returncode == 0 and r.returncode == 0 and want == have, detail


def target_connect(timeout: float, send: bytes = RAW_HELLO) -> tuple[str, float, int]:
    """Plain TCP connect to the nvmet port (-> one SERVERHELLO request) that sends
    ``send`` (not a ClientHello: the daemon's handshake fails at once).

    Returns how the target ended the connection ("closed", "reset", "timeout",
    "data", "refused"), the seconds it took and our local port (the peer the
    daemon sees).
    """
    t = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", NVME_PORT), timeout=10)
    except OSError as e:
        return f"refused ({e})", time.monotonic() - t, 0
    lport = s.getsockname()[1]
    try:
        s.settimeout(timeout)
        if send:
            s.sendall(send)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        # a TLS alert record (type 21) before the close is the daemon's, not nvmet's data
        how = "closed" if not data or data[:1] == b"\x15" else f"data {data[:16]!r}"
    except TimeoutError:
        how = "timeout"
    except ConnectionResetError:
        how = "reset"
    except OSError as e:
        how = f"error {e}"
    finally:
        s.close()
    return how, time.monotonic() - t, lport


def run_parallel(fns: list[Callable[[], Any]]) -> list[Any]:
    """Start all callables at the same instant (barrier) and return their results."""
    results: list[Any] = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def wrap(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as e:  # noqa: BLE001 - reported as the result
            results[i] = e

    ts = [threading.Thread(target=wrap, args=(i, f)) for i, f in enumerate(fns)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return results


# --------------------------------------------------------------------------- scenarios
class Skip(Exception):
    pass


class Abort(Exception):
    pass


class Ctx:
    def __init__(self, args: argparse.Namespace, kmsg: Kmsg, group_id: int) -> None:
        self.args, self.kmsg, self.group_id = args, kmsg, group_id
        self.out = Path(args.out)
        self.daemon_cmd: list[str] = shlex.split(args.daemon_cmd)
        self.quic_modules: str | None = args.quic_modules or None
        #: the .deb the host built for deb_package_nvme_tls ("" if it could not)
        self.deb: str = args.deb


class Scenario:
    def __init__(self, ctx: Ctx, name: str) -> None:
        self.ctx, self.name = ctx, name
        self.checks: list[list[Any]] = []
        self.daemons: list[Daemon] = []
        self.daemon_cmd: list[str] = ctx.daemon_cmd
        self.notes: list[str] = []
        self.kidx = 0

    # -- checks
    def check(self, desc: str, ok: bool, detail: object = "") -> bool:
        self.checks.append([desc, bool(ok), str(detail)])
        say(f"  {'ok  ' if ok else 'FAIL'} {desc}" + (f" -- {detail}" if detail else ""))
        return bool(ok)

    def require(self, desc: str, ok: bool, detail: object = "") -> None:
        if not self.check(desc, ok, detail):
            raise Abort(desc)

    def note(self, text: str) -> None:
        self.notes.append(text)
        say(f"  note: {text}")

    # -- daemon
    def start_daemon(self) -> Daemon:
        n = len(self.daemons) + 1
        d = Daemon(self.daemon_cmd, self.ctx.out / f"daemon-{self.name}-{n}.log", self.ctx.group_id)
        self.daemons.append(d)
        ok = d.wait_ready()
        self.require(
            f"daemon #{n} (pid {d.pid}) joined the 'tlshd' group",
            ok,
            f"after {d.ready_after:.1f}s" if ok else f"alive={d.alive()}",
        )
        return d

    def no_handshake_fds(self, d: Daemon, what: str) -> None:
        leaked: dict[int, str] = {}

        def pred() -> bool:
            leaked.clear()
            leaked.update(d.handshake_fds())
            return not leaked

        ok = wait_until(pred, 3.0, 0.2)
        self.check(
            f"daemon pid {d.pid} holds no handshake (non-netlink, non-unix) socket fd {what}",
            ok,
            f"open socket fds (fd: inode): {leaked}" if leaked else "/proc/<pid>/fd checked",
        )

    def daemon_log_has(
        self, d: Daemon, parts: tuple[str, ...], count: int = 1, timeout: float = 10.0
    ) -> None:
        """>= ``count`` lines of ``d``'s log contain every substring in ``parts``."""

        def n_lines() -> int:
            return sum(all(p in line for p in parts) for line in d.log().splitlines())

        ok = wait_until(lambda: n_lines() >= count, timeout, 0.2)
        self.check(
            f"daemon log has {count}+ line(s) with " + " + ".join(repr(p) for p in parts),
            ok,
            f"found on {n_lines()} line(s)",
        )

    # -- consumer helpers
    def expect_target_done(
        self, idx: int, count: int, status: int, timeout: float
    ) -> list[re.Match[str]]:
        found = self.ctx.kmsg.wait_count(RE_TARGET_DONE, idx, count, timeout)
        bad = [m.group(0) for m in found if int(m.group(2)) != status]
        self.check(
            f"nvmet logged {count} SERVERHELLO 'TLS handshake done ... status {status}'",
            len(found) >= count and not bad,
            f"{len(found)} found" + (f"; other statuses: {bad}" if bad else ""),
        )
        return found

    def expect_host_done(
        self, idx: int, count: int, status: int, timeout: float
    ) -> list[re.Match[str]]:
        found = self.ctx.kmsg.wait_count(RE_HOST_DONE, idx, count, timeout)
        bad = [m.group(0) for m in found if int(m.group(3)) != status]
        self.check(
            f"nvme host logged {count} CLIENTHELLO 'TLS handshake done ... status {status}'",
            len(found) >= count and not bad,
            f"{len(found)} found" + (f"; other statuses: {bad}" if bad else ""),
        )
        return found

    def cleanup(self) -> None:
        for d in self.daemons:
            rc = d.stop()
            self.note(f"daemon pid {d.pid} exit status {rc}")


def nvme_tls_round_trip(s: Scenario, d: Daemon, hmac: int = 1, mib: int = 4) -> None:
    """Host connect with TLS through the daemon (host and target side), then ``mib`` MiB
    written through the namespace and read back; both DONEs status 0 with the PSK
    serial as REMOTE_AUTH; the sockets carried by the kernel's kTLS."""
    k = s.ctx.kmsg
    suite = "TLS_AES_128_GCM_SHA256" if hmac == 1 else "TLS_AES_256_GCM_SHA384"
    idx = k.mark(f"nvme tls: host connect, PSK NVMe1R0{hmac} ({suite})")
    hostnqn, hostid = new_host(hmac)
    serial = HOST_KEYS[hostnqn]
    before = tls_stat()
    err, secs, ctrl = host_connect_keep(hostnqn, hostid)
    try:
        s.require(
            f"host connect with TLS (PSK NVMe1R0{hmac}) succeeded",
            err == 0 and ctrl is not None,
            f"errno {err} ({errno.errorcode.get(err, '?')}) after {secs:.1f}s, ctrl {ctrl}",
        )
        s.check("host connect took less than the consumer timeout", secs < CONSUMER_TIMEOUT, secs)
        # admin queue + 1 I/O queue: 2 handshakes on each side
        hosts = s.expect_host_done(idx, 2, 0, 5)
        targets = s.expect_target_done(idx, 2, 0, 5)
        keys = {m.group(0).split("key ")[1].split(",")[0] for m in [*hosts, *targets]}
        s.check(
            f"both sides' DONE carried the PSK serial {serial} ({serial:x}) as REMOTE_AUTH",
            keys == {f"{serial:x}"},
            f"keys printed by the consumers: {sorted(keys)}",
        )
        now = tls_stat()
        curr = {x: now.get(x, 0) for x in ("TlsCurrTxSw", "TlsCurrRxSw")}
        s.check(
            "kTLS carries the 4 sockets (host 2 + target 2): /proc/net/tls_stat TlsCurr*Sw",
            all(v - 0 >= 4 for v in curr.values())
            and now.get("TlsTxSw", 0) - before.get("TlsTxSw", 0) >= 4,
            f"{curr}, TlsTxSw {before.get('TlsTxSw', 0)} -> {now.get('TlsTxSw', 0)}",
        )
        dev = namespace_of(ctrl or "")
        s.require(f"namespace block device of {ctrl} appeared", dev is not None, dev)
        assert dev is not None
        ok, detail = write_read_back(dev, mib)
        s.check(f"{mib} MiB written through {dev} read back identically (over kTLS)", ok, detail)
        s.check(
            "no consumer logged 'TLS handshake timeout'",
            not any(RE_TIMEOUT.search(x) for x in k.since(idx)),
        )
    finally:
        delete_ctrl(ctrl)
    for role in ("CLIENTHELLO", "SERVERHELLO"):
        s.daemon_log_has(d, (f"({role}, PSK) done: status 0 ", suite, "kTLS"), count=2)


def sc_nvme_tls_host_and_target(s: Scenario) -> None:
    host_and_target_through(s, s.start_daemon())


def host_and_target_through(
    s: Scenario, d: Daemon, hmacs: tuple[int, ...] = (1, 2), mib: int = 4
) -> None:
    """NVMe/TCP host and target through the one daemon ``d``: a host connect per PSK
    kind in ``hmacs`` (1: NVMe1R01, SHA-256 PSK, TLS_AES_128_GCM_SHA256; 2: NVMe1R02,
    SHA-384, TLS_AES_256_GCM_SHA384) with ``mib`` MiB read back, then a raw client
    refused; no fd left, exit 0 on SIGTERM (the daemon's end)."""
    k = s.ctx.kmsg
    s.daemon_log_has(d, expected("running"), count=1)
    for hmac in hmacs:
        nvme_tls_round_trip(s, d, hmac=hmac, mib=mib)
    # a target-only request too (SERVERHELLO without a kernel client): not TLS at all
    idx2 = k.mark("nvme tls: raw TCP connect to target, sends HTTP")
    how, secs, lport = target_connect(CONSUMER_TIMEOUT + 5)
    s.check(
        "target closed the raw TCP connection after the handshake failed",
        how in ("closed", "reset") and secs < CONSUMER_TIMEOUT,
        f"{how} after {secs:.1f}s",
    )
    found = k.wait_count(RE_TARGET_DONE, idx2, 1, 5)
    s.check(
        "nvmet logged the raw connect's DONE with a failure status",
        bool(found) and int(found[0].group(2)) < 0,
        [m.group(0) for m in found],
    )
    s.daemon_log_has(d, (f"handshake for 127.0.0.1:{lport} (SERVERHELLO, PSK) done: status ",))
    s.no_handshake_fds(d, "after DONE")
    rc = d.stop()
    s.check("daemon exits with status 0 on SIGTERM", rc == 0, f"exit status {rc}")


def stranger_connect(hostnqn: str, hostid: str) -> tuple[int, str, int]:
    """A host connect with ``tls_key=`` naming a PSK that lives only in a throw-away
    session keyring of a child process (``keyctl session``): the daemon's host side reads
    it by serial (user permission), but its target side, searching its own session
    keyring (.nvme linked), cannot find the identity. Returns (shell rc, output, serial)."""
    # the key as printf octal escapes: sh's printf writes the raw bytes (no xxd, which a
    # fresh Debian 13 root does not have)
    key = "".join(f"\\{b:03o}" for b in os.urandom(32))
    opts = (
        f"transport=tcp,traddr=127.0.0.1,trsvcid={NVME_PORT},nqn={SUBNQN},"
        f"hostnqn={hostnqn},hostid={hostid},nr_io_queues=1,tls,tls_key=$k"
    )
    script = (
        f"k=$(printf '{key}' | keyctl padd psk 'NVMe1R01 {hostnqn} {SUBNQN}' @s) && "
        "keyctl setperm $k 0x3f3f0000 && echo serial=$k && "
        f'echo "{opts}" > /dev/nvme-fabrics'
    )
    p = run(f"keyctl session quichsd-stranger sh -c {shlex.quote(script)}", check=False)
    out = (p.stdout + p.stderr).strip()
    m = re.search(r"serial=(\d+)", out)
    return p.returncode, out, int(m.group(1)) if m else 0


def sc_nvme_unknown_psk_identity(s: Scenario) -> None:
    k = s.ctx.kmsg
    d = s.start_daemon()
    hostnqn = f"{HOSTNQN_BASE}-stranger"
    idx = k.mark("unknown identity: host connect with a PSK the target cannot find")
    rc, out, serial = stranger_connect(hostnqn, str(uuid.uuid4()))
    s.require("stranger PSK added in a child's own session keyring", serial > 0, out)
    s.check("the host connect failed", rc != 0 and "instance=" not in out, f"rc={rc}: {out}")
    s.expect_target_done(idx, 1, -errno.EKEYREJECTED, 5)
    s.expect_host_done(idx, 1, -errno.EKEYREJECTED, 5)
    s.daemon_log_has(
        d,
        (
            "(SERVERHELLO, PSK) done: status 129 ",
            f"unknown PSK identity 'NVMe1R01 {hostnqn} {SUBNQN}'",
        ),
    )
    alert = "peer sent TLS alert 115 (unknown_psk_identity)"
    s.daemon_log_has(d, ("(CLIENTHELLO, PSK) done: status 129 ", alert))
    text = d.log()
    lines = [x for x in text.splitlines() if "quichsd-stranger" in x or hostnqn in x]
    s.check(
        "one log line for the refused identity (the target's completion line)",
        len(lines) == 1,
        lines,
    )
    s.check("no traceback in the daemon log", "Traceback" not in text)
    # the daemon keeps serving: the next connect (a known identity) succeeds with I/O
    nvme_tls_round_trip(s, d, hmac=1, mib=1)
    s.no_handshake_fds(d, "after DONE")


def shipped_config_with(s: Scenario, old: str, new: str) -> None:
    """Run the daemon with the shipped config, ``old`` replaced by ``new``."""
    cmd = list(s.daemon_cmd)
    s.require("daemon command has '-c CONFIG'", "-c" in cmd[:-1], shlex.join(cmd))
    text = Path(cmd[cmd.index("-c") + 1]).read_text()
    s.require(f"shipped config has {old!r}", old in text, old)
    cfg = s.ctx.out / f"config-{s.name}.yaml"
    cfg.write_text(text.replace(old, new))
    cmd[cmd.index("-c") + 1] = str(cfg)
    s.daemon_cmd = cmd


#: the daemon's deadline in concurrent_requests: below nvmet's own 10 s, so a silent raw
#: client is ended by the daemon's DONE ETIMEDOUT, not by the consumer giving up
SHORT_DEADLINE_MS = 4000


def sc_concurrent_requests(s: Scenario) -> None:
    k = s.ctx.kmsg
    n_hosts, n_raw, n_silent = 2, 4, 2
    shipped_config_with(s, "max_timeout_ms: 600000", f"max_timeout_ms: {SHORT_DEADLINE_MS}")
    shipped_config_with(s, "default_timeout_ms: 10000", f"default_timeout_ms: {SHORT_DEADLINE_MS}")
    d = s.start_daemon()
    hosts = [new_host() for _ in range(n_hosts)]
    idx = k.mark(
        f"concurrent: {n_hosts} host connects + {n_raw} raw target connects sending HTTP "
        f"+ {n_silent} silent ones at once"
    )
    fns: list[Callable[[], Any]] = [functools.partial(host_connect, *h) for h in hosts]
    fns += [lambda: target_connect(CONSUMER_TIMEOUT + 5) for _ in range(n_raw)]
    fns += [lambda: target_connect(CONSUMER_TIMEOUT + 5, b"") for _ in range(n_silent)]
    res = run_parallel(fns)
    for i, r in enumerate(res[:n_hosts]):
        ok = isinstance(r, tuple) and r[0] == 0 and r[1] < CONSUMER_TIMEOUT
        s.check(f"host connect {i + 1} with TLS succeeded in time", ok, r)
    for i, r in enumerate(res[n_hosts : n_hosts + n_raw]):
        ok = isinstance(r, tuple) and r[0] in ("closed", "reset") and r[1] < CONSUMER_TIMEOUT
        s.check(f"raw target connect {i + 1} ended by the target in time", ok, r)
    limit = SHORT_DEADLINE_MS / 1000
    for i, r in enumerate(res[n_hosts + n_raw :]):
        ok = isinstance(r, tuple) and r[0] in ("closed", "reset") and limit <= r[1] < limit + 3
        s.check(f"silent target connect {i + 1} ended at the daemon's {limit:g} s deadline", ok, r)
    # each host: admin + 1 I/O queue, a handshake on both sides for each
    s.expect_host_done(idx, 2 * n_hosts, 0, 10)
    found = k.wait_count(RE_TARGET_DONE, idx, 2 * n_hosts + n_raw + n_silent, 10)
    statuses = sorted(int(m.group(2)) for m in found)
    want = sorted([0] * 2 * n_hosts + [-13] * n_raw + [-110] * n_silent)
    s.check(
        f"nvmet logged {2 * n_hosts} DONEs status 0, {n_raw} -13 (EACCES), {n_silent} -110 "
        "(ETIMEDOUT, the daemon's deadline)",
        statuses == want,
        f"statuses {statuses}",
    )
    lines = k.since(idx)
    s.check(
        "no consumer logged 'TLS handshake timeout' or a failed submit",
        not any(RE_TIMEOUT.search(x) or "failed to start TLS" in x for x in lines),
    )
    s.daemon_log_has(d, expected("done_ktls"), count=4 * n_hosts)
    s.daemon_log_has(d, expected("done_eacces"), count=n_raw)
    s.daemon_log_has(
        d,
        (
            "(SERVERHELLO, PSK) done: status 110 ",
            f"deadline of {limit:g} s passed while waiting for ClientHello",
        ),
        count=n_silent,
    )
    s.no_handshake_fds(d, "after all DONEs")


def sc_no_daemon_then_start(s: Scenario) -> None:
    k = s.ctx.kmsg
    subs = tlshd_subscribers(s.ctx.group_id)
    s.require("nobody is subscribed to 'tlshd' before the daemon starts", not subs, subs)
    idx = k.mark("no daemon: raw TCP connect + host connect")
    how, secs, _ = target_connect(CONSUMER_TIMEOUT + 5)
    s.check(
        "target ended the raw connection at once",
        how in ("closed", "reset") and secs < 5,
        f"{how} after {secs:.1f}s",
    )
    s.check(
        "nvmet logged 'failed to start TLS, err=-3' (ESRCH, no agent)",
        bool(k.wait_count(RE_TARGET_NOAGENT, idx, 1, 5)),
    )
    hostnqn, hostid = new_host()
    err, secs = host_connect(hostnqn, hostid)
    s.check(
        "host connect failed at once (no agent)",
        err != 0 and secs < 5,
        f"errno {err} ({errno.errorcode.get(err, '?')}) after {secs:.1f}s",
    )
    s.check(
        "nvme host logged 'failed to start TLS: -3' (ESRCH, no agent)",
        bool(k.wait_count(RE_HOST_NOAGENT, idx, 1, 5)),
    )
    d = s.start_daemon()
    idx2 = k.mark("no daemon: after start, host connect")
    err, secs = host_connect(hostnqn, hostid)
    s.check(
        "after start: host connect with TLS succeeded",
        err == 0,
        f"errno {err} ({errno.errorcode.get(err, '?')}) after {secs:.1f}s",
    )
    s.expect_host_done(idx2, 2, 0, 5)
    s.expect_target_done(idx2, 2, 0, 5)
    s.daemon_log_has(d, expected("done_ktls"), count=4)
    s.no_handshake_fds(d, "after DONE")


def sc_daemon_restart(s: Scenario) -> None:
    k = s.ctx.kmsg
    d1 = s.start_daemon()
    idx = k.mark("restart: request to daemon #1")
    how, secs, _ = target_connect(CONSUMER_TIMEOUT + 5)
    s.check(
        "daemon #1 answered a raw target connect",
        how in ("closed", "reset"),
        f"{how} after {secs:.1f}s",
    )
    s.expect_target_done(idx, 1, -13, 5)
    s.no_handshake_fds(d1, "after DONE")
    # A request is submitted while daemon #1 is stopped (its READY is queued on a
    # socket that is about to die), then #1 is SIGKILLed and #2 started.  Nobody will
    # ever send a READY for that request again: daemon #2 must find it by draining
    # with ACCEPT at start-up and answer it before the consumer's own timeout.
    d1.kill(signal.SIGSTOP)
    idx = k.mark("restart: request while daemon #1 is stopped, then SIGKILL")
    result: list[tuple[str, float, int]] = []
    t_req = time.monotonic()
    th = threading.Thread(target=lambda: result.append(target_connect(CONSUMER_TIMEOUT + 20)))
    th.start()
    time.sleep(1.0)
    d1.kill(signal.SIGKILL)
    s.check("daemon #1 is gone after SIGKILL", not d1.alive())
    d2 = s.start_daemon()
    ready_at = time.monotonic() - t_req
    th.join(CONSUMER_TIMEOUT + 30)
    how, secs, lport = result[0] if result else ("no result", time.monotonic() - t_req, 0)
    lines = k.since(idx)
    served = [x for x in lines if (m := RE_TARGET_DONE.search(x)) and m.group(2) == "-13"]
    timed_out = [x for x in lines if RE_TIMEOUT.search(x)]
    s.check(
        "the request pending across the restart was ended within the consumer's timeout",
        how in ("closed", "reset") and secs < CONSUMER_TIMEOUT + 5,
        f"{how} after {secs:.1f}s",
    )
    if ready_at < CONSUMER_TIMEOUT - 1.5:
        s.check(
            "daemon #2 answered it (drain at start-up) before the consumer timed out",
            bool(served) and not timed_out,
            f"daemon #2 ready {ready_at:.1f}s after the submit; served={served} "
            f"timed_out={timed_out}",
        )
        s.daemon_log_has(d2, (f"handshake for 127.0.0.1:{lport} (SERVERHELLO, PSK)",), count=1)
    else:
        s.note(
            f"daemon #2 became ready {ready_at:.1f}s after the submit, too late to beat the "
            f"consumer's {CONSUMER_TIMEOUT:.0f}s timeout; served={served} timed_out={timed_out}"
        )
    idx = k.mark("restart: fresh request to daemon #2")
    hostnqn, hostid = new_host()
    err, secs = host_connect(hostnqn, hostid)
    s.check(
        "daemon #2 served a host connect with TLS",
        err == 0,
        f"errno {err} ({errno.errorcode.get(err, '?')}) after {secs:.1f}s",
    )
    s.expect_host_done(idx, 2, 0, 5)
    s.expect_target_done(idx, 2, 0, 5)
    s.daemon_log_has(d2, expected("done_ktls"), count=4)
    s.no_handshake_fds(d2, "after DONE")


def sc_timeout_honoured(s: Scenario) -> None:
    if not s.ctx.quic_modules:
        raise Skip(
            "QUICHSD_QUIC_MODULES not set (the TCP deadline is checked in concurrent_requests: "
            "silent raw clients of nvmet end with DONE ETIMEDOUT)"
        )
    k = s.ctx.kmsg
    load_quic(s)
    use_pki_config(s)
    # A UDP socket that swallows the client's Initial packets: the handshake can
    # never finish.  The sample client sends TIMEOUT=3000 and cancels after 5 s.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
        d = s.start_daemon()
        idx = k.mark(f"timeout: quic_sample_test client -> black hole udp port {port}")
        t = time.monotonic()
        p = insmod_sample(s, ["role=client", f"port={port}", "alpn=sample"], timeout=60)
        secs = time.monotonic() - t
    out = (p.stdout + p.stderr).strip()
    s.check(
        "sample client failed with ETIMEDOUT (the daemon's DONE), not the sample's own "
        "5 s cancel (EINVAL)",
        p.returncode != 0 and "timed out" in out.lower(),
        f"rc={p.returncode} after {secs:.1f}s: {out}",
    )
    s.check("handshake ended before the consumer gave up (5 s)", secs < 5.0 + 1.0, f"{secs:.1f}s")
    s.check(
        "no 'handshake completed' from the sample",
        not any("quic_test: handshake completed" in x for x in k.since(idx)),
    )
    s.daemon_log_has(d, expected("done_etimedout"), count=1)
    s.no_handshake_fds(d, "after DONE")


PKI_DIR = Path("/run/quichsd-vm-pki")  # guest tmpfs: root-owned, mode 0600 keys
#: a second, unrelated CA + server.test certificate that the daemon does not trust
ROGUE_PKI_DIR = Path("/run/quichsd-vm-pki-rogue")


def start_peer(s: Scenario, args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Run quic_peer.py in the background; its output lines are collected in the list."""
    peer = Path(__file__).with_name("quic_peer.py")
    s.require("userspace QUIC peer script exists", peer.exists(), peer)
    proc = subprocess.Popen(
        [sys.executable, str(peer), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        lines.extend(iter(proc.stdout.readline, ""))

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def finish_peer(proc: subprocess.Popen[str], lines: list[str], timeout: float) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    wait_until(lambda: proc.stdout is None or proc.stdout.closed or bool(lines), 2)
    time.sleep(0.2)  # let the pump thread take the last lines
    return "".join(lines)


def kernel_vs_peer(
    s: Scenario,
    title: str,
    kparams: list[str],
    peer_args: list[str],
    kernel_lines: list[str],
    peer_lines: list[str],
) -> None:
    """One run of quic_sample_test (``kparams``) against quic_peer.py (``peer_args``).

    A kernel client needs the peer server listening first; a kernel server is loaded
    first (insmod blocks in accept) and the peer client connects to it.  Checks: insmod
    returned 0, every ``kernel_lines`` text was logged by the sample in this order (as
    ``quic_test: <text>``), every ``peer_lines`` text is in the peer's output.
    """
    k = s.ctx.kmsg
    idx = k.mark(f"quic: {title}")
    pki = str(make_pki(s))
    kernel_server = "role=server" in kparams
    t = time.monotonic()
    if not kernel_server:
        proc, out = start_peer(s, ["server", *peer_args, "--pki", pki])
        listening = wait_until(lambda: any("listening on" in x for x in out), 60)
        s.require(f"{title}: userspace server is listening", listening, "".join(out)[-2000:])
        p = insmod_sample(s, kparams, timeout=90)
        peer_out = finish_peer(proc, out, 30)
    else:
        ins: list[subprocess.CompletedProcess[str]] = []
        th = threading.Thread(target=lambda: ins.append(insmod_sample(s, kparams, timeout=90)))
        th.start()
        # the sample's 5 s cancel starts only once its listener accepted the connection
        wait_until(lambda: any("quic_test: init" in x for x in k.since(idx)), 10)
        time.sleep(0.5)
        proc, out = start_peer(s, ["client", *peer_args, "--pki", pki])
        peer_out = finish_peer(proc, out, 90)
        th.join(100)
        p = ins[0] if ins else subprocess.CompletedProcess(["insmod"], -1, "", "no result")
    secs = time.monotonic() - t
    run("rmmod quic_sample_test", check=False)
    lines = [x.split("] ", 1)[-1] for x in k.since(idx)]
    s.check(
        f"{title}: insmod {' '.join(kparams)} returned 0",
        p.returncode == 0,
        f"rc={p.returncode} after {secs:.1f}s {(p.stdout + p.stderr).strip()}",
    )
    sample = [x for x in lines if x.startswith("quic_test: ")]
    pos = 0
    for want in kernel_lines:
        hit = next((i for i in range(pos, len(sample)) if sample[i] == f"quic_test: {want}"), -1)
        s.check(f"{title}: kernel sample logged 'quic_test: {want}'", hit >= 0, sample)
        pos = hit + 1 if hit >= 0 else pos
    for want in peer_lines:
        s.check(f"{title}: userspace peer printed {want!r}", want in peer_out, peer_out[-2000:])


SAMPLE_CLIENT_LINES = [
    "handshake completed",
    "send 'hello quic server!' on stream 2",
    "recv 'hello quic client!' on stream 1",
]
SAMPLE_SERVER_LINES = [
    "handshake completed",
    "recv 'hello quic server!' on stream 2",
    "send 'hello quic client!' on stream 1",
]
PEER_SERVER_LINES = ["recv 'hello quic server!' on stream 2", "send 'hello quic client!'"]
PEER_CLIENT_LINES = ["send 'hello quic server!'", "recv 'hello quic client!' on stream 1"]


def quic_setup(s: Scenario, keyrings: tuple[str, ...] = ()) -> Daemon:
    if not s.ctx.quic_modules:
        raise Skip("QUICHSD_QUIC_MODULES not set (no QUIC module in CI)")
    load_quic(s)
    use_pki_config(s, keyrings)
    return s.start_daemon()


def sc_kernel_quic_sample(s: Scenario) -> None:
    d = quic_setup(s)
    kernel_vs_peer(
        s,
        "kernel client (x509, server.test, alpn sample) -> userspace server",
        ["role=client", "port=1234", "alpn=sample"],
        ["--port", "1234"],
        SAMPLE_CLIENT_LINES,
        ["handshake completed", *PEER_SERVER_LINES],
    )
    s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "alpn sample"), count=1)
    keys = [x for x in Path("/proc/keys").read_text().splitlines() if "TLS x509 server.test:" in x]
    s.check(
        "the daemon made the server's certificate a kernel key for DONE's REMOTE_AUTH "
        "(/proc/keys: 'TLS x509 server.test: X509.ecdsa ...', parsed by this kernel)",
        any(" asymmetri" in x and "X509." in x for x in keys),
        keys,
    )
    kernel_vs_peer(
        s,
        "userspace client -> kernel server (x509)",
        ["role=server", "port=1235", "alpn=sample"],
        ["--port", "1235"],
        SAMPLE_SERVER_LINES,
        ["handshake completed", *PEER_CLIENT_LINES],
    )
    s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "alpn sample"), count=1)
    untrusted_server_cert(s, d)
    s.no_handshake_fds(d, "after DONE")


def untrusted_server_cert(s: Scenario, d: Daemon) -> None:
    """Kernel client -> userspace server whose certificate comes from an unknown CA: the
    daemon refuses it (DONE EACCES) and closes with the alert's reason text."""
    k = s.ctx.kmsg
    title = "kernel client -> userspace server with an untrusted certificate"
    idx = k.mark(f"quic: {title}")
    rogue = str(make_pki(s, ROGUE_PKI_DIR))
    proc, out = start_peer(s, ["server", "--port", "1240", "--pki", rogue, "--timeout", "8"])
    listening = wait_until(lambda: any("listening on" in x for x in out), 60)
    s.require(f"{title}: userspace server is listening", listening, "".join(out)[-2000:])
    p = insmod_sample(s, ["role=client", "port=1240", "alpn=sample"], timeout=60)
    peer_out = finish_peer(proc, out, 30)
    run("rmmod quic_sample_test", check=False)
    msg = (p.stdout + p.stderr).strip()
    s.check(
        f"{title}: insmod failed with EACCES (the daemon's DONE 13)",
        p.returncode != 0 and "permission denied" in msg.lower(),
        f"rc={p.returncode}: {msg}",
    )
    s.check(
        f"{title}: no 'handshake completed' from the sample",
        not any("quic_test: handshake completed" in x for x in k.since(idx)),
    )
    s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 13 ",), count=1)
    # lxin/quic sends APPLICATION_ERROR whatever code the agent set, but the reason text
    # quichsd set with QUIC_SOCKOPT_CONNECTION_CLOSE reaches the peer
    s.check(
        f"{title}: the userspace server's handshake failed with the daemon's alert reason",
        "handshake failed" in peer_out and "TLS alert" in peer_out,
        peer_out[-2000:],
    )


#: lxin/quic's own test PSKs (tests/keys/ca_cert_pkey_psk.sh)
TEST_PSKS = {
    "test1": "b8d3a37be2c9a08eaf25cf6abe602ecc94417f8ba6211a58b8d0a3fb0d2e3a90",
    "test2": "b8d3a37be2c9a08eaf25cf6abe602ecc94417f8ba6211a58b8d0a3fb0d2e3a91",
}
PSK_KEYRING = "quichsd-psk"


def make_psk_keyring(s: Scenario) -> dict[str, int]:
    """Keyring ``quichsd-psk`` (linked into root's user keyring) with ``user`` keys
    test1/test2; returns identity -> key serial."""
    p = run(f"keyctl newring {PSK_KEYRING} @u", check=False)
    s.require("PSK keyring created", p.returncode == 0, (p.stdout + p.stderr).strip())
    ring = p.stdout.strip()
    run(f"keyctl setperm {ring} 0x3f1f1f1f")
    serials: dict[str, int] = {}
    for ident, hexkey in TEST_PSKS.items():
        q = subprocess.run(
            ["keyctl", "padd", "user", ident, ring],
            input=bytes.fromhex(hexkey),
            capture_output=True,
            timeout=30,
        )
        s.require(f"PSK key {ident} added", q.returncode == 0, q.stderr.decode(errors="replace"))
        serials[ident] = int(q.stdout.strip())
        run(f"keyctl setperm {serials[ident]} 0x3f1f1f1f")
    s.note(f"PSK keyring {ring}: {serials}")
    return serials


def sc_kernel_quic_psk(s: Scenario) -> None:
    if not s.ctx.quic_modules:
        raise Skip("QUICHSD_QUIC_MODULES not set (no QUIC module in CI)")
    serials = make_psk_keyring(s)
    d = quic_setup(s, keyrings=(PSK_KEYRING,))
    peer_psks = [f"--psk={i}:{k}" for i, k in TEST_PSKS.items()]
    kernel_vs_peer(
        s,
        "kernel client (psk=<serial of test1>) -> userspace server",
        ["role=client", "port=1236", "alpn=sample", f"psk={serials['test1']}"],
        ["--port", "1236", *peer_psks],
        SAMPLE_CLIENT_LINES,
        ["handshake completed", *PEER_SERVER_LINES],
    )
    s.daemon_log_has(d, ("(CLIENTHELLO, PSK) done: status 0 ",), count=1)
    kernel_vs_peer(
        s,
        "userspace client (identity test2) -> kernel server (psk=1, keyring lookup)",
        ["role=server", "port=1237", "alpn=sample", "psk=1"],
        ["--port", "1237", f"--psk=test2:{TEST_PSKS['test2']}"],
        SAMPLE_SERVER_LINES,
        ["handshake completed", *PEER_CLIENT_LINES],
    )
    s.daemon_log_has(d, ("(SERVERHELLO, PSK) done: status 0 ",), count=1)
    s.no_handshake_fds(d, "after DONE")


# the alpn=ticket sample (two connections each way): what the kernel logs and what the
# userspace peer prints (kernel_quic_resumption and workers_kernel_quic)
TICKET_KERNEL_CLIENT_LINES = [
    "handshake completed",
    "recv 'hello quic client!' on stream 1",
    "send 'hello quic server! I'm back!' on stream 2",
    "handshake completed",
    "recv 'hello quic client! welcome back!' on stream 1",
]
TICKET_PEER_SERVER_LINES = [
    "resumed=False",
    "resumed=True",
    "recv 'hello quic server! I'm back!' on stream 2",
]
TICKET_KERNEL_SERVER_LINES = [
    "handshake completed",
    "recv 'hello quic server!' on stream 2",
    "handshake completed",
    "recv 'hello quic server, I'm back!' on stream 2",
    "send 'hello quic client! welcome back!' on stream 1",
]
TICKET_PEER_CLIENT_LINES = [
    "session data of",
    "resumed=True",
    "recv 'hello quic client! welcome back!'",
]


def sc_kernel_quic_resumption(s: Scenario) -> None:
    d = quic_setup(s)
    kernel_vs_peer(
        s,
        "kernel ticket client (alpn=ticket) -> userspace server, 2 connections",
        ["role=client", "port=1238", "alpn=ticket"],
        ["--port", "1238", "--alpn", "ticket", "--rounds", "2"],
        TICKET_KERNEL_CLIENT_LINES,
        TICKET_PEER_SERVER_LINES,
    )
    s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "alpn ticket"), count=2)
    s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "resumed"), count=1)
    kernel_vs_peer(
        s,
        "userspace ticket client -> kernel server (alpn=ticket), 2 connections",
        ["role=server", "port=1239", "alpn=ticket"],
        ["--port", "1239", "--alpn", "ticket", "--rounds", "2"],
        TICKET_KERNEL_SERVER_LINES,
        TICKET_PEER_CLIENT_LINES,
    )
    s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "alpn ticket"), count=2)
    s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "resumed"), count=1)
    s.no_handshake_fds(d, "after DONE")


def make_pki(s: Scenario, folder: Path = PKI_DIR) -> Path:
    """A test CA and a ``server.test`` certificate (openssl CLI), once per boot and folder."""
    if (folder / "server.pem").exists():
        return folder
    folder.mkdir(mode=0o700, exist_ok=True)
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=DNS:server.test\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    d = shlex.quote(str(folder))
    p = run(
        f"cd {d} && openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=quichsd-vm-test-ca -addext basicConstraints=critical,CA:TRUE "
        "-addext keyUsage=critical,keyCertSign && "
        f"openssl req {ec} -keyout server.key -out server.csr -subj /CN=server.test && "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile server.ext && chmod 600 ca.key server.key",
        check=False,
    )
    s.require(
        f"test PKI created with openssl in {folder}",
        p.returncode == 0,
        (p.stdout + p.stderr)[-2000:],
    )
    return folder


def use_pki_config(s: Scenario, keyrings: tuple[str, ...] = ()) -> Path:
    """Point the daemon at a config trusting the test CA and serving ``server.test``
    (and linking ``keyrings`` into its session keyring)."""
    pki = make_pki(s)
    cfg = s.ctx.out / f"config-{s.name}.yaml"
    cfg.write_text(
        "# written by tests/kernel/guest.py for the QUIC scenarios\n"
        f"keyrings: [{', '.join(keyrings)}]\n"
        "client:\n"
        "  x509:\n"
        f"    truststore: {pki / 'ca.pem'}\n"
        "server:\n"
        "  x509:\n"
        f"    truststore: {pki / 'ca.pem'}\n"
        f"    certificate: {pki / 'server.pem'}\n"
        f"    private_key: {pki / 'server.key'}\n"
        "unix_socket:\n"
        "  enabled: false\n"
    )
    cmd = list(s.ctx.daemon_cmd)
    s.require("daemon command has '-c CONFIG'", "-c" in cmd[:-1], shlex.join(cmd))
    cmd[cmd.index("-c") + 1] = str(cfg)
    s.daemon_cmd = cmd
    return pki


def load_quic(s: Scenario) -> None:
    mods = Path(s.ctx.quic_modules or "")
    for f in ("quic.ko", "quic_sample_test.ko"):
        s.require(f"{f} present in QUICHSD_QUIC_MODULES", (mods / f).is_file(), mods / f)
    if not Path("/sys/module/quic").exists():
        run("modprobe -a udp_tunnel ip6_udp_tunnel")
        p = run(f"insmod {mods / 'quic.ko'}", check=False)
        s.require("quic.ko loaded", p.returncode == 0, (p.stdout + p.stderr).strip())


def insmod_sample(
    s: Scenario, params: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    mod = Path(s.ctx.quic_modules or "") / "quic_sample_test.ko"
    return subprocess.run(
        ["insmod", str(mod), *params], capture_output=True, text=True, timeout=timeout
    )


def expected(key: str) -> tuple[str, ...]:
    return DAEMON_LOG_EXPECT[key]


FUNCS: dict[str, Callable[[Scenario], None]] = {
    "nvme_tls_host_and_target": sc_nvme_tls_host_and_target,
    "nvme_unknown_psk_identity": sc_nvme_unknown_psk_identity,
    "concurrent_requests": sc_concurrent_requests,
    "no_daemon_then_start": sc_no_daemon_then_start,
    "daemon_restart": sc_daemon_restart,
    "timeout_honoured": sc_timeout_honoured,
    "kernel_quic_sample": sc_kernel_quic_sample,
    "kernel_quic_psk": sc_kernel_quic_psk,
    "kernel_quic_resumption": sc_kernel_quic_resumption,
}

# the worker-process scenarios live in guest_workers.py, which imports this module by the
# name "guest" (run as a script it is __main__: alias it, or it would be loaded twice)
sys.modules.setdefault("guest", sys.modules[__name__])
import guest_workers  # noqa: E402

FUNCS.update(guest_workers.FUNCS)
import guest_deb  # noqa: E402

FUNCS.update(guest_deb.FUNCS)
import guest_nfs  # noqa: E402

FUNCS.update(guest_nfs.FUNCS)


# --------------------------------------------------------------------------- main
def run_one(ctx: Ctx, name: str, results: Path, setup_error: str | None) -> str:
    say(f"=== scenario {name}")
    s = Scenario(ctx, name)
    s.kidx = ctx.kmsg.mark(f"=== scenario {name} ===")
    t = time.monotonic()
    outcome, reason = "passed", ""
    try:
        if setup_error:
            raise Abort(f"consumer setup failed: {setup_error}")
        FUNCS[name](s)
    except Skip as e:
        outcome, reason = "skipped", str(e)
    except Abort as e:
        outcome, reason = "failed", f"aborted: {e}"
    except Exception as e:  # noqa: BLE001 - any crash is a failure of this scenario
        outcome, reason = "failed", f"exception: {e!r}\n{traceback.format_exc()}"
    finally:
        try:
            s.cleanup()
        except Exception as e:  # noqa: BLE001
            s.check("daemon cleanup", False, repr(e))
    bad = [c[0] for c in s.checks if not c[1]]
    if outcome == "passed" and bad:
        outcome, reason = "failed", "failed checks: " + "; ".join(bad)
    if outcome == "passed" and not s.checks:
        outcome, reason = "failed", "no checks ran"
    ctx.kmsg.mark(f"=== end {name}: {outcome} ===")
    logs = {
        d.log_path.name: d.log_path.read_text(errors="replace")
        for d in s.daemons
        if d.log_path.exists()
    }
    rec = {
        "name": name,
        "outcome": outcome,
        "reason": reason,
        "seconds": round(time.monotonic() - t, 2),
        "checks": s.checks,
        "notes": s.notes,
        "dmesg": ctx.kmsg.since(s.kidx),
        "daemon_logs": logs,
        "daemon_ready_seconds": [d.ready_after for d in s.daemons],
    }
    with open(results, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    first = reason.splitlines()[0] if reason else ""
    say(f"=== {name}: {outcome.upper()} in {rec['seconds']}s {first}")
    return outcome


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="rwdir shared with the host")
    ap.add_argument("--daemon-cmd", required=True, help="command line that starts the daemon")
    ap.add_argument(
        "--quic-modules", default="", help="folder with quic.ko and quic_sample_test.ko"
    )
    ap.add_argument("--expect", default="", help="JSON file with daemon log substrings")
    ap.add_argument("--deb", default="", help="the quichsd .deb (scripts/build-deb.sh)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    args = ap.parse_args()
    out = Path(args.out)
    results = out / "results.jsonl"
    meta: dict[str, Any] = {
        "guest_uptime_at_start": float(Path("/proc/uptime").read_text().split()[0]),
        "kernel": os.uname().release,
    }
    say(f"guest up {meta['guest_uptime_at_start']}s, kernel {meta['kernel']}, python", sys.version)
    if args.expect:
        dev = json.loads(Path(args.expect).read_text())
        DAEMON_LOG_EXPECT.update({k: tuple(v) for k, v in dev.items()})
    kmsg = Kmsg()
    setup_error: str | None = None
    group_id = -1
    setup_log: list[str] = []
    t = time.monotonic()
    try:
        fam, groups = resolve_handshake_family()
        group_id = groups["tlshd"]
        setup_log.append(f"handshake family {fam}, groups {groups}")
        setup_nvme(setup_log)
        with open("/proc/meminfo") as fh:
            memkb = int(fh.readline().split()[1])
        setup_log.append(
            f"MemTotal {memkb} kB -> hn_pending_max ~ {max(3, min(50, memkb // 4 // 25 // 4096))}"
        )
    except Exception as e:  # noqa: BLE001
        setup_error = f"{e!r}"
    meta["setup_seconds"] = round(time.monotonic() - t, 2)
    meta["setup_log"] = setup_log
    meta["setup_error"] = setup_error
    say(f"consumer setup {meta['setup_seconds']}s: {setup_log} error={setup_error}")
    (out / "meta.json").write_text(json.dumps(meta))
    ctx = Ctx(args, kmsg, group_id)
    names = [n for n in SCENARIOS if not args.only or n in args.only.split(",")]
    outcomes = [run_one(ctx, n, results, setup_error) for n in names]
    (out / "dmesg.txt").write_text("\n".join(kmsg.since(0)) + "\n")
    return 1 if "failed" in outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
