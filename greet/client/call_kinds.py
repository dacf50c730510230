"""The four call kinds as attempt bodies: what one attempt does on its stream.

Each function returns the Body (greet.client.attempts) of one call, for the AttemptRunner to run
on every attempt. A body sends its requests and yields its replies as they reach the caller; a
unary-reply body yields its one reply once the stream has ended well. Client and bidi streams
read their requests from a ReplayableRequests, so that a retry sends the same ones again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TypeVar

from greet.client.attempts import Body, Exchange
from greet.client.requests import ReplayableRequests
from greet_service import HelloRequest

__all__ = ["bidi_streaming", "client_streaming", "server_streaming", "unary"]

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


def unary(request: RequestT) -> Body[RequestT, ReplyT]:
    """One request, one reply."""

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
