# SPDX-License-Identifier: GPL-2.0-or-later
"""Real-kernel VM tier: quichsd against live kernel handshake consumers.

One boot of Debian's 6.12 kernel under qemu (TCG) runs every scenario of
``guest.py`` (see run_vm.py); each test below asserts one scenario's result.
Needs root and a network for the first ``setup.sh`` run; never skips silently:
if the VM cannot run, every test fails with the reason.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.vm

HERE = Path(__file__).resolve().parent


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quichsd_vm_runner", HERE / "run_vm.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


run_vm = _load_runner()


@pytest.fixture(scope="session")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("vm")
    res = run_vm.run_tier(out=out, echo=False)
    # the runner's report (outcomes, dmesg and daemon logs of failures) in the pytest output
    run_vm.report(res)
    for why in res.attempts:
        # a boot that died before any scenario ran was tried again: say so in the summary
        warnings.warn(f"VM boot retried: {why}", stacklevel=1)
    return res


def _assert_scenario(tier: Any, name: str) -> None:
    if tier.error and not tier.results:
        pytest.fail(f"VM tier could not run: {tier.error}", pytrace=False)
    rec = tier.results.get(name)
    if rec is None:
        pytest.fail(
            f"no result for {name} from the guest"
            + (f" ({tier.error})" if tier.error else "")
            + f"; console tail:\n{tier.console[-4000:]}",
            pytrace=False,
        )
    if rec["outcome"] == "skipped":
        pytest.skip(rec["reason"])
    if rec["outcome"] != "passed":
        pytest.fail(run_vm.describe(rec, full=True), pytrace=False)
    failed = [c for c in rec["checks"] if not c[1]]
    assert rec["checks"] and not failed, run_vm.describe(rec, full=True)


def test_nvme_tls_host_and_target(tier: Any) -> None:
    _assert_scenario(tier, "nvme_tls_host_and_target")


def test_nvme_unknown_psk_identity(tier: Any) -> None:
    _assert_scenario(tier, "nvme_unknown_psk_identity")


def test_concurrent_requests(tier: Any) -> None:
    _assert_scenario(tier, "concurrent_requests")


def test_no_daemon_then_start(tier: Any) -> None:
    _assert_scenario(tier, "no_daemon_then_start")


def test_daemon_restart(tier: Any) -> None:
    _assert_scenario(tier, "daemon_restart")


def test_workers_nvme_concurrent(tier: Any) -> None:
    _assert_scenario(tier, "workers_nvme_concurrent")


def test_timeout_honoured(tier: Any) -> None:
    _assert_scenario(tier, "timeout_honoured")


def test_kernel_quic_sample(tier: Any) -> None:
    _assert_scenario(tier, "kernel_quic_sample")


def test_kernel_quic_psk(tier: Any) -> None:
    _assert_scenario(tier, "kernel_quic_psk")


def test_kernel_quic_resumption(tier: Any) -> None:
    _assert_scenario(tier, "kernel_quic_resumption")


def test_workers_kernel_quic(tier: Any) -> None:
    _assert_scenario(tier, "workers_kernel_quic")


def test_nfs_tls(tier: Any) -> None:
    _assert_scenario(tier, "nfs_tls")


def test_nfs_mtls(tier: Any) -> None:
    _assert_scenario(tier, "nfs_mtls")


def test_deb_package_nvme_tls(tier: Any) -> None:
    _assert_scenario(tier, "deb_package_nvme_tls")
