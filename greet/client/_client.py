"""GreetClient: the typed client, balancing over endpoints and retrying failed calls.

Each call picks an endpoint from the EndpointPool (round-robin over healthy endpoints, backups
only while every primary is down), opens a stream on one of its connections, and on a retryable
failure tries again on the next endpoint after a jittered backoff, within one deadline for all
attempts and within the client's retry budget. Which methods are retried how is a service config
(greet.client._service_config; by default every method with RetryPolicy()). Streaming calls are
retried only before the first reply arrives, and client/bidi streams only while their requests
can be replayed. The attempts are run by one runner for all four call kinds, inside the client's
interceptors (greet.client._attempts; the interceptors and the records they read:
greet.client._calls). Every failure surfaces as greet.errors.RpcError.
"""

from __future__ import annotations

import ssl as ssl_module
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from types import TracebackType
from typing import Any

from grpclib.const import Cardinality
from grpclib.metadata import Deadline

from greet import telemetry
from greet._codec import build
from greet.client._attempts import (
    AttemptRunner,
    Body,
    NameOrRequest,
    ReplayableRequests,
    Requests,
    bidi_streaming,
    client_streaming,
    server_streaming,
    single,
)
from greet.client._calls import AttemptInterceptor, CallInterceptor, ClientCall, Method
from greet.client._pool import (
    Endpoint,
    EndpointPool,
    PoolOptions,
    Resolve,
    parse_targets,
    resolve_dns,
)
from greet.client._service_config import RetryPolicy, ServiceConfig
from greet.errors import MetadataValue
from greet.transport import ChannelConfig, Connector
from greet_service import (
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

__all__ = ["GreetClient", "NameOrRequest", "Requests"]

SERVICE = "/greet_service.GreetService/"
SAY_HELLO = Method(SERVICE + "SayHello", Cardinality.UNARY_UNARY, NoParam, HelloResponse)
SERVER_STREAMING = Method(
    SERVICE + "SayHelloServerStreaming", Cardinality.UNARY_STREAM, NamesList, HelloResponse
)
CLIENT_STREAMING = Method(
    SERVICE + "SayHelloClientStreaming", Cardinality.STREAM_UNARY, HelloRequest, MessagesList
)
BIDI_STREAMING = Method(
    SERVICE + "SayHelloBidirectionalStreaming",
    Cardinality.STREAM_STREAM,
    HelloRequest,
    HelloResponse,
)


class GreetClient:
    """A client of one or more GreetService servers.

    `targets` is `"host:port"`, `"dns:///host:port"`, a comma-separated string of them or a list;
    `backup` targets are used only while every target is down. `timeout` is the default deadline
    of each call in seconds, over all its attempts (None: no deadline); `ssl` a client SSLContext
    for TLS; `token` is sent as `authorization: Bearer <token>`; `metadata` with every call.

    Retries: `retry` is the policy of every method (default RetryPolicy(), its throttling the
    client's budget); or `service_config` says per method, as grpc-go's does (a ServiceConfig,
    or its JSON text or dict); not both.

    `interceptors` run once around each call, `attempt_interceptors` around each attempt of it
    (greet.client.Interceptor), for example `greet.client.ClientMetrics(registry)`.
    `pool` tunes the connections per endpoint and the probing of failed ones; `transport` the
    HTTP/2 connections (engine, keepalive, handshake timeout: greet.transport.ChannelConfig);
    `compression` ("gzip" or "deflate") compresses every request message (replies come back
    compressed when the server is set to compress and the client accepts it: it accepts both);
    `resolve` replaces the DNS lookup of `dns:///` names; `connector` opens connections other
    than over sockets (greet.transport.testing's in-memory server). `served` counts successful
    calls per endpoint (`host:port`); `budget` is the live retry budget.
    """

    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        backup: str | Sequence[str] = (),
        timeout: float | None = None,
        ssl: ssl_module.SSLContext | None = None,
        token: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        service_config: ServiceConfig | str | bytes | Mapping[str, Any] | None = None,
        interceptors: Sequence[CallInterceptor] = (),
        attempt_interceptors: Sequence[AttemptInterceptor] = (),
        pool: PoolOptions | None = None,
        resolve: Resolve = resolve_dns,
        transport: ChannelConfig | None = None,
        compression: str | None = None,
        connector: Connector | None = None,
    ) -> None:
        primaries = parse_targets(targets)
        if not primaries:
            raise ValueError("GreetClient needs at least one target")
        self.timeout = timeout
        self.metadata: dict[str, MetadataValue] = dict(metadata or {})
        if token is not None:
            if not token or any(c in token for c in "\r\n"):
                raise ValueError("token must be a non-empty single line")
            self.metadata["authorization"] = f"Bearer {token}"
        if telemetry.tracing_enabled():  # OTEL_* ask for it and greet[otel] is installed
            from greet.client.tracing import with_tracing

            interceptors, attempt_interceptors = with_tracing(interceptors, attempt_interceptors)
        self.service_config = client_service_config(retry, service_config)
        self.pool = EndpointPool(
            primaries,
            parse_targets(backup),
            ssl=ssl,
            options=pool,
            resolve=resolve,
            channel_config=with_compression(transport, compression),
            connector=connector,
        )
        self._runner = AttemptRunner(
            self.pool,
            self.service_config,
            interceptors=interceptors,
            attempt_interceptors=attempt_interceptors,
        )
        self.budget = self._runner.budget
        self.served: Counter[str] = self._runner.served

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently in the pool (resolved names included), primaries first."""
        return [state.endpoint for state in self.pool.endpoints]

    async def __aenter__(self) -> GreetClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection."""
        self.pool.close()

    def _call(self, method: Method[Any, Any], timeout: float | None) -> ClientCall:
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else Deadline.from_timeout(timeout)
        return self._runner.new_call(method, self.metadata, deadline)

    def _replayable(self, call: ClientCall, requests: Requests) -> ReplayableRequests:
        policy = call.retry_policy or RetryPolicy()
        return ReplayableRequests(requests, policy.replay_buffer_messages)

    # -- the four calls ----------------------------------------------------------------------

    async def say_hello(self, *, timeout: float | None = None) -> HelloResponse:
        """SayHello: the plain greeting ("Hello")."""
        timeout = self.timeout if timeout is None else timeout
        request = build(NoParam)
        return await self._runner.unary(SAY_HELLO, request, self.metadata, timeout)

    async def say_hello_server_streaming(
        self, names: NamesList | Iterable[str], *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloServerStreaming: one greeting per name, streamed back in order."""
        request = names if isinstance(names, NamesList) else build(NamesList, names=list(names))
        call = self._call(SERVER_STREAMING, timeout)
        body: Body[NamesList, HelloResponse] = server_streaming(request)
        async with aclosing(self._runner.run(call, body)) as replies:
            async for reply in replies:
                yield reply

    async def say_hello_client_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> MessagesList:
        """SayHelloClientStreaming: stream names, get all the greetings in one reply."""
        call = self._call(CLIENT_STREAMING, timeout)
        replay = self._replayable(call, requests)
        body: Body[HelloRequest, MessagesList] = client_streaming(replay)
        return await single(self._runner.run(call, body, replay))

    async def say_hello_bidirectional_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloBidirectionalStreaming: one greeting back per name, as each arrives."""
        call = self._call(BIDI_STREAMING, timeout)
        replay = self._replayable(call, requests)
        body: Body[HelloRequest, HelloResponse] = bidi_streaming(replay)
        async with aclosing(self._runner.run(call, body, replay)) as replies:
            async for reply in replies:
                yield reply


def with_compression(transport: ChannelConfig | None, compression: str | None) -> ChannelConfig:
    """The connection settings, with the request compression `compression` names."""
    transport = transport or ChannelConfig()
    if compression is None:
        return transport
    if transport.compression not in (None, compression):
        raise ValueError("compression= and transport.compression disagree: give one of them")
    return replace(transport, compression=compression)


def client_service_config(
    retry: RetryPolicy | None,
    service_config: ServiceConfig | str | bytes | Mapping[str, Any] | None,
) -> ServiceConfig:
    """The service config a client's `retry` and `service_config` arguments give."""
    if service_config is None:
        return ServiceConfig.uniform(retry or RetryPolicy())
    if retry is not None:
        raise ValueError(
            "give retry (one policy for every method) or service_config (per method), not both"
        )
    if isinstance(service_config, ServiceConfig):
        return service_config
    return ServiceConfig.from_json(service_config)
