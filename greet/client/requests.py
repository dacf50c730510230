"""Request streams a client- or bidi-streaming call can send again on a retry.

A list or tuple of names is replayed as it is. Any other iterable (a generator, an async
generator) is read once; the messages read so far are kept (up to a limit) so a retried attempt
sends them again before reading on. A call that has read more than the limit, or has received a
reply, is committed: the buffer is dropped and the call is not retried any more.

Reading from an async source goes through a shielded task, so an attempt that is cancelled while
it waits for the next request does not break the source for the next attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TypeAlias

from greet._codec import build
from greet_service import HelloRequest

__all__ = ["NameOrRequest", "ReplayableRequests", "Requests", "as_request"]

NameOrRequest: TypeAlias = "str | HelloRequest"
Requests: TypeAlias = "Iterable[str | HelloRequest] | AsyncIterable[str | HelloRequest]"


def as_request(item: str | HelloRequest) -> HelloRequest:
    return build(HelloRequest, name=item) if isinstance(item, str) else item


class ReplayableRequests:
    """The request messages of one streaming call, readable once per attempt."""

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
