# SPDX-License-Identifier: GPL-2.0-or-later
"""``handshake.workers`` = 2: the main process ACCEPTs (FakeKernel, the agent's netlink
seam), hands each fd to a worker process, the worker sends DONE through its own netlink
socket (RecordingTransport: sender pid + the socket its SOCKFD names in the sender's fd
table). Workers are real forked processes (fork server + Worker), as in the daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from netlink.test_nlagent import READY, FakeKernel, done_sent, fd_count, psk_reply, until
from workers_helpers import RecordingTransport, Records

from quichsd.netlink import AcceptRequest, HandshakeAgent, HandshakeOutcome
from quichsd.workers import ReplayStore, WorkerPool
from quichsd.workers.replay import RemoteReplayStore, SharedAntiReplay
from quichsd.workers.worker import ReloadHook, Worker, reload_now

UDP = socket.IPPROTO_UDP
PSK_ID = 0x1BDD3D81
Handler = Callable[[AcceptRequest, socket.socket], Awaitable[HandshakeOutcome]]


async def no_fallback(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
    raise AssertionError("a request ran in the main process")


def make_pool(
    handler: Handler,
    records: Records,
    *,
    reload: ReloadHook | None = None,
    anti: SharedAntiReplay | None = None,
    shared: bool = True,
    store: ReplayStore | None = None,
    **timing: float,
) -> WorkerPool:
    """``timing``: WorkerPool's margin, heartbeat, unresponsive_after."""
    store = ReplayStore() if store is None else store

    def worker_main(chan: socket.socket, replay: socket.socket) -> int:
        if anti is not None:
            anti.store = RemoteReplayStore(replay) if shared else ReplayStore()
        transport = RecordingTransport(records.theirs)
        return asyncio.run(Worker(chan, handler, transport, reload=reload, grace=1.0).run())

    return WorkerPool(
        2,
        worker_main,
        store=store,
        fallback=no_fallback,
        reload=None if reload is None else reload_now(reload),
        deadline=lambda r: (r.timeout_ms or 10_000) / 1000,
        **timing,  # type: ignore[arg-type]
    )


@pytest.fixture
async def records() -> AsyncIterator[Records]:
    r = Records()
    yield r
    r.close()


def bound_udp() -> tuple[int, int, int]:
    """A UDP socket on its own port, detached: (fd, port, inode). The port can be bound
    again only once every process has closed its copy."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", 4420))
    port = s.getsockname()[1]
    fd = s.detach()
    return fd, port, os.fstat(fd).st_ino


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def slow_ok(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == UDP
    await asyncio.sleep(0.3)  # long enough for the requests to overlap
    return HandshakeOutcome(0, request.peer_identities, f"pid {os.getpid()}")


async def test_two_workers_share_requests_each_sends_one_done(records: Records) -> None:
    pool = make_pool(slow_ok, records)
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    try:
        await pool.start()
        workers = {w.pid for w in pool.alive()}
        assert len(workers) == 2 and os.getpid() not in workers
        before = {w.pid: await pool.stats(w) for w in pool.alive()}
        base = fd_count()
        socks = [bound_udp() for _ in range(6)]
        kernel.pending = [(lambda seq, fd=fd: psk_reply(fd, seq, (PSK_ID,))) for fd, _, _ in socks]
        await agent.start()  # start-up drain ACCEPTs all six
        await until(lambda: len(records.poll()) == 6, timeout=10)
        await agent.wait_idle()
        after = {w.pid: await pool.stats(w) for w in pool.alive()}
        assert fd_count() == base  # the main process closed every fd it was given
    finally:
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)
    assert kernel.dones() == []  # no DONE from the main process
    got = records.poll()
    assert len(got) == 6
    assert {r.pid for r in got} == workers  # both workers served some
    by_ino = {r.ino: r for r in got}
    assert sorted(by_ino) == sorted(ino for _, _, ino in socks)  # one DONE per socket
    for r in got:  # each names, in its sender's fd table, the socket it was handed
        assert r.message == done_sent(r.seq, 0, r.sockfd, (PSK_ID,)), r.message.hex()
    assert after == before  # (open fds, in flight) of each worker back to where they were
    assert all(port_free(port) for _, port, _ in socks)  # closed in every process


async def hang(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
    await asyncio.sleep(60)
    raise AssertionError("not reached")


async def test_worker_killed_mid_handshake_main_answers_eio_and_respawns(
    records: Records,
) -> None:
    pool = make_pool(hang, records)
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    fd, port, _ = bound_udp()
    try:
        await pool.start()
        first = {w.pid for w in pool.alive()}
        kernel.pending = [lambda seq: psk_reply(fd, seq)]
        await agent.start()
        await until(lambda: any(w.jobs for w in pool.alive()))
        (victim,) = [w.pid for w in pool.alive() if w.jobs]
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
        done = kernel.dones()[0]
        assert done == done_sent(kernel.seq_of(done), errno.EIO, fd)  # from the main process
        await until(lambda: len(pool.alive()) == 2, timeout=10)
        now = {w.pid for w in pool.alive()}
        assert victim not in now and len(now - first) == 1  # a new worker took its place
    finally:
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)
    assert records.poll() == []  # the dead worker sent nothing
    assert port_free(port)


async def test_worker_killed_with_a_ping_unread_is_one_warning_not_a_bad_message(
    records: Records, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in the VM tier (workers_kernel_quic): an idle worker SIGKILLed while a
    heartbeat ping sat unread in its queue made the main process log
    ``worker N: bad message: [Errno 104] Connection reset by peer`` (ERROR) before
    ``worker N exited: starting a new one``. ECONNRESET on the channel is its end: one
    warning line, and a replacement."""
    caplog.set_level(logging.INFO, logger="quichsd.workers")
    pool = make_pool(slow_ok, records, heartbeat=0.1, unresponsive_after=30.0)
    pool.start_fork_server()
    try:
        await pool.start()
        first = {w.pid for w in pool.alive()}
        victim = min(first)
        (handle,) = [w for w in pool.alive() if w.pid == victim]
        os.kill(victim, signal.SIGSTOP)
        await until(lambda: handle.ping_sent is not None, timeout=5)  # queued, never read
        os.kill(victim, signal.SIGKILL)
        await until(
            lambda: len(pool.alive()) == 2 and victim not in {w.pid for w in pool.alive()},
            timeout=10,
        )
    finally:
        await pool.stop(timeout=2)
    about = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "quichsd.workers"
        and f"worker {victim}" in r.getMessage()
        and r.process == os.getpid()
    ]
    assert about == [("WARNING", f"worker {victim} exited: starting a new one")]


def reload_from(path: str, slow: float = 0.0) -> ReloadHook:
    """Reads ``path`` (after ``slow`` seconds of blocking work, like a big config or
    credential check on a loaded machine); the swap returns what it read."""

    def hook() -> Callable[[], str]:
        time.sleep(slow)
        with open(path) as f:
            text = f.read()
        return lambda: text

    return hook


async def test_reload_is_forwarded_to_every_worker(
    records: Records, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="quichsd.workers")
    path = os.path.join(str(tmp_path), "generation")
    with open(path, "w") as f:
        f.write("one")
    pool = make_pool(slow_ok, records, reload=reload_from(path))
    pool.start_fork_server()
    try:
        await pool.start()
        with open(path, "w") as f:
            f.write("two")
        pool.reload()
        await until(lambda: all(w.reloads for w in pool.alive()))
        assert [w.reloads for w in pool.alive()] == [[(True, "two")], [(True, "two")]]
        # the main process says so, one line per worker
        lines = sorted(r.getMessage() for r in caplog.records if r.getMessage().endswith(": two"))
        assert lines == sorted(f"worker {w.pid}: two" for w in pool.alive())
    finally:
        await pool.stop(timeout=2)


async def test_slow_reload_keeps_workers_answering_and_alive(
    records: Records, tmp_path: object
) -> None:
    """A reload that takes longer than the heartbeat allows (seen in the VM tier under TCG:
    every worker "answered no ping for 5.0 s: killed" after SIGHUP, so none reported its
    reload): the worker checks the files off its loop, keeps answering pings and serving
    handshakes, and reports the reload; no worker is replaced."""
    path = os.path.join(str(tmp_path), "generation")
    with open(path, "w") as f:
        f.write("two")
    pool = make_pool(
        slow_ok, records, reload=reload_from(path, slow=1.5), heartbeat=0.1, unresponsive_after=0.6
    )
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    fd, port, ino = bound_udp()
    try:
        await pool.start()
        await agent.start()
        before = sorted(w.pid for w in pool.alive())
        pool.reload()
        await asyncio.sleep(0.3)  # both workers are inside the slow load now
        kernel.pending.append(lambda seq: psk_reply(fd, seq, (PSK_ID,)))
        kernel.mcast.put_nowait([READY])
        t0 = time.monotonic()
        await until(lambda: len(records.poll()) == 1, timeout=5)
        assert time.monotonic() - t0 < 1.0  # served during the reload, not after it
        rec = records.poll()[0]
        assert rec.ino == ino and rec.message == done_sent(rec.seq, 0, rec.sockfd, (PSK_ID,))
        assert rec.pid in before  # by a worker
        await until(lambda: all(w.reloads for w in pool.alive()), timeout=5)
        assert sorted(w.pid for w in pool.alive()) == before  # none killed as unresponsive
        assert [w.reloads for w in pool.alive()] == [[(True, "two")], [(True, "two")]]
    finally:
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)
    await until(lambda: port_free(port))


# --- 0-RTT anti-replay across workers ----------------------------------------------------


def replay_handler(server_cfg: object) -> Handler:
    """Reads a ClientHello from the socket and feeds it to a fresh server engine; says
    whether it accepted early data."""
    from quichsd.tls.engine import Engine, EngineConfig
    from quichsd.tls.events import Secret
    from quichsd.uapi import CryptoLevel

    assert isinstance(server_cfg, EngineConfig)

    async def handle(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        sock.setblocking(True)
        hello = sock.recv(1 << 16)
        engine = Engine(server_cfg)
        try:
            engine.receive(CryptoLevel.INITIAL, hello)
            early = any(
                isinstance(e, Secret) and e.level == CryptoLevel.EARLY for e in engine.events()
            )
        finally:
            engine.close()
        return HandshakeOutcome(0, (), f"{os.getpid()} early={early}")

    return handle


@pytest.mark.parametrize("shared", [True, False], ids=["shared-store", "per-worker-control"])
async def test_replayed_client_hello_to_other_worker_gets_no_early_data(
    records: Records, shared: bool
) -> None:
    from engine.engine_helpers import CLIENT_TP, SERVER_NAME, SERVER_TP, creds, roundtrip
    from pki import make_pki

    from quichsd.gnutls.creds import generate_ticket_key
    from quichsd.tls.engine import Engine, EngineConfig, Role
    from quichsd.tls.events import CryptoData, SessionData
    from quichsd.uapi import AuthMode, CryptoLevel, MsgType

    pki = make_pki()
    store = ReplayStore()
    anti = SharedAntiReplay(store)  # created before the fork, as in the daemon
    server_cfg = EngineConfig(
        Role.SERVER,
        alpns=(b"h3",),
        transport_params=SERVER_TP,
        x509=creds(pki.server, trust=pki.ca.cert_pem),
        ticket_key=generate_ticket_key(),
        anti_replay=anti,
    )
    client_cfg = EngineConfig(
        Role.CLIENT,
        alpns=(b"h3",),
        transport_params=CLIENT_TP,
        peer_name=SERVER_NAME,
        x509=creds(trust=pki.ca.cert_pem),
    )
    first = roundtrip(Engine(client_cfg), Engine(server_cfg))  # a ticket for 0-RTT
    (ticket,) = first.of("client", SessionData)
    client = Engine(dataclasses.replace(client_cfg, session_data=ticket.data))
    client.start()
    (hello,) = [e for e in client.events() if isinstance(e, CryptoData)]
    assert hello.level == CryptoLevel.INITIAL
    client.close()

    pool = make_pool(replay_handler(server_cfg), records, anti=anti, shared=shared, store=store)
    pool.start_fork_server()
    request = AcceptRequest(0, MsgType.SERVERHELLO, AuthMode.PSK)
    answers = []
    try:
        await pool.start()
        for _ in range(2):  # the same ClientHello twice: least-loaded alternates workers
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            with mine, theirs:
                mine.send(hello.data)
                answers.append((await pool.handle(request, theirs)).reason)
    finally:
        await pool.stop(timeout=2)
    (pid1, early1), (pid2, early2) = (str(a).split(" early=") for a in answers)
    assert pid1 != pid2  # two different worker processes
    assert early1 == "True"
    if shared:
        assert early2 == "False"  # the replay is refused early data
        assert len(store) == 1
    else:
        assert early2 == "True"  # control: with a store per worker the replay gets in
        assert len(store) == 0


# --- issue 11 item 7: hung and stopped workers, a killed fork server -------------------------

HANG_ID = 0x4A4E4721  # a request carrying this peer identity blocks its worker


async def hang_or_ok(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
    """Blocks the worker's whole event loop (as a call stuck in C would) for HANG_ID;
    answers OK at once for anything else."""
    if HANG_ID in request.peer_identities:
        time.sleep(60)
    return HandshakeOutcome(0, request.peer_identities, f"pid {os.getpid()}")


def process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat, or None once the process is gone. The file can
    vanish between open and read while the process is reaped: read() then fails with ESRCH
    (ProcessLookupError), not ENOENT, so both mean gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_gone(pid: int) -> bool:
    """No process and no zombie left with this pid."""
    return process_state(pid) in (None, "X")


def zombie(pid: int) -> bool:
    return process_state(pid) == "Z"


def socket_inodes(pid: int) -> set[int]:
    out = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


async def served_by_worker(kernel: FakeKernel, records: Records, pool: WorkerPool) -> None:
    """Canary: one more request, answered by a live worker process (its own DONE, 0)."""
    fd, port, ino = bound_udp()
    before = len(records.poll())
    kernel.pending.append(lambda seq: psk_reply(fd, seq, (PSK_ID,)))
    kernel.mcast.put_nowait([READY])
    await until(lambda: len(records.poll()) == before + 1, timeout=10)
    rec = records.poll()[-1]
    assert rec.ino == ino and rec.message == done_sent(rec.seq, 0, rec.sockfd, (PSK_ID,))
    assert rec.pid in {w.pid for w in pool.alive()}
    await until(lambda: port_free(port))


async def test_issue_11_item_7_hung_worker_answered_by_main_at_deadline_and_replaced(
    records: Records,
) -> None:
    """issue 11 item 7: a worker that never answers (its loop blocked): the main process
    answers DONE ETIMEDOUT itself by the request's deadline plus the margin, the worker is
    killed (its copy of the fd goes with it) and replaced, and the pool keeps serving."""
    pool = make_pool(hang_or_ok, records, margin=0.5)
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    fd, port, _ = bound_udp()
    try:
        await pool.start()
        first = {w.pid for w in pool.alive()}
        kernel.pending = [lambda seq: psk_reply(fd, seq, (HANG_ID,), timeout_ms=300)]
        t0 = time.monotonic()
        await agent.start()
        await until(lambda: len(kernel.dones()) == 1, timeout=10)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed < 2.0, elapsed  # deadline 0.3 s + margin 0.5 s
        done = kernel.dones()[0]
        assert done == done_sent(kernel.seq_of(done), errno.ETIMEDOUT, fd)  # from main
        (victim,) = first - {w.pid for w in pool.alive()}
        await until(lambda: process_gone(victim), timeout=5)
        await until(lambda: port_free(port), timeout=5)  # no process holds the socket now
        await until(lambda: len(pool.alive()) == 2, timeout=10)
        await served_by_worker(kernel, records, pool)
    finally:
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)


async def test_issue_11_item_7_sigstopped_worker_is_killed_replaced_and_its_job_answered(
    records: Records,
) -> None:
    """issue 11 item 7: a worker SIGSTOPped with a job in hand misses its heartbeat: it is
    killed and replaced, and the job is answered from the main process (EIO) well before
    the request's 10 s deadline; new requests go to the live workers."""
    pool = make_pool(slow_ok, records, heartbeat=0.1, unresponsive_after=0.6)
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    fd, port, _ = bound_udp()
    victim = 0
    try:
        await pool.start()
        kernel.pending = [lambda seq: psk_reply(fd, seq, (PSK_ID,))]
        await agent.start()
        await until(lambda: any(w.jobs for w in pool.alive()))
        (victim,) = [w.pid for w in pool.alive() if w.jobs]
        os.kill(victim, signal.SIGSTOP)
        t0 = time.monotonic()
        await until(lambda: len(kernel.dones()) == 1, timeout=5)
        assert time.monotonic() - t0 < 2.0
        done = kernel.dones()[0]
        assert done == done_sent(kernel.seq_of(done), errno.EIO, fd)
        await until(lambda: process_gone(victim), timeout=5)
        await until(lambda: port_free(port), timeout=5)
        await until(lambda: len(pool.alive()) == 2, timeout=10)
        assert victim not in {w.pid for w in pool.alive()}
        await served_by_worker(kernel, records, pool)
    finally:
        if victim and not process_gone(victim):
            os.kill(victim, signal.SIGKILL)
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)
    assert records.poll()[0].pid != victim  # the stopped worker sent no DONE


async def test_issue_11_item_7_killed_fork_server_reaped_restarted_pool_restored(
    records: Records,
) -> None:
    """issue 11 item 7: SIGKILL the fork server: it is reaped (no zombie), a new one is
    started holding none of the main process's sockets opened since (an accepted fd in
    flight would otherwise be kept alive by it), and the workers are started again."""
    pool = make_pool(slow_ok, records)
    pool.start_fork_server()
    kernel = FakeKernel()
    agent = HandshakeAgent(kernel, pool.handle, quic_protocol=UDP)
    try:
        await pool.start()
        await agent.start()
        old_workers = {w.pid for w in pool.alive()}
        old = pool.fork_server.pid
        assert old is not None
        held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # opened after the first fork
        held_ino = os.fstat(held.fileno()).st_ino
        os.kill(old, signal.SIGKILL)
        await until(lambda: process_gone(old), timeout=5)
        await until(lambda: pool.fork_server.pid not in (None, old), timeout=5)
        new = pool.fork_server.pid
        assert new is not None
        await until(
            lambda: len(pool.alive()) == 2 and not old_workers & {w.pid for w in pool.alive()},
            timeout=15,
        )
        for pid in (new, *(w.pid for w in pool.alive())):
            assert held_ino not in socket_inodes(pid)
        for pid in old_workers:  # they stopped with their fork server (reaped by init)
            await until(lambda pid=pid: process_gone(pid) or zombie(pid), timeout=5)
        await served_by_worker(kernel, records, pool)
        held.close()
    finally:
        await agent.stop(timeout=2)
        await pool.stop(timeout=2)
    assert pool.fork_server.pid is None and process_gone(new)  # reaped at stop too
