"""Bearer tokens (`--auth-token-file`): UNAUTHENTICATED without a valid token, health open,
reflection closed, tokens re-read on SIGHUP and never logged."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_pb2 import ServerReflectionRequest, ServerReflectionResponse
from server_process import ServerProcess

from greet.client import GreetClient
from greet.errors import RpcError
from greet.middleware.auth import TokenSet, parse_tokens
from greet_service import HelloRequest, HelloResponse

ALICE = "alice-token-0d9f7c1e5b"
BOB = "bob-token-77a1c93e02"
RELOADED = re.compile(r"auth tokens reloaded: (\d+)")
NOT_RELOADED = re.compile(r"auth tokens NOT reloaded")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def hello(target: str, metadata: dict[str, str] | None = None) -> str:
    async with GreetClient(target, timeout=10, metadata=metadata) as client:
        return (await client.say_hello()).message


async def refusal(target: str, metadata: dict[str, str] | None = None) -> str:
    """The UNAUTHENTICATED message SayHello gets with this metadata."""
    with pytest.raises(RpcError) as raised:
        await hello(target, metadata)
    assert raised.value.status.name == "UNAUTHENTICATED"
    return raised.value.message


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# greet tokens\n{ALICE}\n\n   # bob's\n  {BOB}  \n")
    return path


@pytest.fixture
async def auth_server(token_file: Path) -> AsyncIterator[ServerProcess]:
    async with ServerProcess(["--auth-token-file", str(token_file)]) as process:
        yield process
    for line in process.log_lines:
        assert ALICE not in line
        assert BOB not in line
        assert "Traceback" not in line  # refused calls are not server errors


def test_token_file_syntax() -> None:
    text = "# comment\n\n  one  \n#two\ntwo words\n\t\n"
    assert parse_tokens(text) == ["one", "two words"]
    tokens = TokenSet(parse_tokens(text))
    assert len(tokens) == 2
    assert tokens.accepts("one")
    assert not tokens.accepts("on")
    assert not tokens.accepts("#two")
    assert "one" not in repr(tokens)


async def test_calls_need_a_valid_bearer_token(auth_server: ServerProcess) -> None:
    target = auth_server.target
    assert "missing 'authorization'" in await refusal(target)
    assert "Bearer <token>" in await refusal(target, {"authorization": f"Basic {ALICE}"})
    wrong = "not-a-token"
    message = await refusal(target, bearer(wrong))
    assert message == "bearer token is not valid"
    assert wrong not in message
    assert await hello(target, bearer(ALICE)) == "Hello"
    assert await hello(target, {"authorization": f"bearer {BOB}"}) == "Hello"


async def test_every_call_kind_is_guarded(auth_server: ServerProcess) -> None:
    async with GreetClient(auth_server.target, timeout=10) as anonymous:
        with pytest.raises(RpcError, match="UNAUTHENTICATED"):
            async for _ in anonymous.say_hello_server_streaming(["Akhil"]):
                pass
        with pytest.raises(RpcError, match="UNAUTHENTICATED"):
            await anonymous.say_hello_client_streaming(["Akhil"])
        with pytest.raises(RpcError, match="UNAUTHENTICATED"):
            async for _ in anonymous.say_hello_bidirectional_streaming(["Akhil"]):
                pass
    async with GreetClient(auth_server.target, timeout=10, metadata=bearer(BOB)) as client:
        replies = client.say_hello_server_streaming(["Akhil"])
        assert [reply.message async for reply in replies] == ["Hello Akhil"]
        assert (await client.say_hello_client_streaming(["Akhil"])).messages == ["Hello Akhil"]
        replies = client.say_hello_bidirectional_streaming(["Bob"])
        assert [reply.message async for reply in replies] == ["Hello Bob"]


def grpcio_bidi(target: str, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        bidi = channel.stream_stream(
            "/greet_service.GreetService/SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=lambda data: HelloResponse().parse(data),
        )
        requests = iter([HelloRequest(name="Alice")])
        return [reply.message for reply in bidi(requests, metadata=metadata, timeout=10)]


async def test_grpcio_client_sees_unauthenticated(auth_server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        await asyncio.to_thread(grpcio_bidi, auth_server.target, ())
    assert isinstance(raised.value, grpc.Call)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in raised.value.details()
    good = (("authorization", f"Bearer {ALICE}"),)
    assert await asyncio.to_thread(grpcio_bidi, auth_server.target, good) == ["Hello Alice"]


async def test_health_is_open_and_reflection_is_not(auth_server: ServerProcess) -> None:
    host, port = auth_server.target.rsplit(":", 1)
    channel = Channel(host, int(port))
    try:
        reply = await HealthStub(channel).Check(HealthCheckRequest(service=""))
        assert reply.status == HealthCheckResponse.SERVING
    finally:
        channel.close()

    def list_services(metadata: tuple[tuple[str, str], ...]) -> list[str]:
        with grpc.insecure_channel(auth_server.target) as channel:
            info = channel.stream_stream(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                request_serializer=ServerReflectionRequest.SerializeToString,
                response_deserializer=ServerReflectionResponse.FromString,
            )
            requests = iter([ServerReflectionRequest(list_services="")])
            [response] = info(requests, metadata=metadata, timeout=10)
            return [service.name for service in response.list_services_response.service]

    with pytest.raises(grpc.RpcError) as raised:
        await asyncio.to_thread(list_services, ())
    assert isinstance(raised.value, grpc.Call)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    names = await asyncio.to_thread(list_services, (("authorization", f"Bearer {BOB}"),))
    assert "greet_service.GreetService" in names


async def test_sighup_reloads_tokens(auth_server: ServerProcess, token_file: Path) -> None:
    carol = "carol-token-5e0b2d8a41"
    assert "not valid" in await refusal(auth_server.target, bearer(carol))
    await asyncio.to_thread(token_file.write_text, f"{BOB}\n{carol}\n")  # Alice's is withdrawn
    auth_server.send_signal(signal.SIGHUP)
    match = await auth_server.wait_for_log(RELOADED)
    assert match.group(1) == "2"
    assert await hello(auth_server.target, bearer(carol)) == "Hello"
    assert await hello(auth_server.target, bearer(BOB)) == "Hello"
    assert "not valid" in await refusal(auth_server.target, bearer(ALICE))
    assert not any(carol in line for line in auth_server.log_lines)


async def test_failed_reload_keeps_the_tokens(auth_server: ServerProcess, token_file: Path) -> None:
    await asyncio.to_thread(token_file.unlink)
    auth_server.send_signal(signal.SIGHUP)
    await auth_server.wait_for_log(NOT_RELOADED)
    assert await hello(auth_server.target, bearer(ALICE)) == "Hello"


async def test_missing_token_file_stops_the_server_from_starting(tmp_path: Path) -> None:
    process = ServerProcess(["--auth-token-file", str(tmp_path / "absent")])
    with pytest.raises(RuntimeError, match="exited before"):
        await process.start()
    assert await process.wait() != 0
    assert any("--auth-token-file" in line and "absent" in line for line in process.log_lines)
