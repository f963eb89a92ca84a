# SPDX-License-Identifier: GPL-2.0-or-later
"""Worker-process scenarios of the VM tier (``handshake.workers: 2``); run by guest.py.

Which process sent a netlink command is read from the kernel itself: the ``handshake``
tracepoints ``handshake_cmd_accept`` / ``handshake_cmd_done`` fire in the context of the
task that sent ACCEPT / DONE, and ftrace records its pid (tgid with ``record-tgid``).

* NVMe/TCP handshakes run in the workers like QUIC ones: the worker holding the fd runs
  the TLS handshake, installs kTLS on it and sends DONE, so every DONE comes from a worker
  pid and every ACCEPT from the main process; the NVMe scenario checks that, real I/O
  through a namespace whose sockets a worker set up, plus the worker life cycle: two
  workers under the fork server, an idle worker SIGKILLed is replaced, no fd left
  anywhere, SIGTERM to the main process only ends all of them (no stray process in ``ps``).
* With a QUIC module the handshakes do run in the workers: every DONE comes from a worker
  pid (both of them, and the replacement of a killed one), none from the main process; the
  kernel server's resumed handshake accepts 0-RTT, which needs the main process's
  anti-replay store to answer the worker's query.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import guest as g

WORKERS = 2
TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
TRACE_EVENTS = ("handshake_cmd_accept", "handshake_cmd_done")
#: "  quichsd-430     (    430) [001] .....   12.345678: handshake_cmd_done: req=..."
RE_TRACE = re.compile(
    r"-(\d+)\s+(?:\(\s*([\d-]+)\)\s+)?\[\d+\]\s.*?\s(handshake_cmd_(?:accept|done)):\s"
)


class HandshakeTrace:
    """ftrace of the kernel's ACCEPT/DONE command tracepoints, with the sender's pid."""

    def __init__(self, s: g.Scenario) -> None:
        self.root = next((p for p in TRACEFS if (p / "events").is_dir()), TRACEFS[0])
        if not (self.root / "events").is_dir():
            g.run(f"mount -t tracefs nodev {TRACEFS[0]}", check=False)
        events = self.root / "events" / "handshake"
        s.require(
            "kernel has the handshake tracepoints (ACCEPT/DONE sender pid)",
            all((events / e / "enable").exists() for e in TRACE_EVENTS),
            events,
        )
        with contextlib.suppress(OSError):
            (self.root / "options" / "record-tgid").write_text("1")
        (self.root / "trace").write_text("")  # clear
        for e in TRACE_EVENTS:
            (events / e / "enable").write_text("1")
        (self.root / "tracing_on").write_text("1")
        self.events_dir = events

    def events(self) -> list[tuple[str, int]]:
        """(event name, sending process id) in order."""
        out: list[tuple[str, int]] = []
        for line in (self.root / "trace").read_text(errors="replace").splitlines():
            m = RE_TRACE.search(line)
            if m:
                tgid = m.group(2)
                out.append((m.group(3), int(tgid) if tgid and tgid.isdigit() else int(m.group(1))))
        return out

    def senders(self, event: str) -> list[int]:
        return [pid for name, pid in self.events() if name == event]

    def close(self) -> None:
        for e in TRACE_EVENTS:
            with contextlib.suppress(OSError):
                (self.events_dir / e / "enable").write_text("0")


def tree(d: g.Daemon) -> tuple[int | None, list[int]]:
    """(fork server pid, worker pids): the main process's child and its children."""
    kids = g.children()
    forks = kids.get(d.pid, [])
    if len(forks) != 1:
        return None, []
    return forks[0], sorted(kids.get(forks[0], []))


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def quichsd_ps() -> list[str]:
    """``ps`` lines of quichsd processes: the console script is argv[0], or argv[1] after
    its interpreter (not merely named in another command's arguments, like guest.py's)."""
    p = g.run("ps -eo pid,ppid,stat,args", check=False)
    out = []
    for line in p.stdout.splitlines()[1:]:
        argv = line.split()[3:5]
        if any(a == "quichsd" or a.endswith("/quichsd") for a in argv):
            out.append(line.strip())
    return out


def with_workers(s: g.Scenario, config: Path) -> None:
    """Point the daemon at ``config`` (which must set ``workers: WORKERS``)."""
    cmd = list(s.daemon_cmd)
    s.require("daemon command has '-c CONFIG'", "-c" in cmd[:-1], " ".join(cmd))
    cmd[cmd.index("-c") + 1] = str(config)
    s.daemon_cmd = cmd


def start_with_workers(s: g.Scenario) -> tuple[g.Daemon, int, list[int]]:
    d = s.start_daemon()
    s.daemon_log_has(d, ("serving kernel handshake requests", f"in {WORKERS} worker processes"))
    found: list[Any] = [None, []]

    def pred() -> bool:
        found[:] = tree(d)
        return found[0] is not None and len(found[1]) == WORKERS

    ok = g.wait_until(pred, 20, 0.2)
    s.require(
        f"/proc: the main process {d.pid} has one fork server with {WORKERS} worker children",
        ok,
        f"fork server {found[0]}, workers {found[1]}",
    )
    return d, found[0], list(found[1])


def kill_idle_worker(s: g.Scenario, d: g.Daemon, zygote: int, workers: list[int]) -> list[int]:
    """SIGKILL the first worker while nothing is in flight; returns the new worker set."""
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    now: list[int] = []

    def pred() -> bool:
        z, w = tree(d)
        now[:] = w
        return z == zygote and len(w) == WORKERS and victim not in w and all(map(running, w))

    ok = g.wait_until(pred, 20, 0.2)
    s.check(
        f"worker {victim} SIGKILLed while idle was replaced by the fork server {zygote}",
        ok,
        f"workers now {now}",
    )
    s.daemon_log_has(d, (f"worker {victim} exited: starting a new one",))
    return now


def sighup_reloads_workers(s: g.Scenario, d: g.Daemon, zygote: int, workers: list[int]) -> None:
    """SIGHUP to the main process alone: it reloads, forwards the signal to the fork server
    and every worker, and logs each worker's report; no process is replaced."""
    os.kill(d.pid, signal.SIGHUP)
    want = [f"worker {w}: configuration reloaded from " for w in workers]
    ok = g.wait_until(lambda: all(x in d.log() for x in want), 30, 0.2)
    lines = [x for x in d.log().splitlines() if "configuration reloaded" in x or "reload" in x]
    s.check(
        f"SIGHUP: the main process and each worker {workers} reloaded (one line each)",
        ok and "quichsd: configuration reloaded from " in d.log(),
        lines,
    )
    s.check(
        "SIGHUP: no worker kept its old configuration",
        "kept its old configuration" not in d.log(),
    )
    z, now = tree(d)
    s.check(
        "SIGHUP: the same fork server and workers afterwards (reload, not respawn)",
        z == zygote and sorted(now) == sorted(workers),
        f"fork server {z}, workers {now}",
    )


def stop_main_only(s: g.Scenario, d: g.Daemon, pids: set[int]) -> None:
    """SIGTERM to the main process alone (its own shutdown must end the workers)."""
    os.kill(d.pid, signal.SIGTERM)
    try:
        rc: int | None = d.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    s.check("main process exits with status 0 on SIGTERM (sent to it alone)", rc == 0, rc)
    left: list[int] = []

    def pred() -> bool:
        left[:] = [p for p in sorted(pids) if running(p)]
        return not left

    ok = g.wait_until(pred, 5, 0.1)
    s.check(
        "fork server and every worker (incl. the replacement) are gone after the main exits",
        ok,
        f"still running: {left}" if left else f"checked {sorted(pids)}",
    )
    ps = quichsd_ps()
    s.check("ps lists no quichsd process afterwards", not ps, ps or "ps -eo pid,ppid,stat,args")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(d.pid, signal.SIGKILL)  # never let a straggler reach the next scenario


def check_done_senders(
    s: g.Scenario, trace: HandshakeTrace, what: str, want: Callable[[list[int]], bool], desc: str
) -> list[int]:
    senders = trace.senders("handshake_cmd_done")
    s.check(f"tracepoint handshake_cmd_done {what}: {desc}", want(senders), f"senders {senders}")
    return senders


# ------------------------------------------------------------------------------- NVMe
def sc_workers_nvme_concurrent(s: g.Scenario) -> None:
    k = s.ctx.kmsg
    cfg_in = Path(s.daemon_cmd[s.daemon_cmd.index("-c") + 1])
    text = cfg_in.read_text()
    s.require("shipped config sets 'workers: 1'", "\n  workers: 1\n" in text, cfg_in)
    cfg = s.ctx.out / f"config-{s.name}.yaml"
    cfg.write_text(text.replace("\n  workers: 1\n", f"\n  workers: {WORKERS}\n"))
    with_workers(s, cfg)
    trace = HandshakeTrace(s)
    try:
        d, zygote, workers = start_with_workers(s)
        pids = {zygote, *workers}
        n_hosts, n_raw = 2, 4
        hosts = [g.new_host() for _ in range(n_hosts)]
        idx = k.mark(f"workers: {n_hosts} host connects + {n_raw} raw target connects at once")
        fns: list[Callable[[], Any]] = [functools.partial(g.host_connect, *h) for h in hosts]
        fns += [lambda: g.target_connect(g.CONSUMER_TIMEOUT + 5) for _ in range(n_raw)]
        res = g.run_parallel(fns)
        for i, r in enumerate(res[:n_hosts]):
            ok = isinstance(r, tuple) and r[0] == 0 and r[1] < g.CONSUMER_TIMEOUT
            s.check(f"host connect {i + 1} with TLS succeeded in time", ok, r)
        for i, r in enumerate(res[n_hosts:]):
            ok = isinstance(r, tuple) and r[0] in ("closed", "reset") and r[1] < g.CONSUMER_TIMEOUT
            s.check(f"raw target connect {i + 1} ended by the target in time", ok, r)
        s.expect_host_done(idx, 2 * n_hosts, 0, 10)
        found = k.wait_count(g.RE_TARGET_DONE, idx, 2 * n_hosts + n_raw, 10)
        statuses = sorted(int(m.group(2)) for m in found)
        s.check(
            f"nvmet logged {2 * n_hosts} DONEs status 0 and {n_raw} -13 (raw clients)",
            statuses == sorted([0] * 2 * n_hosts + [-13] * n_raw),
            f"statuses {statuses}",
        )
        s.check(
            "no consumer logged 'TLS handshake timeout' or a failed submit",
            not any(g.RE_TIMEOUT.search(x) or "failed to start TLS" in x for x in k.since(idx)),
        )
        n = 4 * n_hosts + n_raw
        s.daemon_log_has(d, g.expected("done_ktls"), count=4 * n_hosts)
        s.daemon_log_has(d, g.expected("done_eacces"), count=n_raw)
        accepts = trace.senders("handshake_cmd_accept")
        s.check(
            f"tracepoint handshake_cmd_accept: {n} ACCEPTs, all from the main process {d.pid}",
            len(accepts) >= n and set(accepts) == {d.pid},
            f"senders {accepts}",
        )
        check_done_senders(
            s,
            trace,
            "(NVMe/TCP)",
            lambda p: len(p) == n and d.pid not in p and set(p) <= set(workers),
            f"{n} DONEs, all from the workers {workers} (the process that ran the handshake "
            "and set up kTLS on its fd), none from the main process",
        )
        s.no_handshake_fds(d, "(main, fork server, workers) after all DONEs")
        workers = kill_idle_worker(s, d, zygote, workers)
        pids.update(workers)
        idx = k.mark("workers: host connect + I/O after a worker was replaced")
        g.nvme_tls_round_trip(s, d, hmac=1, mib=2)
        s.no_handshake_fds(d, "after the respawn")
        sighup_reloads_workers(s, d, zygote, workers)
        idx = k.mark("workers: host connect after SIGHUP")
        err, secs = g.host_connect(*g.new_host())
        s.check(
            "after SIGHUP: host connect with TLS succeeded",
            err == 0,
            f"errno {err} ({errno.errorcode.get(err, '?')}) after {secs:.1f}s",
        )
        s.expect_host_done(idx, 2, 0, 5)
        senders = trace.senders("handshake_cmd_done")
        s.check(
            "every DONE so far came from a worker process, none from the main",
            d.pid not in senders and len(senders) == n + 8,
            f"senders {senders}",
        )
        stop_main_only(s, d, pids)
    finally:
        trace.close()


# ------------------------------------------------------------------------------- QUIC
def sc_workers_kernel_quic(s: g.Scenario) -> None:
    if not s.ctx.quic_modules:
        raise g.Skip("QUICHSD_QUIC_MODULES not set (no QUIC module in CI)")
    g.load_quic(s)
    cfg = s.ctx.out / f"config-{s.name}.yaml"
    g.use_pki_config(s)  # writes cfg, points daemon_cmd at it
    with open(cfg, "a") as fh:
        fh.write(f"handshake:\n  workers: {WORKERS}\n")
    trace = HandshakeTrace(s)
    try:
        d, zygote, workers = start_with_workers(s)
        first = set(workers)
        g.kernel_vs_peer(
            s,
            "kernel client (x509) -> userspace server, workers",
            ["role=client", "port=1241", "alpn=sample"],
            ["--port", "1241"],
            g.SAMPLE_CLIENT_LINES,
            ["handshake completed", *g.PEER_SERVER_LINES],
        )
        g.kernel_vs_peer(
            s,
            "userspace client -> kernel server (x509), workers",
            ["role=server", "port=1242", "alpn=sample"],
            ["--port", "1242"],
            g.SAMPLE_SERVER_LINES,
            ["handshake completed", *g.PEER_CLIENT_LINES],
        )
        s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "alpn sample"))
        s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "alpn sample"))
        check_done_senders(
            s,
            trace,
            "(x509 both ways)",
            lambda p: len(p) == 2 and set(p) == first,
            f"2 DONEs, one from each worker {sorted(first)}, none from the main {d.pid}",
        )
        workers = kill_idle_worker(s, d, zygote, workers)
        fresh = set(workers) - first
        g.kernel_vs_peer(
            s,
            "kernel ticket client (alpn=ticket) -> userspace server, 2 connections, workers",
            ["role=client", "port=1243", "alpn=ticket"],
            ["--port", "1243", "--alpn", "ticket", "--rounds", "2"],
            g.TICKET_KERNEL_CLIENT_LINES,
            g.TICKET_PEER_SERVER_LINES,
        )
        g.kernel_vs_peer(
            s,
            "userspace ticket client -> kernel server (alpn=ticket), 2 connections, workers",
            ["role=server", "port=1244", "alpn=ticket"],
            ["--port", "1244", "--alpn", "ticket", "--rounds", "2"],
            g.TICKET_KERNEL_SERVER_LINES,
            g.TICKET_PEER_CLIENT_LINES,
        )
        s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "alpn ticket"), count=2)
        s.daemon_log_has(d, ("(CLIENTHELLO, X509) done: status 0 ", "resumed", "0-RTT"))
        s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "alpn ticket"), count=2)
        # the worker's GnuTLS anti-replay add asks the main process's store: 0-RTT accepted
        s.daemon_log_has(d, ("(SERVERHELLO, X509) done: status 0 ", "resumed", "0-RTT"))
        alive = set(workers)
        check_done_senders(
            s,
            trace,
            "(all 6 handshakes)",
            lambda p: (
                len(p) == 6 and d.pid not in p and set(p[2:]) <= alive and bool(fresh & set(p[2:]))
            ),
            f"6 DONEs from workers only; after the respawn from {sorted(alive)} incl. the "
            f"replacement {sorted(fresh)}",
        )
        accepts = trace.senders("handshake_cmd_accept")
        s.check(
            f"tracepoint handshake_cmd_accept: 6 ACCEPTs, all from the main process {d.pid}",
            len(accepts) == 6 and set(accepts) == {d.pid},
            f"senders {accepts}",
        )
        lines = [x for x in d.log().splitlines() if "handshake for " in x]
        s.check(
            "every completion line names the peer (logged by the main after the worker's DONE)",
            len(lines) == 6 and all("handshake for 127.0.0.1:" in x for x in lines),
            [x for x in lines if "handshake for 127.0.0.1:" not in x] or f"{len(lines)} lines",
        )
        s.no_handshake_fds(d, "(main, fork server, workers) after all DONEs")
        stop_main_only(s, d, {zygote, *first, *workers})
    finally:
        trace.close()


FUNCS: dict[str, Callable[[g.Scenario], None]] = {
    "workers_nvme_concurrent": sc_workers_nvme_concurrent,
    "workers_kernel_quic": sc_workers_kernel_quic,
}
