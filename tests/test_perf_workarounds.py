"""Section 5 of greet.workarounds: write coalescing and the fast betterproto message classes.

Speed itself is measured in benchmarks/, not here; these tests pin the behaviour each workaround
changes (how many socket writes a reply takes; that building and serializing a message no longer
goes through betterproto's exception-driven slow path) and that nothing else changes.
"""

# ruff: noqa: RUF009  (betterproto message classes are declared with field-call defaults)
from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import betterproto
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generated.greet_service import (
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)
from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig
from greet.testing import bound_socket
from greet.workarounds import (
    CoalescingTransport,
    cache_header_blocks,
    speed_up_messages,
    speeds_up,
)


class RecordingTransport:
    """Sits under the server's transport stack and counts what reaches the socket."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.fixture
async def recorded_server() -> AsyncIterator[tuple[GreetServer, list[bytes]]]:
    server = GreetServer(ServerConfig())
    writes: list[bytes] = []
    make_protocol = server.grpc_server._protocol_factory

    def recording_factory() -> Any:
        protocol = make_protocol()
        connection_made = protocol.connection_made

        def recorded(transport: asyncio.BaseTransport) -> None:
            connection_made(RecordingTransport(transport, writes))  # type: ignore[arg-type]

        protocol.connection_made = recorded  # type: ignore[method-assign]
        return protocol

    server.grpc_server._protocol_factory = recording_factory  # type: ignore[method-assign]
    await server.start(sock=bound_socket())
    try:
        yield server, writes
    finally:
        await server.stop()


async def test_a_unary_reply_goes_out_in_one_socket_write(
    recorded_server: tuple[GreetServer, list[bytes]],
) -> None:
    server, writes = recorded_server
    async with GreetClient(server.target, timeout=30) as client:
        await client.say_hello()  # connection set-up writes happen here
        before = len(writes)
        reply = await client.say_hello()
        after = len(writes)
    assert reply.message == "Hello"
    # HEADERS, DATA and trailers (and the flow-control update) in one send(), not four.
    assert after - before == 1


async def test_coalesced_streams_arrive_complete_and_in_order(
    recorded_server: tuple[GreetServer, list[bytes]],
) -> None:
    server, writes = recorded_server
    names = [f"name-{index}" for index in range(3000)]
    async with GreetClient(server.target, timeout=30) as client:
        replies = [reply.message async for reply in client.say_hello_server_streaming(names)]
        echoed = [
            reply.message async for reply in client.say_hello_bidirectional_streaming(names[:500])
        ]
    assert replies == [f"Hello {name}" for name in names]
    assert echoed == [f"Hello {name}" for name in names[:500]]
    assert len(writes) < len(names)  # many messages per write


async def test_close_sends_what_is_pending_first() -> None:
    loop = asyncio.get_running_loop()
    sent: list[bytes] = []
    closed = asyncio.Event()

    class Sink(asyncio.Transport):
        def write(self, data: Any) -> None:
            sent.append(bytes(data))

        def is_closing(self) -> bool:
            return closed.is_set()

        def close(self) -> None:
            closed.set()

    proxy = CoalescingTransport(Sink(), loop)
    proxy.write(b"GOAWAY")
    proxy.write(b"")
    proxy.close()
    assert sent == [b"GOAWAY"]
    assert closed.is_set()


# --- 5b: fast message classes ----------------------------------------------------------------


@dataclass(eq=False, repr=False)
class PlainHelloRequest(betterproto.Message):
    name: str = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class PlainHelloResponse(betterproto.Message):
    message: str = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class PlainNamesList(betterproto.Message):
    names: list[str] = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class PlainMessagesList(betterproto.Message):
    messages: list[str] = betterproto.string_field(1)


@dataclass(eq=False, repr=False)
class PlainNoParam(betterproto.Message):
    pass


@dataclass(eq=False, repr=False)
class WithOneof(betterproto.Message):
    text: str = betterproto.string_field(1, group="choice")
    number: int = betterproto.int32_field(2, group="choice")


@dataclass(eq=False, repr=False)
class WithOptional(betterproto.Message):
    label: str | None = betterproto.string_field(1, optional=True)


FAST = speed_up_messages([HelloRequest, HelloResponse, NamesList, MessagesList, NoParam])
PAIRS: list[tuple[type[betterproto.Message], type[betterproto.Message], str]] = [
    (HelloRequest, PlainHelloRequest, "name"),
    (HelloResponse, PlainHelloResponse, "message"),
    (NamesList, PlainNamesList, "names"),
    (MessagesList, PlainMessagesList, "messages"),
]


def instance_state(message: betterproto.Message) -> list[tuple[str, Any]]:
    return list(object.__getattribute__(message, "__dict__").items())


def test_greet_messages_qualify_and_oneof_messages_are_left_alone() -> None:
    assert set(FAST) <= {HelloRequest, HelloResponse, NamesList, MessagesList, NoParam}
    assert all(getattr(cls, "__greet_fast__", False) for cls in (HelloRequest, NamesList))
    assert not speeds_up(WithOneof)
    assert speed_up_messages([WithOneof]) == []
    both = WithOneof(text="a")
    both.number = 5
    assert betterproto.which_one_of(both, "choice") == ("number", 5)  # still policed


def test_optional_fields_keep_their_presence() -> None:
    speed_up_messages([WithOptional])
    assert not WithOptional()._serialized_on_wire
    assert not WithOptional(label=None)._serialized_on_wire
    assert WithOptional(label="")._serialized_on_wire
    assert bytes(WithOptional(label="")) == b"\n\x00"
    assert WithOptional().label is None


texts = st.text(max_size=40)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fast_classes_behave_like_betterproto(data: st.DataObject) -> None:
    fast, plain, field = data.draw(st.sampled_from(PAIRS))
    repeated = field in ("names", "messages")
    value = data.draw(st.lists(texts, max_size=8) if repeated else texts)
    keyword = data.draw(st.booleans())

    def build(cls: Callable[..., betterproto.Message]) -> betterproto.Message:
        return cls(**{field: value}) if keyword else cls(value)

    fast_message, plain_message = build(fast), build(plain)
    assert instance_state(fast_message) == instance_state(plain_message)
    assert bytes(fast_message) == bytes(plain_message)
    assert fast_message.to_dict() == plain_message.to_dict()
    parsed = fast().parse(bytes(plain_message))
    assert instance_state(parsed) == instance_state(plain().parse(bytes(plain_message)))
    assert getattr(parsed, field) == value

    empty_fast, empty_plain = fast(), plain()
    assert instance_state(empty_fast) == instance_state(empty_plain)
    assert getattr(empty_fast, field) == getattr(empty_plain, field)  # lazy default
    assert instance_state(empty_fast) == instance_state(empty_plain)
    setattr(empty_fast, field, value)
    setattr(empty_plain, field, value)
    assert instance_state(empty_fast) == instance_state(empty_plain)
    assert bytes(empty_fast) == bytes(empty_plain)
    assert instance_state(NoParam()) == instance_state(PlainNoParam())


async def test_building_and_serializing_raises_nothing_internally() -> None:
    """betterproto's own __setattr__/__getattribute__ raise and catch AttributeError for every
    field of a message being built: the exception-driven slow path the workaround removes."""
    GreetServer(ServerConfig())  # installs the workarounds on the served message types
    raised: list[type[BaseException]] = []

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception":
            raised.append(arg[0])
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        data = bytes(HelloResponse(message="Hello"))
        request = HelloRequest.FromString(bytes(HelloRequest(name="Al")))
        names = NamesList(names=["a", "b"]).names
    finally:
        sys.settrace(previous)
    assert (data, request.name, names) == (b"\n\x05Hello", "Al", ["a", "b"])
    assert raised == []


# --- 5c: adaptive task bookkeeping -------------------------------------------------------------


async def test_finished_calls_are_collected_less_often_with_many_in_flight(
    recorded_server: tuple[GreetServer, list[bytes]],
) -> None:
    server, _ = recorded_server
    async with GreetClient(server.target, timeout=30) as client:
        await client.say_hello()
        (protocol,) = list(server.drain.open_connections())
        handler: Any = protocol.handler  # grpclib's per-connection Handler
        collections = 0
        collect = handler.__gc_collect__

        def counted() -> None:
            nonlocal collections
            collections += 1
            collect()

        handler.__gc_collect__ = counted
        held: asyncio.Queue[str] = asyncio.Queue()
        all_open = asyncio.Event()
        accept = handler.accept

        def accept_and_count(*args: Any) -> None:
            accept(*args)
            if sum(not task.done() for task in handler._tasks.values()) >= 60:
                all_open.set()

        handler.accept = accept_and_count

        async def names() -> AsyncIterator[str]:
            yield await held.get()

        # 60 calls stay open on this connection while 300 short ones come and go.
        streams = [client.say_hello_bidirectional_streaming(names()) for _ in range(60)]
        opened = [asyncio.ensure_future(stream.__anext__()) for stream in streams]
        await asyncio.wait_for(all_open.wait(), 30)
        collections = 0
        for _ in range(300):
            assert (await client.say_hello()).message == "Hello"
        during_short_calls = collections
        for _ in streams:
            held.put_nowait("x")
        assert [(await reply).message for reply in opened] == ["Hello x"] * 60
    # grpclib alone collects every 10 calls (30 times, scanning 60+ tasks each time).
    assert 0 < during_short_calls <= 8
    assert handler.__gc_interval__ >= 60


# --- 5d: header-block cache --------------------------------------------------------------------


def as_pairs(headers: Any) -> list[tuple[str, str]]:
    return [(str(name), str(value)) for name, value in headers]


def test_cached_blocks_follow_the_decoder_table() -> None:
    """The same bytes mean other headers once the dynamic table has changed."""
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    cache_header_blocks(decoder)
    first = encoder.encode([("x-a", "1")])  # literal, added to both tables
    again = encoder.encode([("x-a", "1")])  # one byte: dynamic table entry 62
    assert as_pairs(decoder.decode(first)) == [("x-a", "1")]
    assert as_pairs(decoder.decode(again)) == [("x-a", "1")]
    assert as_pairs(decoder.decode(again)) == [("x-a", "1")]  # from the cache
    decoder.decode(encoder.encode([("x-b", "2")]))  # now entry 62 is x-b: 2
    assert as_pairs(decoder.decode(again)) == [("x-b", "2")]
    decoder.header_table_size = 0  # a resize empties the table: entry 62 no longer exists
    with pytest.raises(hpack.HPACKDecodingError):
        decoder.decode(again)
    decoder.max_header_list_size = 3  # a smaller limit applies to cached blocks too
    decoder.header_table_size = 4096
    literal = hpack.Encoder().encode([("x-c", "3")])
    with pytest.raises(hpack.OversizedHeaderListError):
        decoder.decode(literal)


async def test_a_repeated_header_block_is_decoded_once(
    recorded_server: tuple[GreetServer, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = recorded_server
    decoded: list[tuple[int, bytes]] = []
    real_decode = hpack.Decoder.decode

    def counting_decode(self: hpack.Decoder, data: bytes, raw: bool = False) -> Any:
        decoded.append((id(self), bytes(data)))
        return real_decode(self, data, raw)

    # Under the cache: what hpack really decodes (installed before the connection is made).
    monkeypatch.setattr(hpack.Decoder, "decode", counting_decode)
    async with GreetClient(server.target, timeout=30) as client:
        for _ in range(20):
            assert (await client.say_hello()).message == "Hello"
        (protocol,) = list(server.drain.open_connections())
        server_decoder = id(protocol.connection._connection.decoder)
    requests = [data for decoder, data in decoded if decoder == server_decoder]
    # The first blocks fill the dynamic table; after that one block, decoded once.
    assert 1 <= len(requests) < 5
