"""Prometheus metrics (`--metrics-port`): scrape a real server process after known calls.

The names, labels and label values are go-grpc-prometheus' (grpc_code as grpc-go spells it),
every served method's series exist at 0 from the start, and the standard process_* and python_*
metrics are there, with `--workers` per process.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from metrics_scrape import (
    SERVICE,
    Samples,
    http_get,
    labels_of,
    metrics_server,
    scrape,
    series,
    value,
    wait_for_sample,
)

from greet.grpc_labels import CODE_NAMES, method_labels
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    NamesList,
    NoParam,
)

GO_CODES = Path("/usr/share/gocode/src/google.golang.org/grpc/codes")
WORKER_READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")
GREET_METHODS = {
    ("SayHello", "unary"),
    ("SayHelloServerStreaming", "server_stream"),
    ("SayHelloClientStreaming", "client_stream"),
    ("SayHelloBidirectionalStreaming", "bidi_stream"),
}
GRPC_CODES = set(CODE_NAMES.values())
TOKEN = "metrics-token-5c1f0e"


@asynccontextmanager
async def stub_for(
    target: str, metadata: dict[str, str] | None = None
) -> AsyncIterator[GreetServiceStub]:
    host, _, port = target.rpartition(":")
    channel = Channel(host.strip("[]"), int(port))
    try:
        yield GreetServiceStub(channel, timeout=30, metadata=metadata)
    finally:
        channel.close()


def worker_pids(log_lines: list[str]) -> dict[int, int]:
    """slot -> pid of the latest worker in each slot, from the supervisor's log."""
    return {
        int(match.group(1)): int(match.group(2))
        for line in log_lines
        if (match := WORKER_READY.search(line))
    }


def grpc_go_code_names() -> dict[int, str]:
    """code number -> codes.Code.String(), read from Debian's grpc-go sources."""
    if not GO_CODES.is_dir():
        pytest.fail(f"{GO_CODES} is missing: install the Debian package golang-google-grpc-dev")
    numbers = dict(
        re.findall(r"^\s+(\w+) Code = (\d+)$", (GO_CODES / "codes.go").read_text(), re.M)
    )
    strings = re.findall(r'case (\w+):\s+return "(\w+)"', (GO_CODES / "code_string.go").read_text())
    return {int(numbers[constant]): text for constant, text in strings}


def test_grpc_code_values_are_grpc_go_s_code_strings() -> None:
    go = grpc_go_code_names()
    assert len(go) == 17
    assert {status.value: name for status, name in CODE_NAMES.items()} == go
    assert set(CODE_NAMES) == set(Status)


def test_method_labels_split_as_go_grpc_prometheus_does() -> None:
    assert method_labels(f"/{SERVICE}/SayHello") == (SERVICE, "SayHello")
    assert method_labels("/grpc.health.v1.Health/Check") == ("grpc.health.v1.Health", "Check")
    assert method_labels("nothing") == ("unknown", "unknown")


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
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="InvalidArgument") == 1
    spec_name = frozenset({**stream, "grpc_code": "INVALID_ARGUMENT"}.items())
    assert ("grpc_server_handled_total", spec_name) not in samples
    assert value(samples, "grpc_server_msg_received_total", **stream) == 2
    assert value(samples, "grpc_server_msg_sent_total", **stream) == 2
    assert value(samples, "grpc_server_handling_seconds_count", **stream) == 2

    client_stream = labels_of("SayHelloClientStreaming", "client_stream")
    assert value(samples, "grpc_server_handled_total", **client_stream, grpc_code="OK") == 1
    assert value(samples, "grpc_server_msg_received_total", **client_stream) == 1
    assert value(samples, "grpc_server_msg_sent_total", **client_stream) == 1


def method_series(samples: Samples, name: str) -> set[tuple[str, str, str]]:
    return {
        (labels["grpc_service"], labels["grpc_method"], labels["grpc_type"])
        for labels in series(samples, name)
    }


async def test_every_method_and_code_is_at_zero_from_the_start() -> None:
    """As go-grpc-prometheus' InitializeMetrics: started, msg_received, msg_sent and the
    histogram for every served method, handled for every method and every code."""
    async with metrics_server() as (_, url):
        samples = await scrape(url)
    methods = method_series(samples, "grpc_server_started_total")
    assert {(method, kind) for service, method, kind in methods if service == SERVICE} == (
        GREET_METHODS
    )
    assert ("grpc.health.v1.Health", "Check", "unary") in methods
    assert ("grpc.health.v1.Health", "Watch", "server_stream") in methods
    assert ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", "bidi_stream") in (
        methods
    )
    for name in (
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_handling_seconds_count",
    ):
        assert method_series(samples, name) == methods, name
    handled = series(samples, "grpc_server_handled_total")
    assert len(handled) == len(methods) * 17
    for service, method, kind in methods:
        codes = {
            labels["grpc_code"]
            for labels in handled
            if (labels["grpc_service"], labels["grpc_method"], labels["grpc_type"])
            == (service, method, kind)
        }
        assert codes == GRPC_CODES, method
    counts = {
        v
        for (name, _), v in samples.items()
        if name.startswith("grpc_server_") and not name.endswith("_created")  # timestamps
    }
    assert counts == {0.0}


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


async def test_calls_refused_by_auth_are_counted(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    unary = labels_of("SayHello", "unary")
    async with metrics_server("--auth-token-file", str(tokens)) as (server, url):
        async with stub_for(server.target) as anonymous:
            with pytest.raises(GRPCError) as refused:
                await anonymous.say_hello(NoParam())
        assert refused.value.status is Status.UNAUTHENTICATED
        async with stub_for(server.target, {"authorization": f"Bearer {TOKEN}"}) as stub:
            await stub.say_hello(NoParam())
        samples = await scrape(url)
    assert value(samples, "grpc_server_started_total", **unary) == 2
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="Unauthenticated") == 1
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == 1
    assert value(samples, "grpc_server_msg_received_total", **unary) == 1  # the handler's only


async def test_messages_of_a_stream_in_flight_are_counted_before_it_ends() -> None:
    bidi = labels_of("SayHelloBidirectionalStreaming", "bidi_stream")
    async with metrics_server() as (server, url):
        async with (
            stub_for(server.target) as stub,
            stub.channel.request(
                f"/{SERVICE}/SayHelloBidirectionalStreaming",
                Cardinality.STREAM_STREAM,
                HelloRequest,
                HelloResponse,
            ) as stream,
        ):
            for name in ("Ann", "Ben", "Cy"):
                await stream.send_message(HelloRequest(name=name))
                assert (await stream.recv_message()) == HelloResponse(message=f"Hello {name}")
            during = await scrape(url)
            await stream.end()
            assert await stream.recv_message() is None
        after = await wait_for_sample(url, "grpc_server_handled_total", 1, **bidi, grpc_code="OK")
    assert value(during, "grpc_server_started_total", **bidi) == 1
    assert value(during, "grpc_server_handled_total", **bidi, grpc_code="OK") == 0
    assert value(during, "grpc_server_msg_received_total", **bidi) == 3
    assert value(during, "grpc_server_msg_sent_total", **bidi) == 3
    assert value(after, "grpc_server_msg_received_total", **bidi) == 3
    assert value(after, "grpc_server_msg_sent_total", **bidi) == 3
    assert value(after, "grpc_server_handling_seconds_count", **bidi) == 1


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


async def test_the_standard_process_and_python_metrics_are_exported() -> None:
    async with metrics_server() as (_, url):
        samples = await scrape(url)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert ("process_cpu_seconds_total", frozenset()) in samples
    assert ("process_start_time_seconds", frozenset()) in samples
    assert [labels["implementation"] for labels in series(samples, "python_info")] == ["CPython"]
    generations = {
        labels["generation"] for labels in series(samples, "python_gc_collections_total")
    }
    assert generations >= {"0", "1", "2"}


async def test_workers_report_the_sum_over_all_processes(tmp_path: Path) -> None:
    """--workers 2: the supervisor serves /metrics with the calls of every worker."""
    async with metrics_server("--workers", "2", cwd=str(tmp_path)) as (server, url):
        calls = 0
        for _ in range(12):  # one connection each: SO_REUSEPORT spreads them over the workers
            async with stub_for(server.target) as stub:
                await stub.say_hello(NoParam())
                calls += 1
        samples = await scrape(url)
    unary = labels_of("SayHello", "unary")
    assert value(samples, "grpc_server_started_total", **unary) == calls
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == calls
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="Unavailable") == 0
    assert len(series(samples, "grpc_server_handled_total")) == len(
        method_series(samples, "grpc_server_started_total")
    ) * len(GRPC_CODES)


def pids_of(samples: Samples, name: str) -> set[int]:
    return {int(labels["pid"]) for labels in series(samples, name)}


async def test_workers_export_process_metrics_per_pid(tmp_path: Path) -> None:
    """--workers 2: process_* and python_gc_* of the supervisor and of each live worker, by
    pid; a replaced worker's series go with it, its calls stay counted."""
    unary = labels_of("SayHello", "unary")
    async with metrics_server("--workers", "2", cwd=str(tmp_path)) as (server, url):
        first = worker_pids(server.log_lines)
        everyone = {server.pid, *first.values()}
        samples = await scrape(url)
        for name in (
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
            "python_gc_collections_total",
            "python_gc_objects_collected_total",
        ):
            assert pids_of(samples, name) == everyone, name
        memory = [v for (name, _), v in samples.items() if name == "process_resident_memory_bytes"]
        assert all(v > 0 for v in memory)
        assert len(series(samples, "python_info")) == 1

        async with stub_for(server.target) as stub:
            await stub.say_hello(NoParam())
        os.kill(first[1], signal.SIGKILL)
        await server.wait_for_log(re.compile(rf"worker 1 \(pid {first[1]}\) exited"))
        await server.wait_for_log(re.compile(rf"worker 1 \(pid (?!{first[1]}\))\d+\) ready"))
        replacement = worker_pids(server.log_lines)[1]
        samples = await scrape(url)
    now = {server.pid, replacement, first[2]}
    assert pids_of(samples, "process_resident_memory_bytes") == now
    assert pids_of(samples, "python_gc_collections_total") == now
    assert value(samples, "grpc_server_handled_total", **unary, grpc_code="OK") == 1


async def test_calls_the_client_cancels_are_counted() -> None:
    """A client that resets its stream gets no trailers; the call still ends as Canceled."""
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
            url, "grpc_server_handled_total", 1, **stream, grpc_code="Canceled"
        )
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="Canceled") == 1
    assert value(samples, "grpc_server_handled_total", **stream, grpc_code="OK") == 0
    assert value(samples, "grpc_server_handling_seconds_count", **stream) == 1
