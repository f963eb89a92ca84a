# SPDX-License-Identifier: GPL-2.0-or-later
"""Imports only point down the layers: no import cycle inside the ``quichsd`` package
(every import counts: top-level, in functions, under TYPE_CHECKING), and the TLS and
GnuTLS layers never import the layers built on them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "quichsd"
#: what quichsd.tls and quichsd.gnutls must not import (they are below all of these)
ABOVE_TLS = (
    "quichsd.driver", "quichsd.tcpdriver", "quichsd.service", "quichsd.daemon",
    "quichsd.cli", "quichsd.netlink", "quichsd.unix", "quichsd.workers", "quichsd.probe",
    "quichsd.userspace", "quichsd.credentials", "quichsd.config",
)  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                # a module's own packages are imported before it anyway
                if t in mods and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 60 and "quichsd.tls.engine" in graph["quichsd.tls.tcp"]
    assert cycles(graph) == []


def test_the_check_finds_a_cycle() -> None:
    graph = import_graph()
    graph["quichsd.tls.callbacks"].add("quichsd.tls.engine")  # the cycle issue 12 removed
    assert ["quichsd.tls.callbacks", "quichsd.tls.engine", "quichsd.tls.session"] in cycles(graph)


def test_tls_and_gnutls_layers_import_nothing_above_them() -> None:
    graph = import_graph()
    for name, deps in graph.items():
        if name in ("quichsd.tls", "quichsd.gnutls") or name.startswith(
            ("quichsd.tls.", "quichsd.gnutls.")
        ):
            bad = [d for d in deps if d.startswith(ABOVE_TLS)]
            assert not bad, (name, bad)
