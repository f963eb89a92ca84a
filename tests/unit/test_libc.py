# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's direct libc and libkeyutils calls load the libraries without running a
program: ``ctypes.util.find_library`` (``/sbin/ldconfig -p``, then gcc) is not used.

Each call site runs in a fresh interpreter with an audit hook that records every
``subprocess.Popen``, ``os.exec*``, ``os.posix_spawn`` and ``os.fork``, and the calls are
checked to have really reached the library (the prctl took effect, the getsockopt
returned the kernel's bytes, the keyring call answered)."""

from __future__ import annotations

import json
import subprocess
import sys

PRELUDE = """
import json, sys
spawned = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.fork", "os.system"):
        spawned.append(event)
sys.addaudithook(hook)
"""


def run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + "\nprint(json.dumps({'spawned': spawned, **r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_parent_death_signal_runs_no_program() -> None:
    r = run(
        "import os, signal, ctypes\n"
        "from quichsd.workers.zygote import set_parent_death_signal\n"
        "from quichsd.libc import libc\n"
        "set_parent_death_signal(signal.SIGTERM, os.getppid())\n"
        "sig = ctypes.c_int()\n"
        "assert libc().prctl(2, ctypes.byref(sig), 0, 0, 0) == 0  # PR_GET_PDEATHSIG\n"
        "r = {'pdeathsig': sig.value}\n"
    )
    assert r == {"spawned": [], "pdeathsig": 15}


def test_large_getsockopt_runs_no_program() -> None:
    # SO_PEERGROUPS (59) on a unix socketpair through quicsocket's >1024-byte path: the
    # kernel's answer (this process's groups) must come back, and no program may run
    r = run(
        "import os, socket, struct\n"
        "from quichsd.quicsocket import getsockopt_bytes\n"
        "a, b = socket.socketpair()\n"
        "raw = getsockopt_bytes(a, socket.SOL_SOCKET, 59, 4096)\n"
        "r = {'groups': sorted(struct.unpack(f'{len(raw) // 4}I', raw)),\n"
        "     'mine': sorted(os.getgroups())}\n"
    )
    assert r["spawned"] == []
    assert r["groups"] == r["mine"]


def test_keyring_library_loads_without_running_a_program() -> None:
    # describe the session keyring (created on demand): a real keyctl call through the
    # library opened by its soname, or KeyutilsUnavailable where it is not installed
    r = run(
        "from quichsd import keyring\n"
        "try:\n"
        "    r = {'described': keyring.describe_key(keyring.KEY_SPEC_SESSION_KEYRING).type}\n"
        "except keyring.KeyutilsUnavailable as e:\n"
        "    r = {'unavailable': str(e)}\n"
    )
    assert r["spawned"] == []
    assert r.get("described") == "keyring", r
