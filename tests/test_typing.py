"""A user's code calling the client passes mypy --strict against the installed package."""

from __future__ import annotations

from pathlib import Path

from mypy import api

USER_CODE = """
from collections.abc import AsyncIterator

from greet_service import HelloRequest, HelloResponse, MessagesList
from greet.client import (
    Endpoint,
    GreetClient,
    PoolOptions,
    RetryPolicy,
    RetryThrottling,
    RpcError,
)


async def use(target: str) -> list[str]:
    async with GreetClient(target, timeout=5) as client:
        hello: HelloResponse = await client.say_hello()
        streamed: list[str] = [r.message async for r in client.say_hello_server_streaming(["a"])]
        collected: MessagesList = await client.say_hello_client_streaming(
            [HelloRequest(name="b"), "c"]
        )

        async def names() -> AsyncIterator[str]:
            yield "d"

        bidi = [r async for r in client.say_hello_bidirectional_streaming(names())]
        try:
            await client.say_hello()
        except RpcError as error:
            print(error.status.name)
        first: HelloResponse = bidi[0]
        return [hello.message, *streamed, *collected.messages, first.message]


async def use_several(targets: list[str]) -> int:
    policy = RetryPolicy(max_attempts=3, throttling=RetryThrottling(max_tokens=10))
    async with GreetClient(
        [*targets, "dns:///replicas.example:8080"],
        backup=["backup.example:8080"],
        token="secret",
        retry=policy,
        pool=PoolOptions(connections_per_endpoint=2, resolve_interval=5.0),
    ) as client:
        await client.say_hello(timeout=1.5)
        endpoints: list[Endpoint] = client.endpoints
        return client.served["replicas.example:8080"] + len(endpoints)
"""

WRONG_CODE = """
from greet.client import GreetClient


async def use() -> int:
    async with GreetClient("h:1") as client:
        return await client.say_hello()
"""


def run_mypy(code: str, tmp_path: Path) -> tuple[str, int]:
    path = tmp_path / "user_code.py"
    path.write_text(code)
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(path)]
    )
    return out + err, status


def test_user_code_passes_mypy_strict(tmp_path: Path) -> None:
    output, status = run_mypy(USER_CODE, tmp_path)
    assert status == 0, output


def test_mypy_sees_the_client_types(tmp_path: Path) -> None:
    """The package's types are really checked: a wrong return type is caught."""
    output, status = run_mypy(WRONG_CODE, tmp_path)
    assert status == 1
    assert 'Incompatible return value type (got "HelloResponse", expected "int")' in output
