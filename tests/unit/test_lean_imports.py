# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon imports only the part of pyroute2 it uses (quichsd.netlink.lean, issue 15):
not IPRoute, NDB, IPDB or the other netlink families pyroute2/__init__ pulls in."""

from __future__ import annotations

import json
import subprocess
import sys

CODE = """
import json, sys
import quichsd.daemon
mods = sorted(m for m in sys.modules if m.split(".")[0] == "pyroute2")
print(json.dumps(mods))
"""


def test_daemon_import_loads_no_pyroute2_extras() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    mods = json.loads(out)
    assert "pyroute2.netlink.generic" in mods
    for extra in ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.iproute", "pyroute2.nftables"):
        assert not any(m == extra or m.startswith(extra + ".") for m in mods), (extra, mods)
    assert len(mods) < 40, mods
