# SPDX-License-Identifier: GPL-2.0-or-later
"""Summary statistics and the printed table (every quichsd figure beside the floor)."""

from __future__ import annotations

import statistics
from typing import Any


def stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    n = len(v)

    def pct(p: float) -> float:
        return v[min(n - 1, int(p * n))]

    return {
        "n": n,
        "median": statistics.median(v),
        "mean": statistics.fmean(v),
        "min": v[0],
        "p10": pct(0.10),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b else "  n/a"


def _cpu_rows(cpu: dict[str, Any]) -> list[str]:
    rows = [
        "CPU per handshake, per side (µs, median of all samples; p10-p90 in brackets)",
        f"{'case':<30}{'floor (C)':>22}{'quichsd':>24}{'ratio':>8}",
    ]
    for kind in ("full", "resumed"):
        loop = cpu[f"quichsd.{kind}.loop"]["mean"]
        for side in ("server", "client"):
            f, q = cpu[f"floor.{kind}.{side}"], cpu[f"quichsd.{kind}.{side}"]
            rows.append(
                f"{kind + ' ' + side:<30}"
                f"{f['median']:8.0f} [{f['p10']:5.0f}-{f['p90']:5.0f}]"
                f"{q['median']:10.0f} [{q['p10']:5.0f}-{q['p90']:5.0f}]"
                f"{_ratio(q['median'], f['median']):>8}"
            )
        f = cpu[f"floor.{kind}.server"]["median"]
        q = cpu[f"quichsd.{kind}.server"]["median"] + loop
        rows.append(
            f"{kind + ' server + whole loop':<30}{f:8.0f}{'':14}{q:10.0f}{'':14}{_ratio(q, f):>8}"
        )
        rows.append(f"{'  (event loop, unattributed)':<30}{'':22}{loop:10.0f}")
    return rows


def _load_rows(load: dict[str, Any]) -> list[str]:
    fl = load["floor"]
    rows = [
        "",
        "Concurrency: pairs (both sides) per second and latency per pair",
        f"floor: {fl['1core_hs_s']:.0f} pairs/s on 1 core, {fl['2core_hs_s']:.0f} on 2 "
        f"(x{fl['2core_hs_s'] / fl['1core_hs_s']:.2f}); {fl['pair_wall_us']:.0f} µs wall per pair, "
        f"{fl['1core_pairs_per_cpu_s']:.0f} pairs per CPU-second",
        "pairs/s is wall-clock (needs idle cores); /cpu-s = pairs per CPU-second of the "
        "process(es), which other load on the host does not change",
        f"{'K':>4} {'config':<14}{'pairs/s':>9}{'floor':>7}{'ratio':>7}{'cpu%':>6}{'/cpu-s':>8}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'ideal':>8}{'p50/ideal':>10}",
    ]
    for key in [k for k in load if k.startswith("K=")]:
        r = load[key]
        k = key[2:]
        for cfg in ("1core", "2core-threads", "2core-procs"):
            x = r[cfg]
            f = fl["1core_hs_s"] if cfg == "1core" else fl["2core_hs_s"]
            ncpu = 1 if cfg == "1core" else 2
            busy = 100 * x["process_cpu_s"] / (x["wall_s"] * ncpu)
            lat = x["latency_ms"]
            rows.append(
                f"{k:>4} {cfg:<14}{x['throughput_hs_s']:9.0f}{f:7.0f}"
                f"{_ratio(x['throughput_hs_s'], f):>7}{busy:6.0f}{x['n'] / x['process_cpu_s']:8.0f}"
                f"{lat['p50']:9.2f}{lat['p99']:9.2f}{r['ideal_latency_ms']:8.2f}"
                f"{_ratio(lat['p50'], r['ideal_latency_ms']):>10}"
            )
        one = r["1core"]["throughput_hs_s"]
        rows.append(
            f"{'':5}scaling 1->2 cores: threads x{r['2core-threads']['throughput_hs_s'] / one:.2f}"
            f", processes x{r['2core-procs']['throughput_hs_s'] / one:.2f}"
            f"  (floor x{fl['2core_hs_s'] / fl['1core_hs_s']:.2f})"
        )
    return rows


def _mem_rows(mem: dict[str, Any]) -> list[str]:
    idle, inf, finf = mem["idle"], mem["inflight"], mem["floor_inflight"]
    rows = [
        "",
        "Memory",
        f"{'':<34}{'floor (C)':>12}{'quichsd':>12}{'ratio':>8}",
        f"{'idle RSS (KB)':<34}{mem['floor_idle_rss_kb']:12d}{idle['rss_kb']:12d}"
        f"{_ratio(idle['rss_kb'], mem['floor_idle_rss_kb']):>8}",
        f"{'RSS per in-flight server hs (B)':<34}{finf['per_handshake_bytes']:12.0f}"
        f"{inf['per_handshake_bytes']:12.0f}"
        f"{_ratio(inf['per_handshake_bytes'], finf['per_handshake_bytes']):>8}"
        f"   (K={inf['k']}, {inf['waiting']} waiting)",
        f"idle RSS method: {idle['method']}",
    ]
    daemon = mem.get("daemon")
    if daemon is None:
        return rows
    rows += ["", "Idle daemon, shipped config, per process (KB; main, fork server, workers)"]
    for w in (1, 2, 3):
        d = daemon[f"workers{w}"]
        procs = "  ".join(f"{x['rss_kb']}/{x['pss_kb']}" for x in d["processes"])
        rows.append(
            f"workers: {w}  RSS total {d['rss_total_kb']:6d}  PSS total {d['pss_total_kb']:6d}"
            f"   RSS/PSS each: {procs}"
        )
    rows.append(f"one more worker (PSS, workers 2 -> 3): {daemon['extra_worker_pss_kb']} KB")
    floors = "; ".join(
        f"{name} {f['rss_kb']}/{f['pss_kb']}" for name, f in daemon["floors"].items()
    )
    rows.append(f"floors, RSS/PSS (KB): C floor {mem['floor_idle_rss_kb']} RSS; {floors}")
    return rows + _deps_rows(daemon.get("deps"))


def _deps_rows(deps: dict[str, Any] | None) -> list[str]:
    """What pyroute2 and PyYAML cost at idle (bench/deps_rss.py)."""
    if deps is None:
        return []
    rows = [
        "",
        f"Import-time RSS of the idle daemon's {deps['quichsd_modules']} quichsd modules "
        "(bench/deps_rss.py; median of 3)",
    ]
    for name, v in deps["variants"].items():
        cost = deps["cost_kb"].get(name)
        rows.append(
            f"  {name:<30} {v['rss_kb']:6d} KB  {v['modules']:4d} modules"
            + (f"   library share {cost:5d} KB" if cost is not None else "")
            + (f"   IMPORT FAILED: {'; '.join(v['failed'])}" if v["failed"] else "")
        )
    return rows


def _goal(name: str, value: float, floor: str, goal: str, ok: bool) -> str:
    return f"{name:<40}{floor:>24}{value:>10.2f}  {goal:<10}{'met' if ok else 'NOT met':>8}"


def _goals(res: dict[str, Any]) -> list[str]:
    """Issue 15's goals, each beside the floor measured in this run."""
    cpu, mem = res["cpu"], res["memory"]
    rows = [
        "",
        "Goals (issue 15), this run",
        f"{'goal':<40}{'floor':>24}{'quichsd':>10}  {'target':<10}{'':>8}",
    ]
    for kind, side, limit in (
        ("full", "server", 1.5),
        ("full", "client", 1.25),
        ("resumed", "server", 1.8),
        ("resumed", "client", 1.8),
    ):
        f, q = cpu[f"floor.{kind}.{side}"]["median"], cpu[f"quichsd.{kind}.{side}"]["median"]
        rows.append(
            _goal(
                f"CPU {kind} {side} (x floor; {q:.0f} µs)",
                q / f,
                f"{f:.0f} µs",
                f"<= {limit}x",
                q / f <= limit,
            )
        )
    daemon = mem.get("daemon")
    if daemon is not None:
        one, c_floor = daemon["workers1"], mem["floor_idle_rss_kb"]
        py = daemon["floors"]["python + libgnutls"]["rss_kb"]
        lean = daemon["floors"].get("python + libgnutls + asyncio without ssl", {})
        mb = one["rss_kb"] / 1024
        rows.append(
            _goal(
                "idle RSS, workers: 1 (MB)",
                mb,
                f"C {c_floor / 1024:.1f}, py+gnutls {py / 1024:.1f}"
                + (f", +asyncio {lean['rss_kb'] / 1024:.1f}" if lean else ""),
                "<= 20 MB",
                mb <= 20,
            )
        )
        extra = daemon["extra_worker_pss_kb"] / 1024
        rows.append(_goal("PSS of one more worker (MB)", extra, "", "<= 8 MB", extra <= 8))
    w = {r["workers"]: r["pairs_per_s"] for r in res.get("workers", [])}
    if 1 in w and 2 in w:
        fl = res["load"]["floor"]
        scale = w[2] / w[1]
        rows.append(
            _goal(
                f"daemon workers 2 vs 1 ({w[1]:.0f} -> {w[2]:.0f} pairs/s)",
                scale,
                f"C 1->2 cores x{fl['2core_hs_s'] / fl['1core_hs_s']:.2f}",
                ">= 1.8x",
                scale >= 1.8,
            )
        )
        cpu_req = {r["workers"]: 1e6 * r["main_cpu_s"] / r["n"] for r in res["workers"]}
        rows.append(
            f"  main process CPU per request: {cpu_req[2]:.0f} µs with 2 workers, "
            f"{cpu_req[1]:.0f} µs inline (the whole pair); on 2 cores that leaves 2 workers "
            f"about x{2 * cpu_req[1] / (cpu_req[1] + cpu_req[2]):.2f} "
            "(a worker's cost taken as inline's)"
        )
    return rows


def _targets(res: dict[str, Any]) -> list[str]:
    cpu, mem = res["cpu"], res["memory"]
    srv = cpu["quichsd.full.server"]["median"] / cpu["floor.full.server"]["median"]
    srv_loop = (cpu["quichsd.full.server"]["median"] + cpu["quichsd.full.loop"]["mean"]) / cpu[
        "floor.full.server"
    ]["median"]
    scal = []
    for key in [k for k in res["load"] if k.startswith("K=")]:
        r = res["load"][key]
        one = r["1core"]["throughput_hs_s"]
        best = max(r["2core-threads"]["throughput_hs_s"], r["2core-procs"]["throughput_hs_s"])
        scal.append(f"{key} x{best / one:.2f}")
    w = {r["workers"]: r["pairs_per_s"] for r in res.get("workers", [])}
    if 1 in w and 2 in w:
        scal.append(f"daemon workers 1 -> 2: x{w[2] / w[1]:.2f} ({w[1]:.0f} -> {w[2]:.0f} pairs/s)")
    return [
        "",
        "Targets (issue 7)",
        f"daemon-side CPU <= 1.3x floor (full, server): {srv:.2f}x ({srv_loop:.2f}x with the "
        "whole loop)",
        f"2-core throughput >= 1.7x 1-core (best of threads/processes): {', '.join(scal)}",
        f"idle RSS <= 50 MB: {mem['idle']['rss_kb'] / 1024:.1f} MB",
        f"<= 100 KB per in-flight handshake: {mem['inflight']['per_handshake_bytes'] / 1024:.1f}"
        " KB",
    ]


def print_table(res: dict[str, Any]) -> None:
    rows = _cpu_rows(res["cpu"]) + _load_rows(res["load"]) + _mem_rows(res["memory"])
    rows += _targets(res) + _goals(res)
    h = res["host"]
    rows.append(
        f"host: {h['cpus']} CPUs, load average {h['loadavg_start'][0]:.2f} at start, "
        f"{h['loadavg_end'][0]:.2f} at end (other work on the host inflates wall-clock figures)"
    )
    print("\n".join(rows))
