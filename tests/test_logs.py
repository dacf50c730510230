"""Structured logs (`--log-format json`) and the access log (`--access-log`) of a server process."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from server_process import ServerProcess

from greet_service import GreetServiceStub, NamesList, NoParam

SAY_HELLO = "/greet_service.GreetService/SayHello"
STREAMING = "/greet_service.GreetService/SayHelloServerStreaming"
TOKEN = "s3cret-token-value-1234"


@asynccontextmanager
async def stub_for(target: str, token: str | None = None) -> AsyncIterator[GreetServiceStub]:
    host, _, port = target.rpartition(":")
    channel = Channel(host.strip("[]"), int(port))
    metadata = {"authorization": f"Bearer {token}"} if token else None
    try:
        yield GreetServiceStub(channel, timeout=30, metadata=metadata)
    finally:
        channel.close()


def access_records(lines: list[str]) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in lines]
    return [record for record in records if record["logger"] == "greet.access"]


async def test_json_lines_carry_the_access_fields_and_no_secrets(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    args = ["--log-format", "json", "--access-log", "--auth-token-file", str(tokens)]
    args += ["--max-name-chars", "3"]
    async with ServerProcess(args) as server:
        target = server.target
        async with stub_for(target, TOKEN) as stub:
            assert (await stub.say_hello(NoParam())).message == "Hello"
            with pytest.raises(GRPCError) as invalid:
                async for _ in stub.say_hello_server_streaming(NamesList(["too long"])):
                    pass
        async with stub_for(target, "wrong-" + TOKEN) as stub:
            with pytest.raises(GRPCError) as refused:
                await stub.say_hello(NoParam())
        await server.wait_for_log(re.compile(r'"status": "UNAUTHENTICATED"'))
    assert invalid.value.status is Status.INVALID_ARGUMENT
    assert refused.value.status is Status.UNAUTHENTICATED

    lines = [line for line in server.log_lines if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any("greet server listening on" in record["message"] for record in records)

    calls = access_records(lines)
    assert [(c["method"], c["status"]) for c in calls] == [
        (SAY_HELLO, "OK"),
        (STREAMING, "INVALID_ARGUMENT"),
        (SAY_HELLO, "UNAUTHENTICATED"),
    ]
    for call in calls:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", call["peer"])
        assert isinstance(call["duration_ms"], float)
        assert call["duration_ms"] >= 0
        assert call["code"] == Status[call["status"]].value
    assert all(TOKEN not in line for line in server.log_lines)
    assert all("authorization" not in line.lower() for line in server.log_lines)


async def test_access_log_is_off_by_default() -> None:
    async with ServerProcess(["--log-format", "json"]) as server:
        async with stub_for(server.target) as stub:
            assert (await stub.say_hello(NoParam())).message == "Hello"
        await server.stop()
    records = [json.loads(line) for line in server.log_lines if line.strip()]
    assert any(record["message"] == "stopped" for record in records)
    assert access_records(server.log_lines) == []


async def test_text_access_log_line() -> None:
    async with ServerProcess(["--access-log"]) as server:
        async with stub_for(server.target) as stub:
            await stub.say_hello(NoParam())
        match = await server.wait_for_log(re.compile(r"greet\.access: (\S+) (\S+) ([\d.]+)ms"))
    assert match.group(1) == SAY_HELLO
    assert match.group(2) == "OK"
