"""BlockingGreetClient: GreetClient for scripts and notebooks that run no event loop.

    with BlockingGreetClient("127.0.0.1:8080") as client:
        print(client.say_hello().message)
        for reply in client.say_hello_server_streaming(["Alice", "Bob"]):
            print(reply.message)

It runs a GreetClient on an event loop of its own, in a background thread, and waits for each
call there (as grpcio's blocking stubs do for its channel). Streaming replies come back as an
iterator, each reply fetched as it is read; requests are a list or any iterable of names or
HelloRequests, read inside the call. The keyword arguments are GreetClient's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from greet.client._client import GreetClient
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList

__all__ = ["BlockingGreetClient"]

T = TypeVar("T")


class BlockingGreetClient:
    """GreetClient's four calls, blocking (see the module docstring). `close()` (or leaving the
    `with` block) closes the connections and ends the thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="greet-blocking-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self.client: GreetClient = self._wait(_made(args, kwargs))
        except BaseException:
            self._stop_loop()
            raise

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, replies: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._wait(_next(replies))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(replies, "aclose", None)
            if aclose is not None and not self._closed:
                self._wait(_awaited(aclose()))

    def __enter__(self) -> BlockingGreetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._wait(_closed(self.client))
        self._closed = True
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    # -- the four calls ----------------------------------------------------------------------

    def say_hello(self, *, timeout: float | None = None) -> HelloResponse:
        return self._wait(self.client.say_hello(timeout=timeout))

    def say_hello_server_streaming(
        self, names: NamesList | Iterable[str], *, timeout: float | None = None
    ) -> Iterator[HelloResponse]:
        return self._iterate(self.client.say_hello_server_streaming(names, timeout=timeout))

    def say_hello_client_streaming(
        self, requests: Iterable[str | HelloRequest], *, timeout: float | None = None
    ) -> MessagesList:
        return self._wait(self.client.say_hello_client_streaming(requests, timeout=timeout))

    def say_hello_bidirectional_streaming(
        self, requests: Iterable[str | HelloRequest], *, timeout: float | None = None
    ) -> Iterator[HelloResponse]:
        replies = self.client.say_hello_bidirectional_streaming(requests, timeout=timeout)
        return self._iterate(replies)


async def _made(args: tuple[Any, ...], kwargs: dict[str, Any]) -> GreetClient:
    return GreetClient(*args, **kwargs)  # made on the loop that runs its calls


async def _next(replies: AsyncIterator[T]) -> T:
    return await anext(replies)


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


async def _closed(client: GreetClient) -> None:
    client.close()
