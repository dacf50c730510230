"""The HTTP/2 engine seam: what greet's connections need from an HTTP/2 library, and which one;
and the few raw frames greet writes itself.

Two engines implement `Http2Engine`, both first-class and tested with the whole suite:

    nghttp2   libnghttp2 through ngh2 (greet.transport._engines.nghttp2): the default wherever
              the ngh2 wheel installs; about 30x less CPU per exchange than h2
    h2        pure-Python h2 (greet.transport._engines.h2): the fallback, and the pure-Python path

An engine is sans-I/O: bytes in (`receive`), bytes out (`data_to_send`). It reports what the peer
did by calling the methods of `EngineEvents` (implemented by greet's connection classes) while
`receive` and `data_to_send` run, and raises `EngineFailure` when the peer broke the protocol badly
enough that the connection has to go (with the GOAWAY error code to send); libnghttp2 answers some
such errors itself (a bad frame after the preface): its GOAWAY is queued and the engine reports
`on_connection_closed(code)` instead, and the connection writes it and closes all the same
(tests/test_engines.py drives both engines through these semantics, bytes in and events out,
with no socket). The engine is the one
owner of the HTTP/2 stream states: greet asks it (`is_stream_open`, `queued`) instead of keeping
copies.

Both engines present the same semantics, so everything above this seam (limits, drain, keepalive,
streams) is written once:
- `send_data` queues body bytes; the engine frames them as flow control allows, and trailers or an
  end of stream queued after them wait for them (`queued(stream_id)` says how much is waiting);
- received DATA is not acknowledged until `acknowledge(stream_id, n)`: the connection decides when
  the application has taken the bytes (this is what bounds what a peer can make us buffer);
- `on_stream_closed` comes exactly once per stream, when both directions are done or it was reset;
- malformed request headers (RFC 9113 section 8.2 and 8.3) never reach `on_request`: the engine
  resets that stream with PROTOCOL_ERROR and the connection lives on;
- MAX_CONCURRENT_STREAMS and MAX_HEADER_LIST_SIZE are advertised as given, but enforced by the
  connection (per stream: REFUSED_STREAM, RESOURCE_EXHAUSTED), never by closing the connection.

Raw frames (RFC 9113 section 6): an engine owns its connection's byte stream, with two exceptions:
- `goaway_frame`: after an engine has failed (libnghttp2 refuses all output once a flood limit
  trips), the connection still owes the peer a GOAWAY with the error code before it closes;
- `settings_frame`: MAX_CONCURRENT_STREAMS is advertised in a SETTINGS frame of greet's own, sent
  right after the engine's first SETTINGS, so that the engine does not enforce it. Both engines
  close the whole connection when a peer goes over a limit they enforce (h2: TooManyStreamsError;
  libnghttp2: GOAWAY PROTOCOL_ERROR), while RFC 9113 section 5.1.2 asks for a stream error; the
  connection refuses each stream over the limit with REFUSED_STREAM instead.
  libnghttp2 treats a SETTINGS ACK it did not ask for as a protocol error, so `SettingsAckFilter`
  takes the peer's ACK of greet's SETTINGS frame out of the bytes before they reach it.
"""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, Protocol

__all__ = [
    "CLIENT_PREFACE",
    "DEFAULT_ENGINE",
    "ENGINE_ENV",
    "ENGINE_NAMES",
    "MAX_STREAM_ID",
    "SETTINGS_MAX_CONCURRENT_STREAMS",
    "EngineEvents",
    "EngineFailure",
    "EngineLimits",
    "ErrorCode",
    "Header",
    "Headers",
    "Http2Engine",
    "SettingsAckFilter",
    "StreamGone",
    "code_name",
    "default_engine_name",
    "describe_engine",
    "goaway_frame",
    "new_engine",
    "settings_frame",
]


# -- engine ----------

Header = tuple[bytes, bytes]


Headers = Sequence[Header]


EngineName = Literal["nghttp2", "h2"]


ENGINE_NAMES: tuple[EngineName, ...] = ("nghttp2", "h2")


MAX_STREAM_ID = 2**31 - 1
"""The largest stream id (31 bits); also the last stream id of a drain's first GOAWAY."""


class ErrorCode(IntEnum):
    """HTTP/2 error codes (RFC 9113 section 7) carried by RST_STREAM and GOAWAY."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def code_name(code: int) -> str:
    """An error code's name (`CANCEL`), or its hex value when it is not one of RFC 9113's."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return hex(code)


class StreamGone(Exception):
    """A send on a stream the engine no longer has (reset, closed, or the session ended)."""


class EngineFailure(Exception):
    """The peer broke the protocol (or an engine limit); the connection must close after a
    GOAWAY with `code` (the engine may have queued that GOAWAY already: `goaway_queued`)."""

    def __init__(self, code: ErrorCode, message: str, *, goaway_queued: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.goaway_queued = goaway_queued


@dataclass(frozen=True)
class EngineLimits:
    """What an engine is told about one connection's limits.

    `advertised_*` go into the first SETTINGS frame; `hard_*` bound what the engine itself keeps
    in memory for one header block (beyond them the connection fails with a GOAWAY). Between the
    two, the connection refuses single calls.
    """

    max_concurrent_streams: int = 100
    initial_window_size: int = 1 << 20
    connection_window_size: int = 4 << 20
    max_frame_size: int = 1 << 16
    advertised_header_list_size: int = 1 << 16
    hard_header_list_size: int = 1 << 21
    hard_header_count: int = 8192
    max_continuations: int = 160
    max_outbound_acks: int = 1000


class EngineEvents(Protocol):
    """What a connection hears from its engine (called during `receive` and `data_to_send`)."""

    def on_request(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """A peer-initiated stream's request headers (server side); already validated."""

    def on_response(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """Response headers of a stream we opened (client side)."""

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        """Body bytes; not acknowledged to the peer until `Http2Engine.acknowledge`."""

    def on_trailers(self, stream_id: int, headers: Headers) -> None:
        """Trailing headers; they end the peer's side of the stream."""

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        """The peer reset the stream (RST_STREAM)."""

    def on_stream_closed(self, stream_id: int, error_code: int) -> None:
        """The stream is gone (both sides ended, or reset either way); once per stream."""

    def on_window_update(self, stream_id: int) -> None:
        """More send window (stream_id 0: the connection's); queued data may move again."""

    def on_ping(self) -> None:
        """The peer sent a PING (the engine acknowledges it)."""

    def on_ping_ack(self, payload: bytes) -> None:
        """The peer acknowledged one of our PINGs."""

    def on_settings(self) -> None:
        """The peer sent SETTINGS (the engine acknowledges and applies them)."""

    def on_goaway(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        """The peer is going away: no new streams here."""

    def on_connection_closed(self, error_code: int) -> None:
        """The engine is done with the connection (its GOAWAY is queued, no stream is left):
        write what is queued and close."""


class Http2Engine(Protocol):
    """One HTTP/2 connection's protocol state (see the module docstring for the semantics)."""

    def initiate(self) -> None:
        """Queue the connection preface (client) or first SETTINGS (server)."""

    def receive(self, data: bytes) -> None:
        """Process bytes from the peer; raise EngineFailure on a connection error."""

    def data_to_send(self) -> bytes:
        """Everything queued for the wire that flow control allows now."""

    # Sends on a stream the engine no longer has raise StreamGone.

    def send_request(self, headers: Headers, end_stream: bool = False) -> int:
        """Open a stream with request headers; returns its id (client side)."""

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        """Response headers (server side)."""

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue body bytes (framed as flow control allows)."""

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """Trailing headers that end our side, after the queued body."""

    def end_stream(self, stream_id: int) -> None:
        """End our side of the stream after the queued body, without trailers."""

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM now; queued body for the stream is dropped."""

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application took `size` received body bytes: open the peer's window again."""

    def queued(self, stream_id: int) -> int:
        """Body bytes of one stream still waiting for flow control."""

    def queued_total(self) -> int:
        """Body bytes of all streams still waiting for flow control."""

    def ping(self, payload: bytes) -> None:
        """Send a PING with an 8-byte payload."""

    def goaway(self, error_code: int, last_stream_id: int, debug: bytes = b"") -> None:
        """Queue a GOAWAY; with last_stream_id 2^31-1 it is the first of a graceful shutdown."""

    def is_stream_open(self, stream_id: int) -> bool:
        """Whether the engine still tracks the stream (it can still carry frames)."""

    def halt(self) -> None:
        """Report no more events: the connection is closing (the rest of the input is dropped)."""

    @property
    def peer_max_concurrent_streams(self) -> int:
        """The peer's SETTINGS_MAX_CONCURRENT_STREAMS (how many streams we may open)."""


DEFAULT_ENGINE: EngineName = "nghttp2"


def nghttp2_available() -> bool:
    """True where the ngh2 wheel is installed (it bundles libnghttp2)."""
    return importlib.util.find_spec("ngh2") is not None


ENGINE_ENV = "GREET_HTTP2_ENGINE"


def default_engine_name() -> EngineName:
    """GREET_HTTP2_ENGINE when it names an engine; else nghttp2 wherever ngh2 installs, else h2.

    Servers read the variable through their config as well; clients (GreetClient, the CLI and
    bench) read it here, so one variable moves a whole deployment (or test run) to an engine.
    """
    chosen = os.environ.get(ENGINE_ENV, "").strip()
    if chosen == "h2":
        return "h2"
    if chosen == "nghttp2" or (not chosen and nghttp2_available()):
        return "nghttp2"
    if chosen:
        raise ValueError(
            f"{ENGINE_ENV}={chosen!r} is not an HTTP/2 engine; use one of {', '.join(ENGINE_NAMES)}"
        )
    return "h2"


def describe_engine(name: EngineName) -> str:
    """`nghttp2 (ngh2 0.3.0)` or `h2 (h2 4.4.1)`: for the startup log line."""
    from importlib.metadata import version

    package = "ngh2" if name == "nghttp2" else "h2"
    return f"{name} ({package} {version(package)})"


class EngineFactory(Protocol):
    def __call__(
        self, *, client: bool, limits: EngineLimits, events: EngineEvents
    ) -> Http2Engine: ...


def engine_factory(name: EngineName) -> EngineFactory:
    """The engine class for `name` (imported on first use: h2 need not load with nghttp2)."""
    if name == "nghttp2":
        from greet.transport._engines.nghttp2 import NgHttp2Engine

        return NgHttp2Engine
    if name == "h2":
        from greet.transport._engines.h2 import H2Engine

        return H2Engine
    raise ValueError(f"unknown HTTP/2 engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")


def new_engine(
    name: EngineName, *, client: bool, limits: EngineLimits, events: EngineEvents
) -> Http2Engine:
    """A new engine for one connection."""
    return engine_factory(name)(client=client, limits=limits, events=events)


# -- frames ----------

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


FRAME_HEADER = struct.Struct(">I B B I")  # 24-bit length in the int's low bytes; see below


TYPE_SETTINGS = 0x4


TYPE_GOAWAY = 0x7


FLAG_ACK = 0x1


SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """One serialized frame."""
    header = FRAME_HEADER.pack(len(payload), frame_type, flags, stream_id & MAX_STREAM_ID)
    return header[1:] + payload  # the length field is 24 bits: drop the int's high byte


def settings_frame(settings: Mapping[int, int]) -> bytes:
    """A SETTINGS frame (not an ACK) with the given identifiers and values."""
    payload = b"".join(struct.pack(">HI", key, value) for key, value in settings.items())
    return frame(TYPE_SETTINGS, 0, 0, payload)


def goaway_frame(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame."""
    payload = struct.pack(">II", last_stream_id & MAX_STREAM_ID, error_code) + debug
    return frame(TYPE_GOAWAY, 0, 0, payload)


class SettingsAckFilter:
    """Removes the peer's ACK of one SETTINGS frame greet sent itself from received bytes.

    The peer acknowledges SETTINGS frames in the order it got them (RFC 9113 section 6.5.3):
    `skip_acks` is how many ACKs belong to the engine's SETTINGS sent before greet's frame, and
    the ACK after them is greet's (a malformed ACK, with a payload, is left for the engine to
    refuse). Until that ACK has passed, the filter walks frame headers
    (9 bytes each, payloads are not copied or parsed); afterwards `done` is True and the
    connection feeds bytes to the engine directly. A server's filter first skips the 24-byte
    client preface.
    """

    __slots__ = ("_carry", "_preface", "_remaining", "_skip_acks", "done")

    def __init__(self, *, skip_acks: int = 1, server: bool = True) -> None:
        self._skip_acks = skip_acks
        self._preface = len(CLIENT_PREFACE) if server else 0
        self._remaining = 0  # bytes of the current frame's payload still to pass through
        self._carry = b""  # an incomplete frame header
        self.done = False

    def __call__(self, data: bytes) -> bytes:
        """The bytes to give the engine (everything but greet's SETTINGS ACK)."""
        if self.done:
            return data
        if self._carry:
            data = self._carry + data
            self._carry = b""
        out: list[bytes] = []
        pos = 0
        end = len(data)
        if self._preface:
            taken = min(self._preface, end)
            self._preface -= taken
            pos = taken
        start = 0  # start of the bytes not yet copied to `out`
        while pos < end and not self.done:
            if self._remaining:
                step = min(self._remaining, end - pos)
                self._remaining -= step
                pos += step
                continue
            if end - pos < 9:
                out.append(data[start:pos])
                self._carry = data[pos:]
                return b"".join(out)
            length = int.from_bytes(data[pos : pos + 3], "big")
            frame_type = data[pos + 3]
            flags = data[pos + 4]
            if frame_type == TYPE_SETTINGS and flags & FLAG_ACK and length == 0:
                if self._skip_acks:
                    self._skip_acks -= 1
                else:  # greet's: leave it out
                    out.append(data[start:pos])
                    pos += 9
                    start = pos
                    self.done = True
                    break
            pos += 9
            self._remaining = length
        out.append(data[start:])
        return b"".join(out) if len(out) > 1 else out[0]
