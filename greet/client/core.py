"""GreetClient: the typed client, balancing over endpoints and retrying failed calls.

Each call picks an endpoint from the EndpointPool (round-robin over healthy endpoints, backups
only while every primary is down), opens a grpclib stream on one of its connections, and on a
retryable failure (RetryPolicy) tries again on the next endpoint after a jittered backoff, within
one deadline for all attempts and within the client's RetryBudget. Streaming calls are retried
only before the first reply arrives, and client/bidi streams only while their requests can be
replayed (see greet.client.requests). Every failure surfaces as greet.errors.RpcError.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType

from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline

from generated.greet_service import (
    HelloRequest,
    HelloResponse,
    MessagesList,
    NamesList,
    NoParam,
)
from greet.client.pool import EndpointPool, EndpointState, PoolOptions
from greet.client.requests import NameOrRequest, ReplayableRequests, Requests
from greet.client.resolver import Resolve, resolve_dns
from greet.client.retry import RetryBudget, RetryPolicy
from greet.client.targets import Endpoint, parse_targets
from greet.errors import RpcError
from greet.transport.channel import Channel
from greet.transport.config import ChannelConfig
from greet.transport.engine import ErrorCode
from greet.transport.errors import StreamReset

__all__ = ["GreetClient", "NameOrRequest", "Requests"]

SERVICE = "/greet_service.GreetService/"
SAY_HELLO = SERVICE + "SayHello"
SERVER_STREAMING = SERVICE + "SayHelloServerStreaming"
CLIENT_STREAMING = SERVICE + "SayHelloClientStreaming"
BIDI_STREAMING = SERVICE + "SayHelloBidirectionalStreaming"

CALL_ERRORS = (GRPCError, StreamTerminatedError, OSError)  # asyncio.TimeoutError is an OSError

RESET_STATUS: dict[int, Status] = {
    ErrorCode.REFUSED_STREAM: Status.UNAVAILABLE,
    ErrorCode.CANCEL: Status.CANCELLED,
    ErrorCode.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}
"""gRPC's mapping of a RST_STREAM error code to a status (doc/PROTOCOL-HTTP2.md); INTERNAL else."""


def as_rpc_error(error: BaseException, state: EndpointState) -> tuple[RpcError, bool]:
    """The one place grpclib's and the socket's exceptions become RpcError.

    Returns the error and whether the endpoint's connection failed (it is then taken out).
    """
    if isinstance(error, GRPCError):
        return RpcError.from_grpc_error(error), False
    if isinstance(error, asyncio.TimeoutError):
        return RpcError(Status.DEADLINE_EXCEEDED, "deadline exceeded"), False
    if isinstance(error, StreamReset):
        # this stream only: the connection is fine (gRPC's RST_STREAM -> status mapping)
        status = RESET_STATUS.get(error.error_code, Status.INTERNAL)
        return RpcError(status, f"{state.name}: {error}"), False
    if isinstance(error, StreamTerminatedError):
        # the connection ended (lost, closed, GOAWAY before the stream was served)
        return RpcError(Status.UNAVAILABLE, f"{state.name}: stream terminated: {error}"), True
    return RpcError(Status.UNAVAILABLE, f"cannot connect to {state.name}: {error}"), True


class GreetClient:
    """A client of one or more GreetService servers.

    `targets` is `"host:port"`, `"dns:///host:port"`, a comma-separated string of them or a list;
    `backup` targets are used only while every target is down. `timeout` is the default deadline
    of each call in seconds, over all its attempts (None: no deadline); `ssl` a client SSLContext
    for TLS; `token` is sent as `authorization: Bearer <token>`; `metadata` with every call.
    `retry` and `pool` tune retries and connections; `transport` the HTTP/2 connections (engine,
    keepalive, handshake timeout: greet.transport.ChannelConfig); `resolve` replaces the DNS
    lookup of `dns:///` names. `served` counts successful calls per endpoint (`host:port`).
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
        pool: PoolOptions | None = None,
        resolve: Resolve = resolve_dns,
        transport: ChannelConfig | None = None,
    ) -> None:
        primaries = parse_targets(targets)
        if not primaries:
            raise ValueError("GreetClient needs at least one target")
        self.timeout = timeout
        self.metadata = dict(metadata or {})
        if token is not None:
            if not token or any(c in token for c in "\r\n"):
                raise ValueError("token must be a non-empty single line")
            self.metadata["authorization"] = f"Bearer {token}"
        self.retry = retry or RetryPolicy()
        self.budget = RetryBudget(self.retry.throttling)
        self.pool = EndpointPool(
            primaries,
            parse_targets(backup),
            ssl=ssl,
            options=pool,
            resolve=resolve,
            channel_config=transport,
        )
        self.served: Counter[str] = Counter()

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

    # -- the attempts of one call ------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> Deadline | None:
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else Deadline.from_timeout(timeout)

    async def _pick(self) -> tuple[EndpointState, Channel]:
        if self.pool.needs_resolution:
            try:
                await self.pool.resolve()
            except OSError as error:
                raise RpcError(Status.UNAVAILABLE, str(error)) from error
        state = self.pool.pick()
        if state is None:
            raise RpcError(Status.UNAVAILABLE, "no endpoint: every name resolved to nothing")
        return state, state.channel()

    def _succeeded(self, state: EndpointState) -> None:
        self.budget.record_success()
        self.served[state.name] += 1
        if state.down:
            self.pool.mark_up(state)

    async def _failed(
        self,
        error: BaseException,
        state: EndpointState,
        channel: Channel,
        attempts: int,
        deadline: Deadline | None,
        replayable: bool = True,
    ) -> None:
        """Raise the RpcError for `error`, or return after the backoff when a retry is due."""
        rpc_error, connection_failed = as_rpc_error(error, state)
        if connection_failed:
            self.pool.mark_down(state, channel)
        policy = self.retry
        if not policy.retries(rpc_error.status):
            raise rpc_error from error
        self.budget.record_failure()
        if not replayable or attempts >= policy.max_attempts or not self.budget.allows_retry:
            raise rpc_error from error
        pause = policy.backoff(attempts)
        if deadline is not None and deadline.time_remaining() <= pause:
            raise RpcError(
                Status.DEADLINE_EXCEEDED,
                f"deadline exceeded after {attempts} attempts, the last: {rpc_error}",
            ) from error
        await asyncio.sleep(pause)

    # -- the four calls ----------------------------------------------------------------------

    async def say_hello(self, *, timeout: float | None = None) -> HelloResponse:
        """SayHello: the plain greeting ("Hello")."""
        deadline = self._deadline(timeout)
        request = NoParam()
        attempts = 0
        while True:
            attempts += 1
            state, channel = await self._pick()
            try:
                async with channel.request(
                    SAY_HELLO,
                    Cardinality.UNARY_UNARY,
                    NoParam,
                    HelloResponse,
                    deadline=deadline,
                    metadata=self.metadata,
                ) as stream:
                    await stream.send_message(request, end=True)
                    reply: HelloResponse | None = await stream.recv_message()
            except CALL_ERRORS as error:
                await self._failed(error, state, channel, attempts, deadline)
                continue
            self._succeeded(state)
            assert reply is not None
            return reply

    async def say_hello_server_streaming(
        self, names: NamesList | Iterable[str], *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloServerStreaming: one greeting per name, streamed back in order."""
        request = names if isinstance(names, NamesList) else NamesList(names=list(names))
        deadline = self._deadline(timeout)
        attempts = 0
        while True:
            attempts += 1
            state, channel = await self._pick()
            received = False
            try:
                async with channel.request(
                    SERVER_STREAMING,
                    Cardinality.UNARY_STREAM,
                    NamesList,
                    HelloResponse,
                    deadline=deadline,
                    metadata=self.metadata,
                ) as stream:
                    await stream.send_message(request, end=True)
                    async for reply in stream:
                        received = True
                        yield reply
            except CALL_ERRORS as error:
                await self._failed(error, state, channel, attempts, deadline, not received)
                continue
            self._succeeded(state)
            return

    async def say_hello_client_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> MessagesList:
        """SayHelloClientStreaming: stream names, get all the greetings in one reply."""
        deadline = self._deadline(timeout)
        replay = ReplayableRequests(requests, self.retry.replay_buffer_messages)
        attempts = 0
        try:
            while True:
                attempts += 1
                state, channel = await self._pick()
                try:
                    async with channel.request(
                        CLIENT_STREAMING,
                        Cardinality.STREAM_UNARY,
                        HelloRequest,
                        MessagesList,
                        deadline=deadline,
                        metadata=self.metadata,
                    ) as stream:
                        await stream.send_request()
                        async for message in replay.attempt():
                            await stream.send_message(message)
                        await stream.end()
                        reply: MessagesList | None = await stream.recv_message()
                except CALL_ERRORS as error:
                    await self._failed(error, state, channel, attempts, deadline, replay.replayable)
                    continue
                self._succeeded(state)
                assert reply is not None
                return reply
        finally:
            replay.close()

    async def say_hello_bidirectional_streaming(
        self, requests: Requests, *, timeout: float | None = None
    ) -> AsyncIterator[HelloResponse]:
        """SayHelloBidirectionalStreaming: one greeting back per name, as each arrives."""
        deadline = self._deadline(timeout)
        replay = ReplayableRequests(requests, self.retry.replay_buffer_messages)
        attempts = 0
        try:
            while True:
                attempts += 1
                state, channel = await self._pick()
                received = False
                sending: asyncio.Task[None] | None = None
                try:
                    async with channel.request(
                        BIDI_STREAMING,
                        Cardinality.STREAM_STREAM,
                        HelloRequest,
                        HelloResponse,
                        deadline=deadline,
                        metadata=self.metadata,
                    ) as stream:
                        await stream.send_request()

                        async def send_all() -> None:
                            async for message in replay.attempt():
                                await stream.send_message(message)
                            await stream.end()

                        sending = asyncio.create_task(send_all())
                        async for reply in stream:
                            if not received:
                                received = True
                                replay.commit()
                            yield reply
                        await sending
                except CALL_ERRORS as error:
                    await self._failed(
                        error,
                        state,
                        channel,
                        attempts,
                        deadline,
                        not received and replay.replayable,
                    )
                    continue
                finally:
                    if sending is not None:
                        if not sending.done():
                            sending.cancel()
                        elif not sending.cancelled():
                            sending.exception()  # seen: the receiving side raised it already
                self._succeeded(state)
                return
        finally:
            replay.close()
