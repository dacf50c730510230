"""Rich error details (google.rpc.Status in grpc-status-details-bin) on greet's transport and
real peers.

A request that breaks an opt-in limit is answered with its status, a message naming the flag, and
a google.rpc.Status whose details are a BadRequest (the field) and an ErrorInfo (reason, domain,
limit and actual value). GreetClient's RpcError gives them back as typed messages (and survives
pickling), tested on greet's transport in memory (greet.transport.testing); grpcio's
`grpc_status.rpc_status.from_call` reads the same bytes, and GreetClient reads what a grpcio
server writes. (grpc-go's reading is in tests/test_interop_go.py.)
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RetryInfo
from grpc_status import rpc_status
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from loopback import StartServer

from greet.client import GreetClient
from greet.errors import RpcError
from greet.greeting import NAME_TOO_LONG, TOO_MANY_MESSAGES, TOO_MANY_NAMES, Limits
from greet.server import GreetServer
from greet.service import ERROR_DOMAIN, GreetService
from greet.transport import TransportConfig, TransportServer
from greet.transport.testing import MemoryServer
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList, NoParam

SERVICE = "/greet_service.GreetService/"
LIMITS = Limits(max_name_chars=5, max_names_per_list=3, max_messages_per_stream=4)


@dataclass(frozen=True)
class Expected:
    """The status and details one broken limit must be reported with."""

    status: Status
    message: str
    field: str
    reason: str
    limit: int
    actual: int
    flag: str


LONG_NAME = Expected(
    Status.INVALID_ARGUMENT,
    "name is 6 characters long; the limit (--max-name-chars) is 5",
    "name",
    NAME_TOO_LONG,
    5,
    6,
    "--max-name-chars",
)
LONG_NAME_IN_LIST = Expected(
    Status.INVALID_ARGUMENT,
    "names[2] is 7 characters long; the limit (--max-name-chars) is 5",
    "names[2]",
    NAME_TOO_LONG,
    5,
    7,
    "--max-name-chars",
)
TOO_MANY = Expected(
    Status.RESOURCE_EXHAUSTED,
    "4 names in one list; the limit (--max-names) is 3",
    "names",
    TOO_MANY_NAMES,
    3,
    4,
    "--max-names",
)
LONG_STREAM = Expected(
    Status.RESOURCE_EXHAUSTED,
    "more than 4 messages in one stream; the limit (--max-stream-messages) is 4",
    "requests",
    TOO_MANY_MESSAGES,
    4,
    5,
    "--max-stream-messages",
)


def assert_details(details: tuple[Message, ...] | list[Message], expected: Expected) -> None:
    """`details` are exactly one BadRequest and one ErrorInfo that describe `expected`."""
    bad_request, error_info = details
    assert isinstance(bad_request, BadRequest)
    assert [(v.field, v.description, v.reason) for v in bad_request.field_violations] == [
        (expected.field, expected.message, expected.reason)
    ]
    assert isinstance(error_info, ErrorInfo)
    assert (error_info.reason, error_info.domain) == (expected.reason, ERROR_DOMAIN)
    assert dict(error_info.metadata) == {
        "limit": str(expected.limit),
        "actual": str(expected.actual),
        "flag": expected.flag,
    }


def assert_rpc_error(error: RpcError, expected: Expected) -> None:
    assert (error.status, error.message) == (expected.status, expected.message)
    assert_details(error.details, expected)
    assert error.bad_request is error.details[0]
    assert error.error_info is error.details[1]


@pytest.fixture
async def limited(start_server: StartServer) -> GreetServer:
    return await start_server(limits=LIMITS)


@pytest.fixture
async def client() -> AsyncIterator[GreetClient]:
    """A GreetClient of GreetService with LIMITS, on greet's transport in memory."""
    async with (
        MemoryServer(TransportServer([GreetService(limits=LIMITS)])) as server,
        GreetClient(server.target, timeout=30, connector=server.connect) as greet_client,
    ):
        yield greet_client
        assert (await greet_client.say_hello()).message == "Hello"  # still serving


# --- GreetClient: typed details on RpcError -------------------------------------------------------


async def test_client_stream_long_name(client: GreetClient) -> None:
    with pytest.raises(RpcError) as caught:
        await client.say_hello_client_streaming(["Alice", "Bobbie"])
    assert_rpc_error(caught.value, LONG_NAME)


async def test_server_stream_names_the_long_name_by_its_index(client: GreetClient) -> None:
    with pytest.raises(RpcError) as caught:
        _ = [r async for r in client.say_hello_server_streaming(["Ann", "Bob", "Rebecca"])]
    assert_rpc_error(caught.value, LONG_NAME_IN_LIST)


async def test_server_stream_too_many_names(client: GreetClient) -> None:
    with pytest.raises(RpcError) as caught:
        _ = [r async for r in client.say_hello_server_streaming(["a", "b", "c", "d"])]
    assert_rpc_error(caught.value, TOO_MANY)


async def test_streams_with_too_many_messages(client: GreetClient) -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    with pytest.raises(RpcError) as client_stream:
        await client.say_hello_client_streaming(names)
    assert_rpc_error(client_stream.value, LONG_STREAM)
    replies: list[str] = []
    with pytest.raises(RpcError) as bidi:
        async for reply in client.say_hello_bidirectional_streaming(names):
            replies.append(reply.message)
    assert replies == ["Hello a", "Hello b", "Hello c", "Hello d"]  # answered before the error
    assert_rpc_error(bidi.value, LONG_STREAM)


async def test_a_status_without_details_has_none() -> None:
    config = TransportConfig(max_message_bytes=100)
    async with (
        MemoryServer(TransportServer([GreetService()], config=config)) as server,
        GreetClient(server.target, timeout=30, connector=server.connect) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming(["x" * 200])
    assert caught.value.status is Status.RESOURCE_EXHAUSTED
    assert (caught.value.details, caught.value.bad_request, caught.value.error_info) == (
        (),
        None,
        None,
    )


async def test_rpc_error_survives_pickling(client: GreetClient) -> None:
    with pytest.raises(RpcError) as caught:
        _ = [r async for r in client.say_hello_server_streaming(["a", "b", "c", "d"])]
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is RpcError
    assert str(copy) == str(caught.value)
    assert copy.details == caught.value.details
    assert_rpc_error(copy, TOO_MANY)

    with_trailers = RpcError(
        Status.UNAVAILABLE, "down", trailers=[("retry-hint", "later"), ("trace-bin", b"\x00\xff")]
    )
    copy = pickle.loads(pickle.dumps(with_trailers))
    assert (copy.status, copy.message, copy.details) == (Status.UNAVAILABLE, "down", ())
    assert copy.trailers == (("retry-hint", "later"), ("trace-bin", b"\x00\xff"))


def test_rpc_error_keeps_the_old_constructor() -> None:
    error = RpcError(Status.NOT_FOUND, "gone")
    assert (error.status, error.message, error.details, error.trailers) == (
        Status.NOT_FOUND,
        "gone",
        (),
        (),
    )
    assert str(error) == "NOT_FOUND: gone"


# --- grpcio reads the details greet writes --------------------------------------------------------


def grpcio_status(
    call: Callable[[grpc.Channel], object], target: str
) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """Run `call` on a grpcio channel; the code, message and google.rpc.Status it failed with."""
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        call(channel)
    error = raised.value
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)  # raises if code or message disagree with the trailers
    assert status is not None, "no grpc-status-details-bin"
    return error.code(), error.details() or "", status


def unpacked(status: status_pb2.Status) -> list[Message]:
    """The details of a google.rpc.Status, unpacked as grpcio's users do."""
    kinds: dict[str, type[Message]] = {
        "google.rpc.BadRequest": BadRequest,
        "google.rpc.ErrorInfo": ErrorInfo,
    }
    details: list[Message] = []
    for packed in status.details:
        detail = kinds[packed.TypeName()]()
        assert packed.Unpack(detail), packed.type_url
        details.append(detail)
    return details


def server_stream(names: list[str]) -> Callable[[grpc.Channel], object]:
    def call(channel: grpc.Channel) -> object:
        method = channel.unary_stream(
            SERVICE + "SayHelloServerStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )
        return list(method(NamesList(names=names), timeout=10))

    return call


def client_stream(names: list[str]) -> Callable[[grpc.Channel], object]:
    def call(channel: grpc.Channel) -> object:
        method = channel.stream_unary(
            SERVICE + "SayHelloClientStreaming",
            request_serializer=bytes,
            response_deserializer=MessagesList.FromString,
        )
        return method(iter([HelloRequest(name=name) for name in names]), timeout=10)

    return call


def bidi(names: list[str]) -> Callable[[grpc.Channel], object]:
    def call(channel: grpc.Channel) -> object:
        method = channel.stream_stream(
            SERVICE + "SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )
        return list(method(iter([HelloRequest(name=name) for name in names]), timeout=10))

    return call


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (client_stream(["Alice", "Bobbie"]), LONG_NAME),
        (server_stream(["Ann", "Bob", "Rebecca"]), LONG_NAME_IN_LIST),
        (server_stream(["a", "b", "c", "d"]), TOO_MANY),
        (client_stream(["a", "b", "c", "d", "e"]), LONG_STREAM),
        (bidi(["a", "b", "c", "d", "e"]), LONG_STREAM),
    ],
    ids=["client-stream-long-name", "server-stream-long-name", "too-many-names", "cs-5", "bidi-5"],
)
async def test_grpcio_reads_the_details_with_rpc_status(
    limited: GreetServer, call: Callable[[grpc.Channel], object], expected: Expected
) -> None:
    code, message, status = await asyncio.to_thread(grpcio_status, call, limited.target)
    assert code.value[0] == expected.status.value
    assert (status.code, status.message) == (expected.status.value, expected.message)
    assert message == expected.message
    assert_details(unpacked(status), expected)


# --- greet reads the details (and trailers) a grpcio server writes --------------------------------

GRPCIO_DETAILS = (
    BadRequest(field_violations=[BadRequest.FieldViolation(field="nothing", description="no")]),
    RetryInfo(),
)
GRPCIO_TRAILERS = (("retry-hint", "later"), ("trace-bin", b"\x00\xff"))


async def refuse_with_rich_status(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> bytes:
    packed = []
    for detail in GRPCIO_DETAILS:
        container = AnyProto()
        container.Pack(detail)
        packed.append(container)
    status = status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION, message="refused by grpcio", details=packed
    )
    rich = rpc_status.to_status(status)
    await context.abort(
        rich.code, rich.details, trailing_metadata=(*rich.trailing_metadata, *GRPCIO_TRAILERS)
    )
    raise AssertionError("abort returned")


@pytest.fixture
async def grpcio_server() -> AsyncIterator[str]:
    """A grpcio server whose SayHello fails with rich details and custom trailers."""
    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
        refuse_with_rich_status
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("greet_service.GreetService", {"SayHello": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")  # grpcio keeps the socket it bound
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_greet_client_reads_details_a_grpcio_server_wrote(grpcio_server: str) -> None:
    async with GreetClient(grpcio_server, timeout=30) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello()
    assert (caught.value.status, caught.value.message) == (
        Status.FAILED_PRECONDITION,
        "refused by grpcio",
    )
    assert caught.value.details == GRPCIO_DETAILS
    assert caught.value.bad_request == GRPCIO_DETAILS[0]
    assert caught.value.error_info is None


async def test_from_grpc_error_keeps_the_trailers(grpcio_server: str) -> None:
    host, port = grpcio_server.rsplit(":", 1)
    channel = Channel(host, int(port))
    try:
        stream_trailers = None
        with pytest.raises(GRPCError) as caught:
            async with channel.request(
                SERVICE + "SayHello", Cardinality.UNARY_UNARY, NoParam, HelloResponse, timeout=30
            ) as stream:
                try:
                    await stream.send_message(NoParam(), end=True)
                    await stream.recv_message()
                finally:
                    stream_trailers = stream.trailing_metadata
        error = RpcError.from_grpc_error(caught.value, trailers=stream_trailers)
    finally:
        channel.close()
    assert error.trailers == GRPCIO_TRAILERS
    assert error.details == GRPCIO_DETAILS
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status, copy.message, copy.details, copy.trailers) == (
        error.status,
        error.message,
        error.details,
        error.trailers,
    )
