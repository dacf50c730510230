"""A raw HTTP/2 peer for attack and conformance tests: it writes whatever frames it is told to.

No HTTP/2 library logic sits between the test and the socket (hyperframe serializes frames, hpack
encodes header blocks), so a test can send what no well-behaved client would: floods, bad
headers, frames of unknown types, resets in bulk. `RawPeer.frames()` parses what the server sends
back, and `response()` collects one stream's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

__all__ = ["PREFACE", "RawPeer", "Response", "grpc_message", "unknown_frame"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SERVICE = "/greet_service.GreetService/"


def grpc_message(body: bytes = b"") -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return struct.pack(">?I", False, len(body)) + body


def unknown_frame(frame_type: int, payload: bytes = b"x", stream_id: int = 0) -> bytes:
    """A frame of a type RFC 9113 does not define (receivers must ignore it)."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([frame_type, 0])
        + struct.pack(">I", stream_id)
        + payload
    )


def request_headers(
    method: str = "SayHello", *, path: str | None = None, extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path or SERVICE + method),
        (":authority", "greet"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class Response:
    """What came back on one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    reset: int | None = None  # RST_STREAM error code

    @property
    def grpc_status(self) -> int | None:
        value = self.trailers.get("grpc-status") or self.headers.get("grpc-status")
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message") or self.headers.get("grpc-message") or ""


class RawPeer:
    """One client connection, frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.buffer = bytearray()
        self.next_stream = 1
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        self.server_settings: dict[int, int] = {}
        self._block = b""
        self._first_flags: set[str] = set()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        settings: dict[int, int] | None = None,
        handshake: bool = True,
    ) -> RawPeer:
        """Connect; with `handshake`, send the preface and SETTINGS and ACK the server's."""
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        peer = cls(reader, writer)
        if handshake:
            frame = SettingsFrame(0)
            frame.settings = dict(settings or {})
            peer.write(PREFACE + frame.serialize())
            await peer.drain()
            first = await peer.next_frame(10)
            assert isinstance(first, SettingsFrame), first
            peer.server_settings.update(first.settings)
            peer.write(SettingsFrame(0, flags=["ACK"]).serialize())
        return peer

    # -- sending -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until the socket takes what was written (fails after `timeout` seconds)."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except (ConnectionError, OSError):
            self.closed = True

    def read_in_background(self) -> None:
        """Read (and parse) everything the server sends from now on, in a task; `goaway` is set
        when one comes, `wait_closed()` waits for the end of the connection."""
        self._reader = asyncio.create_task(self._read_all())

    async def _read_all(self) -> None:
        while await self.next_frame(timeout=None) is not None:
            pass

    async def wait_closed(self, timeout: float = 30.0) -> None:
        """With `read_in_background`: until the server has closed the connection."""
        assert self._reader is not None, "call read_in_background() first"
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    def new_stream(self) -> int:
        stream_id = self.next_stream
        self.next_stream += 2
        return stream_id

    def headers(
        self,
        stream_id: int,
        headers: Iterable[tuple[str, str]],
        *,
        end_stream: bool = False,
        chunk: int = 16384,
    ) -> bytes:
        """A HEADERS frame (and CONTINUATION frames for a block over `chunk` bytes). Values go
        without Huffman coding: legal HPACK, and pure-Python Huffman takes seconds a megabyte."""
        block = self.encoder.encode(list(headers), huffman=False)
        parts = [block[i : i + chunk] for i in range(0, len(block), chunk)] or [b""]
        first = HeadersFrame(stream_id)
        first.data = parts[0]
        if end_stream:
            first.flags.add("END_STREAM")
        if len(parts) == 1:
            first.flags.add("END_HEADERS")
        out = [first.serialize()]
        for index, part in enumerate(parts[1:], start=2):
            frame = ContinuationFrame(stream_id)
            frame.data = part
            if index == len(parts):
                frame.flags.add("END_HEADERS")
            out.append(frame.serialize())
        return b"".join(out)

    def request(
        self,
        method: str = "SayHello",
        body: bytes = b"",
        *,
        path: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        end: bool = True,
    ) -> int:
        """Write a whole request (HEADERS, then DATA with one message); returns the stream id."""
        stream_id = self.new_stream()
        self.write(self.headers(stream_id, request_headers(method, path=path, extra=extra)))
        self.write(data(stream_id, grpc_message(body), end_stream=end))
        return stream_id

    # -- receiving -----------------------------------------------------------------------------

    async def next_frame(self, timeout: float | None = 20.0) -> Frame | None:
        """The next frame from the server; None once the connection is closed."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(self.buffer[:9])))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self.buffer[9 : 9 + length])))
                    del self.buffer[: 9 + length]
                    if isinstance(frame, GoAwayFrame):
                        self.goaway = frame
                    elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.server_settings.update(frame.settings)
                    return frame
            try:
                chunk = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.buffer += chunk

    async def frames_until_closed(
        self, timeout: float = 20.0, *, answer_pings: bool = True
    ) -> list[Frame]:
        """Every frame until the server closes the connection (fails on a timeout); PINGs are
        answered (as any client's HTTP/2 stack answers them) unless `answer_pings` is False."""
        frames = []
        while (frame := await self.next_frame(timeout)) is not None:
            frames.append(frame)
            if answer_pings and isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.write(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
        return frames

    async def wait_goaway(self, timeout: float = 20.0) -> GoAwayFrame:
        """Read until a GOAWAY comes (fails if the connection closes without one)."""
        while self.goaway is None:
            frame = await self.next_frame(timeout)
            if frame is None:
                raise AssertionError("the connection closed without a GOAWAY")
        return self.goaway

    async def response(self, stream_id: int, timeout: float = 20.0) -> Response:
        """One stream's answer: headers, DATA, trailers or RST_STREAM (other streams' frames
        are dropped; PINGs are answered)."""
        return (await self.responses([stream_id], timeout))[stream_id]

    async def responses(
        self, stream_ids: Collection[int], timeout: float = 20.0
    ) -> dict[int, Response]:
        """The answers of several streams, whose frames may come interleaved (frames of other
        streams are dropped; PINGs are answered)."""
        responses = {stream_id: Response() for stream_id in stream_ids}
        open_ids = set(stream_ids)
        while open_ids:
            frame = await self.next_frame(timeout)
            if frame is None:
                raise AssertionError(f"connection closed before streams {sorted(open_ids)} ended")
            if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self.write(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
                continue
            if isinstance(frame, (HeadersFrame, ContinuationFrame)):
                block = self._header_block(frame)
                if block is None:
                    continue
                decoded = {
                    name.decode(): value.decode()
                    for name, value in self.decoder.decode(block, raw=True)
                }
                response = responses.get(frame.stream_id)
                if response is None or frame.stream_id not in open_ids:
                    continue
                ended = "END_STREAM" in self._first_flags
                if not response.headers:
                    response.headers = decoded
                    if ended:
                        response.trailers = decoded
                        open_ids.discard(frame.stream_id)
                else:
                    response.trailers = decoded
                    open_ids.discard(frame.stream_id)
            elif frame.stream_id not in open_ids:
                continue
            elif isinstance(frame, DataFrame):
                responses[frame.stream_id].data += frame.data
                if frame.data:  # keep the flow-control windows open
                    self.write(window_update(frame.stream_id, len(frame.data)))
                    self.write(window_update(0, len(frame.data)))
            elif isinstance(frame, RstStreamFrame):
                responses[frame.stream_id].reset = frame.error_code
                open_ids.discard(frame.stream_id)
        return responses

    def _header_block(self, frame: HeadersFrame | ContinuationFrame) -> bytes | None:
        if isinstance(frame, HeadersFrame):
            self._block = b""
            self._first_flags = set(frame.flags)
        self._block += frame.data
        if "END_HEADERS" not in frame.flags:
            return None
        return self._block

    def reset_socket(self) -> None:
        """Close with an RST (SO_LINGER 0), as a crashed client would."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the server
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def data(stream_id: int, payload: bytes, *, end_stream: bool = False) -> bytes:
    frame = DataFrame(stream_id, data=payload)
    if end_stream:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def rst(stream_id: int, error_code: int = 8) -> bytes:
    return RstStreamFrame(stream_id, error_code=error_code).serialize()


def ping(payload: bytes = b"12345678") -> bytes:
    return PingFrame(0, opaque_data=payload).serialize()


def settings(values: dict[int, int] | None = None) -> bytes:
    frame = SettingsFrame(0)
    frame.settings = dict(values or {})
    return frame.serialize()


def window_update(stream_id: int, increment: int) -> bytes:
    return WindowUpdateFrame(stream_id, window_increment=increment).serialize()
