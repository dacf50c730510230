"""GreetService: the thin adapter between wire messages and the greeting rules.

Each method takes the generated request types, calls the domain (`greet.greeting`) and returns the
generated response types. Domain errors become gRPC statuses here, at one boundary; a broken
limit also travels as rich error details (google.rpc.BadRequest and ErrorInfo, see
greet.error_details).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from greet.errors import GreetError, to_grpc_error
from greet.greeting import (
    HELLO,
    Greeter,
    Limits,
    WorkingGreeter,
    check_name,
    check_names,
    check_stream_length,
)
from greet_service import (
    GreetServiceBase,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

__all__ = ["ERROR_DOMAIN", "GreetService"]

ERROR_DOMAIN = "greet_service.GreetService"
"""`ErrorInfo.domain` of GreetService's errors: the service's full name, as the reasons
(greet.greeting) are unique within it."""


@contextmanager
def reported_as_grpc_status() -> Iterator[None]:
    """Turn a domain error raised inside the block into the matching gRPC status and details."""
    try:
        yield
    except GreetError as error:
        raise to_grpc_error(error, domain=ERROR_DOMAIN) from error


class GreetService(GreetServiceBase):
    """The four GreetService calls of the wire contract."""

    def __init__(self, greeter: Greeter | None = None, limits: Limits | None = None) -> None:
        self.greeter: Greeter = greeter if greeter is not None else WorkingGreeter()
        self.limits = limits if limits is not None else Limits()

    async def say_hello(self, no_param: NoParam) -> HelloResponse:
        return HelloResponse(message=HELLO)

    async def say_hello_server_streaming(
        self, names_list: NamesList
    ) -> AsyncIterator[HelloResponse]:
        with reported_as_grpc_status():
            check_names(names_list.names, self.limits)
        for name in names_list.names:
            yield HelloResponse(message=await self.greeter.greet(name))

    async def say_hello_client_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> MessagesList:
        with reported_as_grpc_status():
            messages = [
                await self.greeter.greet(name)
                async for name in self._checked_names(hello_request_iterator)
            ]
        return MessagesList(messages=messages)

    async def say_hello_bidirectional_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> AsyncIterator[HelloResponse]:
        with reported_as_grpc_status():
            async for name in self._checked_names(hello_request_iterator):
                yield HelloResponse(message=await self.greeter.greet(name))

    async def _checked_names(self, requests: AsyncIterator[HelloRequest]) -> AsyncIterator[str]:
        count = 0
        async for request in requests:
            count += 1
            check_stream_length(count, self.limits)
            check_name(request.name, self.limits)
            yield request.name
