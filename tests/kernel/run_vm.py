#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the real-kernel VM tier: one virtme-ng boot of Debian's 6.12 kernel, all scenarios.

Host side, stdlib only.  Steps:

1. ``tests/kernel/setup.sh`` (idempotent; installs qemu, udev, busybox-static,
   keyutils, kmod, a virtme-ng venv and the unpacked kernel into the cache).
2. ``timeout ... vng --disable-kvm --force-9p --verbose --run VMLINUZ --rwdir OUT
   --exec 'sh OUT/guest-cmd.sh'`` in its own process group, from ``/``; the whole
   group is killed on timeout and any qemu left behind by this run is killed by pid
   afterwards.  The guest command lives in a file so that the kernel command line
   stays short whatever the checkout's path (the kernel truncates it at 2048 bytes,
   and a truncated ``init=`` or ``virtme.exec=`` makes the guest power off silently);
   a ``--dry-run`` first checks its length.  ``--verbose`` sends the kernel console to
   the runner, which keeps it in ``OUT/console-N.txt`` (N = boot attempt).
   Before the boot, ``scripts/build-deb.sh OUT/deb`` builds the Debian package that the
   ``deb_package_nvme_tls`` scenario installs in the guest.
3. Reads ``OUT/results.jsonl`` written by ``guest.py`` and prints one line per
   scenario; for a failed scenario also its checks, the guest dmesg of that
   scenario and the daemon log(s).  A boot that produced no result at all (the
   guest died before the first scenario, not a timeout) is diagnosed from the
   console and tried once more; the report names the first attempt's failure.

Exit status: 0 when every scenario passed or was skipped for a stated reason,
1 when a scenario failed or produced no result, 2 when the VM could not run.

Environment: ``QUICHSD_VM_CACHE`` (cache folder, default /var/cache/quichsd-vm),
``QUICHSD_QUIC_MODULES`` (folder with quic.ko and quic_sample_test.ko; enables the
QUIC scenarios), ``QUICHSD_VM_TIMEOUT`` (seconds for the whole VM,
default 1500: the NFS and Debian-package scenarios took 870 s on a loaded 2-core host).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GUEST = HERE / "guest.py"
SETUP = HERE / "setup.sh"
sys.path.insert(0, str(HERE))
from guest import SCENARIOS  # noqa: E402  (stdlib only; one list for host and guest)

DEFAULT_TIMEOUT = 1500
#: x86 COMMAND_LINE_SIZE is 2048; keep a margin for what virtme adds at boot
CMDLINE_LIMIT = 2000
#: boots tried when a boot produced no result at all (never after a timeout)
BOOT_ATTEMPTS = 2
KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] ")


class VMError(RuntimeError):
    """The VM could not be set up, booted, or did not produce results."""


@dataclass
class TierResult:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    rc: int | None = None
    wall: float = 0.0
    boot_seconds: float | None = None
    out: Path = Path()
    console: str = ""
    error: str | None = None
    attempts: list[str] = field(default_factory=list)

    def failed(self) -> list[str]:
        return [
            n
            for n in SCENARIOS
            if self.results.get(n, {}).get("outcome") not in ("passed", "skipped")
        ]


def cache_dir() -> Path:
    return Path(os.environ.get("QUICHSD_VM_CACHE", "/var/cache/quichsd-vm"))


def find_python(need_quichsd: bool = True) -> Path:
    """The interpreter of the venv quichsd is installed in (guest runs the same path)."""
    env = os.environ.get("QUICHSD_VM_PYTHON")
    cands = [Path(env)] if env else []
    cands += [REPO / ".venv" / "bin" / "python", Path(sys.executable)]
    for c in cands:
        if c.is_file() and (not need_quichsd or (c.parent / "quichsd").is_file()):
            return c
    raise VMError(
        "no Python with the quichsd console script found (looked at "
        + ", ".join(str(c) for c in cands)
        + "); run `pip install -e .` into the repo venv"
    )


def run_setup(log: list[str]) -> Path:
    if os.geteuid() != 0:
        raise VMError("the VM tier must run as root (apt-get, /dev/nvme-fabrics in the guest)")
    t = time.monotonic()
    p = subprocess.run(["sh", str(SETUP)], capture_output=True, text=True, timeout=900)
    log.append(f"setup.sh rc={p.returncode} in {time.monotonic() - t:.1f}s")
    if p.returncode != 0:
        raise VMError(f"tests/kernel/setup.sh failed (rc {p.returncode}):\n{p.stderr[-4000:]}")
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if not last.startswith("kernel: "):
        raise VMError(f"setup.sh printed no kernel path: {p.stdout[-2000:]}")
    vmlinuz = Path(last.split(" ", 1)[1])
    if not vmlinuz.is_file():
        raise VMError(f"kernel image {vmlinuz} missing")
    return vmlinuz


#: the guest scenario that installs the Debian package the host builds first
DEB_SCENARIO = "deb_package_nvme_tls"


def build_deb(out: Path, log: list[str]) -> str:
    """``scripts/build-deb.sh OUT/deb``: the .deb's path for the guest, or "" with the
    reason in ``OUT/deb/build-error.txt`` (that scenario then fails with it)."""
    folder = out / "deb"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    t = time.monotonic()
    try:
        p = subprocess.run(
            ["sh", str(REPO / "scripts" / "build-deb.sh"), str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired as e:
        (folder / "build-error.txt").write_text(f"scripts/build-deb.sh timed out: {e}")
        return ""
    log.append(f"build-deb.sh rc={p.returncode} in {time.monotonic() - t:.1f}s")
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines and Path(lines[-1]).is_file():
        return lines[-1]
    (folder / "build-error.txt").write_text(
        f"scripts/build-deb.sh failed (rc {p.returncode}):\n{p.stdout[-1500:]}{p.stderr[-3000:]}"
    )
    return ""


def precompile(py: Path, dirs: list[Path], log: list[str]) -> None:
    """Write the bytecode caches of ``dirs`` on the host. The guest sees the checkout
    read-only, so without them every daemon (and worker) start in the guest compiles
    quichsd's modules from source under TCG (with PYTHONDONTWRITEBYTECODE set on the
    host, as on the project's machines, none are ever written): measured 2026-12-03,
    a daemon joined ``tlshd`` 45-85 s after its start, and once not within the 90 s
    the scenarios allow; see tests/kernel/README.md."""
    t = time.monotonic()
    cmd = [str(py), "-m", "compileall", "-q", *(str(d) for d in dirs)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log.append(f"compileall rc={p.returncode} in {time.monotonic() - t:.1f}s")
    if p.returncode != 0:  # a module that does not compile fails in the guest, with its name
        log.append((p.stdout + p.stderr).strip()[-2000:])


def kill_leftovers(marker: str) -> list[int]:
    """Kill (by pid) processes of this run still alive: their cmdline names our rwdir."""
    killed = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            cmd = (
                Path(f"/proc/{d}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if marker in cmd and ("qemu" in cmd or "vng" in cmd or "virtme" in cmd):
            try:
                os.kill(int(d), signal.SIGKILL)
                killed.append(int(d))
            except ProcessLookupError:
                pass
    return killed


#: host paths that the virtme-ng guest covers with its own tmpfs (seen in 1.42)
GUEST_TMPFS = (
    "/var/cache",
    "/var/tmp",
    "/var/log",
    "/var/lib/private",
    "/var/lib/apt",
    "/run",
    "/dev/shm",
)


def hidden_in_guest(p: Path) -> bool:
    s = str(p.resolve())
    return any(s == h or s.startswith(h + "/") for h in GUEST_TMPFS)


def vng_command(vmlinuz: Path, out: Path, rodirs: list[Path]) -> tuple[list[str], dict[str, str]]:
    """The vng argv (without ``--exec``) and its environment."""
    venv_bin = cache_dir() / "venv" / "bin"
    vng = venv_bin / "vng"
    if not vng.is_file():
        raise VMError(f"{vng} missing; setup.sh did not install virtme-ng")
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    cmd = [
        str(vng),
        "--disable-kvm",
        "--force-9p",
        "--verbose",
        "--run",
        str(vmlinuz),
        "--memory",
        "4G",
        "--cpus",
        "2",
        # one host thread runs both vCPUs: with multi-threaded TCG a vCPU can run a stale
        # translation of kernel text that another vCPU is patching (jump labels, static
        # calls), hits the int3 of text_poke_bp after it was lifted, and the guest dies
        # in "Oops: int3" (seen at boot and on the first TCP connect)
        "--qemu-opts=-accel tcg,thread=single",
        "--rwdir",
        str(out),
    ]
    for d in rodirs:
        if hidden_in_guest(d):
            cmd += ["--rodir", str(d.resolve())]
    return cmd, env


def kernel_cmdline(cmd: list[str], env: dict[str, str], exec_cmd: str) -> str | None:
    """The kernel command line vng would boot with (``--dry-run``); None if unreadable."""
    try:
        p = subprocess.run(
            [*cmd, "--dry-run", "--exec", exec_cmd],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (p.stdout + p.stderr).splitlines():
        if "qemu-system" in line and "-append" in line:
            try:
                argv = shlex.split(line)
            except ValueError:
                return None
            if "-append" in argv[:-1]:
                return argv[argv.index("-append") + 1]
    return None


def host_facts() -> str:
    """What on the host could stop a VM silently (memory and task limits), for reports."""
    facts = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrl, path = line.split(":", 2)
            for c, files in (
                ("memory", ("memory.limit_in_bytes", "memory.max")),
                ("pids", ("pids.max",)),
            ):
                if c in ctrl.split(",") or (ctrl == "" and c == "memory"):
                    base = Path("/sys/fs/cgroup") / (c if ctrl else "") / path.lstrip("/")
                    for f in files:
                        if (base / f).is_file():
                            facts.append(f"{f}={(base / f).read_text().strip()}")
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    facts.append(f"RLIMIT_AS={'unlimited' if soft == resource.RLIM_INFINITY else soft}")
    try:
        mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        facts.append(f"MemAvailable={mem.get('MemAvailable', '?').strip()}")
    except (OSError, ValueError):
        pass
    return ", ".join(facts)


def diagnose(console: str) -> str:
    """Why a boot produced no result, read off the kernel console (vng --verbose)."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if "Kernel panic" in line:
            return "guest kernel panic: " + " | ".join(x.strip() for x in lines[i : i + 3])
    init = [x for x in lines if "virtme-init:" in x or "virtme initramfs:" in x]
    if any("reboot: Power down" in x for x in lines):
        return "the guest powered off before any scenario ran; last init lines: " + (
            " | ".join(x.strip() for x in init[-3:]) or "none"
        )
    if not any(KERNEL_LINE.match(x) for x in lines):
        return "qemu printed no kernel output at all (it did not start, or died at once)"
    return (
        "the console stops without a panic or a power-down: qemu ended from outside "
        f"(killed?); last line: {lines[-1].strip() if lines else ''!r}"
    )


def boot(
    vmlinuz: Path, out: Path, guest_cmd: str, timeout: int, echo: bool, rodirs: list[Path]
) -> tuple[int, str, float]:
    """Run the guest command under vng; return (rc, console text, wall seconds).

    ``rodirs``: host folders the guest must see although its tmpfs mounts hide them.
    The guest command goes to ``OUT/guest-cmd.sh`` (see the module docstring).
    """
    cmd, env = vng_command(vmlinuz, out, rodirs)
    script = out / "guest-cmd.sh"
    script.write_text(f"exec {guest_cmd}\n")
    exec_cmd = shlex.join(["sh", str(script)])
    append = kernel_cmdline(cmd, env, exec_cmd)
    if append is not None and len(append) > CMDLINE_LIMIT:
        raise VMError(
            f"the kernel command line would be {len(append)} bytes (the kernel keeps 2048): "
            f"shorten the paths of the checkout or of --out; it was: {append}"
        )
    cmd = ["timeout", "--kill-after=15", str(timeout), *cmd, "--exec", exec_cmd]
    t0 = time.monotonic()
    console: list[str] = []
    proc = subprocess.Popen(
        cmd,
        cwd="/",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            console.append(line)
            if echo and not KERNEL_LINE.match(line):
                print(f"vm| {line}", end="", flush=True)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    try:
        rc = proc.wait(timeout + 30)
    except subprocess.TimeoutExpired:
        rc = -9
    finally:
        # the process group (timeout -> vng -> qemu) must not outlive us
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        th.join(5)
        left = kill_leftovers(str(out))
        if left:
            console.append(f"run_vm: killed leftover VM processes {left}\n")
    return rc, "".join(console), time.monotonic() - t0


def read_results(out: Path, res: TierResult) -> None:
    rfile = out / "results.jsonl"
    if rfile.exists():
        for line in rfile.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                res.results[rec["name"]] = rec
    mfile = out / "meta.json"
    if mfile.exists():
        res.meta = json.loads(mfile.read_text())
        res.boot_seconds = res.meta.get("guest_uptime_at_start")


def clear_guest_output(out: Path) -> None:
    """Remove what a failed boot's guest may have written (not the config, not consoles)."""
    for f in out.glob("*"):
        if f.is_file() and f.name != "config.yaml" and not f.name.startswith("console-"):
            f.unlink()


def run_tier(
    out: Path | None = None,
    only: list[str] | None = None,
    echo: bool = False,
    timeout: int | None = None,
    daemon_cmd: str | None = None,
    expect: Path | None = None,
) -> TierResult:
    t0 = time.monotonic()
    res = TierResult()
    log: list[str] = []
    try:
        vmlinuz = run_setup(log)
        py = find_python(need_quichsd=daemon_cmd is None)
        precompile(py, [REPO / "quichsd", HERE], log)
        out = Path(out) if out else Path(tempfile.mkdtemp(prefix="quichsd-vm-"))
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o777)
        for f in out.glob("*"):
            if f.is_file():
                f.unlink()
        res.out = out
        config = out / "config.yaml"
        repo_cfg = REPO / "etc" / "quichsd" / "config.yaml"
        if repo_cfg.is_file():
            config.write_text(repo_cfg.read_text())
        if daemon_cmd is None:
            daemon_cmd = shlex.join([str(py.parent / "quichsd"), "-s", "-c", str(config)])
        else:
            print(
                f"run_vm: WARNING: daemon replaced by {daemon_cmd!r} (tier development only)",
                flush=True,
            )
        quic = os.environ.get("QUICHSD_QUIC_MODULES", "")
        args = [
            str(py),
            "-X",
            "faulthandler",
            str(GUEST),
            "--out",
            str(out),
            "--daemon-cmd",
            daemon_cmd,
        ]
        if quic:
            args += ["--quic-modules", str(Path(quic).resolve())]
        if only:
            args += ["--only", ",".join(only)]
        if expect:
            args += ["--expect", str(Path(expect).resolve())]
        if not only or DEB_SCENARIO in only:
            args += ["--deb", build_deb(out, log)]
        guest_cmd = shlex.join(args)
        tmo = timeout or int(os.environ.get("QUICHSD_VM_TIMEOUT", DEFAULT_TIMEOUT))
        # the unpacked kernel tree (modules) lives in the cache, under /var/cache by default
        rodirs = [vmlinuz.parents[1], REPO, py.parent.parent]
        if quic:
            rodirs.append(Path(quic))
        if hidden_in_guest(out):
            raise VMError(
                f"--out {out} would be hidden in the guest (tmpfs there); use another folder"
            )
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            t_boot = time.monotonic()
            res.rc, res.console, _ = boot(vmlinuz, out, guest_cmd, tmo, echo, rodirs)
            (out / f"console-{attempt}.txt").write_text(res.console)
            if res.rc in (124, 137, -9):
                res.error = f"VM timed out after {tmo}s (rc {res.rc})"
            read_results(out, res)
            if res.results or res.error:
                break
            why = (
                f"boot {attempt} produced no result after {time.monotonic() - t_boot:.1f}s "
                f"(vng rc {res.rc}): {diagnose(res.console)}; host: {host_facts()}"
            )
            res.attempts.append(why)
            print(f"run_vm: {why}", flush=True)
            if attempt == BOOT_ATTEMPTS:
                res.error = (
                    "the VM produced no results:\n  "
                    + "\n  ".join(res.attempts)
                    + f"\nconsole of the last boot (tail; all of it in {out}/console-*.txt):\n"
                    + res.console[-6000:]
                )
            else:
                clear_guest_output(out)
    except VMError as e:
        res.error = str(e)
    except subprocess.TimeoutExpired as e:
        res.error = f"timed out: {e}"
    res.wall = time.monotonic() - t0
    res.meta.setdefault("host_log", log)
    return res


def describe(rec: dict[str, Any], full: bool) -> str:
    lines = [
        f"{rec['name']}: {rec['outcome'].upper()} ({rec.get('seconds', '?')}s)"
        + (f" -- {rec['reason'].splitlines()[0]}" if rec.get("reason") else "")
    ]
    if not full:
        return lines[0]
    lines.append("  checks:")
    for desc, ok, detail in rec.get("checks", []):
        lines.append(f"    [{'ok' if ok else 'FAIL'}] {desc}" + (f" -- {detail}" if detail else ""))
    for n in rec.get("notes", []):
        lines.append(f"    note: {n}")
    if rec.get("reason") and "\n" in rec["reason"]:
        lines.append("  reason:\n    " + rec["reason"].replace("\n", "\n    "))
    lines.append("  guest dmesg during the scenario:")
    lines += [f"    {x}" for x in rec.get("dmesg", [])]
    for name, text in rec.get("daemon_logs", {}).items():
        lines.append(f"  daemon log {name}:")
        lines += [f"    {x}" for x in text.splitlines()[-200:]]
    return "\n".join(lines)


def report(res: TierResult, only: list[str] | None = None) -> int:
    names = [n for n in SCENARIOS if not only or n in only]
    print(
        f"\n=== quichsd VM tier: wall {res.wall:.1f}s, guest command started at "
        f"{res.boot_seconds}s uptime, consumer setup {res.meta.get('setup_seconds')}s, "
        f"out {res.out}"
    )
    for why in res.attempts:
        print(f"VM BOOT RETRIED: {why}")
    if res.error:
        print(f"VM ERROR: {res.error}")
    bad = 0
    for n in names:
        rec = res.results.get(n)
        if rec is None:
            print(f"{n}: FAILED -- no result from the guest")
            bad += 1
            continue
        failed = rec["outcome"] not in ("passed", "skipped")
        bad += failed
        print(describe(rec, full=failed))
    if bad and (res.out / "dmesg.txt").exists() is False and res.console:
        print("--- VM console (tail) ---\n" + res.console[-6000:])
    if res.error and not res.results:
        return 2
    return 1 if bad or res.error else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, help="rwdir for results (default: a new temp dir)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--timeout", type=int, help=f"VM timeout in s (default {DEFAULT_TIMEOUT})")
    ap.add_argument("--quiet", action="store_true", help="do not echo the VM console")
    ap.add_argument("--daemon-cmd", help=argparse.SUPPRESS)  # developing the tier only
    ap.add_argument("--expect", type=Path, help=argparse.SUPPRESS)  # developing the tier only
    a = ap.parse_args()
    only = a.only.split(",") if a.only else None
    res = run_tier(
        a.out, only, echo=not a.quiet, timeout=a.timeout, daemon_cmd=a.daemon_cmd, expect=a.expect
    )
    return report(res, only)


if __name__ == "__main__":
    sys.exit(main())
