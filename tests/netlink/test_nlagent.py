# SPDX-License-Identifier: GPL-2.0-or-later
"""The handshake agent with only the netlink socket replaced.

``FakeKernel`` implements ``NetlinkTransport``: it feeds READY bytes to the multicast
reader, answers ACCEPT with hand-built replies carrying *real* fds (UDP/TCP sockets made
here and detached, as if the kernel had installed them), and records every request
framed exactly as a netlink socket would send it. Expected ACCEPT/DONE bytes are written
by hand from the spec (docs/kernel-interfaces.md §1), never with quichsd's encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import resource
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from quichsd import uapi
from quichsd.errors import PeerRejected
from quichsd.netlink import (
    AcceptRequest,
    HandshakeAgent,
    HandshakeFamilyUnavailable,
    HandshakeOutcome,
)
from quichsd.netlink import agent as agent_mod
from quichsd.netlink.agent import free_fds

FAMILY = 0x21
PID = 777
UDP = 17
LOGGER = "quichsd.netlink"


# --- hand-built wire bytes ---------------------------------------------------------------


def u32(attr: int, value: int) -> bytes:
    return struct.pack("=HHI", 8, attr, value)


def s32(attr: int, value: int) -> bytes:
    return struct.pack("=HHi", 8, attr, value)


def nlmsg(cmd: int, attrs: bytes, flags: int = 0, seq: int = 0, pid: int = 0) -> bytes:
    return struct.pack("=IHHIIBBH", 20 + len(attrs), FAMILY, flags, seq, pid, cmd, 1, 0) + attrs


READY = nlmsg(1, u32(2, 1))  # multicast: seq 0, pid 0


def accept_sent(seq: int) -> bytes:
    """ACCEPT request as it must leave: NLM_F_REQUEST (1) only, HANDLER_CLASS=1."""
    return struct.pack("=IHHIIBBHHHI", 28, FAMILY, 0x01, seq, PID, 2, 1, 0, 8, 2, 1)


def done_sent(seq: int, status: int, fd: int, remote: tuple[int, ...] = ()) -> bytes:
    """DONE as it must leave: NLM_F_REQUEST|NLM_F_ACK (5); STATUS, SOCKFD, REMOTE_AUTH*."""
    attrs = struct.pack("=HHI", 8, 1, status) + struct.pack("=HHi", 8, 2, fd)
    attrs += b"".join(struct.pack("=HHI", 8, 3, r) for r in remote)
    return struct.pack("=IHHIIBBH", 20 + len(attrs), FAMILY, 0x05, seq, PID, 3, 1, 0) + attrs


def psk_reply(
    fd: int, seq: int, peer_ids: tuple[int, ...] = (0x1BDD3D81,), timeout_ms: int = 10000
) -> bytes:
    attrs = s32(1, fd) + u32(3, 1) + u32(4, timeout_ms) + u32(5, 2)
    attrs += b"".join(u32(6, p) for p in peer_ids)
    return nlmsg(2, attrs, seq=seq, pid=PID)


# --- the fake kernel ----------------------------------------------------------------------

Reply = Callable[[int], bytes]  # seq -> reply bytes


class FakeKernel:
    def __init__(self) -> None:
        self.mcast: asyncio.Queue[list[bytes] | Exception] = asyncio.Queue()
        self.pending: list[Reply] = []
        self.sent: list[bytes] = []
        self.done_errno: int | None = None
        self.opened = self.closed = False
        self._seq = 0

    @property
    def family_id(self) -> int:
        return FAMILY

    async def open(self) -> None:
        self.opened = True

    async def recv(self) -> list[bytes]:
        item = await self.mcast.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def request(self, body: bytes, flags: int) -> list[bytes]:
        self._seq += 1
        seq = self._seq
        self.sent.append(struct.pack("=IHHII", 16 + len(body), FAMILY, flags, seq, PID) + body)
        await asyncio.sleep(0)  # a real round trip yields to the loop
        if body[0] == 2:  # ACCEPT
            if not self.pending:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            return [self.pending.pop(0)(seq)]
        if body[0] == 3 and self.done_errno is not None:  # DONE
            raise OSError(self.done_errno, os.strerror(self.done_errno))
        return []

    async def close(self) -> None:
        self.closed = True

    # helpers
    def accepts(self) -> list[bytes]:
        return [m for m in self.sent if m[16] == 2]

    def dones(self) -> list[bytes]:
        return [m for m in self.sent if m[16] == 3]

    def seq_of(self, message: bytes) -> int:
        return int(struct.unpack_from("=I", message, 8)[0])


def done_seq(kernel: FakeKernel, index: int = 0) -> int:
    """The sequence number the transport gave the index-th DONE (ordering against the
    concurrent drain is up to the scheduler; the bytes are checked by the caller)."""
    return kernel.seq_of(kernel.dones()[index])


def udp_fd(port: int = 4420) -> int:
    """A connected UDP socket's fd, detached: the agent now owns it (like an ACCEPT fd)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    return s.detach()


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def running(agent: HandshakeAgent) -> AsyncIterator[HandshakeAgent]:
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop(timeout=2)


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


async def never_called(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
    raise AssertionError("handler must not run for a non-QUIC socket")


def completion_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.getMessage().startswith("handshake for ")
    ]


# --- tests --------------------------------------------------------------------------------


async def test_ready_accept_done_non_quic_fd_is_eopnotsupp(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    fd = udp_fd(4420)
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await agent.wait_idle()  # start-up drain: one ACCEPT -> EAGAIN
        assert kernel.sent == [accept_sent(1)]
        kernel.pending.append(lambda seq: psk_reply(fd, seq))
        kernel.mcast.put_nowait([READY])
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    # ACCEPT seq 2 got our fd; the drain continues (seq 3 or 4 -> EAGAIN) while DONE goes out
    assert kernel.accepts() == [
        accept_sent(s) for s in (1, 2, *sorted({3, 4} - {done_seq(kernel)}))
    ]
    assert kernel.dones() == [done_sent(done_seq(kernel), errno.EOPNOTSUPP, fd)]
    assert not fd_open(fd)
    assert completion_lines(logs) == [
        "handshake for 127.0.0.1:4420 (CLIENTHELLO, PSK) done: "
        "status 95 EOPNOTSUPP (socket protocol 17 is neither QUIC nor TCP)"
    ]
    assert fd_count() == base


async def test_tcp_socket_goes_to_the_handler_and_the_line_names_the_peer(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    seen: list[int] = []

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        seen.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))
        return HandshakeOutcome(0, (7,), "kTLS")

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        fd = client.detach()
        server_side, _ = listener.accept()
        with server_side:
            kernel.pending.append(lambda seq: nlmsg(2, s32(1, fd) + u32(3, 2) + u32(5, 3), seq=seq))
            async with running(HandshakeAgent(kernel, handler)) as agent:
                await until(lambda: len(kernel.dones()) == 1)
                await agent.wait_idle()
    assert seen == [socket.IPPROTO_TCP]
    assert kernel.dones() == [done_sent(done_seq(kernel), 0, fd, (7,))]
    assert completion_lines(logs) == [
        f"handshake for 127.0.0.1:{port} (SERVERHELLO, X509) done: status 0 OK (kTLS)"
    ]
    assert fd_count() == base


async def test_startup_drain_serves_requests_submitted_before_start(kernel: FakeKernel) -> None:
    base = fd_count()
    fds = [udp_fd(), udp_fd()]
    kernel.pending = [lambda seq, fd=fd: psk_reply(fd, seq) for fd in fds]  # type: ignore[misc]
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.dones()) == 2)
        await agent.wait_idle()
    assert len(kernel.accepts()) == 3  # two requests + the final EAGAIN, no READY needed
    assert sorted(struct.unpack_from("=i", d, 32)[0] for d in kernel.dones()) == sorted(fds)
    assert fd_count() == base


async def test_eagain_race_sends_no_done(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await agent.wait_idle()
        kernel.mcast.put_nowait([READY])  # another agent already took it
        await until(lambda: len(kernel.accepts()) == 2)
        await agent.wait_idle()
    assert kernel.sent == [accept_sent(1), accept_sent(2)]
    assert kernel.dones() == []
    assert any(
        "ACCEPT -> EAGAIN" in r.getMessage() and r.levelno == logging.DEBUG for r in logs.records
    )
    assert fd_count() == base


async def test_enobufs_drains_until_eagain(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await agent.wait_idle()
        fds = [udp_fd(5000 + i) for i in range(4)]
        kernel.pending = [lambda seq, fd=fd: psk_reply(fd, seq) for fd in fds]  # type: ignore[misc]
        kernel.mcast.put_nowait(OSError(errno.ENOBUFS, "No buffer space available"))  # READYs lost
        await until(lambda: len(kernel.dones()) == 4)
        await agent.wait_idle()
        assert len(kernel.accepts()) == 1 + 5  # start-up, then 4 + EAGAIN
        kernel.mcast.put_nowait(RuntimeError("pyroute2 hiccup"))  # any error: same recovery
        await until(lambda: len(kernel.accepts()) == 7)
        await agent.wait_idle()
        assert not agent._service[0].done()  # the reader survived both errors
        kernel.mcast.put_nowait([READY])  # and still reads
        await until(lambda: len(kernel.accepts()) == 8)
    done_fds = [struct.unpack_from("=i", d, 32)[0] for d in kernel.dones()]
    assert sorted(done_fds) == sorted(fds)
    for d in kernel.dones():
        assert d == done_sent(
            kernel.seq_of(d), errno.EOPNOTSUPP, struct.unpack_from("=i", d, 32)[0]
        )
    assert any("netlink receive error ENOBUFS" in r.getMessage() for r in logs.records)
    assert not any(fd_open(fd) for fd in fds)
    assert fd_count() == base


async def test_handler_success_sends_remote_auth(kernel: FakeKernel) -> None:
    base = fd_count()
    fd = udp_fd()
    seen: list[tuple[AcceptRequest, bool, int]] = []

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        seen.append((request, sock.fileno() != request.sockfd, proto))
        return HandshakeOutcome(0, (0x1BDD3D81, 42))

    kernel.pending.append(lambda seq: psk_reply(fd, seq, (0x1BDD3D81, 7)))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert seen == [
        (
            AcceptRequest(
                fd,
                uapi.MsgType.CLIENTHELLO,
                uapi.AuthMode.PSK,
                timeout_ms=10000,
                peer_identities=(0x1BDD3D81, 7),
            ),
            True,  # the handler works on its own dup
            UDP,
        )
    ]
    assert kernel.dones() == [done_sent(done_seq(kernel), 0, fd, (0x1BDD3D81, 42))]
    assert fd_count() == base


@pytest.mark.parametrize(
    ("exc", "status", "text"),
    [
        (RuntimeError("boom"), errno.EIO, "status 5 EIO (handler raised RuntimeError: boom)"),
        (PeerRejected("bad certificate"), errno.EACCES, "status 13 EACCES (PeerRejected: bad"),
    ],
)
async def test_handler_raising_sends_done_and_closes(
    kernel: FakeKernel,
    logs: pytest.LogCaptureFixture,
    exc: Exception,
    status: int,
    text: str,
) -> None:
    base = fd_count()
    fd = udp_fd()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        raise exc

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), status, fd)]
    (line,) = completion_lines(logs)
    assert text in line
    assert not fd_open(fd)
    assert fd_count() == base


async def test_handler_closing_its_socket_does_not_confuse_done(kernel: FakeKernel) -> None:
    base = fd_count()
    fd = udp_fd()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        sock.close()
        return HandshakeOutcome(0, (5,))

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), 0, fd, (5,))]
    assert not fd_open(fd)
    assert fd_count() == base


async def test_handler_returning_garbage_is_eio(kernel: FakeKernel) -> None:
    fd = udp_fd()

    async def handler(request: AcceptRequest, sock: socket.socket) -> Any:
        return None

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), errno.EIO, fd)]
    assert not fd_open(fd)


@pytest.mark.parametrize(
    ("returned", "serials", "sent"),
    [(-13, (9,), 13), (5000, (9,), errno.EIO), (4095, (9,), 4095), (0, (-1,), errno.EIO)],
)
async def test_handler_status_is_made_wire_valid(
    kernel: FakeKernel, returned: int, serials: tuple[int, ...], sent: int
) -> None:
    fd = udp_fd()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        return HandshakeOutcome(returned, serials)

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), sent, fd)]  # never REMOTE_AUTH on failure


async def test_malformed_reply_with_sockfd_gets_einval_and_close(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    fd = udp_fd(4433)
    # SOCKFD, then MESSAGE_TYPE with a 2-byte payload
    bad = s32(1, fd) + struct.pack("=HHH", 6, 3, 1) + b"\0\0" + u32(5, 2)
    kernel.pending.append(lambda seq: nlmsg(2, bad, seq=seq))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), errno.EINVAL, fd)]
    assert not fd_open(fd)
    assert completion_lines(logs) == [
        "handshake for 127.0.0.1:4433 (UNKNOWN) done: status 22 EINVAL "
        "(malformed ACCEPT reply: MESSAGE_TYPE: expected a 4-byte u32, got 2 bytes)"
    ]
    assert fd_count() == base


async def test_unknown_message_type_gets_eio(kernel: FakeKernel) -> None:
    fd = udp_fd()
    kernel.pending.append(lambda seq: nlmsg(2, s32(1, fd) + u32(3, 4) + u32(5, 2), seq=seq))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
    assert kernel.dones() == [done_sent(done_seq(kernel), errno.EIO, fd)]
    assert not fd_open(fd)


async def test_malformed_reply_without_sockfd_is_logged_no_done(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    kernel.pending.append(lambda seq: nlmsg(2, u32(3, 1) + u32(5, 2), seq=seq))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.accepts()) == 2)
        await agent.wait_idle()
    assert kernel.dones() == []
    assert any(
        r.levelno == logging.ERROR
        and "without a usable SOCKFD: SOCKFD: attribute missing" in r.getMessage()
        for r in logs.records
    )


async def test_done_failure_is_logged_not_retried_fd_closed(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    fd = udp_fd()
    kernel.done_errno = errno.EBUSY  # consumer cancelled meanwhile
    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await until(lambda: len(kernel.dones()) == 1)
        await agent.wait_idle()
        await asyncio.sleep(0.02)
    assert len(kernel.dones()) == 1
    assert not fd_open(fd)
    assert any(
        "DONE for 127.0.0.1:4420" in r.getMessage() and "EBUSY" in r.getMessage()
        for r in logs.records
    )
    assert fd_count() == base


async def test_multicast_noise_is_ignored(kernel: FakeKernel) -> None:
    stray_ack = struct.pack("=IHHIIi", 36, 2, 0x100, 255, PID, 0) + b"\0" * 16
    other_class = nlmsg(1, u32(2, 0))
    other_family = struct.pack("=IHHIIBBH", 28, 0x22, 0, 0, 0, 1, 1, 0) + u32(2, 1)
    truncated_ready = nlmsg(1, struct.pack("=HH", 8, 2))
    async with running(HandshakeAgent(kernel, never_called)) as agent:
        await agent.wait_idle()
        kernel.mcast.put_nowait([stray_ack, other_class, other_family, truncated_ready])
        kernel.mcast.put_nowait([READY])
        await until(lambda: len(kernel.accepts()) == 2)
        await agent.wait_idle()
    assert len(kernel.accepts()) == 2  # only the real READY triggered an ACCEPT


async def test_many_in_flight_at_once(kernel: FakeKernel) -> None:
    base = fd_count()
    n = 40
    release = asyncio.Event()
    started: list[int] = []

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        started.append(request.sockfd)
        await release.wait()
        return HandshakeOutcome(0, (request.sockfd,))

    fds = [udp_fd(6000 + i) for i in range(n)]
    kernel.pending = [lambda seq, fd=fd: psk_reply(fd, seq) for fd in fds]  # type: ignore[misc]
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: len(started) == n)
        assert agent.in_flight == n
        kernel.mcast.put_nowait([READY])  # the reader is not blocked by handshakes
        await until(lambda: len(kernel.accepts()) == n + 2)
        release.set()
        await until(lambda: len(kernel.dones()) == n)
        await agent.wait_idle()
    for d in kernel.dones():
        fd = struct.unpack_from("=i", d, 32)[0]
        assert d == done_sent(kernel.seq_of(d), 0, fd, (fd,))
    assert fd_count() == base


async def test_max_in_flight_caps_accepts_and_resumes(kernel: FakeKernel) -> None:
    base = fd_count()
    release: dict[int, asyncio.Event] = {}
    peak = 0

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        nonlocal peak
        peak = max(peak, agent.in_flight)
        release[request.sockfd] = asyncio.Event()
        await release[request.sockfd].wait()
        return HandshakeOutcome(0)

    fds = [udp_fd(7000 + i) for i in range(7)]
    kernel.pending = [lambda seq, fd=fd: psk_reply(fd, seq) for fd in fds]  # type: ignore[misc]
    agent = HandshakeAgent(kernel, handler, max_in_flight=3, quic_protocol=UDP)
    async with running(agent):
        await until(lambda: len(release) == 3)
        await asyncio.sleep(0.02)
        assert len(kernel.accepts()) == 3  # stopped at the cap, no EAGAIN probe
        assert len(kernel.pending) == 4  # the kernel keeps them
        kernel.mcast.put_nowait([READY])  # READY while capped must not over-accept
        await asyncio.sleep(0.02)
        assert len(kernel.accepts()) == 3
        release[fds[0]].set()  # one slot frees -> drain resumes without a READY
        await until(lambda: len(release) == 4)
        assert len(kernel.accepts()) == 4
        while len(kernel.dones()) < 7:
            for ev in list(release.values()):
                ev.set()
            await asyncio.sleep(0.005)
        await agent.wait_idle()
    assert peak == 3
    assert len(kernel.accepts()) == 8  # 7 requests + the final EAGAIN
    assert fd_count() == base


async def test_stop_cancels_hanging_handler_with_done_eio(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    base = fd_count()
    fd = udp_fd()
    entered = asyncio.Event()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    agent = HandshakeAgent(kernel, handler, quic_protocol=UDP)
    await agent.start()
    await entered.wait()
    await agent.stop(timeout=0.05)
    assert kernel.dones() == [done_sent(kernel.seq_of(kernel.dones()[0]), errno.EIO, fd)]
    assert "(agent shutting down)" in completion_lines(logs)[0]
    assert kernel.closed
    assert not fd_open(fd)
    assert fd_count() == base


@contextlib.contextmanager
def fd_limit(free: int) -> Iterator[None]:
    """Lower this process's soft RLIMIT_NOFILE so that ``free`` more fds can be opened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_count() + free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_fd_reserve_stops_accepts_and_resumes(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    """Every ACCEPT installs an fd (as the kernel does, here at reply time): with the fd
    table nearly full the drainer stops before the kernel would fail the request with EIO,
    and resumes when a finishing request releases its fd."""
    base = fd_count()
    release: list[asyncio.Event] = []  # one per request (fd numbers are reused)

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        release.append(asyncio.Event())
        await release[-1].wait()
        return HandshakeOutcome(0)

    kernel.pending = [lambda seq, i=i: psk_reply(udp_fd(7100 + i), seq) for i in range(5)]  # type: ignore[misc]
    agent = HandshakeAgent(kernel, handler, fd_reserve=8, quic_protocol=UDP)
    with fd_limit(8 + 2):
        async with running(agent):
            await until(lambda: len(release) == 2)
            await asyncio.sleep(0.05)
            assert len(kernel.accepts()) == 2 and len(kernel.pending) == 3
            assert free_fds() < 8
            release[0].set()  # one fd goes back -> one more ACCEPT
            await until(lambda: len(release) == 3)
            await asyncio.sleep(0.05)
            assert len(kernel.accepts()) == 3
            while len(kernel.dones()) < 5:
                for ev in release:
                    ev.set()
                await asyncio.sleep(0.005)
            await agent.wait_idle()
    assert len(kernel.accepts()) == 6  # 5 requests + the final EAGAIN
    assert all(struct.unpack_from("=I", d, 24)[0] == 0 for d in kernel.dones())
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert any("file descriptors free (RLIMIT_NOFILE" in w and "keeping 8" in w for w in warnings)
    assert any("file descriptors free again" in w for w in warnings)
    assert fd_count() == base


async def test_fd_reserve_with_nothing_in_flight_retries_later(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No request would give an fd back: the drain is retried on a timer, not abandoned."""
    monkeypatch.setattr(agent_mod, "_FD_RETRY", 0.05)
    fd = udp_fd()
    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    served = asyncio.Event()

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        served.set()
        return HandshakeOutcome(0)

    agent = HandshakeAgent(kernel, handler, fd_reserve=1 << 20, quic_protocol=UDP)
    async with running(agent):
        await asyncio.sleep(0.2)
        assert kernel.accepts() == [] and not served.is_set()
        agent._fd_reserve = 8  # fds are available again
        await asyncio.wait_for(served.wait(), 5)
        await agent.wait_idle()
    assert not fd_open(fd)


async def test_fds_are_not_counted_before_every_accept(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting /proc/self/fd is O(open fds): with ample headroom one count covers many
    ACCEPTs (a storm with 600 fds open cost 230 us per ACCEPT when counted each time)."""
    counts: list[int] = []

    def counted() -> int:
        counts.append(free_fds())
        return counts[-1]

    async def done_ok(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        return HandshakeOutcome(0)

    monkeypatch.setattr(agent_mod, "free_fds", counted)
    kernel.pending = [lambda seq: psk_reply(udp_fd(), seq) for _ in range(20)]
    async with running(HandshakeAgent(kernel, done_ok, quic_protocol=UDP)) as agent:
        await until(lambda: len(kernel.dones()) == 20)
        await agent.wait_idle()
    assert counts and counts[0] > 2 * (agent_mod.FD_RESERVE + 20)  # the premise: headroom
    assert len(counts) == 1, counts


def test_max_in_flight_must_be_positive(kernel: FakeKernel) -> None:
    with pytest.raises(ValueError, match="max_in_flight must be >= 1, got 0"):
        HandshakeAgent(kernel, never_called, max_in_flight=0)


# --- the real pyroute2 transport on this kernel ----------------------------------------------


def _kernel_has_handshake_family() -> bool:
    """Independent stdlib check: CTRL_CMD_GETFAMILY "handshake" on a raw genl socket."""
    name = b"handshake\0"
    attr = struct.pack("=HH", 4 + len(name), 2) + name + b"\0" * (-len(name) % 4)
    req = struct.pack("=IHHIIBBH", 20 + len(attr), 0x10, 0x05, 1, 0, 3, 1, 0) + attr
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16) as s:
        s.bind((0, 0))
        s.send(req)
        reply = s.recv(65536)
    typ = struct.unpack_from("=H", reply, 4)[0]
    return not (typ == 2 and struct.unpack_from("=i", reply, 16)[0] != 0)


async def test_real_transport_start_raises_family_unavailable() -> None:
    from quichsd.netlink.pyroute import PyrouteTransport

    if _kernel_has_handshake_family():
        pytest.skip("this kernel has the handshake family; covered by the VM tier")
    base = fd_count()
    transport: Any = PyrouteTransport()
    agent = HandshakeAgent(transport, never_called)
    with pytest.raises(HandshakeFamilyUnavailable) as info:
        await agent.start()
    assert str(info.value) == (
        "kernel handshake netlink family 'handshake' is not available "
        "(kernel lacks CONFIG_NET_HANDSHAKE?)"
    )
    await transport.close()
    assert fd_count() == base


async def test_stop_during_an_accept_round_trip_still_answers_its_fd(kernel: FakeKernel) -> None:
    """SIGTERM while an ACCEPT is in flight: the reply's fd gets its DONE and is closed."""
    release, in_flight = asyncio.Event(), asyncio.Event()
    real_request = kernel.request

    async def slow_request(body: bytes, flags: int) -> list[bytes]:
        if body[0] == 2 and kernel.pending:
            in_flight.set()
            await release.wait()  # the kernel answers only after stop() began
        return await real_request(body, flags)

    kernel.request = slow_request  # type: ignore[method-assign]
    fd = udp_fd()
    kernel.pending.append(lambda seq: psk_reply(fd, seq))

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        return HandshakeOutcome(0)

    agent = HandshakeAgent(kernel, handler, quic_protocol=socket.IPPROTO_UDP)
    await agent.start()
    await asyncio.wait_for(in_flight.wait(), 5)
    stopping = asyncio.create_task(agent.stop(timeout=2))
    await asyncio.sleep(0.05)
    release.set()
    await stopping
    assert len(kernel.dones()) == 1
    assert kernel.dones()[0] == done_sent(done_seq(kernel), 0, fd)
    assert not fd_open(fd)


async def test_completion_line_names_the_peer_as_accepted(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    """With workers the DONE is sent before the main process logs, and the consumer may
    close the socket at once: the line must still name the peer (was <no peer: ENOTCONN>)."""
    fd = udp_fd(4433)
    libc = ctypes.CDLL(None, use_errno=True)

    async def handler(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        unspec = struct.pack("=H14x", socket.AF_UNSPEC)  # connect(AF_UNSPEC): disconnect
        assert libc.connect(sock.fileno(), unspec, len(unspec)) == 0, ctypes.get_errno()
        with pytest.raises(OSError):
            sock.getpeername()
        return HandshakeOutcome(0, (), answered=True)

    kernel.pending.append(lambda seq: psk_reply(fd, seq))
    async with running(HandshakeAgent(kernel, handler, quic_protocol=UDP)) as agent:
        await until(lambda: bool(completion_lines(logs)))
        await agent.wait_idle()
    assert kernel.dones() == []  # answered by the handler (a worker)
    (line,) = completion_lines(logs)
    assert line.startswith("handshake for 127.0.0.1:4433 (CLIENTHELLO, PSK) done: status 0 ")


async def test_successful_completion_lines_follow_log_handshake_completion(
    kernel: FakeKernel, logs: pytest.LogCaptureFixture
) -> None:
    """log.handshake_completion false: successes at DEBUG, failures still at WARNING."""
    from quichsd import log as logsetup

    async def ok(request: AcceptRequest, sock: socket.socket) -> HandshakeOutcome:
        return HandshakeOutcome(0)

    logsetup.set_handshake_completion(False)
    try:
        fd_ok = udp_fd()
        kernel.pending.append(lambda seq: psk_reply(fd_ok, seq))
        agent = HandshakeAgent(kernel, ok, quic_protocol=socket.IPPROTO_UDP)
        async with running(agent):
            await until(lambda: len(kernel.dones()) == 1)
        fd_other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).detach()  # neither QUIC nor TCP
        kernel.pending.append(lambda seq: psk_reply(fd_other, seq))
        agent = HandshakeAgent(kernel, ok)
        async with running(agent):
            await until(lambda: len(kernel.dones()) == 2)
    finally:
        logsetup.set_handshake_completion(True)
    levels = {
        r.getMessage().split(" done: status ")[1][:2]: r.levelno
        for r in logs.records
        if " done: status " in r.getMessage()
    }
    assert levels == {"0 ": logging.DEBUG, "95": logging.WARNING}, levels
