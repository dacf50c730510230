"""AttemptRunner: the one attempt loop that every call of a greet.client.Channel runs on.

Each call kind is a body (`unary`, `server_streaming`, `client_streaming`, `bidi_streaming`):
what one attempt does on its HTTP/2 stream, given an Exchange. The runner does the rest, the
same for all four kinds:

1. pick an endpoint and one of its connections from the EndpointPool (greet.client._pool);
2. run the attempt inside the attempt interceptors, its body on a stream of that connection;
3. on a failure, classify it by its type (`classify`, below), take the endpoint out when its
   connection failed, and decide on a retry: not once a reply reached the caller or the requests
   can no longer be replayed (committed); at once, a single time, when the server did not
   process the attempt (transparent retry); else as the method's RetryPolicy says (its statuses,
   max_attempts, the client's RetryBudget, a backoff that fits in the deadline);
4. on success, count it (`Channel.served`, the budget, an endpoint back from down).

All of it runs inside the call interceptors, once per call. The outcome is recorded in the
ClientCall and its ClientAttempts (greet.client._calls), and a failed call raises its RpcError.

What is not configured costs nothing: a unary call of a client without interceptors
(`AttemptRunner.unary`) runs its first attempt straight on the stream, with no records, no
generator and no retry bookkeeping; only if that attempt fails does the call go on in the loop
above, with its records, from the retry decision on.

Failures, by type (the one boundary where an attempt's exception becomes an RpcError):

    GRPCError               the server's status (with its rich details)
    asyncio.TimeoutError    the call's deadline passed: DEADLINE_EXCEEDED
    StreamRefused           REFUSED_STREAM: UNAVAILABLE, not processed, the connection is fine
    StreamReset             gRPC's RST_STREAM mapping (doc/PROTOCOL-HTTP2.md), the connection
                            is fine
    NotProcessed            a GOAWAY left it out: UNAVAILABLE, not processed, connection gone
    StreamTerminatedError   the connection ended under it (ConnectionLost, ...): UNAVAILABLE
    OSError                 no connection (refused, unreachable, HandshakeFailed, TLS, or
                            TransientFailure: the endpoint's last connect failed): UNAVAILABLE
    RpcError                already one (greet's own checks, e.g. a unary call with no reply)

Message texts are never read: the types (greet.transport) carry what is known, including
`processed`, whether the server may have seen the request. An attempt its server refused or a
GOAWAY left out (StreamRefused, NotProcessed) gets A6's transparent retry (`transparent`); one
that found no connection was not processed either, but follows the retry policy (backoff,
attempts counted), so that `max_attempts=1` still means one try when an endpoint is down.

Client and bidi streams read their requests from ReplayableRequests, so that a retry sends the
same ones again: the caller puts each request in (`put`, then `end`), an attempt reads them, and
the requests read so far are kept (up to the policy's `replay_buffer_messages`) so a retried
attempt sends them again before reading on. A call that has sent more than that, or has received
a reply, is committed: the buffer is dropped and the call is not retried any more. An attempt
that is cancelled while it waits for the next request takes nothing away: the request stays for
the next attempt.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from grpclib.metadata import Deadline

from greet.client._calls import (
    AttemptInterceptor,
    CallInterceptor,
    ClientAttempt,
    ClientCall,
    Method,
    intercepted,
    wake,
)
from greet.client._pool import EndpointPool, EndpointState, TransientFailure
from greet.client._service_config import MethodPolicies, RetryThrottling, ServiceConfig
from greet.errors import MetadataValue, RpcError
from greet.transport import Channel, ClientStream, ConnectionEnded, ErrorCode, StreamReset

__all__ = [
    "ATTEMPT_ERRORS",
    "AttemptRunner",
    "Body",
    "Exchange",
    "Failure",
    "ReplayableRequests",
    "RetryBudget",
    "StreamWatch",
    "bidi_streaming",
    "classify",
    "client_streaming",
    "server_streaming",
    "single",
    "unary",
]

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")

NO_REPLY = "the server ended the call without a reply"


# -- failures -------------------------------------------------------------------------------------

ATTEMPT_ERRORS = (GRPCError, StreamTerminatedError, OSError, asyncio.TimeoutError, RpcError)
"""What a failed attempt raises; anything else is not a call failure and propagates."""

RESET_STATUS: dict[int, Status] = {
    ErrorCode.REFUSED_STREAM: Status.UNAVAILABLE,
    ErrorCode.CANCEL: Status.CANCELLED,
    ErrorCode.ENHANCE_YOUR_CALM: Status.RESOURCE_EXHAUSTED,
    ErrorCode.INADEQUATE_SECURITY: Status.PERMISSION_DENIED,
}
"""gRPC's mapping of a RST_STREAM error code to a status (doc/PROTOCOL-HTTP2.md); INTERNAL else."""


@dataclass(frozen=True)
class Failure:
    """A failed attempt: the error, whether its connection failed (the endpoint is then taken
    out of the pool), whether the server may have processed the request, and whether the
    server said it did not (a transparent retry is due)."""

    error: RpcError
    cause: BaseException | None  # what it was mapped from (None: it was an RpcError already)
    connection_failed: bool = False
    processed: bool = True
    transparent: bool = False


def classify(error: BaseException, endpoint: str) -> Failure:
    """The Failure for one of ATTEMPT_ERRORS raised by an attempt on `endpoint`; its RpcError's
    `__cause__` is `error`, as `raise ... from error` sets it."""
    if isinstance(error, RpcError):
        return Failure(error, error.__cause__)
    failure = _mapped(error, endpoint)
    # an endpoint waiting to reconnect fails at once: the cause is its connect's own error
    failure.error.__cause__ = error.__cause__ if isinstance(error, TransientFailure) else error
    return failure


BARE_DEADLINE_MESSAGES = frozenset({"", "deadline exceeded", "context deadline exceeded"})
"""What greet's, grpcio's and grpc-go's servers say when a call's deadline passes there."""


def _bare(message: str | None) -> bool:
    return (message or "").strip().lower() in BARE_DEADLINE_MESSAGES


def _mapped(error: BaseException, endpoint: str) -> Failure:
    if isinstance(error, GRPCError):
        rpc_error = RpcError.from_grpc_error(error)
        if error.status is Status.DEADLINE_EXCEEDED and _bare(error.message):
            # the server's copy of the deadline passed first, and its words do not say so
            said = f" ({error.message})" if error.message else ""
            rpc_error = RpcError(
                Status.DEADLINE_EXCEEDED,
                f"deadline exceeded while {endpoint} worked on the call{said}",
                details=rpc_error.details,
                trailers=rpc_error.trailers,
            )
        return Failure(rpc_error, error)
    if isinstance(error, asyncio.TimeoutError):  # before OSError: it is one on Python >= 3.11
        waiting = str(error)  # greet.transport's DeadlineExceeded says what the call waited for
        text = f"deadline exceeded {waiting}" if waiting else "deadline exceeded"
        return Failure(RpcError(Status.DEADLINE_EXCEEDED, text), error)
    if isinstance(error, StreamReset):
        # this stream only: the connection is fine
        status = RESET_STATUS.get(error.error_code, Status.INTERNAL)
        rpc_error = RpcError(status, f"{endpoint}: {error}")
        return Failure(rpc_error, error, processed=error.processed, transparent=not error.processed)
    if isinstance(error, StreamTerminatedError):
        # the connection ended (lost, closed, GOAWAY before the stream was served)
        processed = error.processed if isinstance(error, ConnectionEnded) else True
        rpc_error = RpcError(Status.UNAVAILABLE, f"{endpoint}: stream terminated: {error}")
        return Failure(
            rpc_error, error, connection_failed=True, processed=processed, transparent=not processed
        )
    rpc_error = RpcError(Status.UNAVAILABLE, f"cannot connect to {endpoint}: {error}")
    return Failure(rpc_error, error, connection_failed=True, processed=False)


# -- the retry budget -----------------------------------------------------------------------------


class RetryBudget:
    """The live token bucket of a RetryThrottling, shared by every call of one client (the
    rules: greet.client._service_config).

    Without a RetryThrottling (a service config with no retryThrottling) retries are never
    throttled.
    """

    def __init__(self, throttling: RetryThrottling | None) -> None:
        self.throttled = throttling is not None
        self.max_tokens = throttling.max_tokens if throttling is not None else 0.0
        self.token_ratio = throttling.token_ratio if throttling is not None else 0.0
        self.tokens = self.max_tokens
        self.threshold = self.max_tokens / 2

    def record_success(self) -> None:
        if self.tokens < self.max_tokens:
            self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def record_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    @property
    def allows_retry(self) -> bool:
        return not self.throttled or self.tokens > self.threshold


# -- requests a retry can send again --------------------------------------------------------------


class ReplayableRequests(Generic[RequestT]):
    """The request messages of one client- or bidi-streaming call, put in by the caller and
    readable once per attempt (see the module docstring).

    `put` waits while AHEAD requests it put are still unread by a running attempt (so the caller
    runs a bounded way ahead of the stream, and a reader takes several requests a wake-up); while
    no attempt reads, it does not wait for one, but lets the loop run once.
    """

    AHEAD = 32

    def __init__(self, buffer_limit: int) -> None:
        self._unread: deque[RequestT] = deque()
        self._buffer: list[RequestT] | None = []
        self._limit = buffer_limit
        self._ended = False
        self._closed = False
        self._committed = False
        self._readers = 0
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None

    async def put(self, request: RequestT) -> None:
        """The next request of the call; ProtocolError once the call has ended."""
        if not self._readers and not self._closed:
            # no attempt reads yet: let the loop run (the caller's read starts one), so that a
            # request source that never suspends does not hold the loop while it fills the buffer
            await asyncio.sleep(0)
        while len(self._unread) >= self.AHEAD and self._readers and not self._closed:
            self._writer = asyncio.get_running_loop().create_future()
            try:
                await self._writer
            finally:
                self._writer = None
        if self._closed:
            raise ProtocolError("the call has ended: no more requests can be sent")
        self._unread.append(request)
        wake(self._reader)

    def end(self) -> None:
        """No more requests."""
        self._ended = True
        wake(self._reader)

    @property
    def replayable(self) -> bool:
        """Whether a new attempt can send the same requests again."""
        return not self._committed and self._buffer is not None

    def commit(self) -> None:
        """No more retries: drop the buffer."""
        self._buffer = None
        self._committed = True

    async def attempt(self) -> AsyncGenerator[RequestT, None]:
        """The requests for one attempt: the ones read before, then the rest as they come."""
        if self._buffer is None or self._committed:
            raise RuntimeError("requests were committed and cannot be replayed")
        for request in list(self._buffer):
            yield request
        self._readers += 1
        try:
            while True:
                unread = self._unread
                while not unread:
                    if self._ended:
                        return
                    self._reader = asyncio.get_running_loop().create_future()
                    try:
                        await self._reader
                    finally:
                        self._reader = None
                request = unread.popleft()
                wake(self._writer)
                buffer = self._buffer
                if buffer is not None:
                    if len(buffer) < self._limit:
                        buffer.append(request)
                    else:
                        self._buffer = None
                yield request
        finally:
            self._readers -= 1
            wake(self._writer)  # no reader now: a waiting put goes on

    def close(self) -> None:
        """The call ended: no more requests."""
        self._closed = True
        self._unread.clear()
        wake(self._writer)


# -- one attempt's stream, and the four call kinds ------------------------------------------------


StreamWatch = Callable[[ClientStream], None]
"""Told of each attempt's stream as it is made (greet.client.Channel's call reads the metadata
and the peer of the last one)."""


class Exchange(Generic[RequestT, ReplyT]):
    """One attempt's stream, as a call kind's body uses it (the counts go to the attempt)."""

    __slots__ = ("attempt", "channel", "endpoint", "method", "watch")

    def __init__(
        self,
        attempt: ClientAttempt,
        endpoint: EndpointState,
        channel: Channel,
        method: Method[RequestT, ReplyT],
        watch: StreamWatch | None = None,
    ) -> None:
        self.attempt = attempt
        self.endpoint = endpoint
        self.channel = channel
        self.method = method
        self.watch = watch

    def open(self) -> ClientStream:
        """The attempt's stream (`async with` it), with the call's deadline and its metadata;
        TransientFailure at once if the endpoint's last connect failed."""
        if self.endpoint.failure is not None:
            raise self.endpoint.unreachable()
        method = self.method
        stream = self.channel.request(
            method.path,
            method.kind,
            method.request_type,
            method.reply_type,
            deadline=self.attempt.call.deadline,
            metadata=self.attempt.metadata,
        )
        if self.watch is not None:
            self.watch(stream)
        return stream

    async def send(self, stream: ClientStream, message: RequestT, *, end: bool = False) -> None:
        await stream.send_message(message, end=end)
        self.attempt.messages_sent += 1

    async def receive(self, stream: ClientStream) -> ReplyT | None:
        """The next reply, or None once the server has ended the stream."""
        reply: ReplyT | None = await stream.recv_message()
        if reply is not None:
            self.attempt.messages_received += 1
        return reply

    async def reply(self, stream: ClientStream) -> ReplyT:
        """The one reply of a unary-reply call; the status the server ended with if none came."""
        reply = await self.receive(stream)
        if reply is None:
            await stream.recv_trailing_metadata()  # raises the server's status unless OK
            raise RpcError(Status.INTERNAL, NO_REPLY)
        return reply


Body = Callable[[Exchange[RequestT, ReplyT]], AsyncGenerator[ReplyT, None]]
"""What one attempt of a call kind does: its replies, as they reach the caller. A unary-reply
body yields its one reply once the stream has ended well."""


async def single(replies: AsyncGenerator[ReplyT, None]) -> ReplyT:
    """The reply of a unary-reply call (unary, client streaming), once the call has ended."""
    (reply,) = [reply async for reply in replies]  # the runner ends after exactly one
    return reply


def unary(request: RequestT) -> Body[RequestT, ReplyT]:
    """One request, one reply (what `AttemptRunner.unary` runs once a call has interceptors or
    its first attempt failed)."""

    async def body(exchange: Exchange[RequestT, ReplyT]) -> AsyncGenerator[ReplyT, None]:
        async with exchange.open() as stream:
            await exchange.send(stream, request, end=True)
            reply = await exchange.reply(stream)
        yield reply

    return body


def server_streaming(request: RequestT) -> Body[RequestT, ReplyT]:
    """One request, a stream of replies."""

    async def body(exchange: Exchange[RequestT, ReplyT]) -> AsyncGenerator[ReplyT, None]:
        async with exchange.open() as stream:
            await exchange.send(stream, request, end=True)
            while (reply := await exchange.receive(stream)) is not None:
                yield reply

    return body


def client_streaming(requests: ReplayableRequests[RequestT]) -> Body[RequestT, ReplyT]:
    """A stream of requests, one reply."""

    async def body(exchange: Exchange[RequestT, ReplyT]) -> AsyncGenerator[ReplyT, None]:
        async with exchange.open() as stream:
            await stream.send_request()
            async with aclosing(requests.attempt()) as messages:
                async for message in messages:
                    await exchange.send(stream, message)
            await stream.end()
            reply = await exchange.reply(stream)
        yield reply

    return body


def bidi_streaming(requests: ReplayableRequests[RequestT]) -> Body[RequestT, ReplyT]:
    """A stream of requests and a stream of replies; the requests are sent by a task of their
    own, so that replies are read while requests still wait to be sent.

    Once the server has ended the call, its status decides: requests still to be sent are not
    (the sending is cancelled, how it went does not matter), and a RST_STREAM(NO_ERROR) after
    its trailers (HTTP/2's "stop sending", which grpcio's and grpc-go's servers send) is no
    failure: the status in the trailers is the outcome (the stream raises it unless OK).
    """

    async def body(exchange: Exchange[RequestT, ReplyT]) -> AsyncGenerator[ReplyT, None]:
        ended_first = False  # the server ended the call before the requests ended
        try:
            async with exchange.open() as stream:
                await stream.send_request()

                async def send_all() -> None:
                    async with aclosing(requests.attempt()) as messages:
                        async for message in messages:
                            await exchange.send(stream, message)
                    await stream.end()

                sending = asyncio.create_task(send_all())
                try:
                    while (reply := await exchange.receive(stream)) is not None:
                        yield reply
                    if not sending.done():
                        sending.cancel()
                        await asyncio.wait([sending])
                    if sending.cancelled() or sending.exception() is not None:
                        ended_first = True  # the requests did not end: end them, so that the
                        await stream.end()  # stream reads the status the server ended with
                finally:
                    if not sending.done():
                        sending.cancel()
                        await asyncio.wait([sending])
                    if not sending.cancelled():
                        sending.exception()  # seen by the receiving side, or moot
        except StreamReset as reset:
            if not (ended_first and reset.error_code == ErrorCode.NO_ERROR):
                raise
            # the stream raised no status from the trailers the server ended the call with: OK

    return body


# -- the runner -----------------------------------------------------------------------------------


class AttemptRunner:
    """Runs the calls of one greet.client.Channel (see the module docstring).

    `policies` holds each method's retry policy from `service_config`, looked up once per
    method; `budget` is the client's retry budget (its retryThrottling); `served` counts the
    successful calls per endpoint.
    """

    def __init__(
        self,
        pool: EndpointPool,
        service_config: ServiceConfig,
        *,
        interceptors: Sequence[CallInterceptor] = (),
        attempt_interceptors: Sequence[AttemptInterceptor] = (),
    ) -> None:
        self.pool = pool
        self.policies = MethodPolicies(service_config)
        self.budget = RetryBudget(service_config.retry_throttling)
        self.interceptors = tuple(interceptors)
        self.attempt_interceptors = tuple(attempt_interceptors)
        self.intercepted = bool(self.interceptors or self.attempt_interceptors)
        self.served: Counter[str] = Counter()

    def new_call(
        self,
        method: Method[Any, Any],
        metadata: Mapping[str, MetadataValue],
        deadline: Deadline | None,
    ) -> ClientCall:
        """The record of a new call of `method`, with a copy of `metadata` and its policy."""
        return ClientCall(method, dict(metadata), deadline, self.policies[method.path])

    async def unary(
        self,
        method: Method[RequestT, ReplyT],
        request: RequestT,
        metadata: Mapping[str, MetadataValue],
        deadline: Deadline | None,
        watch: StreamWatch | None = None,
    ) -> ReplyT:
        """The reply of a unary call, by `deadline` over all its attempts (None: no deadline);
        raises its RpcError when it fails. `watch` is told of each attempt's stream.

        Without interceptors, the first attempt runs right here (see the module docstring).
        """
        if self.intercepted:
            call = self.new_call(method, metadata, deadline)
            return await single(self.run(call, unary(request), watch=watch))
        state, channel = self.pool.pick() or await self._resolve_and_pick()
        try:
            if state.failure is not None:  # its last connect failed: fail at once
                raise state.unreachable()
            stream = channel.request(
                method.path,
                method.kind,
                method.request_type,
                method.reply_type,
                deadline=deadline,
                metadata=metadata,
            )
            if watch is not None:
                watch(stream)
            async with stream:
                await stream.send_message(request, end=True)
                reply: ReplyT | None = await stream.recv_message()
                if reply is None:
                    await stream.recv_trailing_metadata()  # raises the server's status unless OK
                    raise RpcError(Status.INTERNAL, NO_REPLY)
        except ATTEMPT_ERRORS as error:
            failed: BaseException = error
        else:
            if state.down or self.budget.tokens < self.budget.max_tokens:
                self._succeeded(state)
            else:  # what _succeeded does when it has nothing to give back
                self.served[state.name] += 1
            return reply
        # the first attempt failed: the call goes on with its records, from the retry decision
        call = self.new_call(method, metadata, deadline)
        attempt = call.new_attempt(state.name, transparent=False)
        failure = self._failed(state, channel, attempt, failed)
        return await single(self._attempts(call, unary(request), None, watch, failure))

    def run(
        self,
        call: ClientCall,
        body: Body[Any, ReplyT],
        requests: ReplayableRequests[Any] | None = None,
        *,
        watch: StreamWatch | None = None,
    ) -> AsyncGenerator[ReplyT, None]:
        """The replies of `call`, as they arrive; raises its RpcError when it fails.

        `requests` are the replayable requests of a client- or bidi-streaming call, which the
        body sends: the call is retried only while they can be sent again. `watch` is told of
        each attempt's stream.
        """
        if not self.interceptors:
            return self._attempts(call, body, requests, watch)
        attempts = partial(self._attempts, call, body, requests, watch)
        return intercepted(call, self.interceptors, attempts)

    async def _attempts(
        self,
        call: ClientCall,
        body: Body[Any, ReplyT],
        requests: ReplayableRequests[Any] | None,
        watch: StreamWatch | None,
        failure: Failure | None = None,
    ) -> AsyncGenerator[ReplyT, None]:
        """The attempts of `call`; `failure`: how the attempt `unary` ran failed."""
        try:
            transparent = False
            if failure is not None:
                transparent = await self._before_retry(call, failure, requests)
            while True:
                state, channel = self.pool.pick() or await self._resolve_and_pick()
                attempt = call.new_attempt(state.name, transparent=transparent)
                exchange = Exchange(attempt, state, channel, call.definition, watch)
                chain = self.attempt_interceptors
                if chain:  # the attempt runs, and records its outcome, inside the chain
                    replies = intercepted(attempt, chain, partial(self._attempt, exchange, body))
                else:
                    replies = body(exchange)
                try:
                    async with aclosing(replies):
                        async for reply in replies:
                            call.replies += 1  # committed: never sent twice
                            if requests is not None:
                                requests.commit()
                            yield reply
                except ATTEMPT_ERRORS as error:
                    if not chain:
                        self._failed(state, channel, attempt, error)
                    elif error is not attempt.error:  # not the outcome the chain recorded
                        raise
                except BaseException:
                    attempt.end_cancelled()
                    raise
                else:
                    attempt.end()
                failure = attempt.failure
                if failure is None:  # it succeeded, or an attempt interceptor refused it
                    if attempt.error is not None:
                        raise attempt.error
                    self._succeeded(state)
                    call.end()
                    return
                transparent = await self._before_retry(call, failure, requests)
        except RpcError as error:
            call.end(error)
            raise
        except BaseException:
            call.end_cancelled()
            raise
        finally:
            if requests is not None:
                requests.close()

    async def _attempt(
        self, exchange: Exchange[Any, ReplyT], body: Body[Any, ReplyT]
    ) -> AsyncGenerator[ReplyT, None]:
        """One attempt inside attempt interceptors: its outcome is recorded before they see it."""
        try:
            async with aclosing(body(exchange)) as replies:
                async for reply in replies:
                    yield reply
        except ATTEMPT_ERRORS as error:
            failure = self._failed(exchange.endpoint, exchange.channel, exchange.attempt, error)
            raise failure.error from failure.cause
        except BaseException:
            exchange.attempt.end_cancelled()
            raise
        else:
            exchange.attempt.end()

    def _failed(
        self,
        state: EndpointState,
        channel: Channel,
        attempt: ClientAttempt,
        error: BaseException,
    ) -> Failure:
        """Record how an attempt failed; take its endpoint out if its connection failed."""
        failure = classify(error, state.name)
        if failure.connection_failed:
            cause = failure.cause
            self.pool.mark_down(state, channel, cause if isinstance(cause, OSError) else None)
        attempt.fail(failure)
        return failure

    async def _resolve_and_pick(self) -> tuple[EndpointState, Channel]:
        """When the pool picked nothing: resolve its names if they never were, and pick."""
        pool = self.pool
        picked = None
        if pool.needs_resolution:
            try:
                await pool.resolve()
            except OSError as error:
                raise RpcError(Status.UNAVAILABLE, str(error)) from error
            picked = pool.pick()
        if picked is None:
            raise RpcError(Status.UNAVAILABLE, "no endpoint: every name resolved to nothing")
        return picked

    def _succeeded(self, state: EndpointState) -> None:
        budget = self.budget
        if budget.tokens < budget.max_tokens:  # else full, or not throttled: nothing to give back
            budget.record_success()
        self.served[state.name] += 1
        if state.down:
            self.pool.mark_up(state)

    async def _before_retry(
        self, call: ClientCall, failure: Failure, requests: ReplayableRequests[Any] | None
    ) -> bool:
        """Raise the failure's error, or return once the next attempt is due (True: a
        transparent retry)."""
        error = failure.error
        if call.replies or (requests is not None and not requests.replayable):
            raise error  # committed
        if failure.transparent and not call.transparent_retry_used:
            call.transparent_retry_used = True
            return True
        policy = call.retry_policy
        if policy is None or not policy.retries(error.status):
            raise error
        self.budget.record_failure()
        attempts = call.counted_attempts
        if attempts >= policy.max_attempts or not self.budget.allows_retry:
            raise error
        pause = policy.backoff(attempts)
        deadline = call.deadline
        if deadline is not None and deadline.time_remaining() <= pause:
            raise RpcError(
                Status.DEADLINE_EXCEEDED,
                f"deadline exceeded after {len(call.attempts)} attempts, the last: {error}",
            ) from failure.cause
        await asyncio.sleep(pause)
        return False
