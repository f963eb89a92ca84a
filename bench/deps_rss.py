# SPDX-License-Identifier: GPL-2.0-or-later
"""What each third-party library costs the idle daemon's memory (issue 15).

The idle daemon's own module list (written by :mod:`bench.daemon_run` when
``QUICHSD_BENCH_MODULES`` names a file) is imported again in fresh interpreters, in its
order, as the daemon imports it (asyncio without ssl, pyroute2 without its ``__init__``):
once as it is, and once each with pyroute2, PyYAML or both replaced by empty stand-in
packages. Only quichsd's own modules are imported by name, so a standard-library module
that only the replaced library imports (multiprocessing, pickle, platform, ctypes.util and
shutil for pyroute2; datetime and base64 for PyYAML) is not loaded either. The difference
in resident memory is what the library costs with everything it brings in; the stand-ins
are for measuring only, no daemon could run on them.

Each interpreter frees what it can before it is read (``gc.collect()``, ``malloc_trim``),
as the daemon does after start-up. Import-time memory only: what the running daemon holds
besides (the loop, the sockets, credentials) is the same in every variant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .fixture import ROOT

#: the variants: name -> top-level packages replaced by stand-ins
VARIANTS: dict[str, tuple[str, ...]] = {
    "as the daemon imports it": (),
    "without pyroute2": ("pyroute2",),
    "without PyYAML": ("yaml",),
    "without pyroute2 and PyYAML": ("pyroute2", "yaml"),
}

CHILD = r"""
import ctypes, gc, importlib.machinery, json, sys, types
from pathlib import Path

modules, replaced = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))

class StandIn(types.ModuleType):
    # any attribute is a fresh class: enough for class statements and isinstance tests
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Exception,), {})

class Finder:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in replaced:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec):
        return StandIn(spec.name)
    def exec_module(self, module):
        module.__path__ = []

sys.meta_path.insert(0, Finder())
from quichsd.lean_asyncio import import_asyncio_without_ssl
import_asyncio_without_ssl()
if "pyroute2" not in replaced:
    from quichsd.netlink.lean import import_lean
    import_lean()
failed = []
for name in modules:
    try:
        __import__(name)
    except Exception as e:
        failed.append(f"{name}: {e!r}")
gc.collect()
ctypes.CDLL(None).malloc_trim(0)
roll = {}
for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
    key, _, rest = line.partition(":")
    roll[key] = int(rest.split()[0])
print(json.dumps({"rss_kb": roll["Rss"], "pss_kb": roll["Pss"], "modules": len(sys.modules),
                  "failed": failed}))
"""


def quichsd_modules(path: Path) -> list[str]:
    """quichsd's own modules from a module list the daemon wrote, in its order."""
    names: list[str] = json.loads(path.read_text())
    return [m for m in names if m == "quichsd" or m.startswith("quichsd.")]


def measure(modules: list[str], replaced: tuple[str, ...]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(modules), json.dumps(list(replaced))],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def run(module_list: Path, rounds: int = 3) -> dict[str, Any]:
    """Each variant ``rounds`` times, interleaved; the median RSS of each, and the cost
    of each library as the difference from the daemon's own import set."""
    modules = quichsd_modules(module_list)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, replaced in VARIANTS.items():
            samples[name].append(measure(modules, replaced))
    res: dict[str, Any] = {"quichsd_modules": len(modules), "variants": {}}
    for name, runs in samples.items():
        rss = sorted(r["rss_kb"] for r in runs)[len(runs) // 2]
        res["variants"][name] = {
            "rss_kb": rss,
            "modules": runs[0]["modules"],
            "failed": runs[0]["failed"],
        }
    base = res["variants"]["as the daemon imports it"]["rss_kb"]
    res["cost_kb"] = {
        name: base - v["rss_kb"] for name, v in res["variants"].items() if VARIANTS[name]
    }
    return res
