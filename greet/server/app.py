"""GreetServer: one serving process, the grpclib Server with everything mounted on it."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterable, Sequence
from types import TracebackType

from google.protobuf.descriptor_pb2 import FileDescriptorSet
from grpclib._typing import IServable

from greet.addresses import format_address
from greet.greeting import Greeter, WorkingGreeter
from greet.middleware import AccessLog, BearerTokenAuth, Interceptor, TokenFile
from greet.server.cache import CachedGreeter
from greet.server.config import ServerConfig
from greet.server.health import GreetHealth, ServingSwitch
from greet.server.metrics import ServingMetrics, metrics_wanted
from greet.server.reflection import with_reflection
from greet.server.services import make_services, service_names
from greet.service import GreetService
from greet.telemetry import tracing_enabled
from greet.tls import server_ssl_context
from greet.transport import TransportServer

__all__ = ["GreetServer"]

log = logging.getLogger("greet.server")


class GreetServer:
    """Serves gRPC services, configured by a ServerConfig, on a socket.

    Use as `async with GreetServer(config) as server:` (binds `config.host:config.port`), or call
    `start(sock=...)` with a socket that is already bound, as tests and worker processes do.

    What it serves: `services`, servicers (instances of betterproto's generated `...Base`
    classes, or any grpclib servicer); without them, those `config.services` names
    (`--service MODULE:ATTR`, greet.server.services); without those, greet's GreetService, built
    here on `backend` (default: the simulated greeter) and `--cache-size`'s cache. Beside them,
    always: health (`""` and each service by name) and reflection of every service, from the
    descriptor set codegen writes into each generated package, or from `descriptor_sets`.

    Every call runs through a chain of interceptors (greet.middleware): greet's own first -
    tracing (when OTEL_* turn it on), metrics and the access log outermost, so that refused
    calls are traced, counted and logged too, then bearer-token auth - and after them
    `interceptors`, the caller's own, in the order given.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        services: Sequence[IServable] | None = None,
        backend: Greeter | None = None,
        interceptors: Sequence[Interceptor] = (),
        descriptor_sets: Iterable[FileDescriptorSet] = (),
    ) -> None:
        self.config = config
        self.cache: CachedGreeter | None = None
        if services is None and config.services:
            services = make_services(config.services)
        if services is not None and backend is not None:
            raise ValueError("backend= is GreetService's: give it with services=None only")
        self.services: tuple[IServable, ...] = (
            tuple(services) if services is not None else (self._default_service(backend),)
        )
        if not self.services:
            raise ValueError("services= is empty: nothing to serve")
        if len(self.service_names) != len(set(self.service_names)):
            raise ValueError(f"a service is given twice: {', '.join(sorted(self.service_names))}")
        self.serving = ServingSwitch()
        self.health = GreetHealth(list(self.services), self.serving)
        handlers = with_reflection([*self.services, self.health], descriptor_sets)
        # Observability: metrics with --metrics-port, or in a worker whose supervisor serves
        # them (multiprocess mode), and the access log with --access-log; without them no
        # interceptor runs for them. Security: TLS (None: plaintext), bearer tokens (None: none).
        self.metrics: ServingMetrics | None = None
        if metrics_wanted(config.metrics_port):
            self.metrics = ServingMetrics(
                host=config.host, port=config.metrics_port, cache=self.cache
            )
        self.token_file: TokenFile | None = None
        if config.auth_token_file is not None:
            self.token_file = TokenFile(config.auth_token_file)
        self.ssl_context: ssl.SSLContext | None = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.ssl_context = server_ssl_context(
                config.tls_cert, config.tls_key, config.tls_client_ca
            )
        chain: list[Interceptor] = []
        if tracing_enabled():  # OTEL_* ask for it and greet[otel] is installed: greet.telemetry
            from greet.middleware.tracing import ServerTracing

            if not any(isinstance(given, ServerTracing) for given in interceptors):
                chain.append(ServerTracing())
        if self.metrics is not None:
            chain.append(self.metrics.grpc)
        if config.access_log:
            chain.append(AccessLog())
        if self.token_file is not None:
            chain.append(BearerTokenAuth(self.token_file))
        self.interceptors: tuple[Interceptor, ...] = (*chain, *interceptors)
        # greet's own HTTP/2 transport under a grpclib Server: limits, strict decoding,
        # UNIMPLEMENTED with content-type, graceful drain (greet.transport)
        self.grpc_server = TransportServer(
            handlers, config=config.transport, interceptors=self.interceptors
        )
        if self.metrics is not None:  # every served method's series, at 0 from the start
            self.metrics.grpc.initialize(self.grpc_server.methods)
        self._address: tuple[str, int] | None = None

    def _default_service(self, backend: Greeter | None) -> GreetService:
        """GreetService on the greeting work (`backend`, by default the simulated one) behind a
        bounded cache unless --cache-size is 0 (`cache`; its counters feed metrics)."""
        config = self.config
        greeter = backend if backend is not None else WorkingGreeter(work_delay=config.work_delay)
        if config.cache_size > 0:
            self.cache = CachedGreeter(greeter, size=config.cache_size, ttl=config.cache_ttl)
            greeter = self.cache
        return GreetService(greeter=greeter, limits=config.limits)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on `sock` if given, else on the configured host and port."""
        if sock is not None:
            await self.grpc_server.start(sock=sock, ssl=self.ssl_context)
        else:
            await self.grpc_server.start(self.config.host, self.config.port, ssl=self.ssl_context)
        self._address = self.grpc_server.address
        if self.metrics is not None:
            await self.metrics.start()
            if self.metrics.endpoint is not None:
                log.info("metrics on %s", self.metrics.endpoint.url)

    @property
    def service_names(self) -> tuple[str, ...]:
        """The full name of every service served (`package.Service`), health and reflection
        aside."""
        return tuple(name for service in self.services for name in service_names(service))

    @property
    def drain(self) -> TransportServer:
        """The server's connections and their graceful drain (`shutdown`, `hurry`)."""
        return self.grpc_server

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on (port 0 resolved)."""
        if self._address is None:
            raise RuntimeError("server is not started")
        return self._address

    @property
    def target(self) -> str:
        """`host:port` for clients."""
        return format_address(*self.address)

    def set_serving(self, serving: bool) -> None:
        """Report SERVING / NOT_SERVING on the health service, for "" and every service.

        Health Watch calls get the change at once; a Watch ends after it has sent NOT_SERVING.
        """
        self.serving.set(serving)

    def reload_auth_tokens(self) -> bool:
        """Re-read `--auth-token-file` (SIGHUP); False if there is none or reading failed."""
        return self.token_file is not None and self.token_file.reload()

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop: stop accepting connections, send GOAWAY, let in-flight calls finish
        for up to `grace` seconds (default: config.grace), cancel the rest, close connections.
        """
        self.set_serving(False)
        await self.drain.shutdown(self.config.grace if grace is None else grace)
        if self.metrics is not None:
            await self.metrics.stop()

    async def __aenter__(self) -> GreetServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
