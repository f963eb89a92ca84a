# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench`` (or ``bench/run.sh``): the whole benchmark, table + bench/out/results.json.

Options: ``--quick`` (smaller counts, for a smoke run), ``--profile`` (also cProfile the
per-side path and print the top functions outside GnuTLS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from . import cpu, daemon_rss, floor
from .fixture import OUT, load_daemon, priority_strings, write_pki
from .report import print_table, stats


def _cpu_section(pki: Any, prio: dict[str, str], rounds: int, nf: int, nq: int) -> dict[str, Any]:
    """Floor and quichsd interleaved round by round, so host noise hits both alike."""
    d = load_daemon(pki)
    samples: dict[str, list[float]] = {}
    loop: dict[str, list[float]] = {"full": [], "resumed": []}
    checks: dict[str, int] = {}

    def add(key: str, values: list[float]) -> None:
        samples.setdefault(key, []).extend(values)

    async def quichsd_round(kind: str) -> None:
        r = await cpu.measure(d, nq, resumed=kind == "resumed")
        add(f"quichsd.{kind}.server", r["server_us"])
        add(f"quichsd.{kind}.client", r["client_us"])
        loop[kind].append(r["loop_us_per_handshake"])
        checks[f"quichsd.{kind}.resumed"] = checks.get(f"quichsd.{kind}.resumed", 0) + r["resumed"]

    for _ in range(rounds):
        for kind, mode in (("full", "full"), ("resumed", "resume")):
            f = floor.run(pki, prio, mode, nf)
            add(f"floor.{kind}.server", [x / 1e3 for x in f["server_ns"]])
            add(f"floor.{kind}.client", [x / 1e3 for x in f["client_ns"]])
            checks[f"floor.{kind}.resumed"] = checks.get(f"floor.{kind}.resumed", 0) + f["resumed"]
            asyncio.run(quichsd_round(kind))
    out: dict[str, Any] = {"method": cpu.__doc__, "checks": checks}
    for key, vals in samples.items():
        out[key] = stats(vals)
    for kind in ("full", "resumed"):
        out[f"quichsd.{kind}.loop"] = {"mean": sum(loop[kind]) / len(loop[kind])}
    return out


def _child(k: int, n: int, mode: str, cpus: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", "bench.load", str(k), str(n), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _run_children(specs: list[tuple[int, int, str, str]]) -> list[dict[str, Any]]:
    procs = [_child(*s) for s in specs]
    for p in procs:  # wait until every child is set up, then start them together
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("bench.load child did not get ready")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"bench.load child exited with {p.returncode}")
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


def _combine(outs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [x for o in outs for x in o["latency_s"]]
    n = sum(o["n"] for o in outs)
    wall = max(o["wall_s"] for o in outs)
    return {
        "n": n,
        "wall_s": wall,
        "process_cpu_s": sum(o["process_cpu_s"] for o in outs),
        "throughput_hs_s": n / wall,
        "latency_ms": stats([x * 1e3 for x in lat]),
    }


def _load_section(pki: Any, prio: dict[str, str], ks: list[int], scale: float) -> dict[str, Any]:
    f1 = floor.run(pki, prio, "full", int(1000 * scale), cpu=0)
    f2 = floor.run_parallel(pki, prio, "full", int(1000 * scale), [0, 1])
    floor_pair_s = f1["wall_ns"] / f1["n"] / 1e9
    out: dict[str, Any] = {
        "method": (
            "pairs (client+server in one process) with K in flight, K workers back to back; "
            "1core = executor None pinned to CPU 0; 2core-threads = ThreadPoolExecutor(2) "
            "for GnuTLS steps, pinned to CPUs 0,1; 2core-procs = 2 processes pinned to one "
            "CPU each with K/2 in flight each (at least 1). Floor: the C program pinned to "
            "CPU 0 (1 core) and one copy per CPU (2 cores). 'ideal latency' = K x the "
            "floor's wall time per pair on 1 core. No ticket wait on the client."
        ),
        "floor": {
            "1core_hs_s": f1["n"] / (f1["wall_ns"] / 1e9),
            "2core_hs_s": sum(x["n"] for x in f2) / max(x["wall_ns"] / 1e9 for x in f2),
            "pair_wall_us": floor_pair_s * 1e6,
            "1core_pairs_per_cpu_s": f1["n"] / (f1["process_cpu_ns"] / 1e9),
        },
    }
    for k in ks:
        n = max(int(max(300, 3 * k) * scale), 2 * k if k > 1 else 50)
        half = max(1, k // 2)
        res = {
            "1core": _combine(_run_children([(k, n, "loop", "0")])),
            "2core-threads": _combine(_run_children([(k, n, "threads", "0,1")])),
            "2core-procs": _combine(
                _run_children([(half, n // 2, "loop", "0"), (half, n // 2, "loop", "1")])
            ),
        }
        res["ideal_latency_ms"] = k * floor_pair_s * 1e3
        out[f"K={k}"] = res
    return out


def _memory_section(pki: Any, prio: dict[str, str], k: int) -> dict[str, Any]:
    fl = floor.run(pki, prio, "mem", k)
    fi = floor.run(pki, prio, "full", 10)
    child = subprocess.run(
        [sys.executable, "-m", "bench.mem", str(k)], check=True, capture_output=True, text=True
    )
    idle = daemon_rss.run()
    return {
        "idle": idle["workers1"],
        "daemon": idle,
        "floor_idle_rss_kb": fi["rss_idle_kb"],
        "inflight": json.loads(child.stdout.strip().splitlines()[-1]),
        "floor_inflight": fl,
    }


def _workers_section(n: int) -> list[dict[str, Any]]:
    """Daemon-level throughput, handshake.workers 1 vs 2 (bench/workers.py, own process:
    it forks a fork server before any event loop runs)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.workers", str(n)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    ap.add_argument("--profile", action="store_true", help="also profile the per-side path")
    args = ap.parse_args()
    scale = 0.25 if args.quick else 1.0
    t0 = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    floor.build()
    pki = write_pki()
    d = load_daemon(pki)
    prio = priority_strings(d.policy)
    print(f"priority (server): {prio['server']}\npriority (client): {prio['client']}", flush=True)
    results: dict[str, Any] = {
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
            "kernel": platform.release(),
        },
        "priority": prio,
        "certificate": "P-256 ECDSA leaf signed by a P-256 CA (tests/pki.py), SAN server.test",
        "policy": repr(d.policy),
    }
    print("cpu per side ...", flush=True)
    rounds = 1 if args.quick else 3
    results["cpu"] = _cpu_section(pki, prio, rounds, int(500 * scale), int(400 * scale))
    print("concurrency ...", flush=True)
    results["load"] = _load_section(pki, prio, [1, 16, 256], scale)
    print("memory ...", flush=True)
    results["memory"] = _memory_section(pki, prio, 1000)
    print("daemon workers ...", flush=True)
    results["workers"] = _workers_section(int(1200 * scale))
    if args.profile:
        from . import prof

        results["profile"] = prof.run(d, int(600 * scale))
    results["host"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - t0
    (OUT / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    print(f"\nwrote {OUT / 'results.json'} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
