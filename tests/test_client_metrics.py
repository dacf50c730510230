"""ClientMetrics: go-grpc-prometheus' client metrics of real calls, read back from the registry the
user passed, with grpc-go's code names (checked against grpc-go's own source)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from grpclib.const import Status
from loopback import StartServer, bound_socket
from prometheus_client import CollectorRegistry, generate_latest

from greet.client import ClientMetrics, GreetClient, RetryPolicy, RpcError
from greet.client.metrics import GRPC_CODE_NAMES
from greet.greeting import Limits
from greet.service import GreetService
from greet.transport import TransportServer
from greet.transport.testing import MemoryServer

SERVICE = "greet_service.GreetService"
GOCODE = Path(os.environ.get("GREET_GOCODE", "/usr/share/gocode"))
GRPC_GO_CODES = GOCODE / "src" / "google.golang.org" / "grpc" / "codes"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def labels(kind: str, method: str) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method}


async def test_calls_are_counted_as_go_grpc_prometheus_counts_them() -> None:
    registry = CollectorRegistry()
    async with (
        MemoryServer(TransportServer([GreetService(limits=Limits(max_name_chars=5))])) as server,
        GreetClient(
            server.target,
            timeout=10,
            connector=server.connect,
            interceptors=[ClientMetrics(registry)],
        ) as client,
    ):
        for _ in range(2):
            await client.say_hello()
        assert len([r async for r in client.say_hello_server_streaming(["a", "b", "c"])]) == 3
        await client.say_hello_client_streaming(["a", "b"])
        with pytest.raises(RpcError) as caught:
            _ = [r async for r in client.say_hello_bidirectional_streaming(["Ann", "Annabel"])]
        assert caught.value.status is Status.INVALID_ARGUMENT

    unary = labels("unary", "SayHello")
    server_stream = labels("server_stream", "SayHelloServerStreaming")
    client_stream = labels("client_stream", "SayHelloClientStreaming")
    bidi = labels("bidi_stream", "SayHelloBidirectionalStreaming")
    assert sample(registry, "grpc_client_started_total", **unary) == 2
    assert sample(registry, "grpc_client_handled_total", **unary, grpc_code="OK") == 2
    assert sample(registry, "grpc_client_msg_sent_total", **unary) == 2
    assert sample(registry, "grpc_client_msg_received_total", **unary) == 2
    assert sample(registry, "grpc_client_handling_seconds_count", **unary) == 2
    assert sample(registry, "grpc_client_handling_seconds_sum", **unary) > 0

    assert sample(registry, "grpc_client_msg_sent_total", **server_stream) == 1
    assert sample(registry, "grpc_client_msg_received_total", **server_stream) == 3
    assert sample(registry, "grpc_client_msg_sent_total", **client_stream) == 2
    assert sample(registry, "grpc_client_msg_received_total", **client_stream) == 1

    assert sample(registry, "grpc_client_started_total", **bidi) == 1
    assert sample(registry, "grpc_client_handled_total", **bidi, grpc_code="InvalidArgument") == 1
    assert sample(registry, "grpc_client_handled_total", **bidi, grpc_code="OK") == 0
    assert sample(registry, "grpc_client_msg_received_total", **bidi) == 1  # "Hello Ann"

    text = generate_latest(registry).decode()
    assert 'grpc_code="INVALID_ARGUMENT"' not in text
    assert "# TYPE grpc_client_handling_seconds histogram" in text


async def test_a_retried_call_is_one_call_and_a_failed_one_is_counted_by_its_code(
    start_server: StartServer,
) -> None:
    live = await start_server()
    registry, failures = CollectorRegistry(), CollectorRegistry()
    unary = labels("unary", "SayHello")
    with bound_socket() as dead:  # refuses connections
        dead_target = f"127.0.0.1:{dead.getsockname()[1]}"
        async with GreetClient(
            [dead_target, live.target], timeout=10, interceptors=[ClientMetrics(registry)]
        ) as client:
            await client.say_hello()  # refused on `dead`, served by `live`
        async with GreetClient(
            dead_target,
            timeout=10,
            retry=RetryPolicy(max_attempts=1),
            interceptors=[ClientMetrics(failures)],
        ) as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello()
            assert caught.value.status is Status.UNAVAILABLE
    assert sample(registry, "grpc_client_started_total", **unary) == 1
    assert sample(registry, "grpc_client_handled_total", **unary, grpc_code="OK") == 1
    assert sample(registry, "grpc_client_msg_sent_total", **unary) == 1
    assert sample(failures, "grpc_client_handled_total", **unary, grpc_code="Unavailable") == 1
    assert sample(failures, "grpc_client_msg_sent_total", **unary) == 0


def test_code_names_are_grpc_gos() -> None:
    """Every status has the name grpc-go's codes.Code.String() gives its number."""
    numbers = dict(
        re.findall(r"^\t(\w+) Code = (\d+)", (GRPC_GO_CODES / "codes.go").read_text(), re.M)
    )
    names = dict(
        re.findall(
            r'case (\w+):\n\t\treturn "(\w+)"', (GRPC_GO_CODES / "code_string.go").read_text()
        )
    )
    grpc_go = {int(numbers[constant]): name for constant, name in names.items()}
    assert len(grpc_go) == 17
    assert {status.value: GRPC_CODE_NAMES[status] for status in Status} == grpc_go
