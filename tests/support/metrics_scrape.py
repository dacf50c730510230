"""Scraping a server's `--metrics-port` the way Prometheus does: plain HTTP GET /metrics, the
text format parsed by prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess

__all__ = [
    "METRICS_LINE",
    "SERVICE",
    "Samples",
    "http_get",
    "labels_of",
    "metrics_server",
    "scrape",
    "scrape_text",
    "series",
    "value",
    "wait_for_sample",
]

SERVICE = "greet_service.GreetService"
METRICS_LINE = re.compile(r"metrics on (http://\S+?)(?:\"|$|\s)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, its labels) -> value."""


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


async def scrape_text(url: str) -> str:
    status, body = await http_get(url)
    assert status == 200
    return body


async def scrape(url: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await scrape_text(url))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (as Prometheus would treat it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[Mapping[str, str]]:
    """The label sets of every sample called `name`."""
    return [dict(labels) for (sample, labels) in samples if sample == name]


def labels_of(method: str, kind: str, service: str = SERVICE) -> dict[str, str]:
    return {"grpc_service": service, "grpc_method": method, "grpc_type": kind}


@asynccontextmanager
async def metrics_server(
    *args: str, cwd: str | None = None
) -> AsyncIterator[tuple[ServerProcess, str]]:
    """A `python -m greet.server --metrics-port 0 ARGS...` process and its /metrics URL."""
    async with ServerProcess(["--metrics-port", "0", *args], cwd=cwd) as server:
        match = await server.wait_for_log(METRICS_LINE)
        yield server, match.group(1)


async def wait_for_sample(url: str, name: str, want: float, **labels: str) -> Samples:
    """Scrape until the sample reaches `want` (for a call that ends on the server after the
    client has seen its end)."""

    async def poll() -> Samples:
        while True:
            samples = await scrape(url)
            if value(samples, name, **labels) >= want:
                return samples
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), 30)
