"""A real Prometheus (Debian's `prometheus` package) scrapes `python -m greet.server --workers 2
--metrics-port P`; its HTTP API must report the counts of known grpcio calls, the process metrics
of all three processes, and data for every query of the Grafana dashboard."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grafana_dashboard import concrete, dashboard_queries, load_dashboard
from metrics_scrape import metrics_server

from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList, NoParam

SERVICE = "/greet_service.GreetService/"
LISTENING = re.compile(r'msg="Listening on" address=([\d.]+:\d+)')
READY = re.compile(r"Server is ready to receive web requests")
JOB = "greet"
MAX_NAME_CHARS = 5

Result = dict[tuple[str, ...], float]
"""A query's vector: the values of the labels asked for -> the sample value."""


class Prometheus:
    """A `prometheus` process on 127.0.0.1, on the port it picked itself (port 0)."""

    def __init__(self, config: Path, storage: Path) -> None:
        self.args = [
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            "--web.listen-address=127.0.0.1:0",
            "--log.level=info",
        ]
        self.lines: list[str] = []
        self.address = ""
        self.process: asyncio.subprocess.Process | None = None
        self._new_line = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing: install the Debian package prometheus")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        self.address = (await self.wait_for(LISTENING)).group(1)
        await self.wait_for(READY)

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()

    async def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        async def first() -> re.Match[str]:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match := pattern.search(line):
                        return match
                seen = len(self.lines)
                if self._reader is not None and self._reader.done():
                    raise AssertionError("prometheus exited:\n" + "\n".join(self.lines))
                self._new_line.clear()
                await self._new_line.wait()

        return await asyncio.wait_for(first(), timeout)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the result vector."""
        url = f"http://{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=30) as response:
                body: dict[str, Any] = json.load(response)
                return body

        body = await asyncio.to_thread(get)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def vector(self, promql: str, *labels: str) -> Result:
        return {
            tuple(sample["metric"].get(label, "") for label in labels): float(sample["value"][1])
            for sample in await self.query(promql)
        }

    async def wait_until(
        self, promql: str, labels: tuple[str, ...], done: Callable[[Result], bool]
    ) -> Result:
        """Query until `done(result)` (each scrape brings new samples), at most 60 s."""

        async def poll() -> Result:
            while True:
                result = await self.vector(promql, *labels)
                if done(result):
                    return result
                await asyncio.sleep(0.1)

        return await asyncio.wait_for(poll(), 60)


@asynccontextmanager
async def prometheus_scraping(target: str, tmp_path: Path) -> AsyncIterator[Prometheus]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
                "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    prometheus = Prometheus(config, tmp_path / "tsdb")
    try:
        await prometheus.start()
        yield prometheus
    finally:
        await prometheus.stop()


def known_calls(target: str) -> None:
    """grpcio calls, each on its own connection (so both workers get some)."""

    def channel() -> grpc.Channel:
        return grpc.insecure_channel(target)

    for _ in range(5):
        with channel() as c:
            reply = c.unary_unary(
                SERVICE + "SayHello",
                request_serializer=bytes,
                response_deserializer=HelloResponse.FromString,
            )(NoParam(), timeout=30)
            assert reply.message == "Hello"
    for names in (["Ann", "Bo"], ["Cy", "Di"], ["much-too-long"]):
        with channel() as c:
            stream = c.unary_stream(
                SERVICE + "SayHelloServerStreaming",
                request_serializer=bytes,
                response_deserializer=HelloResponse.FromString,
            )(NamesList(names=names), timeout=30)
            if len(names[0]) <= MAX_NAME_CHARS:
                assert len(list(stream)) == len(names)
                continue
            with pytest.raises(grpc.RpcError) as raised:
                list(stream)
            assert isinstance(raised.value, grpc.Call)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with channel() as c:
        listed = c.stream_unary(
            SERVICE + "SayHelloClientStreaming",
            request_serializer=bytes,
            response_deserializer=MessagesList.FromString,
        )(iter([HelloRequest(name=n) for n in ("Ed", "Flo", "Gus")]), timeout=30)
        assert listed.messages == ["Hello Ed", "Hello Flo", "Hello Gus"]
    with channel() as c:
        replies = c.stream_stream(
            SERVICE + "SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        )(iter([HelloRequest(name=n) for n in ("Hal", "Ivy")]), timeout=30)
        assert [reply.message for reply in replies] == ["Hello Hal", "Hello Ivy"]


HANDLED = {
    ("SayHello", "OK"): 5.0,
    ("SayHelloServerStreaming", "OK"): 2.0,
    ("SayHelloServerStreaming", "InvalidArgument"): 1.0,
    ("SayHelloClientStreaming", "OK"): 1.0,
    ("SayHelloBidirectionalStreaming", "OK"): 1.0,
}
RECEIVED = {
    ("SayHello",): 5.0,
    ("SayHelloServerStreaming",): 3.0,
    ("SayHelloClientStreaming",): 3.0,
    ("SayHelloBidirectionalStreaming",): 2.0,
}
SENT = {
    ("SayHello",): 5.0,
    ("SayHelloServerStreaming",): 4.0,
    ("SayHelloClientStreaming",): 1.0,
    ("SayHelloBidirectionalStreaming",): 2.0,
}


def greet_only(result: Result) -> Result:
    """Without the zero series (every method and code exists from the start)."""
    return {key: value for key, value in result.items() if value}


async def test_prometheus_scrapes_the_counts_of_known_calls(tmp_path: Path) -> None:
    args = ("--workers", "2", "--max-name-chars", str(MAX_NAME_CHARS), "--cache-size", "10")
    async with metrics_server(*args, cwd=str(tmp_path)) as (server, url):
        target = re.sub(r"^http://|/metrics$", "", url)
        async with prometheus_scraping(target, tmp_path) as prometheus:
            up = await prometheus.wait_until(f'up{{job="{JOB}"}}', (), lambda r: r == {(): 1.0})
            assert up == {(): 1.0}
            await asyncio.to_thread(known_calls, server.target)

            selector = f'job="{JOB}", grpc_service="greet_service.GreetService"'
            handled = await prometheus.wait_until(
                f"sum by (grpc_method, grpc_code) (grpc_server_handled_total{{{selector}}})",
                ("grpc_method", "grpc_code"),
                lambda r: greet_only(r) == HANDLED,
            )
            received = await prometheus.vector(
                f"sum by (grpc_method) (grpc_server_msg_received_total{{{selector}}})",
                "grpc_method",
            )
            sent = await prometheus.vector(
                f"sum by (grpc_method) (grpc_server_msg_sent_total{{{selector}}})", "grpc_method"
            )
            started = await prometheus.vector(
                f"sum(grpc_server_started_total{{{selector}}})", "job"
            )
            codes = await prometheus.vector(
                f"count(grpc_server_handled_total{{{selector}}})", "job"
            )
            pids = await prometheus.vector(f'process_resident_memory_bytes{{job="{JOB}"}}', "pid")
            dashboard = {
                query.where: await prometheus.query(concrete(query.expr))
                for query in dashboard_queries(load_dashboard())
            }
    assert greet_only(handled) == HANDLED
    assert greet_only(received) == RECEIVED
    assert greet_only(sent) == SENT
    assert started == {("",): 10.0}
    assert codes == {("",): 4 * 17.0}  # every method, every code
    assert len(pids) == 3  # the supervisor and two workers
    assert all(memory > 0 for memory in pids.values())
    empty = [where for where, result in dashboard.items() if not result]
    assert not empty, f"dashboard queries without data: {empty}"
