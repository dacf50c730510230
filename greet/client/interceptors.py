"""GreetClient's interceptors: ordered chains around each call and around each of its attempts.

    class Interceptor(Protocol[Record]):
        async def intercept(self, record: Record, proceed: Proceed, /) -> None: ...

    CallInterceptor = Interceptor[ClientCall]        # once per call, around all its attempts
    AttemptInterceptor = Interceptor[ClientAttempt]  # around each attempt (retries included)

    GreetClient(targets, interceptors=[...], attempt_interceptors=[...])

The shape is the server's (greet.transport._server_call): interceptors run in the order given
(the first is the outermost), each before and after the rest of the chain. A call interceptor
sees the ClientCall (greet.client.calls): method, kind, metadata, deadline and retry policy; an
attempt interceptor the ClientAttempt: its endpoint, its number, whether it is a transparent
retry, its own metadata. Either may

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
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from greet.client.calls import ClientAttempt, ClientCall, Outcome
from greet.errors import RpcError

__all__ = ["AttemptInterceptor", "CallInterceptor", "Interceptor", "Proceed", "intercepted"]

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
        _wake(self._reader)

    def close(self, _task: object = None) -> None:
        self._closed = True
        _wake(self._reader)

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
        _wake(self._writer)
        return item


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
