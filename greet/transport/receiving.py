"""Receive limits: gRPC messages cut out of DATA frames, with the size limit checked first.

A gRPC message on the wire is a 5-byte prefix (compressed flag, 4-byte big-endian length) and the
body. `MessageFramer` reads the prefix as soon as it arrives and refuses a message larger than
`--max-message-bytes` before a byte of its body is kept (RESOURCE_EXHAUSTED), so the limit bounds
what one message can make the server buffer. Complete bodies wait in `messages` until the handler
takes them; the connection acknowledges (opens the peer's flow-control window for) received bytes
only while nothing complete is waiting, so a client that sends faster than its handler reads is
held to one window of buffered messages.

Refused: a prefix flag other than 0 or 1 (INTERNAL, as the gRPC spec says for a malformed frame)
and a stream that ends inside a message (INVALID_ARGUMENT). A compressed message is kept as a
`CompressedBody` and decompressed (with the limit on its decompressed size) when the handler
takes it (greet.transport.compression).
"""

from __future__ import annotations

from collections import deque

from grpclib.const import Status
from grpclib.exceptions import GRPCError

__all__ = ["RECV_YIELD_EVERY", "CompressedBody", "MessageFramer", "truncated"]

RECV_YIELD_EVERY = 16
"""A handler reading buffered messages yields to the event loop after this many, so that one fast
client stream cannot hold the loop while other calls wait."""

PREFIX_SIZE = 5


class CompressedBody(bytes):
    """A message body whose prefix had the compressed flag (greet.transport.compression)."""


def truncated() -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, "truncated gRPC message: the stream ended inside it")


class MessageFramer:
    """Cuts one stream's DATA into gRPC message bodies (see the module docstring)."""

    __slots__ = ("_buffer", "_compressed", "_length", "limit", "messages", "side")

    def __init__(self, limit: int, side: str = "request") -> None:
        self.limit = limit
        self.side = side
        self._compressed = False
        self.messages: deque[bytes] = deque()
        self._buffer = bytearray()
        self._length = -1  # the body length of the message being read; -1: reading a prefix

    @property
    def untouched(self) -> bool:
        """Nothing has been fed (or all of it was taken)."""
        return not self.messages and self._length < 0 and not self._buffer

    @property
    def inside_message(self) -> bool:
        """True when a message has begun and not ended (the stream must not end now)."""
        return bool(self._buffer) or self._length >= 0

    def feed(self, data: bytes) -> None:
        """Add DATA bytes; complete bodies go to `messages` (a compressed one as a
        CompressedBody). Raises GRPCError on a refused one."""
        buffer = self._buffer
        if not buffer and self._length < 0:
            # Common case: the chunk holds whole messages, the first starting at its start.
            size = len(data)
            pos = 0
            while size - pos >= PREFIX_SIZE:
                flag = data[pos]
                length = self._check_prefix(flag, int.from_bytes(data[pos + 1 : pos + 5], "big"))
                end = pos + PREFIX_SIZE + length
                if end > size:
                    break
                body = data[pos + PREFIX_SIZE : end]
                self.messages.append(CompressedBody(body) if flag else body)
                pos = end
            if pos == size:
                return
            data = data[pos:]
        buffer += data
        while True:
            if self._length < 0:
                if len(buffer) < PREFIX_SIZE:
                    return
                self._compressed = buffer[0] == 1
                self._length = self._check_prefix(buffer[0], int.from_bytes(buffer[1:5], "big"))
                del buffer[:PREFIX_SIZE]
            if len(buffer) < self._length:
                return
            body = bytes(buffer[: self._length])
            self.messages.append(CompressedBody(body) if self._compressed else body)
            del buffer[: self._length]
            self._length = -1

    def _check_prefix(self, flag: int, length: int) -> int:
        if flag > 1:
            raise GRPCError(Status.INTERNAL, f"invalid gRPC message prefix flag {flag}")
        if length > self.limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"{self.side} message is {length} bytes; the limit (--max-message-bytes) is "
                f"{self.limit}",
            )
        return length

    def clear(self) -> None:
        """Drop everything buffered (the call ended)."""
        self.messages.clear()
        self._buffer = bytearray()
        self._length = -1
