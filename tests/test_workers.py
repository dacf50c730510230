"""`python -m greet.server --workers N`: worker processes sharing one port under a supervisor.

Which worker holds a connection is read from /proc (Linux): the established sockets on the
server's port that each worker process has open.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from pathlib import Path

import grpc
import pytest
from grpclib.client import Channel
from server_process import ServerProcess

from greet.client import GreetClient
from greet.server.config import ServerConfig
from greet.server.supervisor import worker_count
from greet_service import GreetServiceStub, HelloRequest, MessagesList, NoParam

WORKER_READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")
TCP_ESTABLISHED = "01"


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """slot -> pid of the latest worker in each slot, from the supervisor's log."""
    pids: dict[int, int] = {}
    for line in server.log_lines:
        if match := WORKER_READY.search(line):
            pids[int(match.group(1))] = int(match.group(2))
    return pids


def established_sockets(port: int) -> set[int]:
    """Inodes of the established TCP sockets whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == TCP_ESTABLISHED:
                    inodes.add(int(fields[9]))
    return inodes


def sockets_of(pid: int) -> set[int]:
    """Inodes of the sockets process `pid` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def connections_per_worker(
    server: ServerProcess, pids: list[int], count: int
) -> dict[int, int]:
    """Open `count` connections, make a call on each and count the ones each worker holds."""
    host, port = server.target.rsplit(":", 1)
    channels = [Channel(host, int(port)) for _ in range(count)]
    try:
        replies = await asyncio.gather(
            *(GreetServiceStub(channel).say_hello(NoParam(), timeout=30) for channel in channels)
        )
        assert [reply.message for reply in replies] == ["Hello"] * count
        established = established_sockets(int(port))
        return {pid: len(sockets_of(pid) & established) for pid in pids}
    finally:
        for channel in channels:
            channel.close()


async def all_four_call_kinds(target: str) -> None:
    async with GreetClient(target, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        streamed = [r.message async for r in client.say_hello_server_streaming(["Ann", "Bob"])]
        assert streamed == ["Hello Ann", "Hello Bob"]
        collected = await client.say_hello_client_streaming(["Ann", "Bob"])
        assert collected.messages == ["Hello Ann", "Hello Bob"]
        echoed = [r.message async for r in client.say_hello_bidirectional_streaming(["Ann"])]
        assert echoed == ["Hello Ann"]


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with ServerProcess(["--workers", "2"], cwd=str(tmp_path)) as server:
        yield server


def test_zero_workers_means_one_per_cpu() -> None:
    assert worker_count(ServerConfig(workers=0)) == len(os.sched_getaffinity(0))
    assert worker_count(ServerConfig(workers=3)) == 3


async def test_two_workers_serve_every_call_kind_and_share_the_connections(
    two_workers: ServerProcess,
) -> None:
    pids = worker_pids(two_workers)
    assert sorted(pids) == [1, 2]
    assert two_workers.pid not in pids.values()
    await all_four_call_kinds(two_workers.target)
    held = await connections_per_worker(two_workers, list(pids.values()), count=24)
    assert sum(held.values()) == 24
    assert all(count > 0 for count in held.values()), held
    ready_lines = [line for line in two_workers.log_lines if "greet server listening" in line]
    assert len(ready_lines) == 1


async def test_killed_worker_is_replaced_and_calls_keep_succeeding(
    two_workers: ServerProcess,
) -> None:
    victim = worker_pids(two_workers)[1]
    os.kill(victim, signal.SIGKILL)
    replaced = re.compile(rf"worker 1 \(pid (?!{victim}\))(\d+)\) ready")
    replacement = int((await two_workers.wait_for_log(replaced)).group(1))
    assert any(
        f"pid {victim}) exited (killed by SIGKILL)" in line for line in two_workers.log_lines
    )
    assert not is_running(victim)
    pids = worker_pids(two_workers)
    assert pids[1] == replacement
    async with GreetClient(two_workers.target, timeout=30) as client:
        replies = await asyncio.gather(*(client.say_hello() for _ in range(50)))
    assert [reply.message for reply in replies] == ["Hello"] * 50
    held = await connections_per_worker(two_workers, list(pids.values()), count=24)
    assert held[replacement] > 0, held


async def test_sigterm_stops_every_worker_gracefully_and_exits_zero(tmp_path: Path) -> None:
    server = await ServerProcess(["--workers", "0"], cwd=str(tmp_path)).start()
    try:
        pids = list(worker_pids(server).values())
        assert len(pids) == len(os.sched_getaffinity(0))
        await all_four_call_kinds(server.target)
        server.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    finally:
        await server.stop()
    assert not any(is_running(pid) for pid in pids)
    log = "\n".join(server.log_lines)
    assert "Traceback" not in log
    # Each worker went through its own graceful stop, and then the supervisor.
    assert log.count("INFO greet.server: stopped") == len(pids) + 1


async def test_sigterm_drains_the_calls_in_flight_on_every_worker(tmp_path: Path) -> None:
    """A client stream keeps sending after SIGTERM, while every worker drains; it completes.

    The client is grpcio's (C-core), which, like grpc-go, keeps its running streams going after
    a GOAWAY (see tests/test_shutdown.py for the single-process case)."""
    server = await ServerProcess(["--workers", "2", "--grace", "20"], cwd=str(tmp_path)).start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            client_stream = channel.stream_unary(
                "/greet_service.GreetService/SayHelloClientStreaming",
                request_serializer=bytes,
                response_deserializer=MessagesList.FromString,
            )
            sent: list[str] = []
            first_sent = asyncio.Event()

            def draining_workers() -> int:
                return sum("draining" in line for line in server.log_lines)

            async def requests() -> AsyncIterator[HelloRequest]:
                sent.append("before")
                yield HelloRequest(name="before")
                first_sent.set()
                # Keep the stream busy until both workers drain, then a few more.
                after_drain = 0
                while after_drain < 5:
                    await asyncio.sleep(0.02)
                    if draining_workers() == 2:
                        after_drain += 1
                    sent.append(f"n{len(sent)}")
                    yield HelloRequest(name=sent[-1])

            call = client_stream(requests())
            await first_sent.wait()
            server.send_signal(signal.SIGTERM)
            reply = await call
        assert list(reply.messages) == [f"Hello {name}" for name in sent]
        assert await server.wait() == 0
    finally:
        await server.stop()
    assert "Traceback" not in "\n".join(server.log_lines)


async def test_port_held_by_another_program_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ServerProcess(["--workers", "2", "--port", str(port)], cwd=str(tmp_path))
        with pytest.raises(RuntimeError, match="exited before"):
            await server.start()
        assert await server.wait() == 1
    assert any("cannot serve" in line for line in server.log_lines)
    assert not any("worker" in line for line in server.log_lines)
    assert not any("Traceback" in line for line in server.log_lines)


async def test_workers_that_cannot_start_make_the_supervisor_give_up(tmp_path: Path) -> None:
    # Workers record metrics into PROMETHEUS_MULTIPROC_DIR when it is set: a missing one makes
    # each fail as it starts. (Missing files named by flags stop the server before any worker.)
    server = ServerProcess(
        ["--workers", "2"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing")},
        cwd=str(tmp_path),
    )
    with pytest.raises(RuntimeError, match="exited before"):
        await server.start()
    assert await server.wait() == 1
    log = "\n".join(server.log_lines)
    assert "before serving; giving up" in log
    assert "Traceback" not in log


async def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        server = await ServerProcess(["--workers", "2"], cwd=str(tmp_path)).start()
        stack.push_async_callback(server.stop)
        pids = list(worker_pids(server).values())
        server.send_signal(signal.SIGKILL)
        await server.wait()
        # Orphaned workers are not our children: a pidfd tells when each has exited.
        for pid in pids:
            with suppress(ProcessLookupError):  # already exited and reaped
                await wait_for_exit(pid)
        assert any("supervisor is gone; stopping" in line for line in server.log_lines)


async def wait_for_exit(pid: int, timeout: float = 30.0) -> None:
    """Wait until process `pid` (not necessarily our child) has exited."""
    fd = os.pidfd_open(pid)
    try:
        exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, exited.set)
        try:
            await asyncio.wait_for(exited.wait(), timeout)
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
