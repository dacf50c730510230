"""Domain limits (--max-name-chars, --max-names, --max-stream-messages) through a real server
process: each breach gets a clear status naming the limit, and the server keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpclib.const import Status
from server_process import ServerProcess

from greet.client import GreetClient
from greet.errors import RpcError

LIMIT_FLAGS = ["--max-name-chars", "5", "--max-names", "3", "--max-stream-messages", "4"]


@pytest.fixture
async def limited() -> AsyncIterator[GreetClient]:
    async with (
        ServerProcess(LIMIT_FLAGS) as process,
        GreetClient(process.target, timeout=30) as client,
    ):
        yield client
        assert (await client.say_hello()).message == "Hello"  # still serving after it all
    assert not any("Traceback" in line for line in process.log_lines), process.log_lines


async def bidi_until_error(client: GreetClient, names: list[str]) -> tuple[list[str], RpcError]:
    replies: list[str] = []
    with pytest.raises(RpcError) as caught:
        async for reply in client.say_hello_bidirectional_streaming(names):
            replies.append(reply.message)
    return replies, caught.value


async def test_name_longer_than_max_name_chars_is_invalid_argument(limited: GreetClient) -> None:
    assert (await limited.say_hello_client_streaming(["Alice"])).messages == ["Hello Alice"]
    with pytest.raises(RpcError) as unary:
        await limited.say_hello_client_streaming(["Alice", "Bobbie"])
    with pytest.raises(RpcError) as listed:
        _ = [reply async for reply in limited.say_hello_server_streaming(["Bob", "Robert"])]
    replies, bidi = await bidi_until_error(limited, ["Ann", "Annabel"])
    assert replies == ["Hello Ann"]
    for error in (unary.value, listed.value, bidi):
        assert error.status == Status.INVALID_ARGUMENT
        assert "(--max-name-chars)" in error.message
        assert "is 5" in error.message


async def test_more_names_than_max_names_is_resource_exhausted(limited: GreetClient) -> None:
    replies = [r.message async for r in limited.say_hello_server_streaming(["a", "b", "c"])]
    assert replies == ["Hello a", "Hello b", "Hello c"]
    with pytest.raises(RpcError) as caught:
        _ = [r async for r in limited.say_hello_server_streaming(["a", "b", "c", "d"])]
    assert caught.value.status == Status.RESOURCE_EXHAUSTED
    assert "(--max-names)" in caught.value.message
    assert "is 3" in caught.value.message


async def test_more_stream_messages_than_allowed_is_resource_exhausted(
    limited: GreetClient,
) -> None:
    four = ["a", "b", "c", "d"]
    assert (await limited.say_hello_client_streaming(four)).messages == [f"Hello {n}" for n in four]
    with pytest.raises(RpcError) as client_stream:
        await limited.say_hello_client_streaming([*four, "e"])
    replies, bidi = await bidi_until_error(limited, [*four, "e", "f"])
    assert replies == [f"Hello {n}" for n in four]
    for error in (client_stream.value, bidi):
        assert error.status == Status.RESOURCE_EXHAUSTED
        assert "(--max-stream-messages)" in error.message
        assert "4" in error.message


async def test_max_message_bytes_flag_sets_the_receive_limit() -> None:
    async with (
        ServerProcess(["--max-message-bytes", "100"]) as process,
        GreetClient(process.target, timeout=30) as client,
    ):
        assert (await client.say_hello_client_streaming(["x" * 90])).messages == [
            "Hello " + "x" * 90
        ]
        with pytest.raises(RpcError) as caught:
            await client.say_hello_client_streaming(["x" * 100])
        assert caught.value.status == Status.RESOURCE_EXHAUSTED
        assert "the limit (--max-message-bytes) is 100" in caught.value.message
        assert (await client.say_hello()).message == "Hello"
