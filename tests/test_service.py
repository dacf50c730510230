"""GreetService logic through greet's transport in memory (greet.transport.testing.ChannelFor:
the real client and server connections and engine, no sockets); and the default limits through a
real in-process server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from loopback import StartServer

from greet.client import GreetClient
from greet.greeting import NAME_TOO_LONG, Limits
from greet.service import GreetService
from greet.transport.testing import ChannelFor
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    NamesList,
    NoParam,
)


@pytest.fixture
async def stub() -> AsyncIterator[GreetServiceStub]:
    async with ChannelFor([GreetService(limits=Limits(max_name_chars=10))]) as channel:
        yield GreetServiceStub(channel)


async def test_say_hello(stub: GreetServiceStub) -> None:
    assert (await stub.say_hello(NoParam())).message == "Hello"


async def test_server_streaming_greets_each_name_in_order(stub: GreetServiceStub) -> None:
    replies = [r.message async for r in stub.say_hello_server_streaming(NamesList(["a", "b"]))]
    assert replies == ["Hello a", "Hello b"]


async def test_client_streaming_collects_greetings(stub: GreetServiceStub) -> None:
    reply = await stub.say_hello_client_streaming([HelloRequest("x"), HelloRequest("y")])
    assert reply.messages == ["Hello x", "Hello y"]


async def test_bidi_answers_each_request(stub: GreetServiceStub) -> None:
    replies = [
        r.message
        async for r in stub.say_hello_bidirectional_streaming(
            [HelloRequest("1"), HelloRequest("2"), HelloRequest("3")]
        )
    ]
    assert replies == ["Hello 1", "Hello 2", "Hello 3"]


async def test_name_over_limit_is_invalid_argument_naming_the_limit(
    stub: GreetServiceStub,
) -> None:
    with pytest.raises(GRPCError) as caught:
        await stub.say_hello_client_streaming([HelloRequest("x" * 11)])
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert caught.value.message == "name is 11 characters long; the limit (--max-name-chars) is 10"


async def test_server_streaming_rejects_a_long_name_before_any_reply(
    stub: GreetServiceStub,
) -> None:
    received: list[str] = []
    with pytest.raises(GRPCError) as caught:
        async for reply in stub.say_hello_server_streaming(NamesList(["ok", "y" * 11])):
            received.append(reply.message)
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert received == []


async def test_a_broken_limit_carries_bad_request_and_error_info(stub: GreetServiceStub) -> None:
    with pytest.raises(GRPCError) as caught:
        _ = [r async for r in stub.say_hello_server_streaming(NamesList(["ok", "y" * 12]))]
    bad_request, error_info = caught.value.details
    assert isinstance(bad_request, BadRequest)
    assert [(v.field, v.reason) for v in bad_request.field_violations] == [
        ("names[1]", NAME_TOO_LONG)
    ]
    assert bad_request.field_violations[0].description == caught.value.message
    assert isinstance(error_info, ErrorInfo)
    assert (error_info.reason, error_info.domain) == (NAME_TOO_LONG, "greet_service.GreetService")
    assert dict(error_info.metadata) == {"limit": "10", "actual": "12", "flag": "--max-name-chars"}


async def test_default_limits_serve_what_the_original_serves(start_server: StartServer) -> None:
    """grpc-go's server answers a NamesList of 200,000 names (1.6 MB, under the 4 MiB message
    limit) and a 100,000-character name (greet's old defaults refused both): so must greet."""
    server = await start_server()
    names = [f"n{i:05d}" for i in range(200_000)]
    long_name = "x" * 100_000
    async with GreetClient(server.target, timeout=100) as client:
        count = 0
        async for reply in client.say_hello_server_streaming(names):
            assert reply.message == f"Hello {names[count]}"
            count += 1
        assert count == len(names)
        streamed = await client.say_hello_client_streaming([long_name, "Bob"])
        assert streamed.messages == [f"Hello {long_name}", "Hello Bob"]
