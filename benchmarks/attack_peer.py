"""A raw HTTP/2 attacker for benchmarks/attacks.py: frames written by hand over an asyncio socket.

Frames are built with `struct` (header blocks with hpack, without Huffman); nothing checks what
is sent, so floods, resets in bulk and frames of unknown types go out as written. A background
reader parses what the server sends back into an `Observed` record: GOAWAY (code and debug data),
RST_STREAM codes, ACK counts, per-stream gRPC status, and whether the connection was closed or
reset. The peer honours the server's flow-control windows for the DATA it sends (so a large
request is legal) and never opens its own: a stalled reader is one that is not told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import hpack

__all__ = [
    "ERROR_CODES",
    "AttackPeer",
    "Observed",
    "StreamResult",
    "data_frame",
    "frame",
    "grpc_message",
    "names_list",
    "ping_frame",
    "request_headers",
    "rst_stream_frame",
    "settings_frame",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SERVICE = "/greet_service.GreetService/"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9
)  # fmt: skip
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
ERROR_CODES = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)  # fmt: skip
INITIAL_WINDOW = 65_535
MAX_FRAME = 16_384


def error_name(code: int) -> str:
    return ERROR_CODES[code] if code < len(ERROR_CODES) else f"0x{code:x}"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame of any type, unknown ones included."""
    return (
        struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload
    )


def settings_frame(settings: dict[int, int] | None = None, *, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", key, value) for key, value in (settings or {}).items())
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping_frame(opaque: int) -> bytes:
    return frame(PING, 0, 0, struct.pack(">Q", opaque))


def rst_stream_frame(stream_id: int, code: int = 8) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def data_frame(stream_id: int, payload: bytes, *, end_stream: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def grpc_message(body: bytes = b"") -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return struct.pack(">?I", False, len(body)) + body


def names_list(count: int) -> bytes:
    """A NamesList {names} message (field 1, repeated string) with `count` short names."""
    out = bytearray()
    for index in range(count):
        name = b"n%d" % index
        out += b"\x0a" + bytes([len(name)]) + name
    return bytes(out)


def request_headers(method: str, extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", SERVICE + method),
        (":authority", "greet"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class StreamResult:
    """What came back on one stream."""

    grpc_status: int | None = None
    reset: int | None = None  # the first RST_STREAM's code (`Observed.resets` counts them all)
    data_bytes: int = 0
    ended: bool = False  # END_STREAM or RST_STREAM seen


@dataclass
class Observed:
    """What the server did on one connection, as the attacker saw it."""

    goaway: tuple[int, bytes] | None = None  # (error code, debug data)
    resets: Counter[int] = field(default_factory=Counter)  # RST_STREAM code -> count
    ping_acks: int = 0
    settings_acks: int = 0
    closed: bool = False  # the server closed the connection (EOF)
    reset_by_peer: bool = False  # ECONNRESET / EPIPE
    write_blocked: bool = False  # a write did not drain in time (the server stopped reading)
    streams: dict[int, StreamResult] = field(default_factory=dict)


class AttackPeer:
    """One client connection, frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.seen = Observed()
        self.next_stream = 1
        self.send_window = INITIAL_WINDOW
        self.stream_windows: dict[int, int] = {}
        self.initial_stream_window = INITIAL_WINDOW
        self.window_opened = asyncio.Event()
        self.changed = asyncio.Event()  # set on every frame (and at the end)
        self.server_settings: dict[int, int] = {}
        self.closing = False  # we closed or reset the socket ourselves
        self._block: dict[int, bytearray] = {}
        self._block_end_stream = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, target: str, *, settings: dict[int, int] | None = None, read: bool = True
    ) -> AttackPeer:
        """Connect and send the preface and SETTINGS; with `read`, read what the server sends in
        a background task from now on (else call `start_reading` later)."""
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        peer = cls(reader, writer)
        peer.write(PREFACE + settings_frame(settings))
        if read:
            peer.start_reading()
        return peer

    # -- sending -------------------------------------------------------------------------------

    @property
    def gone(self) -> bool:
        seen = self.seen
        return seen.closed or seen.reset_by_peer or self.writer.is_closing()

    def write(self, payload: bytes) -> None:
        if not self.gone:
            self.writer.write(payload)

    async def drain(self, timeout: float) -> bool:
        """Wait until the socket takes what was written; False if it did not within `timeout`
        or the connection is gone."""
        if self.gone:
            return False
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except asyncio.TimeoutError:
            self.seen.write_blocked = True
            return False
        except (ConnectionError, OSError):
            self.seen.reset_by_peer = True
            return False
        return True

    def new_stream(self) -> int:
        stream_id = self.next_stream
        self.next_stream += 2
        self.seen.streams[stream_id] = StreamResult()
        return stream_id

    def headers(
        self, stream_id: int, headers: Iterable[tuple[str, str]], *, end_stream: bool = False
    ) -> bytes:
        """HEADERS (and CONTINUATION frames for a block over 16 KiB), values without Huffman."""
        block = self.encoder.encode(list(headers), huffman=False)
        parts = [block[i : i + MAX_FRAME] for i in range(0, len(block), MAX_FRAME)] or [b""]
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if len(parts) == 1 else 0)
        out = [frame(HEADERS, flags, stream_id, parts[0])]
        for index, part in enumerate(parts[1:], start=2):
            last = END_HEADERS if index == len(parts) else 0
            out.append(frame(CONTINUATION, last, stream_id, part))
        return b"".join(out)

    async def send_data(self, stream_id: int, payload: bytes, timeout: float) -> bool:
        """DATA with END_STREAM, within the server's windows; False if they stayed shut."""
        self.stream_windows.setdefault(stream_id, self.initial_stream_window)
        view = memoryview(payload)
        while True:
            room = min(self.send_window, self.stream_windows[stream_id], MAX_FRAME, len(view))
            if room > 0 or not view:
                chunk, view = view[:room], view[room:]
                self.send_window -= room
                self.stream_windows[stream_id] -= room
                self.write(data_frame(stream_id, bytes(chunk), end_stream=not view))
                if not view:
                    return await self.drain(timeout)
                continue
            if self.gone or not await self.drain(timeout):
                return False
            self.window_opened.clear()
            try:
                await asyncio.wait_for(self.window_opened.wait(), timeout)
            except asyncio.TimeoutError:
                return False

    def request(self, method: str, body: bytes = b"", extra: Sequence[tuple[str, str]] = ()) -> int:
        """Write a small whole request (HEADERS, one DATA frame); returns its stream id."""
        stream_id = self.new_stream()
        self.write(self.headers(stream_id, request_headers(method, extra)))
        self.write(data_frame(stream_id, grpc_message(body), end_stream=True))
        return stream_id

    def abort(self) -> None:
        """Reset the socket (SO_LINGER 0: the server sees ECONNRESET, not a FIN)."""
        self.closing = True
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        """Close the connection (a FIN) and stop reading."""
        self.closing = True
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- receiving -----------------------------------------------------------------------------

    def start_reading(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._read_all())

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Until `done()` is true or the connection is gone (checked at every frame); False on
        the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if self.seen.closed or self.seen.reset_by_peer:
                return done()
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return False
        return True

    async def _read_all(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = await self.reader.read(1 << 18)
                if not chunk:
                    self.seen.closed = not self.closing
                    return
                buffer += chunk
                offset = 0
                while len(buffer) - offset >= 9:
                    length = int.from_bytes(buffer[offset : offset + 3], "big")
                    if len(buffer) - offset < 9 + length:
                        break
                    kind, flags, stream_id = struct.unpack_from(">BBI", buffer, offset + 3)
                    payload = bytes(buffer[offset + 9 : offset + 9 + length])
                    offset += 9 + length
                    self._on_frame(kind, flags, stream_id & 0x7FFFFFFF, payload)
                del buffer[:offset]
                self.changed.set()
        except (ConnectionError, OSError):
            self.seen.reset_by_peer = not self.closing
        finally:
            self.changed.set()
            self.window_opened.set()

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        seen = self.seen
        if kind == GOAWAY:
            code = struct.unpack_from(">I", payload, 4)[0]
            seen.goaway = (code, payload[8:])
        elif kind == RST_STREAM:
            code = struct.unpack(">I", payload[:4])[0]
            seen.resets[code] += 1
            result = seen.streams.setdefault(stream_id, StreamResult())
            if result.reset is None:  # the first reset says how the stream ended
                result.reset = code
            result.ended = True
        elif kind == PING and flags & ACK:
            seen.ping_acks += 1
        elif kind == SETTINGS:
            if flags & ACK:
                seen.settings_acks += 1
            else:
                self._on_settings(payload)
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            if stream_id == 0:
                self.send_window += increment
            else:
                self.stream_windows[stream_id] = (
                    self.stream_windows.get(stream_id, self.initial_stream_window) + increment
                )
            self.window_opened.set()
        elif kind == DATA:
            result = seen.streams.setdefault(stream_id, StreamResult())
            result.data_bytes += length_without_padding(flags, payload)
            result.ended = result.ended or bool(flags & END_STREAM)
        elif kind in (HEADERS, CONTINUATION):
            self._on_header_block(kind, flags, stream_id, payload)

    def _on_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, offset)
            self.server_settings[key] = value
            if key == 0x4:  # SETTINGS_INITIAL_WINDOW_SIZE
                delta = value - self.initial_stream_window
                self.initial_stream_window = value
                for stream_id in self.stream_windows:
                    self.stream_windows[stream_id] += delta
        self.write(settings_frame(ack=True))
        self.window_opened.set()

    def _on_header_block(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == HEADERS:
            fragment = memoryview(payload)
            if flags & PADDED:
                fragment = fragment[1 : len(fragment) - payload[0]]
            if flags & PRIORITY:
                fragment = fragment[5:]
            self._block[stream_id] = bytearray(fragment)
            self._block_end_stream = bool(flags & END_STREAM)
        else:
            self._block.setdefault(stream_id, bytearray()).extend(payload)
        if not flags & END_HEADERS:
            return
        headers = self.decoder.decode(bytes(self._block.pop(stream_id)))
        result = self.seen.streams.setdefault(stream_id, StreamResult())
        for name, value in headers:
            if name in ("grpc-status", b"grpc-status"):
                result.grpc_status = int(value)
        result.ended = result.ended or self._block_end_stream


def length_without_padding(flags: int, payload: bytes) -> int:
    return len(payload) - (payload[0] + 1 if flags & PADDED and payload else 0)
