# SPDX-License-Identifier: GPL-2.0-or-later
"""NFS-over-TLS scenarios of the VM tier; run by guest.py.

The guest's own nfsd exports a tmpfs (``fsid=0``: the NFSv4 root, mounted as
``127.0.0.1:/``) and the guest's NFS client mounts it with ``vers=4.2,xprtsec=tls``
(``nfs_tls``) and then ``xprtsec=mtls`` (``nfs_mtls``).  ONE quichsd is the handshake
agent of both ends: the client's transport asks for a CLIENTHELLO (``tls``: anonymous,
the server verified against the peer name the kernel passes, the mount's server address
``127.0.0.1``; ``mtls``: x509, the daemon presents ``client.x509.certificate`` because
the kernel passes no certificate serial), and nfsd asks for a SERVERHELLO when the client
sends its RPC-with-TLS probe (the daemon presents ``server.x509.certificate`` and asks
for a client certificate, as tlshd does).  The certificates come from tests/pki.py: the
server's has the IP address SAN 127.0.0.1.

Userspace comes from the host's nfs-kernel-server / nfs-common (tests/kernel/setup.sh):
rpcbind, nfsdcld (so that nfsd skips its NFSv4 grace period), rpc.nfsd (v4 only),
exportfs, rpc.mountd (answers the kernel's export upcalls, needed for v4 too);
``/var/lib/nfs`` is a tmpfs in the guest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import guest as g

REPO = Path(__file__).resolve().parents[2]
NFS_ROOT = Path("/run/quichsd-nfs")  # guest tmpfs
EXPORT = NFS_ROOT / "export"
MNT = NFS_ROOT / "mnt"
PKI = NFS_ROOT / "pki"
VARLIB = Path("/var/lib/nfs")
PIPEFS = VARLIB / "rpc_pipefs"
#: the export's options; ``xprtsec=`` only when this nfs-utils knows it (see setup())
EXPORT_OPTS = "rw,no_root_squash,insecure,no_subtree_check,fsid=0"
XPRTSEC = "xprtsec=tls:mtls"
DATA_MIB = 1
TRACEFS = Path("/sys/kernel/tracing")
#: handshake_complete is the kernel's DONE for a request (status as the consumer sees it)
TRACE_EVENTS = (
    "handshake/handshake_complete",
    "handshake/handshake_cmd_done",
    "sunrpc/svc_tls_start",
    "sunrpc/svc_tls_upcall",
    "sunrpc/svc_tls_unavailable",
    "sunrpc/svc_tls_not_started",
    "sunrpc/svc_tls_timed_out",
    "sunrpc/rpc_tls_unavailable",
    "sunrpc/rpc_tls_not_started",
)
RE_COMPLETE = re.compile(r"handshake_complete: .*status=(-?\d+)")
#: kprobes on the consumers' ``ta_done`` callbacks (x86-64: 2nd argument in %si, 3rd in
#: %dx): the status and peer id (REMOTE_AUTH's first serial; 0 = TLS_NO_PEERID) each end
#: got.  nfsd sets XPT_PEER_AUTH, what an mtls-only export checks, iff the peer id is not 0.
KPROBE_GROUP = "quichsd_nfs"
KPROBES = {
    "svc_done": "svc_tcp_handshake_done",  # nfsd (net/sunrpc/svcsock.c)
    "xs_done": "xs_tls_handshake_done",  # the NFS client's transport (net/sunrpc/xprtsock.c)
}
RE_KPROBE = re.compile(r" (svc_done|xs_done): \([^)]*\) status=(-?\d+) peerid=(\d+)")
#: /proc/keys: a peer certificate the daemon made a kernel key (quichsd/peerkeys.py),
#: described by the peer name (client) or the client's address (server): both 127.0.0.1
RE_PEER_KEY = re.compile(r"TLS x509 127\.0\.0\.1: X509\.")


class NfsServer:
    """The guest's nfsd and its helpers, set up once per boot by the first scenario."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.error: str | None = None
        self.ready = False
        self.xprtsec_export = False
        self.exportfs_xprtsec_msg = ""

    def spawn(self, s: g.Scenario, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(s.ctx.out / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.procs.append(p)
        s.note(f"started {' '.join(argv)} (pid {p.pid}, log {name}.log)")
        return p

    def setup(self, s: g.Scenario) -> None:
        if self.ready:
            return
        if self.error:
            raise g.Abort(f"nfsd set-up failed in an earlier scenario: {self.error}")
        try:
            self._setup(s)
            self.ready = True
        except g.Abort as e:
            self.error = str(e)
            raise

    def _setup(self, s: g.Scenario) -> None:
        t = time.monotonic()
        for tool in ("rpc.nfsd", "exportfs", "rpc.mountd", "mount.nfs", "nfsdcld", "rpcbind"):
            s.require(
                f"{tool} installed on the host (tests/kernel/setup.sh)",
                any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin")),
            )
        p = g.run("modprobe -a sunrpc nfsd nfsv4", check=False)
        s.require("modprobe sunrpc nfsd nfsv4", p.returncode == 0, (p.stdout + p.stderr).strip())
        for d in (EXPORT, MNT, PKI):
            d.mkdir(parents=True, exist_ok=True)
        g.run(f"mount -t tmpfs -o size=64m quichsd-nfs-export {EXPORT}")
        # a clean /var/lib/nfs (etab, rmtab, nfsdcld's db): virtme-ng's /var is an overlay
        # of the host's, whose NFS state has no place in the guest
        g.run(f"mount -t tmpfs -o mode=0755 quichsd-varlib-nfs {VARLIB}")
        for sub in ("rpc_pipefs", "nfsdcld", "v4recovery", "sm", "sm.bak"):
            (VARLIB / sub).mkdir()
        for f in ("etab", "rmtab"):
            (VARLIB / f).write_text("")
        g.run(f"mount -t rpc_pipefs sunrpc {PIPEFS}")
        if not os.path.ismount("/proc/fs/nfsd"):
            g.run("mount -t nfsd nfsd /proc/fs/nfsd")
        # a 10 s lease and grace period at most (the defaults are 90 s)
        for knob in ("nfsv4leasetime", "nfsv4gracetime"):
            with contextlib.suppress(OSError):
                Path("/proc/fs/nfsd", knob).write_text("10")
        self.spawn(s, "rpcbind", ["rpcbind", "-f", "-w"])
        # nfsdcld before nfsd: with its (empty) database nfsd skips the grace period
        self.spawn(
            s, "nfsdcld", ["nfsdcld", "-F", "-p", str(PIPEFS), "-s", str(VARLIB / "nfsdcld")]
        )
        g.wait_until(lambda: Path("/run/rpcbind.sock").exists(), 10)
        time.sleep(0.5)
        p = g.run("rpc.nfsd --no-udp -N 3 -V 4.2 4", check=False, timeout=60)
        s.require(
            "rpc.nfsd --no-udp -N 3 -V 4.2 4", p.returncode == 0, (p.stdout + p.stderr).strip()
        )
        s.note(f"/proc/fs/nfsd/versions: {Path('/proc/fs/nfsd/versions').read_text().strip()}")
        s.note(f"/proc/fs/nfsd/portlist: {Path('/proc/fs/nfsd/portlist').read_text().strip()!r}")
        p = g.run(f"exportfs -o {EXPORT_OPTS},{XPRTSEC} 127.0.0.1:{EXPORT}", check=False)
        self.exportfs_xprtsec_msg = (p.stdout + p.stderr).strip()
        s.note(f"exportfs with {XPRTSEC}: rc {p.returncode}: {self.exportfs_xprtsec_msg!r}")
        self.xprtsec_export = p.returncode == 0 and not self.exportfs_xprtsec_msg
        if not self.xprtsec_export:
            g.run("exportfs -ua", check=False)
            p = g.run(f"exportfs -o {EXPORT_OPTS} 127.0.0.1:{EXPORT}", check=False)
            s.require(
                f"exportfs -o {EXPORT_OPTS} 127.0.0.1:{EXPORT}",
                p.returncode == 0,
                (p.stdout + p.stderr).strip(),
            )
        s.note(f"exportfs -v: {g.run('exportfs -v', check=False).stdout.strip()!r}")
        self.spawn(s, "mountd", ["rpc.mountd", "-F"])
        time.sleep(0.5)
        s.check(
            "rpcbind, nfsdcld and rpc.mountd are running",
            all(p.poll() is None for p in self.procs),
            [(p.args, p.poll()) for p in self.procs],
        )
        s.note(f"nfsd set up in {time.monotonic() - t:.1f}s")


SERVER = NfsServer()
#: a further step of a scenario, run with its daemon and trace
Then = Callable[[g.Scenario, g.Daemon, "Trace"], None]


def make_certs(s: g.Scenario) -> dict[str, Path]:
    """CA, server (SANs server.test, localhost, 127.0.0.1; serverAuth) and client
    (client.test; clientAuth) from tests/pki.py, as PEM files in the guest's tmpfs."""
    paths = {n: PKI / f"{n}.pem" for n in ("ca", "server", "client")}
    paths |= {f"{n}_key": PKI / f"{n}.key" for n in ("server", "client")}
    if all(p.exists() for p in paths.values()):
        return paths
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests import pki  # cryptography: only this scenario pays its import

    ca = pki.issue("quichsd nfs test CA", ca=True)
    issued = {
        "server": pki.issue("server.test", ca, sans=pki.SERVER_NAMES, eku="server"),
        "client": pki.issue("client.test", ca, sans=("client.test",), eku="client"),
    }
    paths["ca"].write_bytes(ca.cert_pem)
    for name, it in issued.items():
        paths[name].write_bytes(it.cert_pem)
        fd = os.open(paths[f"{name}_key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(it.key_pem)
    return paths


def use_nfs_config(s: g.Scenario, client_certificate: str = "socket") -> None:
    """Run the daemon with a config trusting the test CA on both sides, presenting the
    server certificate as nfsd's agent and the client certificate as the NFS client's
    (x509 requests only); ``client_certificate``: server.client_certificate."""
    c = make_certs(s)
    cfg = s.ctx.out / f"config-{s.name}.yaml"
    cfg.write_text(
        "# written by tests/kernel/guest_nfs.py\n"
        "client:\n"
        "  x509:\n"
        f"    truststore: {c['ca']}\n"
        f"    certificate: {c['client']}\n"
        f"    private_key: {c['client_key']}\n"
        "server:\n"
        "  x509:\n"
        f"    truststore: {c['ca']}\n"
        f"    certificate: {c['server']}\n"
        f"    private_key: {c['server_key']}\n"
        f"  client_certificate: {client_certificate}\n"
        "unix_socket:\n"
        "  enabled: false\n"
    )
    cmd = list(s.daemon_cmd)
    s.require("daemon command has '-c CONFIG'", "-c" in cmd[:-1], " ".join(cmd))
    cmd[cmd.index("-c") + 1] = str(cfg)
    s.daemon_cmd = cmd


class Trace:
    """ftrace of the handshake and sunrpc TLS tracepoints while a scenario runs."""

    def __init__(self, s: g.Scenario) -> None:
        if not (TRACEFS / "events").is_dir():
            g.run(f"mount -t tracefs nodev {TRACEFS}", check=False)
        (TRACEFS / "trace").write_text("")
        self.kprobes = TRACEFS / "events" / KPROBE_GROUP
        errors = []
        for name, func in KPROBES.items():
            if (self.kprobes / name).is_dir():
                continue
            for probe in (
                f"p:{KPROBE_GROUP}/{name} sunrpc:{func} status=%si:s32 peerid=%dx:u32",
                f"p:{KPROBE_GROUP}/{name} {func} status=%si:s32 peerid=%dx:u32",
                f"p:{KPROBE_GROUP}/{name} {func} status=$arg2:s32 peerid=$arg3:u32",
                f"f:{KPROBE_GROUP}/{name} {func} status=$arg2:s32 peerid=$arg3:u32",
            ):
                ev = "dynamic_events" if probe.startswith("f:") else "kprobe_events"
                fd = os.open(TRACEFS / ev, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, (probe + "\n").encode())
                    break
                except OSError as e:
                    log = (TRACEFS / "error_log").read_text(errors="replace").strip()
                    errors.append(f"{probe!r}: {e}; error_log: {log[-300:]}")
                finally:
                    os.close(fd)
        s.require(
            "kprobes on svc_tcp_handshake_done and xs_tls_handshake_done (the status and "
            "peer id each consumer's ta_done got)",
            all((self.kprobes / n / "enable").exists() for n in KPROBES),
            errors or (TRACEFS / "kprobe_events").read_text().strip(),
        )
        (self.kprobes / "enable").write_text("1")
        self.enabled = []
        for e in TRACE_EVENTS:
            f = TRACEFS / "events" / e / "enable"
            if f.exists():
                f.write_text("1")
                self.enabled.append(e)
        (TRACEFS / "tracing_on").write_text("1")
        missing = sorted(set(TRACE_EVENTS) - set(self.enabled))
        s.note(f"tracepoints enabled: {self.enabled}; absent: {missing}")

    def lines(self) -> list[str]:
        text = (TRACEFS / "trace").read_text(errors="replace")
        return [x for x in text.splitlines() if x and not x.startswith("#")]

    def close(self, s: g.Scenario) -> list[str]:
        lines = self.lines()
        (s.ctx.out / f"trace-{s.name}.txt").write_text("\n".join(lines) + "\n")
        for e in self.enabled:
            with contextlib.suppress(OSError):
                (TRACEFS / "events" / e / "enable").write_text("0")
        with contextlib.suppress(OSError):
            (self.kprobes / "enable").write_text("0")
        return lines

    def done_calls(self) -> list[tuple[str, int, int]]:
        """(``svc_done`` or ``xs_done``, status, peer id) of each consumer callback."""
        return [
            (m.group(1), int(m.group(2)), int(m.group(3)))
            for x in self.lines()
            if (m := RE_KPROBE.search(x))
        ]


def completions(tr: Trace) -> list[int]:
    return [int(m.group(1)) for x in tr.lines() if (m := RE_COMPLETE.search(x))]


def mount(s: g.Scenario, xprtsec: str) -> tuple[bool, float]:
    opts = f"vers=4.2,xprtsec={xprtsec}"
    t = time.monotonic()
    p = g.run(f"mount -t nfs -o {opts} 127.0.0.1:/ {MNT}", check=False, timeout=120)
    secs = time.monotonic() - t
    ok = s.check(
        f"mount -t nfs -o {opts} 127.0.0.1:/ {MNT} succeeded",
        p.returncode == 0,
        f"rc {p.returncode} after {secs:.1f}s {(p.stdout + p.stderr).strip()}",
    )
    if ok:
        line = next((x for x in Path("/proc/mounts").read_text().splitlines() if str(MNT) in x), "")
        s.check(
            f"/proc/mounts shows the mount with xprtsec={xprtsec}",
            f"xprtsec={xprtsec}" in line,
            line,
        )
    return ok, secs


def umount(s: g.Scenario) -> None:
    p = g.run(f"umount {MNT}", check=False, timeout=60)
    s.check(f"umount {MNT}", p.returncode == 0, (p.stdout + p.stderr).strip())


def keys_matching(rx: re.Pattern[str]) -> list[str]:
    return [x for x in Path("/proc/keys").read_text().splitlines() if rx.search(x)]


def nfs_round_trip(
    s: g.Scenario, xprtsec: str, client_certificate: str = "socket", then: Then | None = None
) -> None:
    """Mount with ``xprtsec``, write a file, umount, mount again, read it back; both ends'
    handshakes done by the one daemon, status 0, the sockets in kTLS; then ``then``."""
    SERVER.setup(s)
    use_nfs_config(s, client_certificate)
    tr = Trace(s)
    try:
        d = s.start_daemon()
        before = g.tls_stat()
        ok, secs = mount(s, xprtsec)
        if not ok:
            raise g.Abort(f"mount with xprtsec={xprtsec} failed")
        now = g.tls_stat()
        s.check(
            "the client's and nfsd's sockets are in kTLS (/proc/net/tls_stat TlsTxSw/TlsRxSw "
            "+2 or more)",
            all(now.get(k, 0) - before.get(k, 0) >= 2 for k in ("TlsTxSw", "TlsRxSw")),
            f"before {before}, after {now}",
        )
        data = os.urandom(DATA_MIB << 20)
        want = hashlib.sha256(data).hexdigest()
        path = MNT / f"data-{xprtsec}.bin"
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umount(s)
        on_server = hashlib.sha256((EXPORT / path.name).read_bytes()).hexdigest()
        s.check(
            f"{DATA_MIB} MiB written through the mount reached the export intact",
            on_server == want,
            f"sha256 written {want[:16]}, in the export {on_server[:16]}",
        )
        ok, _ = mount(s, xprtsec)
        if ok:
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("3\n")
            back = hashlib.sha256(path.read_bytes()).hexdigest()
            s.check(
                f"{DATA_MIB} MiB read back identically through a fresh mount",
                back == want,
                f"sha256 written {want[:16]}, read back {back[:16]}",
            )
            umount(s)
        statuses = completions(tr)
        s.check(
            "the kernel completed every handshake request with status 0 "
            "(handshake_complete tracepoint: client and nfsd, 2 or more)",
            len(statuses) >= 2 and all(x == 0 for x in statuses),
            f"statuses {statuses}",
        )
        auth = "UNAUTH" if xprtsec == "tls" else "X509"
        s.daemon_log_has(d, (f"(CLIENTHELLO, {auth}) done: status 0 ", "kTLS"), count=1)
        s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "kTLS"), count=1)
        s.daemon_log_has(d, ("handshake for 127.0.0.1:2049 (CLIENTHELLO,",), count=1)
        calls = tr.done_calls()
        svc = [(st, pid) for name, st, pid in calls if name == "svc_done"]
        xs = [(st, pid) for name, st, pid in calls if name == "xs_done"]
        s.check(
            "the NFS client's ta_done got status 0 and a peer id (nfsd's certificate as a "
            "kernel key) for each of its 2+ handshakes",
            len(xs) >= 2 and all(st == 0 and pid != 0 for st, pid in xs),
            f"xs_tls_handshake_done (status, peerid): {xs}",
        )
        if xprtsec == "mtls":
            want = "a peer id (the client's certificate): XPT_PEER_AUTH"
            ok = all(st == 0 and pid != 0 for st, pid in svc)
        else:
            want = "no peer id (TLS_NO_PEERID: the anonymous client sent no certificate)"
            ok = all(st == 0 and pid == 0 for st, pid in svc)
        s.check(
            f"nfsd's ta_done got status 0 and {want} for each of its 2+ handshakes",
            len(svc) >= 2 and ok,
            f"svc_tcp_handshake_done (status, peerid): {svc}",
        )
        serials = {pid for _, pid in svc + xs if pid}
        live = {int(x.split()[0], 16) for x in keys_matching(RE_PEER_KEY)}
        s.note(f"peer ids {sorted(serials)}; 'TLS x509 127.0.0.1' keys now {sorted(live)}")
        text = d.log()
        s.check("no traceback in the daemon log", "Traceback" not in text)
        s.no_handshake_fds(d, "after the mounts")
        s.note(f"first mount took {secs:.1f}s")
        if then is not None:
            then(s, d, tr)
    finally:
        with contextlib.suppress(Exception):
            if os.path.ismount(MNT):
                g.run(f"umount -f {MNT}", check=False)
        lines = tr.close(s)
        s.note(f"{len(lines)} trace lines (trace-{s.name}.txt)")


def sc_nfs_tls(s: g.Scenario) -> None:
    nfs_round_trip(s, "tls")


def tls_mount_refused(s: g.Scenario, d: g.Daemon, tr: Trace) -> None:
    """The daemon requires client certificates (server.client_certificate: require): an
    ``xprtsec=tls`` mount (no client certificate) is refused by nfsd's side, each refusal
    one completion line with the reason, and the daemon keeps serving."""
    before = len(tr.done_calls())
    lines_before = len(d.log().splitlines())
    opts = "vers=4.2,xprtsec=tls,soft,timeo=30,retrans=1,retry=0"
    t = time.monotonic()
    p = g.run(
        f"timeout -s KILL 30 mount -t nfs -o {opts} 127.0.0.1:/ {MNT}", check=False, timeout=60
    )
    secs = time.monotonic() - t
    s.check(
        f"mount -o {opts} failed (nfsd's agent requires a client certificate)",
        p.returncode != 0 and not os.path.ismount(MNT),
        f"rc {p.returncode} after {secs:.1f}s {(p.stdout + p.stderr).strip()}",
    )
    svc = [(st, pid) for name, st, pid in tr.done_calls()[before:] if name == "svc_done"]
    s.check(
        "nfsd's ta_done got EACCES (-13) for the client without a certificate",
        bool(svc) and all(st == -13 for st, _ in svc),
        f"svc_tcp_handshake_done (status, peerid): {svc}",
    )
    new = d.log().splitlines()[lines_before:]
    refused = [x for x in new if "(SERVERHELLO, X509) done: status 13 " in x]
    s.check(
        "one completion line per refused handshake, naming the client and the reason",
        len(refused) == len(svc) and all("handshake for 127.0.0.1:" in x for x in refused),
        refused[:4],
    )
    s.note(f"refused tls mount: {secs:.1f}s, {len(svc)} nfsd handshakes; {refused[:1]}")
    s.check("the daemon is still running", d.alive())
    ok, _ = mount(s, "mtls")  # and serving: the next mount with a certificate works
    if ok:
        umount(s)


def sc_nfs_mtls(s: g.Scenario) -> None:
    nfs_round_trip(s, "mtls", client_certificate="require", then=tls_mount_refused)


FUNCS: dict[str, Callable[[g.Scenario], None]] = {
    "nfs_tls": sc_nfs_tls,
    "nfs_mtls": sc_nfs_mtls,
}
