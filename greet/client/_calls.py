"""What a GreetClient call is, as its interceptors see it, and the chains of interceptors.

A ClientCall is one call of the application (`await client.say_hello()`), over all its
attempts; a ClientAttempt is one try of it on one endpoint. Both are records the attempt runner
(greet.client._attempts) fills in and interceptors read:

- before `proceed()`: the method, its kind, the metadata (which an interceptor may add to), the
  deadline; an attempt also its endpoint, its number and whether it is a transparent retry;
- after `proceed()`: how it ended (`status`: OK or the failure's status, `error`: the RpcError
  or None), `elapsed` seconds and the messages sent and received.

A call's message counts are those of its last attempt: a retried attempt sends the requests
again, so these are the call's own requests and replies, not what went over the wire in all.
A client with no interceptors makes no records for a unary call that succeeds at once.

The interceptors, ordered chains around each call and around each of its attempts:

    class Interceptor(Protocol[Record]):
        async def intercept(self, record: Record, proceed: Proceed, /) -> None: ...

    CallInterceptor = Interceptor[ClientCall]        # once per call, around all its attempts
    AttemptInterceptor = Interceptor[ClientAttempt]  # around each attempt (retries included)

    GreetClient(targets, interceptors=[...], attempt_interceptors=[...])

The shape is the server's (greet.transport.interception): interceptors run in the order given
(the first is the outermost), each before and after the rest of the chain. A call interceptor
sees the ClientCall: method, kind, metadata, deadline and retry policy; an attempt interceptor
the ClientAttempt: its endpoint, its number, whether it is a transparent retry, its own metadata.
Either may

- add metadata before `await proceed()` (`call.metadata[...] = ...`: every attempt sends it;
  `attempt.metadata[...]`: that attempt only);
- refuse: raise `greet.errors.RpcError` instead of awaiting `proceed()`. The call ends with that
  error (an attempt interceptor's is not retried), and the interceptors outside see it as the
  outcome; raised after `proceed()`, it replaces the outcome (and again ends the call);
- observe the outcome after `proceed()`: `status`, `error`, `elapsed`, `messages_sent` and
  `messages_received`, one record that metrics, logs and tracing all read.

`proceed()` runs the rest of the chain and the call (or the attempt) and returns normally however
it ended; it raises only CancelledError, when the caller cancels the call or stops reading its
replies (the status is then CANCELLED). An interceptor awaits `proceed()` once, or raises.

Where a chain is given, it runs in a task of its own beside the caller, which reads the replies
it produces (one reply ahead at most): so the interceptors wrap the call as a whole, and a
streaming call's replies still reach the caller as they arrive. A context variable an interceptor
sets before `proceed()` is seen by the rest of the chain and by the attempt interceptors, not by
the caller. Without interceptors no task is started.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from grpclib.const import Cardinality, Status
from grpclib.metadata import Deadline

from greet.client._service_config import RetryPolicy
from greet.errors import MetadataValue, RpcError

if TYPE_CHECKING:
    from greet.client._attempts import Failure

__all__ = [
    "AttemptInterceptor",
    "CallInterceptor",
    "ClientAttempt",
    "ClientCall",
    "Interceptor",
    "Method",
    "Outcome",
    "Proceed",
    "intercepted",
    "wake",
]

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


@dataclass(frozen=True)
class Method(Generic[RequestT, ReplyT]):
    """One RPC of a service: its path, kind and message types."""

    path: str
    kind: Cardinality
    request_type: type[RequestT]
    reply_type: type[ReplyT]

    @property
    def service(self) -> str:
        """The full service name, `greet_service.GreetService`."""
        return self.path[1 : self.path.rfind("/")]

    @property
    def name(self) -> str:
        """The method name, `SayHello`."""
        return self.path[self.path.rfind("/") + 1 :]


class Outcome:
    """How a call or an attempt ended, filled in by the runner (see the module docstring)."""

    status: Status | None
    """None while it runs; OK, or the status of `error`; CANCELLED when the caller ended it
    (cancelled it, stopped reading a stream, or its request source raised)."""

    error: RpcError | None

    def __init__(self) -> None:
        self.status = None
        self.error = None
        self.started_at = time.perf_counter()
        self.ended_at: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds from its start to its end (to now while it runs)."""
        end = time.perf_counter() if self.ended_at is None else self.ended_at
        return end - self.started_at

    @property
    def ended(self) -> bool:
        return self.status is not None

    def end(self, error: RpcError | None = None) -> None:
        """It ended: OK (no error) or with `error`; the first end counts."""
        if self.status is not None:
            return
        self.ended_at = time.perf_counter()
        self.error = error
        self.status = Status.OK if error is None else error.status

    def end_refused(self, error: RpcError) -> None:
        """An interceptor raised `error`: that is the outcome, whatever it was before."""
        self.status = None
        self.end(error)

    def end_cancelled(self) -> None:
        """The caller ended it (see `status`)."""
        if self.status is None:
            self.ended_at = time.perf_counter()
            self.status = Status.CANCELLED


class ClientCall(Outcome):
    """One call of the application, over all its attempts."""

    def __init__(
        self,
        method: Method[Any, Any],
        metadata: dict[str, MetadataValue],
        deadline: Deadline | None,
        retry_policy: RetryPolicy | None,
    ) -> None:
        super().__init__()
        self.definition = method
        self.metadata = metadata
        """Sent with every attempt; a call interceptor may add to it before `proceed()`."""
        self.deadline = deadline
        """One deadline over all attempts (None: none); an interceptor may set a shorter one."""
        self.retry_policy = retry_policy
        """The policy the service config gives this method (None: not retried)."""
        self.attempts: list[ClientAttempt] = []
        self.replies = 0  # replies handed to the application: the call is committed
        self.transparent_retry_used = False

    @property
    def method(self) -> str:
        """The method path, `/greet_service.GreetService/SayHello`."""
        return self.definition.path

    @property
    def kind(self) -> Cardinality:
        """Unary, server streaming, client streaming or bidi."""
        return self.definition.kind

    @property
    def service(self) -> str:
        return self.definition.service

    @property
    def method_name(self) -> str:
        return self.definition.name

    @property
    def messages_sent(self) -> int:
        return self.attempts[-1].messages_sent if self.attempts else 0

    @property
    def messages_received(self) -> int:
        return self.attempts[-1].messages_received if self.attempts else 0

    @property
    def counted_attempts(self) -> int:
        """Attempts that count towards the policy's max_attempts (transparent retries do not)."""
        return sum(1 for attempt in self.attempts if not attempt.transparent)

    def new_attempt(self, endpoint: str, *, transparent: bool) -> ClientAttempt:
        attempt = ClientAttempt(self, len(self.attempts) + 1, endpoint, transparent)
        self.attempts.append(attempt)
        return attempt

    def __repr__(self) -> str:
        return f"<ClientCall {self.method} {self.status.name if self.status else 'running'}>"


class ClientAttempt(Outcome):
    """One attempt of a call, on one endpoint."""

    def __init__(self, call: ClientCall, number: int, endpoint: str, transparent: bool) -> None:
        super().__init__()
        self.call = call
        self.number = number
        """1 for the first attempt, 2 for the first retry, ..."""
        self.endpoint = endpoint
        """The server it went to, `host:port`."""
        self.transparent = transparent
        """A transparent retry: the previous attempt was not processed by its server."""
        self.metadata: dict[str, MetadataValue] = dict(call.metadata)
        """Sent with this attempt: the call's, to which an attempt interceptor may add."""
        self.messages_sent = 0
        self.messages_received = 0
        self.failure: Failure | None = None
        """How the transport failed it (None: it succeeded, or an interceptor refused it)."""

    def fail(self, failure: Failure) -> None:
        self.failure = failure
        self.end(failure.error)

    def end_refused(self, error: RpcError) -> None:
        """An attempt interceptor raised `error`: the call ends with it, not retried."""
        self.failure = None
        super().end_refused(error)

    def __repr__(self) -> str:
        state = self.status.name if self.status else "running"
        return f"<ClientAttempt {self.number} of {self.call.method} on {self.endpoint} {state}>"


# -- interceptors ----------------------------------------------------------------------------------

Proceed = Callable[[], Awaitable[None]]

RecordT = TypeVar("RecordT", bound=Outcome)
RecordT_contra = TypeVar("RecordT_contra", bound=Outcome, contravariant=True)
ItemT = TypeVar("ItemT")


class Interceptor(Protocol[RecordT_contra]):
    """One link of a chain (see the module docstring)."""

    async def intercept(self, record: RecordT_contra, proceed: Proceed, /) -> None: ...


CallInterceptor = Interceptor[ClientCall]
AttemptInterceptor = Interceptor[ClientAttempt]


def intercepted(
    record: RecordT,
    chain: Sequence[Interceptor[RecordT]],
    produce: Callable[[], AsyncGenerator[ItemT, None]],
) -> AsyncGenerator[ItemT, None]:
    """The items of `produce()`, with `chain` run around producing them; then the RpcError the
    record ended with, if any.

    `produce()` records its outcome in `record` before it raises its RpcError; inside the chain
    that error is not raised (`proceed()` returns normally, the interceptors read the record),
    and an RpcError an interceptor raises is recorded in its place.
    """
    if not chain:
        return produce()
    return _relayed(record, chain, produce)


async def _relayed(
    record: RecordT,
    chain: Sequence[Interceptor[RecordT]],
    produce: Callable[[], AsyncGenerator[ItemT, None]],
) -> AsyncGenerator[ItemT, None]:
    handoff: _Handoff[ItemT] = _Handoff()
    proceeded = False

    async def innermost() -> None:
        nonlocal proceeded
        if proceeded:
            raise RuntimeError("proceed() was awaited twice")
        proceeded = True
        items = produce()
        try:
            async for item in items:
                await handoff.put(item)
        except RpcError:
            pass  # recorded: the interceptors read it in the record
        finally:
            await items.aclose()  # stopped early: end the call or the attempt now

    task = asyncio.create_task(_link(record, chain, 0, innermost))
    task.add_done_callback(handoff.close)
    try:
        async for item in handoff:
            yield item
        task.result()  # an interceptor's own exception (not an RpcError) reaches the caller
    finally:
        if not task.done():  # the caller stopped: end the chain (interceptors see it end)
            task.cancel()
            await asyncio.wait([task])
            record.end_cancelled()
        if not task.cancelled():
            task.exception()  # retrieved: raised above, or superseded by the caller's own end
    if record.error is not None:
        raise record.error
    if not proceeded:
        raise RuntimeError(
            f"a client interceptor of {record!r} returned without awaiting proceed() or raising"
        )


async def _link(
    record: RecordT,
    chain: Sequence[Interceptor[RecordT]],
    index: int,
    innermost: Callable[[], Awaitable[None]],
) -> None:
    if index == len(chain):
        await innermost()
        return
    try:
        await chain[index].intercept(record, lambda: _link(record, chain, index + 1, innermost))
    except RpcError as error:  # refused, or the outcome replaced
        record.end_refused(error)


class _Handoff(Generic[ItemT]):
    """Items from the chain's task to the caller: `put` waits while one is still unread."""

    def __init__(self) -> None:
        self._items: deque[ItemT] = deque()
        self._closed = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None

    async def put(self, item: ItemT) -> None:
        while self._items:
            self._writer = asyncio.get_running_loop().create_future()
            try:
                await self._writer
            finally:
                self._writer = None
        self._items.append(item)
        wake(self._reader)

    def close(self, _task: object = None) -> None:
        self._closed = True
        wake(self._reader)

    def __aiter__(self) -> _Handoff[ItemT]:
        return self

    async def __anext__(self) -> ItemT:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        item = self._items.popleft()
        wake(self._writer)
        return item


def wake(waiter: asyncio.Future[None] | None) -> None:
    """Wake whoever waits on `waiter`, if anyone does."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
