# SPDX-License-Identifier: GPL-2.0-or-later
"""Build and run the C floor (bench/floor.c) with quichsd's own priority strings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .fixture import ALPN, OUT, ROOT

SOURCE = ROOT / "bench" / "floor.c"
BINARY = OUT / "floor"


def build() -> Path:
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "gnutls"], check=True, capture_output=True, text=True
    ).stdout.split()
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(BINARY), str(SOURCE), *flags], check=True
    )
    return BINARY


def run(
    pki: dict[str, Path], prio: dict[str, str], mode: str, n: int, cpu: int | None = None
) -> dict[str, Any]:
    cmd = [
        str(BINARY),
        str(pki["cert"]),
        str(pki["key"]),
        str(pki["ca"]),
        prio["server"],
        prio["client"],
        mode,
        str(n),
        ALPN.decode(),
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    return dict(json.loads(res.stdout))


def run_parallel(
    pki: dict[str, Path], prio: dict[str, str], mode: str, n: int, cpus: list[int]
) -> list[dict[str, Any]]:
    """The floor on several cores at once: one pinned process per core, started together."""
    procs = []
    for c in cpus:
        cmd = ["taskset", "-c", str(c), str(BINARY), str(pki["cert"]), str(pki["key"])]
        cmd += [str(pki["ca"]), prio["server"], prio["client"], mode, str(n), ALPN.decode()]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"floor exited with {p.returncode}")
        out.append(dict(json.loads(stdout)))
    return out
