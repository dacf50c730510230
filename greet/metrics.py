"""Prometheus metrics for the gRPC server, built on grpclib's events, served on HTTP `/metrics`.

The names and labels are those of go-grpc-prometheus (grpc_service, grpc_method, grpc_type,
and grpc_code on the handled counter), so existing dashboards and alerts work unchanged:

    grpc_server_started_total         calls started (the request headers were accepted)
    grpc_server_handled_total         calls finished, by status code name (OK, CANCELLED, ...)
    grpc_server_msg_received_total    request messages received
    grpc_server_msg_sent_total        response messages sent
    grpc_server_handling_seconds      histogram: call start to trailers sent
    greet_cache_hits_total            greetings answered from the cache (--cache-size > 0)
    greet_cache_misses_total          greetings the backend had to produce
    greet_cache_coalesced_total       requests that joined backend work under way (single-flight)
    greet_cache_evictions_total       greetings evicted to stay within --cache-size
    greet_cache_expirations_total     greetings dropped after --cache-ttl

grpclib has no interceptors; `GrpcMetrics.install` listens to its events instead: RecvRequest
(start; it also wraps the handler to count calls the client cancels, which send no trailers),
RecvMessage, SendMessage and SendTrailingMetadata (status, duration). The per-call state is kept
in a context variable: all four events are dispatched in the task that handles the call. Methods
that are not served (unknown paths) are not counted, so no client can grow the label set.

Nothing here runs unless `--metrics-port` is given: without listeners grpclib does not even
build its event objects.

Several worker processes (`--workers N`): the supervisor calls `prepare_multiprocess_dir()` before
it starts the workers (they inherit PROMETHEUS_MULTIPROC_DIR and write their samples to files
there, prometheus_client's multiprocess mode) and serves the sum over all workers with
`MetricsEndpoint(multiprocess_registry(directory), host, port)`; workers do not listen for HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from grpclib.const import Cardinality, Handler, Status
from grpclib.events import RecvMessage, RecvRequest, SendMessage, SendTrailingMetadata, listen
from grpclib.exceptions import StreamTerminatedError

from greet.listen import dual_stack_socket

if TYPE_CHECKING:
    from grpclib._typing import IServerMethodFunc
    from grpclib.server import Server, Stream
    from prometheus_client import CollectorRegistry

__all__ = [
    "MULTIPROC_ENV",
    "CacheCounters",
    "GrpcMetrics",
    "MetricsEndpoint",
    "grpc_type",
    "in_worker_process",
    "mark_worker_dead",
    "multiprocess_registry",
    "prepare_multiprocess_dir",
    "remove_multiprocess_dir",
    "worker_registry",
]

log = logging.getLogger("greet.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets in seconds: from well under a millisecond (unary calls here take ~0.2 ms) to
# long streams.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip

GRPC_TYPES = {
    Cardinality.UNARY_UNARY: "unary",
    Cardinality.UNARY_STREAM: "server_stream",
    Cardinality.STREAM_UNARY: "client_stream",
    Cardinality.STREAM_STREAM: "bidi_stream",
}


def grpc_type(cardinality: Cardinality) -> str:
    """go-grpc-prometheus' grpc_type label for a call kind."""
    return GRPC_TYPES[cardinality]


class CacheCounters(Protocol):
    """What metrics read from a cache (greet.cache.CachedGreeter): running totals."""

    hits: int
    misses: int
    coalesced: int
    evictions: int
    expirations: int


CACHE_COUNTERS = {
    "hits": ("greet_cache_hits_total", "Greetings answered from the cache."),
    "misses": ("greet_cache_misses_total", "Greetings the backend produced (not cached)."),
    "coalesced": (
        "greet_cache_coalesced_total",
        "Requests that joined backend work already under way for the same name.",
    ),
    "evictions": ("greet_cache_evictions_total", "Greetings evicted to stay within the size."),
    "expirations": ("greet_cache_expirations_total", "Greetings dropped after their TTL."),
}


@dataclass
class _MethodMetrics:
    """The labelled children of one method, looked up once instead of per call."""

    labels: tuple[str, str, str]
    started: Any
    received: Any
    sent: Any
    handling: Any
    handled: Any  # the parent counter; .labels(*labels, code) per status, cached below
    handled_by_code: dict[Status, Any] = field(default_factory=dict)

    def handled_child(self, status: Status) -> Any:
        child = self.handled_by_code.get(status)
        if child is None:
            child = self.handled_by_code[status] = self.handled.labels(*self.labels, status.name)
        return child


@dataclass
class _Call:
    method: _MethodMetrics
    started_at: float
    finished: bool = False


_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "greet_metrics_call", default=None
)


class GrpcMetrics:
    """The server's gRPC metrics in a prometheus_client registry (default: the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        self.registry = REGISTRY if registry is None else registry
        names = ("grpc_service", "grpc_method", "grpc_type")

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, (*names, *extra), registry=self.registry)

        self.started = counter("grpc_server_started_total", "RPCs started on the server.")
        self.handled = counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            ("grpc_code",),
        )
        self.msg_received = counter(
            "grpc_server_msg_received_total", "RPC stream messages received on the server."
        )
        self.msg_sent = counter(
            "grpc_server_msg_sent_total", "gRPC stream messages sent on the server."
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            names,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.cache_counters = {
            attribute: Counter(name, doc, registry=self.registry)
            for attribute, (name, doc) in CACHE_COUNTERS.items()
        }
        self._methods: dict[str, _MethodMetrics] = {}
        self._cache: CacheCounters | None = None
        self._cache_seen = dict.fromkeys(CACHE_COUNTERS, 0)

    def add_method(self, path: str, cardinality: Cardinality) -> None:
        """Count calls of `path` (`/package.Service/Method`); all-zero series appear at once."""
        service, _, method = path.lstrip("/").rpartition("/")
        labels = (service, method, grpc_type(cardinality))
        self._methods[path] = _MethodMetrics(
            labels=labels,
            started=self.started.labels(*labels),
            received=self.msg_received.labels(*labels),
            sent=self.msg_sent.labels(*labels),
            handling=self.handling.labels(*labels),
            handled=self.handled,
        )

    def install(self, server: Server, *, cache: CacheCounters | None = None) -> None:
        """Count every served method of `server` (call before other RecvRequest listeners,
        such as authentication, so that refused calls are counted too)."""
        mapping: Mapping[str, Handler] = server._mapping
        for path, handler in dict(mapping).items():
            self.add_method(path, handler.cardinality)
        self._cache = cache
        listen(server, RecvRequest, self._on_request)
        listen(server, RecvMessage, self._on_recv_message)
        listen(server, SendMessage, self._on_send_message)
        listen(server, SendTrailingMetadata, self._on_trailers)

    # grpclib event listeners -----------------------------------------------------------------

    async def _on_request(self, event: RecvRequest) -> None:
        method = self._methods.get(event.method_name)
        if method is None:
            return
        method.started.inc()
        call = _Call(method, time.perf_counter())
        _current_call.set(call)
        event.method_func = self._cancellation_counted(event.method_func, call)

    def _cancellation_counted(self, func: IServerMethodFunc, call: _Call) -> IServerMethodFunc:
        async def handle(stream: Stream[Any, Any]) -> None:
            try:
                await func(stream)
            except (asyncio.CancelledError, StreamTerminatedError):
                # The client reset the stream or went away: no trailers will be sent.
                self._finish(call, Status.CANCELLED)
                raise

        return handle

    async def _on_recv_message(self, event: RecvMessage) -> None:
        call = _current_call.get()
        if call is not None:
            call.method.received.inc()

    async def _on_send_message(self, event: SendMessage) -> None:
        call = _current_call.get()
        if call is not None:
            call.method.sent.inc()

    async def _on_trailers(self, event: SendTrailingMetadata) -> None:
        call = _current_call.get()
        if call is not None:
            self._finish(call, event.status)

    def _finish(self, call: _Call, status: Status) -> None:
        if call.finished:
            return
        call.finished = True
        call.method.handled_child(status).inc()
        call.method.handling.observe(time.perf_counter() - call.started_at)
        if self._cache is not None:
            self.sync_cache()

    def sync_cache(self) -> None:
        """Add what the cache counted since the last sync to the exported counters."""
        if self._cache is None:
            return
        for name, counter in self.cache_counters.items():
            total = getattr(self._cache, name)
            new = total - self._cache_seen[name]
            if new > 0:
                counter.inc(new)
                self._cache_seen[name] = total


# --------------------------------------------------------------------------------------------
# The HTTP endpoint


class MetricsEndpoint:
    """A minimal HTTP/1.1 server on the event loop: GET /metrics -> Prometheus text format.

    `before_scrape` runs before each scrape (e.g. `GrpcMetrics.sync_cache`).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        sock = dual_stack_socket(self.host, self.port)  # `--host ::`: IPv4 scrapers too
        if sock is not None:
            self._server = await asyncio.start_server(self._handle, sock=sock)
        else:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            if method in ("GET", "HEAD") and path in ("/metrics", "/"):
                if self.before_scrape is not None:
                    self.before_scrape()
                body = generate_latest(self.registry)
                status, content_type = "200 OK", CONTENT_TYPE_LATEST
                if method == "HEAD":
                    body = b""
            else:
                body, status, content_type = b"not found\n", "404 Not Found", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()


# --------------------------------------------------------------------------------------------
# Several worker processes


def prepare_multiprocess_dir(directory: str | None = None) -> str:
    """Create (or empty) the directory the workers' samples go to and export it in
    PROMETHEUS_MULTIPROC_DIR, so worker processes started afterwards inherit it.
    Call in the supervisor before starting workers; returns the directory."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="greet-metrics-")
    else:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
    os.environ[MULTIPROC_ENV] = directory
    _use_multiprocess_values()
    return directory


def _use_multiprocess_values() -> None:
    # prometheus_client picks its value storage when it is first imported; a process that
    # imported it before PROMETHEUS_MULTIPROC_DIR was set (or forked from one) re-picks here.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def in_worker_process() -> bool:
    """True in a worker whose metrics the supervisor collects (multiprocess mode)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def worker_registry() -> CollectorRegistry:
    """The registry a server process records into: in multiprocess mode samples go to files."""
    from prometheus_client import CollectorRegistry

    if in_worker_process():
        _use_multiprocess_values()
    return CollectorRegistry(auto_describe=True)


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A registry that sums the samples of every worker in `directory` (for the supervisor)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def mark_worker_dead(pid: int) -> None:
    """Tell prometheus_client a worker exited (only live gauges care; counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def remove_multiprocess_dir(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
