"""Hostile and malformed input: the right gRPC status, and everyone else keeps being served.

Raw HTTP/2 (the `h2` package) is used wherever a well-behaved client could not send the input:
malformed protobuf, bad gRPC framing, unknown methods, garbage on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grpclib.const import Status
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from loopback import StartServer, bound_socket
from server_process import ServerProcess
from waiting import wait_until

from greet._codec import StrictProtoCodec, rust_codec_active
from greet.client import GreetClient
from greet.errors import RpcError
from greet.server import GreetServer, ServerConfig
from greet.transport import TransportConfig

SERVICE = "/greet_service.GreetService/"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_frame(body: bytes, *, compressed: bool = False, length: int | None = None) -> bytes:
    """One gRPC length-prefixed message; `length` overrides the announced length."""
    return struct.pack(">?I", compressed, len(body) if length is None else length) + body


@dataclass
class RawResponse:
    """What came back on one HTTP/2 stream."""

    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: bool = False

    @property
    def status(self) -> Status | None:
        value = self.trailers.get("grpc-status") or self.headers.get("grpc-status")
        return None if value is None else Status(int(value))

    @property
    def message(self) -> str:
        return self.trailers.get("grpc-message") or self.headers.get("grpc-message") or ""


class RawH2Client:
    """A bare HTTP/2 client that sends whatever bytes it is told to, one stream at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.flush()
        self.goaway = False

    @classmethod
    async def connect(cls, target: str) -> RawH2Client:
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        return cls(reader, writer)

    def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())

    def start(self, method: str, *, path: str | None = None) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path or SERVICE + method),
                (":authority", "greet"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)
        self.flush()

    async def response(self, stream_id: int, timeout: float = 20.0) -> RawResponse:
        """Read until the stream ends or is reset (a server that never answers fails the test)."""
        return await asyncio.wait_for(self._response(stream_id), timeout)

    async def _response(self, stream_id: int) -> RawResponse:
        response = RawResponse()
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            for event in self.h2.receive_data(chunk):
                if isinstance(event, ConnectionTerminated):
                    self.goaway = True
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, ResponseReceived):
                    response.headers = dict(event.headers)  # type: ignore[arg-type]
                elif isinstance(event, TrailersReceived):
                    response.trailers = dict(event.headers)  # type: ignore[arg-type]
                elif isinstance(event, DataReceived):
                    response.data += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, StreamReset):
                    response.reset = True
                if isinstance(event, StreamEnded | StreamReset):
                    self.flush()
                    return response
            self.flush()

    async def send_all(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send `data` as fast as HTTP/2 flow control allows (reading window updates)."""
        view = memoryview(data)
        while view:
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                for event in self.h2.receive_data(chunk):
                    if isinstance(event, DataReceived | StreamReset):
                        raise AssertionError(f"unexpected {event} before the request was sent")
                self.flush()
                continue
            self.h2.send_data(
                stream_id, bytes(view[:window]), end_stream=end and window >= len(view)
            )
            view = view[window:]
            self.flush()
            await self.writer.drain()

    async def first_data(self, stream_id: int) -> bytes:
        """Read until the first DATA frame of the stream arrives and return it."""
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            for event in self.h2.receive_data(chunk):
                if isinstance(event, DataReceived) and event.stream_id == stream_id:
                    return event.data
            self.flush()

    async def call(self, method: str, *frames: bytes, path: str | None = None) -> RawResponse:
        stream_id = self.start(method, path=path)
        self.send(stream_id, b"".join(frames), end=True)
        return await self.response(stream_id)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw(server: GreetServer) -> AsyncIterator[RawH2Client]:
    client = await RawH2Client.connect(server.target)
    yield client
    await client.close()


async def assert_still_serving(target: str) -> None:
    async with GreetClient(target, timeout=30) as client:
        assert (await client.say_hello()).message == "Hello"
        replies = [r.message async for r in client.say_hello_bidirectional_streaming(["Ann"])]
        assert replies == ["Hello Ann"]


# --- Malformed protobuf: INVALID_ARGUMENT, never UNKNOWN, never silently accepted -------------

# (request method, message bytes) per case; HelloRequest for the streams, NamesList for the list.
MALFORMED = {
    "truncated string length": ("SayHelloBidirectionalStreaming", b"\x0a\x05abc"),
    "truncated list entry": ("SayHelloServerStreaming", b"\x0a\x01a\x0a\x09abc"),
    "varint cut short": ("SayHelloBidirectionalStreaming", b"\x0a\x80"),
    "key without value": ("SayHelloClientStreaming", b"\x0a"),
    "invalid UTF-8 name": ("SayHelloBidirectionalStreaming", b"\x0a\x02\xff\xfe"),
    "UTF-8 surrogate in list": ("SayHelloServerStreaming", b"\x0a\x03\xed\xa0\x80"),
    "overlong UTF-8": ("SayHelloClientStreaming", b"\x0a\x02\xc0\x80"),
    "name as varint": ("SayHelloBidirectionalStreaming", b"\x08\x01"),
    "names as fixed32": ("SayHelloServerStreaming", b"\x0d\x01\x02\x03\x04"),
    "wire type 7": ("SayHelloBidirectionalStreaming", b"\x0f"),
    "field number 0": ("SayHelloServerStreaming", b"\x02\x00"),
    "varint of 11 bytes": ("SayHelloBidirectionalStreaming", b"\x10" + b"\xff" * 10 + b"\x01"),
    "varint above 64 bits": ("SayHelloBidirectionalStreaming", b"\x10" + b"\xff" * 9 + b"\x7f"),
}


async def malformed_statuses(target: str) -> dict[str, tuple[Status | None, str]]:
    client = await RawH2Client.connect(target)
    try:
        results = {}
        for case, (method, body) in MALFORMED.items():
            response = await client.call(method, grpc_frame(body))
            results[case] = (response.status, response.message)
        return results
    finally:
        await client.close()


def assert_all_invalid_argument(results: dict[str, tuple[Status | None, str]]) -> None:
    statuses = {case: status for case, (status, _) in results.items()}
    assert statuses == dict.fromkeys(MALFORMED, Status.INVALID_ARGUMENT)
    for case, (_, message) in results.items():
        assert message.startswith("malformed "), (case, message)


async def test_malformed_protobuf_is_invalid_argument(server: GreetServer) -> None:
    assert_all_invalid_argument(await malformed_statuses(server.target))
    await assert_still_serving(server.target)


@pytest.fixture
def pure_python_betterproto(tmp_path: Path) -> dict[str, str]:
    """Environment for a server process without betterproto-rust-codec: betterproto then parses
    in pure Python, which is where truncated input is silently accepted."""
    (tmp_path / "betterproto_rust_codec.py").write_text(
        'raise ModuleNotFoundError("disabled by the test", name="betterproto_rust_codec")\n'
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


async def test_malformed_protobuf_is_invalid_argument_with_pure_python_betterproto(
    pure_python_betterproto: dict[str, str],
) -> None:
    async with ServerProcess(env=pure_python_betterproto) as process:
        assert_all_invalid_argument(await malformed_statuses(process.target))
        await assert_still_serving(process.target)
    assert not any("Traceback" in line for line in process.log_lines), process.log_lines


def test_codec_checks_wire_format_itself_when_parsing_in_pure_python() -> None:
    from greet_service import HelloRequest, NamesList

    codec = StrictProtoCodec(validate=True)
    assert codec.decode(b"\x0a\x03Bob\x10\x05", HelloRequest) == HelloRequest(name="Bob")
    assert codec.decode(b"\x0a\x01a\x0a\x02bc", NamesList) == NamesList(names=["a", "bc"])
    assert StrictProtoCodec().validate is not rust_codec_active()


async def test_valid_messages_with_unknown_fields_are_accepted(raw: RawH2Client) -> None:
    unknown_fields = b"\x10\x05\x19" + bytes(8) + b"\x25" + bytes(4) + b"\x2a\x01z"
    response = await raw.call(
        "SayHelloServerStreaming", grpc_frame(b"\x0a\x03Bob" + unknown_fields)
    )
    assert response.status == Status.OK
    assert b"Hello Bob" in response.data


# --- gRPC framing ---------------------------------------------------------------------------


async def test_message_cut_short_by_end_of_stream_is_invalid_argument(
    raw: RawH2Client, server: GreetServer
) -> None:
    response = await raw.call("SayHelloClientStreaming", grpc_frame(b"\x0a\x03B", length=10))
    assert response.status == Status.INVALID_ARGUMENT
    assert "truncated" in response.message
    await assert_still_serving(server.target)


# --- Unknown methods: UNIMPLEMENTED, readable by grpc-go (content-type on trailers-only) -----


@pytest.mark.parametrize(
    "path", [SERVICE + "NoSuchMethod", "/no.such.Service/SayHello", "/greet_service.GreetService"]
)
async def test_unknown_method_is_unimplemented_with_grpc_content_type(
    raw: RawH2Client, path: str
) -> None:
    response = await raw.call("", grpc_frame(b""), path=path)
    assert response.headers[":status"] == "200"
    assert response.headers.get("content-type", "").startswith("application/grpc")
    assert response.headers["grpc-status"] == str(Status.UNIMPLEMENTED.value)
    assert path in response.message


# --- Sizes -----------------------------------------------------------------------------------


async def test_oversized_message_is_refused_before_its_body_is_read(
    start_server: StartServer,
) -> None:
    server = await start_server(transport=TransportConfig(max_message_bytes=1024))
    raw = await RawH2Client.connect(server.target)
    try:
        stream_id = raw.start("SayHelloBidirectionalStreaming")
        # Announce 64 MiB, send 100 bytes of it, keep the stream open: the answer must come now.
        raw.send(stream_id, grpc_frame(b"\x0a" * 100, length=64 * 1024 * 1024))
        response = await raw.response(stream_id)
    finally:
        await raw.close()
    assert response.status == Status.RESOURCE_EXHAUSTED
    assert "67108864 bytes" in response.message
    assert "--max-message-bytes" in response.message
    assert "1024" in response.message
    await assert_still_serving(server.target)


async def test_message_over_the_default_limit_is_resource_exhausted(
    client: GreetClient, server: GreetServer
) -> None:
    with pytest.raises(RpcError) as caught:
        await client.say_hello_client_streaming(["x" * (4 * 1024 * 1024 + 1)])
    assert caught.value.status == Status.RESOURCE_EXHAUSTED
    assert "4194304" in caught.value.message
    await assert_still_serving(server.target)


async def test_message_at_the_limit_is_served(start_server: StartServer) -> None:
    server = await start_server(transport=TransportConfig(max_message_bytes=64))
    async with GreetClient(server.target, timeout=30) as client:
        name = "n" * 62  # tag + length + 62 bytes = 64 bytes on the wire
        assert (await client.say_hello_client_streaming([name])).messages == [f"Hello {name}"]
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming([name + "n"])
    assert caught.value.status == Status.RESOURCE_EXHAUSTED


# --- Garbage connections, idle connections, vanishing clients --------------------------------


async def send_and_read_until_closed(target: str, data: bytes) -> bytes:
    host, _, port = target.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 30)  # until the server closes
    writer.close()
    return received


async def test_http1_request_and_random_bytes_are_refused(server: GreetServer) -> None:
    http1 = b"GET / HTTP/1.1\r\nHost: greet\r\n\r\n"
    garbage = bytes(range(256)) * 4
    for data in (http1, garbage, H2_PREFACE + garbage):
        received = await send_and_read_until_closed(server.target, data)
        # The server closes the connection (after a GOAWAY frame for an HTTP/2 preface).
        assert b"HTTP/1.1 200" not in received
    await assert_still_serving(server.target)


def server_tasks() -> int:
    return len(asyncio.all_tasks())


async def vanish_mid_stream(target: str) -> None:
    """Open a bidi stream, send half a message and a whole one, then drop the socket."""
    client = await RawH2Client.connect(target)
    stream_id = client.start("SayHelloBidirectionalStreaming")
    client.send(stream_id, grpc_frame(b"\x0a\x03Bob"))
    assert b"Hello Bob" in await client.first_data(stream_id)  # the call is running
    client.send(stream_id, grpc_frame(b"\x0a\x03Bo", length=5))
    client.writer.transport.abort()


async def hostile_round(target: str, idle: int) -> None:
    """One round of everything hostile at once; returns when it is all over."""
    idle_connections = [await asyncio.open_connection(*split(target)) for _ in range(idle)]
    for _, writer in idle_connections[: idle // 2]:
        writer.write(H2_PREFACE)  # a bare preface, then nothing
    await asyncio.gather(
        send_and_read_until_closed(target, b"GET / HTTP/1.1\r\nHost: greet\r\n\r\n"),
        send_and_read_until_closed(target, os.urandom(4096)),
        *(vanish_mid_stream(target) for _ in range(10)),
        malformed_statuses(target),
    )
    await assert_still_serving(target)
    for _, writer in idle_connections:
        writer.transport.abort()


def split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


async def test_idle_and_hostile_connections_leave_no_tasks_behind(server: GreetServer) -> None:
    await assert_still_serving(server.target)
    baseline = server_tasks()
    await hostile_round(server.target, idle=300)
    await wait_until(lambda: server_tasks() <= baseline, "tasks back to the baseline")
    await wait_until(lambda: not server.drain.connections, "connections closed")
    assert not server.drain.in_flight()


async def test_memory_stays_bounded_over_hostile_rounds(server: GreetServer) -> None:
    async def settled_memory(run: Callable[[], Awaitable[None]]) -> int:
        await run()
        await wait_until(lambda: not server.drain.connections, "connections closed")
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        target = server.target
        rounds = [await settled_memory(lambda: hostile_round(target, idle=20)) for _ in range(10)]
    finally:
        tracemalloc.stop()
    # Traced memory moves up and down by a few hundred KiB between rounds (buffers come and go);
    # something kept per connection (about 35 a round) would make the late rounds grow past it.
    early, late = max(rounds[:2]), min(rounds[-3:])
    assert late - early < 256 * 1024, [size // 1024 for size in rounds]


# --- Many concurrent streams -------------------------------------------------------------------


async def test_200_concurrent_bidi_streams_of_50_messages_are_all_answered_in_order(
    server: GreetServer,
) -> None:
    async def names(stream: int) -> AsyncIterator[str]:
        for i in range(50):
            yield f"s{stream}-{i}"
            await asyncio.sleep(0)  # let the streams interleave

    async def one_stream(client: GreetClient, stream: int) -> list[str]:
        return [
            reply.message async for reply in client.say_hello_bidirectional_streaming(names(stream))
        ]

    clients = [GreetClient(server.target, timeout=60) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(one_stream(clients[stream % 4], stream) for stream in range(200))
        )
    finally:
        for client in clients:
            client.close()
    for stream, replies in enumerate(results):
        assert replies == [f"Hello s{stream}-{i}" for i in range(50)]


# --- Fairness: one greedy client stream does not starve the others ---------------------------


class CountingGreeter:
    """The real greeting, counting how many names have been greeted."""

    def __init__(self) -> None:
        self.greeted = 0

    async def greet(self, name: str) -> str:
        self.greeted += 1
        return f"Hello {name}"


async def test_a_200000_name_client_stream_does_not_starve_a_unary_call() -> None:
    names = 200_000
    greeter = CountingGreeter()
    server = GreetServer(ServerConfig(), backend=greeter)
    await server.start(sock=bound_socket())
    greedy = await RawH2Client.connect(server.target)
    try:
        stream_id = greedy.start("SayHelloClientStreaming")
        body = b"".join(grpc_frame(b"\x0a\x07" + b"n%06d" % i) for i in range(names))
        sending = asyncio.create_task(greedy.send_all(stream_id, body, end=True))
        await wait_until(lambda: greeter.greeted >= 1000, "the stream is being greeted")
        async with GreetClient(server.target, timeout=60) as other:
            greeted_before_unary = greeter.greeted
            assert (await other.say_hello()).message == "Hello"
            greeted_during_unary = greeter.greeted - greeted_before_unary
        await sending
        response = await greedy.response(stream_id, timeout=120)
    finally:
        await greedy.close()
        await server.stop()
    assert response.status == Status.OK
    assert response.data.count(b"Hello n") == names
    # The unary call was answered while the stream was still going, and before the server had
    # greeted another 5% of the stream's names.
    assert greeted_before_unary < names
    assert greeted_during_unary < names // 20, (greeted_before_unary, greeted_during_unary)
