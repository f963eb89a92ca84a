# SPDX-License-Identifier: GPL-2.0-or-later
"""The VM runner's own failure handling (tests/kernel/run_vm.py), without booting a VM.

The consoles below are cut from real boots of Debian's 6.12 kernel under qemu TCG.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "kernel" / "run_vm.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quichsd_vm_runner_unit", RUNNER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


run_vm = _load()

OOPS = """\
[    2.076676] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    2.077057] CPU: 1 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.117+deb12-amd64 #1
[    2.077276] RIP: 0010:sched_clock_cpu+0x9/0x190
[    2.080182] Kernel panic - not syncing: Fatal exception in interrupt
[    3.752489] Shutting down cpus with NMI
"""

POWER_DOWN = """\
[    2.104551] virtme initramfs: initramfs does not have module crypto-aes
[    3.203370] Freeing unused kernel image (initmem) memory: 4264K
[    3.900000] virtme-init: cannot find script I/O ports; make sure virtio-serial is available
[    6.962523] ACPI: PM: Preparing to enter system sleep state S5
[    6.965348] reboot: Power down
"""

CUT = """\
[    1.841673] Trying to unpack rootfs image as initramfs...
[    1.889834] Freeing initrd memory: 2208K
"""


def test_panic_is_named_with_its_cause() -> None:
    why = run_vm.diagnose(OOPS)
    assert why.startswith("guest kernel panic: ")
    assert "Fatal exception in interrupt" in why


def test_power_down_before_the_script_names_the_init_lines() -> None:
    why = run_vm.diagnose(POWER_DOWN)
    assert "powered off before any scenario ran" in why
    assert "cannot find script I/O ports" in why


def test_console_cut_short_points_outside_the_guest() -> None:
    why = run_vm.diagnose(CUT)
    assert "ended from outside" in why and "Freeing initrd memory" in why


def test_no_kernel_output() -> None:
    assert "no kernel output" in run_vm.diagnose("some qemu warning\n")


def test_kernel_lines_are_told_from_guest_output() -> None:
    assert run_vm.KERNEL_LINE.match("[   22.650362] quichsd-vm: concurrent")
    assert not run_vm.KERNEL_LINE.match("[guest    9.60s] daemon pid 302 joined")


def test_overlong_kernel_command_line_fails_before_booting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    booted: list[object] = []
    monkeypatch.setattr(run_vm, "vng_command", lambda *a: (["vng"], {}))
    monkeypatch.setattr(run_vm, "kernel_cmdline", lambda *a: "x" * 2100)
    monkeypatch.setattr(run_vm.subprocess, "Popen", lambda *a, **k: booted.append(a))
    with pytest.raises(run_vm.VMError, match="would be 2100 bytes"):
        run_vm.boot(Path("/boot/vmlinuz"), tmp_path, "python guest.py", 60, False, [])
    assert booted == []
    # the guest command went to a file; the kernel line only names that file
    assert (tmp_path / "guest-cmd.sh").read_text() == "exec python guest.py\n"


def test_failed_boot_output_is_cleared_but_config_and_consoles_kept(tmp_path: Path) -> None:
    for name in ("config.yaml", "console-1.txt", "results.jsonl", "meta.json", "daemon-x-1.log"):
        (tmp_path / name).write_text("x")
    run_vm.clear_guest_output(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "console-1.txt"]


def test_failed_deb_build_is_kept_for_the_guest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .deb that does not build fails deb_package_nvme_tls alone, with the build's own
    output (OUT/deb/build-error.txt, which the guest reports), not the whole tier."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "build-deb.sh").write_text(
        "echo 'dpkg-checkbuilddeps: error: unmet build dependencies: dh-python' >&2; exit 3\n"
    )
    monkeypatch.setattr(run_vm, "REPO", repo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "deb").mkdir()
    (out / "deb" / "quichsd_0.0.1_all.deb").write_text("stale")  # from an earlier run
    log: list[str] = []
    assert run_vm.build_deb(out, log) == ""
    error = (out / "deb" / "build-error.txt").read_text()
    assert "scripts/build-deb.sh failed (rc 3)" in error
    assert "unmet build dependencies: dh-python" in error
    assert sorted(p.name for p in (out / "deb").iterdir()) == ["build-error.txt"]
    assert log and log[0].startswith("build-deb.sh rc=3 in ")


def test_precompile_writes_bytecode_even_with_dontwritebytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guest cannot write bytecode caches (read-only checkout): the runner writes
    them on the host first, whatever PYTHONDONTWRITEBYTECODE says; a module that does
    not compile is named in the host log."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    (tmp_path / "good.py").write_text("X = 1\n")
    (tmp_path / "bad.py").write_text("def broken(:\n")
    log: list[str] = []
    run_vm.precompile(Path(sys.executable), [tmp_path], log)
    assert list((tmp_path / "__pycache__").glob("good.*.pyc"))
    assert log[0].startswith("compileall rc=1 in ")
    assert "bad.py" in log[1]
