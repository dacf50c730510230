"""A raw HTTP/1.1 peer for the web protocols: requests written as bytes on one connection (so a
test can pipeline them, or send what no client library would), responses read with h11's client
side; and the framing of Connect and gRPC-Web bodies (five-byte envelopes).

    async with await RawHttp1.open("127.0.0.1", port) as peer:
        await peer.send(request("POST", "/greet_service.GreetService/SayHello", JSON, b"{}"))
        reply = await peer.response()
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import h11

__all__ = ["RawHttp1", "Reply", "envelope", "envelopes", "request"]

Headers = Sequence[tuple[str, str]]


def request(method: str, path: str, headers: Headers = (), body: bytes = b"") -> bytes:
    """One well-formed HTTP/1.1 request as bytes (Host and Content-Length added), by h11."""
    writer = h11.Connection(our_role=h11.CLIENT)
    all_headers = [("host", "127.0.0.1"), *headers]
    if method != "GET" or body:
        all_headers.append(("content-length", str(len(body))))
    parts = [writer.send(h11.Request(method=method, target=path, headers=all_headers))]
    if body:
        parts.append(writer.send(h11.Data(data=body)))
    parts.append(writer.send(h11.EndOfMessage()))
    return b"".join(part for part in parts if part is not None)


@dataclass(frozen=True)
class Reply:
    """One HTTP/1.1 response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header `name` (the values joined by ", " if it came more than once)."""
        values = [value for key, value in self.headers if key == name.lower()]
        return ", ".join(values) if values else None


class RawHttp1:
    """One HTTP/1.1 connection: `send` writes bytes as they are, `response` reads the next
    response (responses to pipelined requests come in the order the requests were written)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._parser = h11.Connection(our_role=h11.CLIENT)
        self._sent = 0  # requests written
        self._read = 0  # responses read

    @classmethod
    async def open(cls, host: str, port: int) -> RawHttp1:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes, requests: int = 1) -> None:
        """Write `data`, which holds `requests` requests."""
        self.writer.write(data)
        await self.writer.drain()
        self._sent += requests

    async def response(self, timeout: float = 30.0) -> Reply:
        """The next response, whole."""
        assert self._read < self._sent, "no request is waiting for its response"
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Reply:
        parser = self._parser
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        # h11 reads a response only after a request it sent: tell it the one written (the
        # bytes it would write are dropped, the request was written by `send` already)
        parser.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
        parser.send(h11.EndOfMessage())
        status = 0
        headers: list[tuple[str, str]] = []
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                parser.receive_data(data)  # b"": the server closed the connection
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = [(k.decode().lower(), v.decode()) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._read += 1
                return Reply(status, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before a response")

    @property
    def server_closed(self) -> bool:
        """The server said it closes the connection after this response (or has closed it)."""
        return self._parser.their_state in (h11.MUST_CLOSE, h11.CLOSED)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> RawHttp1:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def envelope(message: bytes, flags: int = 0) -> bytes:
    """One Connect or gRPC-Web envelope: flags, big-endian length, message."""
    return struct.pack(">BI", flags, len(message)) + message


def envelopes(body: bytes) -> list[tuple[int, bytes]]:
    """The (flags, message) envelopes of a streamed body; raises ValueError if it is cut short."""
    found = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < 5:
            raise ValueError(f"a partial envelope head at {offset}")
        flags, length = struct.unpack_from(">BI", body, offset)
        message = body[offset + 5 : offset + 5 + length]
        if len(message) != length:
            raise ValueError(f"an envelope of {length} bytes at {offset} is cut short")
        found.append((flags, message))
        offset += 5 + length
    return found
