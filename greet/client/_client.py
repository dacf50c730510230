"""GreetClient: the typed face of GreetService over a greet.client.Channel.

Plain names in, typed replies out: each method builds the request messages and calls
GreetServiceStub on the client's Channel (greet.client._channel), which carries the rest: each
call picks an endpoint from the EndpointPool (round-robin over healthy endpoints, backups only
while every primary is down) and on a retryable failure tries again on the next endpoint after a
jittered backoff, within one deadline for all attempts and within the client's retry budget, as
the service config says (by default every method with RetryPolicy()). Streaming calls are
retried only before the first reply arrives, and client/bidi streams only while their requests
can be replayed. Every failure surfaces as greet.errors.RpcError.
"""

from __future__ import annotations

import ssl as ssl_module
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, cast

from greet._codec import build
from greet.client._attempts import RetryBudget
from greet.client._calls import AttemptInterceptor, CallInterceptor
from greet.client._channel import Channel, calls_opened
from greet.client._pool import Endpoint, EndpointPool, PoolOptions, Resolve, resolve_dns
from greet.client._service_config import RetryPolicy, ServiceConfig
from greet.errors import MetadataValue
from greet.transport import ChannelConfig, Connector
from greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

__all__ = ["GreetClient", "NameOrRequest", "Requests", "as_request"]

ReplyT = TypeVar("ReplyT")

NameOrRequest: TypeAlias = "str | HelloRequest"
Requests: TypeAlias = "Iterable[str | HelloRequest] | AsyncIterable[str | HelloRequest]"


NO_PARAM = build(NoParam)
"""SayHello's request, the same for every call (the stub only reads it)."""


def as_request(item: str | HelloRequest) -> HelloRequest:
    """A HelloRequest for a plain name; a HelloRequest as it is."""
    return build(HelloRequest, name=item) if isinstance(item, str) else item


class GreetClient:
    """A client of one or more GreetService servers: GreetServiceStub on a greet.client.Channel.

    The arguments are the Channel's (targets, backup, timeout, ssl, token, metadata, retry or
    service_config, interceptors, attempt_interceptors, pool, resolve, transport, compression,
    connector: see greet.client.Channel); or `channel=` an open Channel to share, which the
    client then does not close. `timeout=` on a call replaces the channel's default.
    """

    def __init__(
        self,
        targets: str | Sequence[str] | None = None,
        *,
        channel: Channel | None = None,
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
        if channel is None:
            if targets is None:
                raise ValueError("GreetClient needs targets or a channel")
            channel = Channel(
                targets,
                backup=backup,
                timeout=timeout,
                ssl=ssl,
                token=token,
                metadata=metadata,
                retry=retry,
                service_config=service_config,
                interceptors=interceptors,
                attempt_interceptors=attempt_interceptors,
                pool=pool,
                resolve=resolve,
                transport=transport,
                compression=compression,
                connector=connector,
            )
            self._owns_channel = True
        elif targets is not None:
            raise ValueError("give GreetClient targets or a channel, not both")
        else:
            self._owns_channel = False
        self.channel = channel
        self.stub = GreetServiceStub(channel)

    # -- what the channel holds ----------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        """The default deadline of each call, in seconds over all its attempts."""
        return self.channel.timeout

    @property
    def metadata(self) -> dict[str, MetadataValue]:
        """Sent with every call (the token's `authorization` among it)."""
        return self.channel.metadata

    @property
    def service_config(self) -> ServiceConfig:
        return self.channel.service_config

    @property
    def pool(self) -> EndpointPool:
        return self.channel.pool

    @property
    def budget(self) -> RetryBudget:
        """The live retry budget."""
        return self.channel.budget

    @property
    def served(self) -> Counter[str]:
        """Successful calls per endpoint (`host:port`)."""
        return self.channel.served

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently in the pool (resolved names included), primaries first."""
        return self.channel.endpoints

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
        """Close every connection (of a channel the client made itself)."""
        if self._owns_channel:
            self.channel.close()

    # -- the four calls ----------------------------------------------------------------------

    def say_hello(self, *, timeout: float | None = None) -> Coroutine[Any, Any, HelloResponse]:
        """SayHello: the plain greeting ("Hello"). (`await` it: it is the stub's coroutine.)"""
        return self.stub.say_hello(NO_PARAM, timeout=timeout)

    def say_hello_server_streaming(
        self, names: NamesList | Iterable[str], *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloServerStreaming: one greeting per name, streamed back in order."""
        request = names if isinstance(names, NamesList) else build(NamesList, names=list(names))
        return closing_calls(self.stub.say_hello_server_streaming(request, timeout=timeout))

    async def say_hello_client_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> MessagesList:
        """SayHelloClientStreaming: stream names, get all the greetings in one reply."""
        return await self.stub.say_hello_client_streaming(hello_requests(requests), timeout=timeout)

    def say_hello_bidirectional_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloBidirectionalStreaming: one greeting back per name, as each arrives."""
        replies = self.stub.say_hello_bidirectional_streaming(
            hello_requests(requests), timeout=timeout
        )
        return closing_calls(replies)


async def closing_calls(replies: AsyncIterator[ReplyT]) -> AsyncIterator[ReplyT]:
    """The replies of a stub's streaming method; when the caller stops reading them, the call
    ends then (see greet.client._channel.calls_opened), not when the garbage collector gets to
    the stub's inner generator."""
    with calls_opened() as opened:
        try:
            first = await anext(replies)  # the stub opens its call's stream
        except StopAsyncIteration:
            return
    try:
        yield first
        async for reply in replies:
            yield reply
    finally:
        await cast(AsyncGenerator[ReplyT, None], replies).aclose()
        for stream in opened:
            await stream.close()


def hello_requests(
    requests: Requests,
) -> Iterable[HelloRequest] | AsyncIterable[HelloRequest]:
    """The HelloRequests of plain names or requests, read as the call sends them."""
    if isinstance(requests, AsyncIterable):
        return _async_requests(requests)
    return map(as_request, requests)


async def _async_requests(
    requests: AsyncIterable[str | HelloRequest],
) -> AsyncIterator[HelloRequest]:
    async for item in requests:
        yield as_request(item)
