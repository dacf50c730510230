"""Flaky, a GreetService double for client retry tests, and GrpclibServers to serve it.

`Flaky` fails the first `failures` attempts of each method with `status` (before any reply, or,
for streams, after the first reply when `after_first_reply`), and keeps what each request came
with: its metadata and what was left of its deadline. `GrpclibServers` runs services on grpclib
Servers on loopback sockets (bound before they are handed over) and stops them all at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from types import TracebackType

from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from loopback import bound_socket

from greet_service import (
    GreetServiceBase,
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)

__all__ = ["Flaky", "GrpclibServers"]


class Flaky(GreetServiceBase):
    """See the module docstring. `attempts` counts every call, `attempts_by_method` each
    method's."""

    def __init__(
        self,
        failures: int = 0,
        status: Status = Status.UNAVAILABLE,
        *,
        after_first_reply: bool = False,
    ) -> None:
        self.failures = failures
        self.status = status
        self.after_first_reply = after_first_reply
        self.attempts = 0
        self.attempts_by_method: Counter[str] = Counter()
        self.deadlines: list[float] = []
        self.metadata: list[dict[str, str]] = []

    def fail_now(self, method: str) -> bool:
        self.attempts += 1
        self.attempts_by_method[method] += 1
        return self.attempts_by_method[method] <= self.failures

    def error(self) -> GRPCError:
        return GRPCError(self.status, f"attempt {self.attempts} fails")

    async def say_hello(self, no_param: NoParam) -> HelloResponse:
        if self.fail_now("SayHello"):
            raise self.error()
        return HelloResponse(message="Hello")

    async def say_hello_server_streaming(
        self, names_list: NamesList
    ) -> AsyncIterator[HelloResponse]:
        failing = self.fail_now("SayHelloServerStreaming")
        if failing and not self.after_first_reply:
            raise self.error()
        for index, name in enumerate(names_list.names):
            if failing and index == 1:
                raise self.error()
            yield HelloResponse(message=f"Hello {name}")

    async def say_hello_client_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> MessagesList:
        failing = self.fail_now("SayHelloClientStreaming")
        messages = [f"Hello {request.name}" async for request in hello_request_iterator]
        if failing:
            raise self.error()
        return MessagesList(messages=messages)

    async def say_hello_bidirectional_streaming(
        self, hello_request_iterator: AsyncIterator[HelloRequest]
    ) -> AsyncIterator[HelloResponse]:
        failing = self.fail_now("SayHelloBidirectionalStreaming")
        index = 0
        async for request in hello_request_iterator:
            if failing and index == (1 if self.after_first_reply else 0):
                raise self.error()
            index += 1
            yield HelloResponse(message=f"Hello {request.name}")

    async def on_request(self, event: RecvRequest) -> None:
        self.metadata.append(
            {key: value for key, value in event.metadata.items() if isinstance(value, str)}
        )
        if event.deadline is not None:
            self.deadlines.append(event.deadline.time_remaining())


class GrpclibServers:
    """`async with GrpclibServers() as servers: target = await servers.start(flaky)`."""

    def __init__(self) -> None:
        self._servers: list[Server] = []

    async def start(self, service: Flaky) -> str:
        """Serve `service` on a new loopback socket; its `host:port`."""
        server = Server([service])
        listen(server, RecvRequest, service.on_request)
        sock = bound_socket()
        await server.start(sock=sock)
        self._servers.append(server)
        return f"127.0.0.1:{sock.getsockname()[1]}"

    async def __aenter__(self) -> GrpclibServers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
