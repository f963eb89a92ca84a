# SPDX-License-Identifier: GPL-2.0-or-later
"""Idle memory of the real daemon, and the floors it is read against, in one run.

The daemon: ``python -m bench.daemon_run CONFIG`` (the quichsd CLI, ``-s -c CONFIG``)
where CONFIG is the shipped etc/quichsd/config.yaml with only ``handshake.workers`` set
(1, 2, 3) and the unix socket moved into bench/out/ (so a daemon already running on the
host is not disturbed). Where this kernel has no ``handshake`` family, its netlink
transport behaves as an idle kernel (bench/daemon_run.py) so that the workers start as
they would on a kernel that has it. Read ``settle`` s after its "running" log line (and,
with workers, after every worker is up): RSS and PSS from /proc/PID/smaps_rollup of the
main process and of every descendant (fork server, workers). PSS shares each page among
the processes mapping it, so the processes' PSS sum is what the daemon costs the host,
and ``PSS(3 workers) - PSS(2 workers)`` what one more worker costs.

Floors (same run): a bare interpreter (``python -c pass``), the interpreter with libgnutls
loaded (ctypes), that plus ``import asyncio`` (which imports ssl, hence libcrypto), and
that plus asyncio imported without ssl, as the daemon does (quichsd/lean_asyncio.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import deps_rss
from .fixture import CONFIG, OUT, ROOT

SOCKET = OUT / "daemon-rss.sock"

FLOORS = {
    "python": "pass",
    "python + libgnutls": "import ctypes; ctypes.CDLL('libgnutls.so.30')",
    "python + libgnutls + asyncio": "import ctypes, asyncio; ctypes.CDLL('libgnutls.so.30')",
    # asyncio as the daemon imports it (quichsd/lean_asyncio.py: without ssl, hence without
    # OpenSSL): the least any asyncio daemon on GnuTLS costs on this interpreter
    "python + libgnutls + asyncio without ssl": (
        "import ctypes, sys; ctypes.CDLL('libgnutls.so.30'); sys.modules['ssl'] = None\n"
        "import asyncio\ndel sys.modules['ssl']"
    ),
}
_READ_SELF = (
    "\nfrom pathlib import Path\n"
    "print(*[l.split()[1] for l in Path('/proc/self/smaps_rollup').read_text().splitlines()"
    " if l.startswith(('Rss:', 'Pss:'))])"
)


def rollup(pid: int) -> dict[str, int]:
    """RSS and PSS (KB) of one process, from /proc/PID/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower() + "_kb"] = int(rest.split()[0])
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, depth first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            out += [kid, *descendants(kid)]
    return out


def config(workers: int) -> Path:
    """The shipped config with ``handshake.workers`` and the unix socket path changed."""
    text = CONFIG.read_text()
    for old, new in (
        ("\n  workers: 1\n", f"\n  workers: {workers}\n"),
        ("\n  path: /run/quichsd/quichsd.sock\n", f"\n  path: {SOCKET}\n"),
    ):
        if old not in text:
            raise RuntimeError(f"{CONFIG}: no {old.strip()!r} line to change")
        text = text.replace(old, new)
    path = OUT / f"config-workers{workers}.yaml"
    path.write_text(text)
    return path


#: the idle daemon's module names (workers: 1), for bench.deps_rss
MODULES = OUT / "daemon-modules.json"


def measure(workers: int = 1, settle: float = 2.0, limit: float = 20.0) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = config(workers)
    cmd = [sys.executable, "-m", "bench.daemon_run", str(cfg)]
    env = dict(os.environ)
    if workers == 1:
        MODULES.unlink(missing_ok=True)
        env["QUICHSD_BENCH_MODULES"] = str(MODULES)
    # main process, plus the fork server and the workers when workers > 1
    expect = 1 if workers < 2 else 2 + workers
    p = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert p.stderr is not None
        end = time.monotonic() + limit
        line, idle = "", False
        while time.monotonic() < end and p.poll() is None:
            line = p.stderr.readline()
            idle = idle or "idle kernel stand-in" in line
            if " running: " in line:
                break
        if p.poll() is not None or " running: " not in line:
            raise RuntimeError(f"{' '.join(cmd)}: no 'running' line: {line.strip()!r}")
        pids = [p.pid, *descendants(p.pid)]
        while len(pids) < expect and time.monotonic() < end:
            time.sleep(0.1)
            pids = [p.pid, *descendants(p.pid)]
        if len(pids) != expect:
            raise RuntimeError(f"workers={workers}: {len(pids)} processes, expected {expect}")
        time.sleep(settle)
        procs = [{"pid": pid, **rollup(pid)} for pid in pids]
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return {
        "workers": workers,
        "method": f"{' '.join(cmd)}, {settle:g} s after: {line.strip()}"
        + (" [netlink: idle kernel stand-in, this kernel has no handshake family]" if idle else ""),
        "processes": procs,
        "rss_kb": procs[0]["rss_kb"],  # the main process
        "pss_total_kb": sum(x["pss_kb"] for x in procs),
        "rss_total_kb": sum(x["rss_kb"] for x in procs),
    }


def floors() -> dict[str, dict[str, int]]:
    out = {}
    for name, code in FLOORS.items():
        res = subprocess.run(
            [sys.executable, "-c", code + _READ_SELF], check=True, capture_output=True, text=True
        ).stdout
        rss, pss = (int(x) for x in res.split())
        out[name] = {"rss_kb": rss, "pss_kb": pss}
    return out


def run(settle: float = 2.0) -> dict[str, Any]:
    """Daemon with 1, 2 and 3 workers, and the floors."""
    res: dict[str, Any] = {"floors": floors()}
    for w in (1, 2, 3):
        res[f"workers{w}"] = measure(w, settle)
    res["extra_worker_pss_kb"] = res["workers3"]["pss_total_kb"] - res["workers2"]["pss_total_kb"]
    res["deps"] = deps_rss.run(MODULES)  # written by the workers: 1 daemon when it stopped
    return res


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
