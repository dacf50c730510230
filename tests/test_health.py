"""grpc.health.v1.Health: Check and Watch for "" and GreetService, NOT_SERVING while draining.

Clients: grpcio (Google's C-core, as Kubernetes' and Envoy-style probes behave) with grpclib's
health messages, and grpclib's own health stub.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from loopback import StartServer
from server_process import ServerProcess

from greet.server import GreetServer

SERVICES = ["", "greet_service.GreetService"]
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


def grpcio_check(target: str, service: str) -> HealthCheckResponse:
    """One Health/Check call with grpcio."""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(
            CHECK,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        return check(HealthCheckRequest(service=service), timeout=10)


def grpcio_watch(channel: grpc.Channel, service: str) -> Iterator[HealthCheckResponse]:
    watch = channel.unary_stream(
        WATCH,
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString,
    )
    return iter(watch(HealthCheckRequest(service=service), timeout=30))


@pytest.fixture
async def health(server: GreetServer) -> AsyncIterator[HealthStub]:
    channel = Channel(*server.address)
    yield HealthStub(channel)
    channel.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_grpcio_check_reports_serving(server: GreetServer, service: str) -> None:
    reply = await asyncio.to_thread(grpcio_check, server.target, service)
    assert reply.status == SERVING


async def test_grpcio_check_of_unknown_service_is_not_found(server: GreetServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        await asyncio.to_thread(grpcio_check, server.target, "no.such.Service")
    assert isinstance(raised.value, grpc.Call)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_check_follows_set_serving(server: GreetServer, health: HealthStub) -> None:
    server.set_serving(False)
    for service in SERVICES:
        reply = await health.Check(HealthCheckRequest(service=service))
        assert reply.status == NOT_SERVING
    server.set_serving(True)
    for service in SERVICES:
        reply = await health.Check(HealthCheckRequest(service=service))
        assert reply.status == SERVING


@pytest.mark.parametrize("service", SERVICES)
async def test_grpcio_watch_sees_not_serving_then_ends(server: GreetServer, service: str) -> None:
    with grpc.insecure_channel(server.target) as channel:
        replies = grpcio_watch(channel, service)
        first = await asyncio.to_thread(next, replies)
        assert first.status == SERVING
        server.set_serving(False)
        rest = await asyncio.to_thread(list, replies)
    # the stream ends with OK right after NOT_SERVING, so watchers do not hold a drain open
    assert [reply.status for reply in rest] == [NOT_SERVING]


async def test_watch_of_unknown_service_says_service_unknown(
    server: GreetServer, health: HealthStub
) -> None:
    async with health.Watch.open() as stream:
        await stream.send_message(HealthCheckRequest(service="no.such.Service"), end=True)
        reply = await stream.recv_message()
        assert reply is not None
        assert reply.status == HealthCheckResponse.SERVICE_UNKNOWN
        server.set_serving(False)
        assert await stream.recv_message() is None


async def test_watch_sees_not_serving_when_stop_begins(start_server: StartServer) -> None:
    server = await start_server(grace=5)
    with grpc.insecure_channel(server.target) as channel:
        replies = grpcio_watch(channel, "")
        first = await asyncio.to_thread(next, replies)
        assert first.status == SERVING
        stopping = asyncio.create_task(server.stop())
        rest = await asyncio.to_thread(list, replies)
        await stopping
    assert [reply.status for reply in rest] == [NOT_SERVING]


async def test_server_process_reports_not_serving_on_sigterm() -> None:
    """The whole path: SIGTERM -> NOT_SERVING on an open Watch -> the watch ends -> exit 0."""
    async with ServerProcess(["--grace", "5"]) as process:
        with grpc.insecure_channel(process.target) as channel:
            replies = grpcio_watch(channel, "greet_service.GreetService")
            first = await asyncio.to_thread(next, replies)
            assert first.status == SERVING
            process.send_signal(signal.SIGTERM)
            rest = await asyncio.to_thread(list, replies)
        assert [reply.status for reply in rest] == [NOT_SERVING]
        assert await process.wait() == 0
