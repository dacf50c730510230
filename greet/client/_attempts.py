"""AttemptRunner: the one attempt loop that every GreetClient call kind runs on.

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
4. on success, count it (`GreetClient.served`, the budget, an endpoint back from down).

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
same ones again: a list or tuple of names is replayed as it is; any other iterable (a generator,
an async generator) is read once, and the messages read so far are kept (up to the policy's
`replay_buffer_messages`) so a retried attempt sends them again before reading on. A call that
has read more than that, or has received a reply, is committed: the buffer is dropped and the
call is not retried any more. Reading from an async source goes through a shielded task, so an
attempt that is cancelled while it waits for the next request does not break the source for the
next attempt.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline

from greet._codec import build
from greet.client._calls import (
    AttemptInterceptor,
    CallInterceptor,
    ClientAttempt,
    ClientCall,
    Method,
    intercepted,
)
from greet.client._pool import EndpointPool, EndpointState
from greet.client._service_config import MethodPolicies, RetryThrottling, ServiceConfig
from greet.errors import MetadataValue, RpcError
from greet.transport import Channel, ClientStream, ConnectionEnded, ErrorCode, StreamReset
from greet_service import HelloRequest

__all__ = [
    "ATTEMPT_ERRORS",
    "AttemptRunner",
    "Body",
    "Exchange",
    "Failure",
    "NameOrRequest",
    "ReplayableRequests",
    "Requests",
    "RetryBudget",
    "as_request",
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
    failure.error.__cause__ = error
    return failure


def _mapped(error: BaseException, endpoint: str) -> Failure:
    if isinstance(error, GRPCError):
        return Failure(RpcError.from_grpc_error(error), error)
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

NameOrRequest: TypeAlias = "str | HelloRequest"
Requests: TypeAlias = "Iterable[str | HelloRequest] | AsyncIterable[str | HelloRequest]"


def as_request(item: str | HelloRequest) -> HelloRequest:
    return build(HelloRequest, name=item) if isinstance(item, str) else item


class ReplayableRequests:
    """The request messages of one streaming call, readable once per attempt (see the module
    docstring)."""

    def __init__(self, source: Requests, buffer_limit: int) -> None:
        self._sequence: Sequence[str | HelloRequest] | None = None
        self._sync: Iterator[str | HelloRequest] | None = None
        self._async: AsyncIterator[str | HelloRequest] | None = None
        if isinstance(source, (list, tuple)):
            self._sequence = source
        elif isinstance(source, AsyncIterable):
            self._async = aiter(source)
        else:
            self._sync = iter(source)
        self._buffer: list[HelloRequest] | None = []
        self._limit = buffer_limit
        self._exhausted = False
        self._pending: asyncio.Future[str | HelloRequest] | None = None
        self._committed = False

    @property
    def replayable(self) -> bool:
        """Whether a new attempt can send the same requests again."""
        if self._committed:
            return False
        return self._sequence is not None or self._buffer is not None

    def commit(self) -> None:
        """No more retries: drop the buffer."""
        self._buffer = None
        self._committed = True

    async def attempt(self) -> AsyncGenerator[HelloRequest, None]:
        """The requests for one attempt: the ones read before, then the rest of the source."""
        if self._sequence is not None:
            for item in self._sequence:
                yield as_request(item)
            return
        if self._buffer is None or self._committed:
            raise RuntimeError("requests were committed and cannot be replayed")
        for request in list(self._buffer):
            yield request
        while not self._exhausted:
            try:
                item = await self._next()
            except StopAsyncIteration:
                self._exhausted = True
                return
            request = as_request(item)
            if self._buffer is not None:
                if len(self._buffer) < self._limit:
                    self._buffer.append(request)
                else:
                    self._buffer = None
            yield request

    async def _next(self) -> str | HelloRequest:
        if self._sync is not None:
            try:
                return next(self._sync)
            except StopIteration:
                raise StopAsyncIteration from None
        assert self._async is not None
        if self._pending is None:
            self._pending = asyncio.ensure_future(anext(self._async))
        try:
            item = await asyncio.shield(self._pending)
        except asyncio.CancelledError:
            if not self._pending.done():
                raise  # the attempt was cancelled; the read goes on for the next attempt
            self._pending = None
            raise
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return item

    def close(self) -> None:
        """Stop a read still running after the call ended."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None


# -- one attempt's stream, and the four call kinds ------------------------------------------------


class Exchange(Generic[RequestT, ReplyT]):
    """One attempt's stream, as a call kind's body uses it (the counts go to the attempt)."""

    __slots__ = ("attempt", "channel", "endpoint", "method")

    def __init__(
        self,
        attempt: ClientAttempt,
        endpoint: EndpointState,
        channel: Channel,
        method: Method[RequestT, ReplyT],
    ) -> None:
        self.attempt = attempt
        self.endpoint = endpoint
        self.channel = channel
        self.method = method

    def open(self) -> ClientStream:
        """The attempt's stream (`async with` it), with the call's deadline and its metadata;
        TransientFailure at once if the endpoint's last connect failed."""
        if self.endpoint.failure is not None:
            raise self.endpoint.unreachable()
        method = self.method
        return self.channel.request(
            method.path,
            method.kind,
            method.request_type,
            method.reply_type,
            deadline=self.attempt.call.deadline,
            metadata=self.attempt.metadata,
        )

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


def client_streaming(requests: ReplayableRequests) -> Body[HelloRequest, ReplyT]:
    """A stream of requests, one reply."""

    async def body(exchange: Exchange[HelloRequest, ReplyT]) -> AsyncGenerator[ReplyT, None]:
        async with exchange.open() as stream:
            await stream.send_request()
            async with aclosing(requests.attempt()) as messages:
                async for message in messages:
                    await exchange.send(stream, message)
            await stream.end()
            reply = await exchange.reply(stream)
        yield reply

    return body


def bidi_streaming(requests: ReplayableRequests) -> Body[HelloRequest, ReplyT]:
    """A stream of requests and a stream of replies; the requests are sent by a task of their
    own, so that replies are read while requests still wait to be sent."""

    async def body(exchange: Exchange[HelloRequest, ReplyT]) -> AsyncGenerator[ReplyT, None]:
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
                await sending
            finally:
                if not sending.done():
                    sending.cancel()
                elif not sending.cancelled():
                    sending.exception()  # seen: the receiving side raised it already

    return body


# -- the runner -----------------------------------------------------------------------------------


class AttemptRunner:
    """Runs the calls of one GreetClient (see the module docstring).

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
        timeout: float | None,
    ) -> ReplyT:
        """The reply of a unary call, within `timeout` seconds over all its attempts (None: no
        deadline); raises its RpcError when it fails.

        Without interceptors, the first attempt runs right here (see the module docstring).
        """
        deadline = None if timeout is None else Deadline.from_timeout(timeout)
        if self.intercepted:
            call = self.new_call(method, metadata, deadline)
            return await single(self.run(call, unary(request)))
        state, channel = self.pool.pick() or await self._resolve_and_pick()
        try:
            if state.failure is not None:  # its last connect failed: fail at once
                raise state.unreachable()
            async with channel.request(
                method.path,
                method.kind,
                method.request_type,
                method.reply_type,
                deadline=deadline,
                metadata=metadata,
            ) as stream:
                await stream.send_message(request, end=True)
                reply: ReplyT | None = await stream.recv_message()
                if reply is None:
                    await stream.recv_trailing_metadata()  # raises the server's status unless OK
                    raise RpcError(Status.INTERNAL, NO_REPLY)
        except ATTEMPT_ERRORS as error:
            failed: BaseException = error
        else:
            self._succeeded(state)
            return reply
        # the first attempt failed: the call goes on with its records, from the retry decision
        call = self.new_call(method, metadata, deadline)
        attempt = call.new_attempt(state.name, transparent=False)
        failure = self._failed(state, channel, attempt, failed)
        return await single(self._attempts(call, unary(request), None, failure))

    def run(
        self,
        call: ClientCall,
        body: Body[Any, ReplyT],
        requests: ReplayableRequests | None = None,
    ) -> AsyncGenerator[ReplyT, None]:
        """The replies of `call`, as they arrive; raises its RpcError when it fails.

        `requests` are the replayable requests of a client- or bidi-streaming call, which the
        body sends: the call is retried only while they can be sent again.
        """
        if not self.interceptors:
            return self._attempts(call, body, requests)
        attempts = partial(self._attempts, call, body, requests)
        return intercepted(call, self.interceptors, attempts)

    async def _attempts(
        self,
        call: ClientCall,
        body: Body[Any, ReplyT],
        requests: ReplayableRequests | None,
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
                exchange = Exchange(attempt, state, channel, call.definition)
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
        self, call: ClientCall, failure: Failure, requests: ReplayableRequests | None
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
