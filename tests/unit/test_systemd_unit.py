# SPDX-License-Identifier: GPL-2.0-or-later
"""The shipped systemd unit: notify + watchdog, CAP_NET_ADMIN only, and its exposure score
from systemd's own analyzer (`systemd-analyze security --offline`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "quichsd.service"


def directives() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_notify_watchdog_and_only_cap_net_admin() -> None:
    d = directives()
    assert d["Type"] == "notify" and d["WatchdogSec"]
    assert d["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert d["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert d["NoNewPrivileges"] == "yes"
    assert d["RestrictAddressFamilies"] == "AF_NETLINK AF_UNIX"
    assert d["ExecReload"].endswith("-HUP $MAINPID")


def test_every_service_directive_has_a_reason_above_it() -> None:
    lines = UNIT.read_text().splitlines()
    start = lines.index("[Service]")
    end = lines.index("[Install]")
    block: list[str] = []
    for line in lines[start + 1 : end]:
        if not line.strip():
            block = []
            continue
        if line.startswith("#"):
            block.append(line)
            continue
        assert block, f"{line!r} has no comment giving its reason"


def test_systemd_exposure_score_is_low() -> None:
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for quichsd.service: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 2.5  # tlshd's upstream unit scores 9.5 (UNSAFE)
