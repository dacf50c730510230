"""GreetService logic through grpclib's in-memory ChannelFor: real protocols, no sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from generated.greet_service import (
    GreetServiceStub,
    HelloRequest,
    NamesList,
    NoParam,
)
from greet.greeting import Limits
from greet.service import GreetService


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
    assert "max_name_chars" in (caught.value.message or "")


async def test_server_streaming_rejects_a_long_name_before_any_reply(
    stub: GreetServiceStub,
) -> None:
    received: list[str] = []
    with pytest.raises(GRPCError) as caught:
        async for reply in stub.say_hello_server_streaming(NamesList(["ok", "y" * 11])):
            received.append(reply.message)
    assert caught.value.status is Status.INVALID_ARGUMENT
    assert received == []
