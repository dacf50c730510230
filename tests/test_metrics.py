"""Prometheus metrics (`--metrics-port`): scrape a real server process after known calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from prometheus_client.parser import text_string_to_metric_families

from generated.greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    NamesList,
    NoParam,
)
from greet.testing import ServerProcess

SERVICE = "greet_service.GreetService"
METRICS_LINE = re.compile(r"metrics on (http://\S+?)(?:\"|$|\s)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(url: str) -> tuple[int, str]:
    """A plain HTTP/1.1 GET (the endpoint is what a Prometheus server would scrape)."""
    match = re.fullmatch(r"http://([^/]+):(\d+)(/.*)", url)
    assert match is not None, url
    host, port, path = match.group(1).strip("[]"), int(match.group(2)), match.group(3)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    head, _, body = response.partition("\r\n\r\n")
    return int(head.split()[1]), body


async def scrape(url: str) -> Samples:
    status, body = await http_get(url)
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (as Prometheus would treat it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def labels_of(method: str, kind: str) -> dict[str, str]:
    return {"grpc_service": SERVICE, "grpc_method": method, "grpc_type": kind}


@asynccontextmanager
async def metrics_server(*args: str) -> AsyncIterator[tuple[ServerProcess, str]]:
    async with ServerProcess(["--metrics-port", "0", *args]) as server:
        match = await server.wait_for_log(METRICS_LINE)
        yield server, match.group(1)


@asynccontextmanager
async def stub_for(target: str) -> AsyncIterator[GreetServiceStub]:
    host, _, port = target.rpartition(":")
    channel = Channel(host.strip("[]"), int(port))
    try:
        yield GreetServiceStub(channel, timeout=30)
    finally:
        channel.close()


async def test_counts_after_known_calls() -> None:
    async with metrics_server("--max-name-chars", "5") as (server, url):
        async with stub_for(server.target) as stub:
            for _ in range(3):
                assert (await stub.say_hello(NoParam())).message == "Hello"
            replies = [r async for r in stub.say_hello_server_streaming(NamesList(["Al", "Bo"]))]
            assert len(replies) == 2
            with pytest.raises(GRPCError) as failure:
                async for _ in stub.say_hello_server_streaming(NamesList(["much-too-long"])):
                    pass
            assert failure.value.status is Status.INVALID_ARGUMENT
            listed = await stub.say_hello_client_streaming([HelloRequest(name="Cy")])
            assert listed.messages == ["Hello Cy"]
        samples = await scrape(url)

    unary = labels_of("SayHello", "unary")
    assert value(samples, "grpc_server_started_total", **unary) == 3
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == 3
    assert value(samples, "grpc_server_msg_received_total", **unary) == 3
    assert value(samples, "grpc_server_msg_sent_total", **unary) == 3
    assert value(samples, "grpc_server_handling_seconds_count", **unary) == 3
    assert value(samples, "grpc_server_handling_seconds_bucket", **unary, le="+Inf") == 3
    assert value(samples, "grpc_server_handling_seconds_sum", **unary) > 0

    stream = labels_of("SayHelloServerStreaming", "server_stream")
    assert value(samples, "grpc_server_started_total", **stream) == 2
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="OK") == 1
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="INVALID_ARGUMENT") == 1
    assert value(samples, "grpc_server_msg_received_total", **stream) == 2
    assert value(samples, "grpc_server_msg_sent_total", **stream) == 2
    assert value(samples, "grpc_server_handling_seconds_count", **stream) == 2

    client_stream = labels_of("SayHelloClientStreaming", "client_stream")
    assert value(samples, "grpc_server_handled_total", **client_stream, grpc_code="OK") == 1
    assert value(samples, "grpc_server_msg_received_total", **client_stream) == 1
    assert value(samples, "grpc_server_msg_sent_total", **client_stream) == 1

    bidi = labels_of("SayHelloBidirectionalStreaming", "bidi_stream")
    assert value(samples, "grpc_server_started_total", **bidi) == 0
    assert ("grpc_server_started_total", frozenset(bidi.items())) in samples  # zero, but listed


async def test_unknown_methods_are_not_counted_and_other_paths_are_404() -> None:
    async with metrics_server() as (server, url):
        async with (
            stub_for(server.target) as stub,
            stub.channel.request(
                f"/{SERVICE}/NoSuchMethod", Cardinality.UNARY_UNARY, NoParam, HelloResponse
            ) as stream,
        ):
            await stream.send_message(NoParam(), end=True)
            with pytest.raises(GRPCError) as failure:
                await stream.recv_message()
        assert failure.value.status is Status.UNIMPLEMENTED
        samples = await scrape(url)
        status, _ = await http_get(url.replace("/metrics", "/other"))
    methods = {dict(labels).get("grpc_method") for (_, labels) in samples}
    assert "SayHello" in methods
    assert "NoSuchMethod" not in methods
    assert status == 404


async def test_cache_hits_and_misses_are_exported() -> None:
    async with metrics_server("--cache-size", "10") as (server, url):
        async with stub_for(server.target) as stub:
            names = NamesList(["Ann", "Ann", "Ben", "Ann"])
            replies = [r.message async for r in stub.say_hello_server_streaming(names)]
        assert replies == ["Hello Ann", "Hello Ann", "Hello Ben", "Hello Ann"]
        samples = await scrape(url)
    assert value(samples, "greet_cache_misses_total") == 2
    assert value(samples, "greet_cache_hits_total") == 2
    assert value(samples, "greet_cache_coalesced_total") == 0
    assert value(samples, "greet_cache_evictions_total") == 0
    assert ("greet_cache_expirations_total", frozenset()) in samples


async def test_cache_evictions_are_exported() -> None:
    async with metrics_server("--cache-size", "1") as (server, url):
        async with stub_for(server.target) as stub:
            names = NamesList(["Ann", "Ben", "Ann"])
            replies = [r.message async for r in stub.say_hello_server_streaming(names)]
        assert replies == ["Hello Ann", "Hello Ben", "Hello Ann"]
        samples = await scrape(url)
    assert value(samples, "greet_cache_misses_total") == 3
    assert value(samples, "greet_cache_evictions_total") == 2


async def test_workers_report_the_sum_over_all_processes() -> None:
    """--workers 2: the supervisor serves /metrics with the calls of every worker."""
    async with metrics_server("--workers", "2") as (server, url):
        calls = 0
        for _ in range(12):  # one connection each: SO_REUSEPORT spreads them over the workers
            async with stub_for(server.target) as stub:
                await stub.say_hello(NoParam())
                calls += 1
        samples = await scrape(url)
    unary = labels_of("SayHello", "unary")
    assert value(samples, "grpc_server_started_total", **unary) == calls
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == calls


async def wait_for_sample(url: str, name: str, want: float, **labels: str) -> Samples:
    """Scrape until the sample reaches `want` (a call's end is recorded just after it ends)."""

    async def poll() -> Samples:
        while True:
            samples = await scrape(url)
            if value(samples, name, **labels) >= want:
                return samples
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), 30)


async def test_calls_the_client_cancels_are_counted() -> None:
    """A client that resets its stream gets no trailers; the call still ends as CANCELLED."""
    stream = labels_of("SayHelloServerStreaming", "server_stream")
    async with (
        metrics_server("--work-delay", "30") as (server, url),
        stub_for(server.target) as stub,
    ):
        calls = stub.say_hello_server_streaming(NamesList(["Bo"]), timeout=60)
        waiting = asyncio.ensure_future(calls.__anext__())
        await wait_for_sample(url, "grpc_server_started_total", 1, **stream)
        waiting.cancel()  # the client gives up: RST_STREAM(CANCEL) reaches the server
        with pytest.raises(asyncio.CancelledError):
            await waiting
        samples = await wait_for_sample(
            url, "grpc_server_handled_total", 1, **stream, grpc_code="CANCELLED"
        )
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="CANCELLED") == 1
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="OK") == 0
    assert value(samples, "grpc_server_handling_seconds_count", **stream) == 1
