"""GreetClient: wraps the generated stub with plain-name inputs and one error type."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TypeAlias

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from generated.greet_service import (
    GreetServiceStub,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)
from greet.client.targets import Endpoint, parse_target
from greet.errors import RpcError

__all__ = ["GreetClient", "NameOrRequest", "Requests"]

NameOrRequest: TypeAlias = "str | HelloRequest"
Requests: TypeAlias = "Iterable[str | HelloRequest] | AsyncIterable[str | HelloRequest]"


@contextmanager
def rpc_errors() -> Iterator[None]:
    """The one place grpclib's and the socket's exceptions become RpcError."""
    try:
        yield
    except GRPCError as error:
        raise RpcError(error.status, error.message or "") from error
    except asyncio.TimeoutError as error:
        raise RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded") from error
    except StreamTerminatedError as error:
        raise RpcError(Status.UNAVAILABLE, f"stream terminated: {error}") from error
    except OSError as error:
        raise RpcError(Status.UNAVAILABLE, f"cannot connect: {error}") from error


def as_request(item: str | HelloRequest) -> HelloRequest:
    return HelloRequest(name=item) if isinstance(item, str) else item


async def as_requests(items: Requests) -> AsyncIterator[HelloRequest]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield as_request(item)
    else:
        for item in items:
            yield as_request(item)


class GreetClient:
    """A client of one or more GreetService servers.

    `targets` is `"host:port"` or a list of them. `timeout` is the default deadline of each call
    in seconds (None: no deadline); `ssl` a client SSLContext for TLS; `metadata` is sent with
    every call.
    """

    def __init__(
        self,
        targets: str | Sequence[str],
        *,
        timeout: float | None = None,
        ssl: ssl.SSLContext | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        names = [targets] if isinstance(targets, str) else list(targets)
        if not names:
            raise ValueError("GreetClient needs at least one target")
        self.endpoints: list[Endpoint] = [parse_target(name) for name in names]
        self.timeout = timeout
        self.metadata = dict(metadata or {})
        endpoint = self.endpoints[0]
        self._channel = Channel(endpoint.host, endpoint.port, ssl=ssl)
        self._stub = GreetServiceStub(self._channel)

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
        self._channel.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def say_hello(self, *, timeout: float | None = None) -> HelloResponse:
        """SayHello: the plain greeting ("Hello")."""
        with rpc_errors():
            return await self._stub.say_hello(
                NoParam(), timeout=self._timeout(timeout), metadata=self.metadata
            )

    async def say_hello_server_streaming(
        self, names: NamesList | Iterable[str], *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloServerStreaming: one greeting per name, streamed back in order."""
        request = names if isinstance(names, NamesList) else NamesList(names=list(names))
        with rpc_errors():
            async for reply in self._stub.say_hello_server_streaming(
                request,
                timeout=self._timeout(timeout),
                metadata=self.metadata,
            ):
                yield reply

    async def say_hello_client_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> MessagesList:
        """SayHelloClientStreaming: stream names, get all the greetings in one reply."""
        with rpc_errors():
            return await self._stub.say_hello_client_streaming(
                as_requests(requests),
                timeout=self._timeout(timeout),
                metadata=self.metadata,
            )

    async def say_hello_bidirectional_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloBidirectionalStreaming: one greeting back per name, as each arrives."""
        with rpc_errors():
            async for reply in self._stub.say_hello_bidirectional_streaming(
                as_requests(requests),
                timeout=self._timeout(timeout),
                metadata=self.metadata,
            ):
                yield reply
