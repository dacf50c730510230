"""HTTP/2 abuse against `python -m greet.server`, on the engine the run uses (both, in `nox`).

Each attack comes from a raw HTTP/2 peer (tests/support/raw_http2.py) while a grpcio client keeps
making ordinary calls on its own connection. What a user would notice is asserted: the ordinary
calls keep succeeding, the attacker gets the GOAWAY or RST_STREAM grpc-go and grpcio answer with,
and the server's memory (RSS) comes back to within 64 MB of where it was before the attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpcio_calls import say_hello as grpcio_say_hello
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame
from raw_http2 import (
    RawPeer,
    data,
    grpc_message,
    ping,
    request_headers,
    rst,
    settings,
    unknown_frame,
    window_update,
)
from server_process import ServerProcess
from waiting import wait_until

from greet_service import HelloResponse, NamesList, NoParam

ENHANCE_YOUR_CALM = 0xB
REFUSED_STREAM = 0x7
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
COMPRESSION_ERROR = 0x9
MB = 1 << 20
RSS_SLACK = 64 * MB
OK, RESOURCE_EXHAUSTED, UNIMPLEMENTED = 0, 8, 12


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Prober:
    """A grpcio client making one SayHello call after another on its own connection."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.say_hello = grpcio_say_hello(self.channel)
        self.ok = 0
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self) -> None:
        try:
            reply = await self.say_hello(NoParam(), timeout=10)
        except grpc.aio.AioRpcError as error:
            self.failures.append(f"{error.code()}: {error.details()}")
        else:
            assert reply.message == "Hello"
            self.ok += 1

    async def _loop(self) -> None:
        while True:
            await self.call()
            await asyncio.sleep(0.05)  # pacing of the probe itself, not a wait for readiness

    async def __aenter__(self) -> Prober:
        await self.call()  # connected and served before the attack starts
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.call()  # still served after the attack
        await self.channel.close()
        assert not self.failures, self.failures
        assert self.ok >= 2


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    async with ServerProcess() as process:
        yield process


async def settled_rss(process: ServerProcess) -> int:
    """RSS once the server has served a call after the attack (its connections are gone)."""
    probe = Prober(process.target)
    await probe.call()
    await probe.channel.close()
    return rss(process.pid)


async def memory_returns(process: ServerProcess, before: int) -> None:
    """The server serves a fresh call, and its RSS comes back to within RSS_SLACK of `before`
    (the connections the attack left are closed by then; their calls may take a moment to end
    on a loaded machine, so this waits for it, up to a bound)."""
    await settled_rss(process)
    await wait_until(
        lambda: rss(process.pid) - before < RSS_SLACK,
        f"RSS back within {RSS_SLACK >> 20} MB of {before >> 20} MB (it is "
        f"{rss(process.pid) >> 20} MB)",
        timeout=20,
    )


async def test_rapid_reset_gets_goaway_and_others_are_served(server: ServerProcess) -> None:
    before = rss(server.pid)

    async def attack() -> GoAwayFrame | None:
        peer = await RawPeer.connect(server.target)
        peer.read_in_background()
        headers = request_headers("SayHelloBidirectionalStreaming")
        for _ in range(40):  # 20,000 HEADERS + RST_STREAM, 500 at a time
            if peer.closed:
                break
            chunk = []
            for _ in range(500):
                stream_id = peer.new_stream()
                chunk.append(peer.headers(stream_id, headers))
                chunk.append(rst(stream_id))
            peer.write(b"".join(chunk))
            await peer.drain()
        await peer.wait_closed()
        return peer.goaway

    async with Prober(server.target):
        goaways = await asyncio.gather(*(attack() for _ in range(4)))
    assert all(goaway is not None for goaway in goaways)
    assert {goaway.error_code for goaway in goaways if goaway} == {ENHANCE_YOUR_CALM}
    assert {goaway.additional_data for goaway in goaways if goaway} == {b"too_many_resets"}
    await memory_returns(server, before)
    assert any("rapid reset" in line for line in server.log_lines)


async def flood(target: str, frames: bytes, times: int) -> GoAwayFrame:
    """Send `frames` `times` times (reading what comes back); the GOAWAY that ended it."""
    peer = await RawPeer.connect(target)
    peer.read_in_background()
    for _ in range(times):
        peer.write(frames)
        await peer.drain()
        if peer.closed:
            break
    await peer.wait_closed()
    assert peer.goaway is not None, "the connection closed without a GOAWAY"
    return peer.goaway


async def test_ping_flood_gets_goaway_too_many_pings(server: ServerProcess) -> None:
    async with Prober(server.target):
        goaway = await flood(server.target, ping() * 1000, 100)  # 100,000 PINGs
    assert goaway.error_code == ENHANCE_YOUR_CALM
    assert goaway.additional_data == b"too_many_pings"


async def test_settings_flood_gets_goaway(server: ServerProcess) -> None:
    async with Prober(server.target):
        goaway = await flood(server.target, settings() * 1000, 100)  # 100,000 SETTINGS
    assert goaway.error_code == ENHANCE_YOUR_CALM
    assert goaway.additional_data == b"too_many_settings"


async def test_a_peer_that_never_reads_its_acks_is_closed(server: ServerProcess) -> None:
    """PINGs and SETTINGS from a peer that reads nothing: the ACKs the server owes it are
    bounded (a GOAWAY ENHANCE_YOUR_CALM and the connection closed), and so is its memory."""
    before = rss(server.pid)
    async with Prober(server.target):
        peer = await RawPeer.connect(server.target)
        for _ in range(200):  # up to 200,000 frames, none of their ACKs read
            peer.write((ping() + settings()) * 500)
            await peer.drain()
            if peer.closed:
                break
        await server.wait_for_log(re.compile(r"closing connection from .*(ping|SETTINGS|ACK)"))
        peer.reset_socket()
    await memory_returns(server, before)


async def test_unknown_frame_types_are_ignored(server: ServerProcess) -> None:
    peer = await RawPeer.connect(server.target)
    peer.write(
        b"".join(unknown_frame(kind) for kind in (0x20, 0x7F, 0xFA, 0xFF))
    )  # undefined types
    peer.write(unknown_frame(0xFB, b"on a stream", stream_id=1))
    stream_id = peer.request("SayHello")
    response = await peer.response(stream_id)
    assert response.grpc_status == OK
    assert HelloResponse.FromString(response.data[5:]).message == "Hello"
    await peer.close()


async def test_stalled_readers_hold_bounded_memory_and_release_it(server: ServerProcess) -> None:
    """The replies wait for window space (bounded per stream); the requests themselves (12 x
    100,000 names, decoded) are what the server holds while the calls run."""
    before = rss(server.pid)
    names = NamesList(names=[f"name-{index:06d}" for index in range(100_000)])
    body = bytes(names)
    peers = []
    async with Prober(server.target):
        for _ in range(12):
            peer = await RawPeer.connect(server.target)
            stream_id = peer.new_stream()
            peer.write(peer.headers(stream_id, request_headers("SayHelloServerStreaming")))
            message = grpc_message(body)
            for offset in range(0, len(message), 16384):  # within the server's frame size
                last = offset + 16384 >= len(message)
                peer.write(data(stream_id, message[offset : offset + 16384], end_stream=last))
            await peer.drain()
            received = 0
            while received < 60000:  # the default 65,535-byte window fills up, then nothing
                frame = await peer.next_frame()
                assert frame is not None
                received += len(getattr(frame, "data", b"")) if frame.type == 0 else 0
            peers.append(peer)
        during = rss(server.pid)
        for peer in peers:
            peer.reset_socket()
    assert during - before < 3 * RSS_SLACK
    await memory_returns(server, before)


@pytest.mark.parametrize(
    ("count", "size"),
    [(64, 16000), (256, 4096)],  # 1 MiB of metadata: the second takes 65 CONTINUATION frames
    ids=["64x16000", "256x4096"],
)
async def test_oversized_metadata_fails_that_call_not_the_connection(
    server: ServerProcess, count: int, size: int
) -> None:
    peer = await RawPeer.connect(server.target)
    big = [(f"x-big-{index}", "v" * size) for index in range(count)]
    streams = []
    for _ in range(4):
        stream_id = peer.new_stream()
        peer.write(peer.headers(stream_id, request_headers("SayHello", extra=big)))
        peer.write(data(stream_id, grpc_message(), end_stream=True))
        streams.append(stream_id)
    for stream_id in streams:
        response = await peer.response(stream_id)
        assert response.grpc_status == RESOURCE_EXHAUSTED, response
        assert "--max-header-list-bytes" in response.grpc_message
    normal = peer.request("SayHello")
    assert (await peer.response(normal)).grpc_status == OK  # the same connection still serves
    await peer.close()


async def test_connection_churn_leaves_nothing_behind(server: ServerProcess) -> None:
    before = rss(server.pid)

    async def churn() -> None:
        peer = await RawPeer.connect(server.target)
        peer.write(
            peer.headers(peer.new_stream(), request_headers("SayHelloBidirectionalStreaming"))
        )
        await peer.drain()
        peer.reset_socket()

    async with Prober(server.target):
        for _ in range(50):
            await asyncio.gather(*(churn() for _ in range(20)))  # 1,000 abrupt connections
    await memory_returns(server, before)


async def test_repeated_rounds_of_stalled_connections_keep_memory_flat(
    server: ServerProcess,
) -> None:
    body = bytes(NamesList(names=[f"n{index}" for index in range(20_000)]))

    async def stalled_round() -> int:
        peers = []
        for _ in range(4):
            peer = await RawPeer.connect(server.target)
            stream_id = peer.new_stream()
            peer.write(peer.headers(stream_id, request_headers("SayHelloServerStreaming")))
            message = grpc_message(body)
            for offset in range(0, len(message), 16384):
                last = offset + 16384 >= len(message)
                peer.write(data(stream_id, message[offset : offset + 16384], end_stream=last))
            await peer.drain()
            while (frame := await peer.next_frame()) is not None and frame.type != 0:
                pass  # until the first DATA: the call is streaming into a closed window
            peers.append(peer)
        for peer in peers:
            peer.reset_socket()
        return await settled_rss(server)

    rounds = [await stalled_round() for _ in range(3)]
    assert rounds[2] - rounds[0] < 32 * MB, rounds
    await asyncio.gather(*(settled_rss(server) for _ in range(20)))  # 20 fresh connections


async def test_streams_over_the_limit_are_refused_and_cost_nothing_else() -> None:
    async with ServerProcess(["--max-concurrent-streams", "100"]) as server:
        peer = await RawPeer.connect(server.target)
        open_streams = []
        for _ in range(100):  # bidi calls that stay open
            stream_id = peer.new_stream()
            peer.write(peer.headers(stream_id, request_headers("SayHelloBidirectionalStreaming")))
            open_streams.append(stream_id)
        extra = []
        for _ in range(900):
            stream_id = peer.new_stream()
            peer.write(peer.headers(stream_id, request_headers("SayHelloBidirectionalStreaming")))
            extra.append(stream_id)
        await peer.drain()
        refused: set[int] = set()
        while len(refused) < len(extra):
            frame = await peer.next_frame()
            assert frame is not None, "the connection was closed"
            if isinstance(frame, RstStreamFrame):
                assert frame.error_code == REFUSED_STREAM
                refused.add(frame.stream_id)
        assert refused == set(extra)
        assert peer.server_settings[0x3] == 100  # advertised: SETTINGS_MAX_CONCURRENT_STREAMS
        # The 100 calls in flight are unharmed: each greets one name and ends.
        for stream_id in open_streams:
            body = b"\n\x03Ann"
            peer.write(data(stream_id, grpc_message(body), end_stream=True))
        answers = await peer.responses(open_streams)  # a stream's frames may interleave
        for stream_id in open_streams:
            response = answers[stream_id]
            assert response.grpc_status == OK
            assert HelloResponse.FromString(response.data[5:]).message == "Hello Ann"
        await peer.close()


async def test_continuation_flood_gets_goaway(server: ServerProcess) -> None:
    before = rss(server.pid)
    async with Prober(server.target):
        peer = await RawPeer.connect(server.target)
        stream_id = peer.new_stream()
        first = HeadersFrame(stream_id)
        first.data = peer.encoder.encode(request_headers())  # no END_HEADERS
        peer.write(first.serialize())
        continuation = b"\x00\x00\x10\x09\x00" + stream_id.to_bytes(4, "big") + b"\x00" * 16
        peer.read_in_background()
        for _ in range(100):  # 100,000 CONTINUATION frames of junk
            if peer.closed:
                break
            peer.write(continuation * 1000)
            await peer.drain()
        await peer.wait_closed()
    assert peer.goaway is not None
    assert peer.goaway.error_code != 0
    await memory_returns(server, before)


async def test_hpack_bomb_is_refused_with_bounded_memory(server: ServerProcess) -> None:
    before = rss(server.pid)
    async with Prober(server.target):
        peer = await RawPeer.connect(server.target)
        # Put a 2 KB header in the peer's HPACK table, then reference it 10,000 times (one byte
        # each): 10 KB on the wire, 20 MB once decoded.
        first = peer.request("SayHello", extra=[("x-bomb", "b" * 2000)])
        await peer.response(first)
        bomb = peer.new_stream()
        block = peer.encoder.encode(request_headers()) + bytes([0x80 | 62]) * 10_000
        frame = HeadersFrame(bomb)
        frame.data = block
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        peer.write(frame.serialize())
        answer = None
        while answer is None:
            got = await peer.next_frame()
            if got is None or isinstance(got, GoAwayFrame):
                answer = "goaway"
            elif isinstance(got, RstStreamFrame) and got.stream_id == bomb:
                answer = "reset"
            elif isinstance(got, HeadersFrame) and got.stream_id == bomb:
                answer = "status"
        await peer.close()
    assert answer in ("goaway", "reset", "status")
    await memory_returns(server, before)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (window_update(0, 2**31 - 1), FLOW_CONTROL_ERROR),  # the window overflows
        (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", PROTOCOL_ERROR),  # DATA on stream 0
        (b"\x00\x00\x07\x04\x00\x00\x00\x00\x00" + b"\x00" * 7, FRAME_SIZE_ERROR),  # SETTINGS
    ],
)
async def test_a_protocol_error_gets_goaway_with_its_code_first(
    server: ServerProcess, frame: bytes, code: int
) -> None:
    peer = await RawPeer.connect(server.target)
    peer.write(frame)
    await peer.drain()
    goaway = await peer.wait_goaway()
    assert goaway.error_code == code
    assert await peer.next_frame() is None  # and then the connection is closed


@pytest.mark.parametrize(
    "headers",
    [
        [h for h in request_headers() if h[0] != ":method"],  # no :method
        [h for h in request_headers() if h[0] != ":path"],  # no :path
        [*request_headers(), ("X-Upper", "1")],  # upper-case name
        [*request_headers(), ("connection", "keep-alive")],  # connection-specific
        [*request_headers(), ("keep-alive", "60")],
        [h if h[0] != "te" else ("te", "gzip") for h in request_headers()],
        [("x-first", "1"), *request_headers()],  # pseudo-headers after a regular one
        [*request_headers(), (":protocol-x", "1")],  # unknown pseudo-header
        [(":path", ""), *(h for h in request_headers() if h[0] != ":path")],  # empty :path
    ],
    ids=[
        "no-method",
        "no-path",
        "uppercase",
        "connection",
        "keep-alive",
        "te-gzip",
        "pseudo-after-regular",
        "unknown-pseudo",
        "empty-path",
    ],
)
async def test_malformed_request_headers_get_a_stream_error(
    server: ServerProcess, headers: list[tuple[str, str]]
) -> None:
    peer = await RawPeer.connect(server.target)
    stream_id = peer.new_stream()
    peer.write(peer.headers(stream_id, headers, end_stream=True))
    response = await peer.response(stream_id)
    assert response.reset == PROTOCOL_ERROR
    after = peer.request("SayHello")  # the connection lives on
    assert (await peer.response(after)).grpc_status == OK
    await peer.close()
    assert not any("Traceback" in line for line in server.log_lines)


async def test_an_unfinished_handshake_is_closed_after_the_timeout() -> None:
    async with ServerProcess(["--handshake-timeout", "0.5"]) as server:
        silent = await RawPeer.connect(server.target, handshake=False)
        half = await RawPeer.connect(server.target, handshake=False)
        half.write(b"PRI * HTTP/2.0\r\n")  # a third of the preface
        await half.drain()
        assert await silent.frames_until_closed(timeout=20) is not None
        assert silent.closed
        await half.frames_until_closed(timeout=20)
        assert half.closed
        async with Prober(server.target):
            pass
