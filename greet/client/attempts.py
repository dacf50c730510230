"""AttemptRunner: the one attempt loop that every GreetClient call kind runs on.

Each call kind passes in its body (greet.client.call_kinds): what one attempt does on its
HTTP/2 stream, given an Exchange. The runner does the rest, the same for all four kinds:

1. pick an endpoint from the EndpointPool (round-robin over healthy endpoints);
2. run the attempt inside the attempt interceptors, its body on a stream of that endpoint;
3. on a failure, classify it by its type (greet.client.failures), take the endpoint out when
   its connection failed, and decide on a retry: not once a reply reached the caller or the
   requests can no longer be replayed (committed); at once, a single time, when the server did
   not process the attempt (transparent retry); else as the method's RetryPolicy says (its
   statuses, max_attempts, the client's RetryBudget, a backoff that fits in the deadline);
4. on success, count it (`GreetClient.served`, the budget, an endpoint back from down).

All of it runs inside the call interceptors, once per call. The outcome is recorded in the
ClientCall and its ClientAttempts (greet.client.calls), and a failed call raises its RpcError.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from functools import partial
from typing import Any, Generic, TypeVar

from grpclib.const import Status

from greet.client.calls import ClientAttempt, ClientCall, Method
from greet.client.failures import ATTEMPT_ERRORS, Failure, classify
from greet.client.interceptors import AttemptInterceptor, CallInterceptor, intercepted
from greet.client.pool import EndpointPool, EndpointState
from greet.client.requests import ReplayableRequests
from greet.client.retry import RetryBudget
from greet.errors import RpcError
from greet.transport import Channel, ClientStream

__all__ = ["AttemptRunner", "Body", "Exchange", "single"]

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


class Exchange(Generic[RequestT, ReplyT]):
    """One attempt's stream, as a call kind's body uses it (the counts go to the attempt)."""

    __slots__ = ("attempt", "channel", "endpoint", "method")

    def __init__(
        self, attempt: ClientAttempt, endpoint: EndpointState, method: Method[RequestT, ReplyT]
    ) -> None:
        self.attempt = attempt
        self.endpoint = endpoint
        self.channel: Channel = endpoint.channel()
        self.method = method

    def open(self) -> ClientStream:
        """The attempt's stream (`async with` it), with the call's deadline and its metadata."""
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
            raise RpcError(Status.INTERNAL, "the server ended the call without a reply")
        return reply


Body = Callable[[Exchange[RequestT, ReplyT]], AsyncGenerator[ReplyT, None]]
"""What one attempt of a call kind does: its replies, as they reach the caller."""


async def single(replies: AsyncGenerator[ReplyT, None]) -> ReplyT:
    """The reply of a unary-reply call (unary, client streaming), once the call has ended."""
    (reply,) = [reply async for reply in replies]  # the runner ends after exactly one
    return reply


class AttemptRunner:
    """Runs the calls of one GreetClient (see the module docstring)."""

    def __init__(
        self,
        pool: EndpointPool,
        budget: RetryBudget,
        *,
        interceptors: Sequence[CallInterceptor] = (),
        attempt_interceptors: Sequence[AttemptInterceptor] = (),
    ) -> None:
        self.pool = pool
        self.budget = budget
        self.interceptors = tuple(interceptors)
        self.attempt_interceptors = tuple(attempt_interceptors)
        self.served: Counter[str] = Counter()

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
        attempts = partial(self._attempts, call, body, requests)
        return intercepted(call, self.interceptors, attempts)

    async def _attempts(
        self, call: ClientCall, body: Body[Any, ReplyT], requests: ReplayableRequests | None
    ) -> AsyncGenerator[ReplyT, None]:
        try:
            transparent = False
            while True:
                state = await self._pick()
                attempt = call.new_attempt(state.name, transparent=transparent)
                exchange = Exchange(attempt, state, call.definition)
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
                        self._failed(exchange, error)
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
            failure = self._failed(exchange, error)
            raise failure.error from failure.cause
        except BaseException:
            exchange.attempt.end_cancelled()
            raise
        else:
            exchange.attempt.end()

    def _failed(self, exchange: Exchange[Any, Any], error: BaseException) -> Failure:
        """Record how an attempt failed; take its endpoint out if its connection failed."""
        state = exchange.endpoint
        failure = classify(error, state.name)
        if failure.connection_failed:
            self.pool.mark_down(state, exchange.channel)
        exchange.attempt.fail(failure)
        return failure

    async def _pick(self) -> EndpointState:
        if self.pool.needs_resolution:
            try:
                await self.pool.resolve()
            except OSError as error:
                raise RpcError(Status.UNAVAILABLE, str(error)) from error
        state = self.pool.pick()
        if state is None:
            raise RpcError(Status.UNAVAILABLE, "no endpoint: every name resolved to nothing")
        return state

    def _succeeded(self, state: EndpointState) -> None:
        self.budget.record_success()
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
