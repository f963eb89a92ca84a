# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``deb_package_nvme_tls`` scenario (issue 13 item 7), imported by guest.py.

The host builds the Debian package (``scripts/build-deb.sh`` into ``OUT/deb``); here it is
installed with ``dpkg -i`` and its ``/usr/sbin/quichsd``, run by Debian's
``/usr/bin/python3`` on python3-pyroute2 and python3-yaml (no venv), serves the NVMe/TCP
host and target through one daemon, I/O read back (``guest.host_and_target_through``, the
flow of ``nvme_tls_host_and_target``).

The guest's root file system is the host's, read-only (9p). The package is installed
(``dpkg --unpack``, then ``dpkg --configure``: ``dpkg -i`` in two timed steps) in
a mount namespace of its own (``unshare --mount --propagation private``, held open by a
``sleep``) in which ``/usr``, ``/etc`` and ``/var/lib`` are overlayfs mounts whose upper
layers are tmpfs folders under ``/run``: dpkg writes its files, its database and the
postinst's enable symlinks there, the host's files are untouched, and all of it goes with
the namespace. The daemon runs in that namespace (``nsenter --mount``); the consumers and
the checks stay in the guest's own (netlink, keyrings and /proc are not per mount
namespace). In the overlay man-db's trigger is off (``/var/lib/man-db/auto-update``
removed), as a build chroot has it: it would index every manual page of the host, minutes
under TCG; the package's own postinst (py3compile, deb-systemd-helper) runs as on a real
install.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import guest as g
import guest_workers as gw

REPO = Path(__file__).resolve().parents[2]
#: folders overlaid in the install namespace (dpkg writes the package, its database and
#: the postinst's state there)
OVERLAID = ("/usr", "/etc", "/var/lib")
UPPER = Path("/run/quichsd-deb")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
DIST = "/usr/lib/python3/dist-packages/"
DAEMON_ARGV = ["/usr/bin/python3", "/usr/sbin/quichsd", "-s", "-c", "/etc/quichsd/config.yaml"]


def code_version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (REPO / "quichsd/__init__.py").read_text(), re.M)
    return m.group(1) if m else "?"


class MountNs:
    """A private mount namespace, held by a ``sleep`` until :meth:`close`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "3600"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        mine = os.readlink("/proc/self/ns/mnt")
        self.ready = g.wait_until(lambda: self.ns() not in ("", mine), 10, 0.05)

    def ns(self) -> str:
        try:
            return os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        except OSError:
            return ""

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "--mount", "--", *cmd]

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*cmd), capture_output=True, text=True, timeout=timeout, env=ENV
        )

    def overlay(self, path: str) -> subprocess.CompletedProcess[str]:
        top = UPPER / path.strip("/").replace("/", "_")
        (top / "upper").mkdir(parents=True)
        (top / "work").mkdir()
        opts = f"lowerdir={path},upperdir={top}/upper,workdir={top}/work"
        # xino=off first, as virtme-ng's own overlays (9p lower layer)
        p = self.run("mount", "-t", "overlay", "-o", "xino=off," + opts, "overlay", path)
        if p.returncode != 0:
            p = self.run("mount", "-t", "overlay", "-o", opts, "overlay", path)
        return p

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def output(p: subprocess.CompletedProcess[str], tail: int = 600) -> str:
    return f"rc {p.returncode}: {(p.stdout + p.stderr).strip()[-tail:]}"


def install(s: g.Scenario, ns: MountNs, deb: str, version: str) -> None:
    """Overlays, ``dpkg -i``, and what the installed package must look like."""
    for path in OVERLAID:
        p = ns.overlay(path)
        s.require(
            f"overlayfs (tmpfs upper) mounted on {path} in the namespace",
            not p.returncode,
            output(p),
        )
    p = ns.run("rm", "-f", "/var/lib/man-db/auto-update")
    s.require("man-db's trigger turned off in the overlay", not p.returncode, output(p))
    # dpkg -i in its two steps, timed apart: unpacking (dpkg reads its database of the
    # host's ~120,000 files over 9p) and configuring (the postinst: py3compile,
    # deb-systemd-helper)
    for step, arg in (("--unpack", deb), ("--configure", "quichsd")):
        t = time.monotonic()
        p = ns.run("dpkg", step, arg, timeout=300)
        secs = time.monotonic() - t
        s.require(f"dpkg {step} {Path(arg).name} succeeded", not p.returncode, output(p))
        s.note(f"dpkg {step} took {secs:.1f}s: {(p.stdout + p.stderr).strip()[-300:]}")
    p = ns.run("dpkg-query", "-W", "-f=${Status} ${Version}|${Conffiles}", "quichsd")
    status, _, conffiles = p.stdout.partition("|")
    s.check(
        f"dpkg: quichsd {version} (the code's version) installed",
        status == f"install ok installed {version}",
        output(p),
    )
    s.check(
        "dpkg: /etc/quichsd/config.yaml is a conffile",
        conffiles.split()[:1] == ["/etc/quichsd/config.yaml"],
        conffiles.strip(),
    )
    # the postinst enables the units (deb-systemd-helper) and starts nothing
    p = ns.run(
        "readlink",
        "/etc/systemd/system/remote-fs.target.wants/quichsd.service",
        "/etc/systemd/system/sockets.target.wants/quichsd.socket",
    )
    links = p.stdout.split()
    s.check(
        "postinst enabled quichsd.service (remote-fs.target) and quichsd.socket (sockets.target)",
        not p.returncode
        and len(links) == 2
        and links[0].endswith("/systemd/system/quichsd.service")
        and links[1].endswith("/systemd/system/quichsd.socket"),
        output(p),
    )
    ps = gw.quichsd_ps()
    s.check("postinst started no quichsd (no systemd as init here)", not ps, ps)
    s.check(
        "the host's file system is untouched (no /usr/sbin/quichsd outside the namespace)",
        not Path("/usr/sbin/quichsd").exists() and not Path(DIST + "quichsd").exists(),
    )


def debian_modules(s: g.Scenario, d: g.Daemon, version: str) -> None:
    """The daemon runs on Debian's python3-* packages: read off the running process (a
    second interpreter to ask would cost ~15 s of TCG). With /usr/bin/python3 and no
    PYTHON* variables its path is the system's, where only dist-packages has yaml and
    pyroute2; the yaml C loader it maps is python3-yaml's; its start line names the
    package's version."""
    try:
        maps = Path(f"/proc/{d.pid}/maps").read_text()
        env = Path(f"/proc/{d.pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError as e:
        maps, env = "", [repr(e)]
    py_env = [x for x in env if x.startswith("PYTHON")]
    s.check("the daemon's environment sets no PYTHON* variable", not py_env, py_env)
    shadows = [
        str(p)
        for base in ("/usr/local/lib", "/root/.local/lib")
        for p in Path(base).glob("python3*/*-packages/*")
        if p.name.split("-")[0].split(".")[0].lower() in ("quichsd", "yaml", "pyroute2")
    ]
    s.check(
        "no other quichsd, yaml or pyroute2 on the system python's path (/usr/local, ~/.local)",
        not shadows,
        shadows,
    )
    yaml_so = sorted({x.split()[-1] for x in maps.splitlines() if "/_yaml." in x})
    s.check(
        f"the daemon maps python3-yaml's C loader from {DIST}yaml/",
        bool(yaml_so) and all(x.startswith(DIST + "yaml/") for x in yaml_so),
        yaml_so,
    )
    s.daemon_log_has(d, (f"quichsd {version} (GnuTLS ", "running: serving kernel handshake"))


def sc_deb_package_nvme_tls(s: g.Scenario) -> None:
    deb = s.ctx.deb
    error = s.ctx.out / "deb" / "build-error.txt"
    built = bool(deb) and Path(deb).is_file()
    s.require(
        "the host built the .deb (scripts/build-deb.sh)",
        built,
        deb if built else error.read_text()[-2000:] if error.is_file() else f"no file {deb!r}",
    )
    version = code_version()
    s.check(
        f"the .deb is named for the code's version {version}",
        Path(deb).name == f"quichsd_{version}_all.deb",
        Path(deb).name,
    )
    shutil.rmtree(UPPER, ignore_errors=True)
    ns = MountNs()
    try:
        s.require("a private mount namespace for the install", ns.ready, ns.ns())
        install(s, ns, deb, version)
        s.daemon_cmd = ns.argv(*DAEMON_ARGV[1:])
        d = s.start_daemon()
        try:
            argv = Path(f"/proc/{d.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            exe = os.readlink(f"/proc/{d.pid}/exe")
            mnt = os.readlink(f"/proc/{d.pid}/ns/mnt")
        except OSError as e:
            argv, exe, mnt = [], repr(e), ""
        s.check(
            "the daemon is the package's /usr/sbin/quichsd run by /usr/bin/python3",
            argv == DAEMON_ARGV and exe.startswith("/usr/bin/python3"),
            f"argv {argv}, exe {exe}",
        )
        s.check("the daemon runs in the install namespace", mnt == ns.ns(), mnt)
        debian_modules(s, d, version)
        g.host_and_target_through(s, d, hmacs=(2,), mib=1)
    finally:
        for d in s.daemons:
            d.stop()
        ns.close()
        shutil.rmtree(UPPER, ignore_errors=True)
    s.check(
        "after the namespace is gone: no quichsd installed on the host",
        not Path("/usr/sbin/quichsd").exists()
        and subprocess.run(["dpkg-query", "-W", "quichsd"], capture_output=True).returncode != 0,
    )


FUNCS: dict[str, Callable[[g.Scenario], None]] = {
    "deb_package_nvme_tls": sc_deb_package_nvme_tls,
}
